"""A throwaway PostgreSQL cluster on 127.0.0.1 with a fresh database per test.

deskctl's store runs on SQLite by default and PostgreSQL in larger
deployments; migrations and queries must be proven on the real server.
One cluster per session keeps the ~1 s initdb cost paid once, and
``CREATE DATABASE`` per test (tens of ms) keeps tests isolated.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from ._proc import (
    MissingBinaryError,
    chown_tree,
    free_port,
    make_base_dir,
    require_main_thread,
    run_as,
    setpriv_prefix,
    stop_process,
    tail,
)

DEBIAN_PACKAGE = "postgresql"
_START_ATTEMPTS = 3
_READY_TIMEOUT = 30.0
_DB_NAME = re.compile(r"^t_[0-9a-f]+$")


def find_bindir() -> Path:
    """``$PG_BINDIR`` or the newest ``/usr/lib/postgresql/<major>/bin``.

    Debian keeps ``initdb`` and ``postgres`` off PATH, so PATH is not used.
    """
    env = os.environ.get("PG_BINDIR")
    candidates = [Path(env)] if env else []
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    versioned.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates += [Path(p) for p in reversed(versioned)]
    for bindir in candidates:
        if os.access(bindir / "initdb", os.X_OK) and os.access(bindir / "postgres", os.X_OK):
            return bindir
    raise MissingBinaryError(
        "initdb/postgres (PG_BINDIR or /usr/lib/postgresql/*/bin)", DEBIAN_PACKAGE
    )


class PostgresStartError(RuntimeError):
    """initdb or postgres failed; the message carries the server log tail."""


class PostgresCluster:
    """One running cluster, created and started by the constructor.

    Runs as the ``postgres`` account when pytest is root (PostgreSQL refuses
    root), trust auth on loopback only, durability switched off for speed.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        require_main_thread("PostgresCluster")
        self.bindir = bindir or find_bindir()
        self.account = run_as("postgres")
        self.base = make_base_dir("dk-pg-")
        self.data_dir = self.base / "data"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            chown_tree(self.base, self.account)
            self._initdb()
            self._start()
        except BaseException:
            self.stop()
            raise

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            **self.account.popen_kwargs(),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb failed ({result.returncode}):\n"
                + (result.stdout + result.stderr).decode(errors="replace")
            )

    def _start(self) -> None:
        log = self.base / "postgres.log"
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            with open(log, "ab") as out:
                self._proc = subprocess.Popen(
                    [
                        *setpriv_prefix("INT"),
                        str(self.bindir / "postgres"),
                        "-D",
                        str(self.data_dir),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"port={self.port}",
                        "-c",
                        f"unix_socket_directories={self.base}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=50",
                        "-c",
                        "shared_buffers=32MB",
                    ],
                    cwd=self.base,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    **self.account.popen_kwargs(),  # type: ignore[call-overload]
                )
            if self._wait_ready():
                return
            stop_process(self._proc, signal.SIGINT)
            self._proc = None
            if "could not bind" not in self.log_tail(20):
                break
        raise PostgresStartError(f"postgres did not start in {self.base}:\n{self.log_tail(40)}")

    def _wait_ready(self) -> bool:
        """Poll until a psycopg connection succeeds (the real readiness signal)."""
        assert self._proc is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with self.connect(connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """SIGINT (fast shutdown) to the postmaster, then delete everything."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGINT)
            self._proc = None
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of the server log."""
        return tail(self.base / "postgres.log", n)

    # -- databases -----------------------------------------------------------

    def connect(self, dbname: str = "postgres", **kwargs: object) -> psycopg.Connection:
        """An autocommit psycopg connection as the ``postgres`` superuser."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            **kwargs,  # type: ignore[arg-type]
        )

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``dbname``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """Create ``t_<hex>`` from template1 and return its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex}"
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template1").format(sql.Identifier(name))
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database (a name or a URL from :meth:`create_database`) WITH (FORCE).

        FORCE terminates connections a test leaked, so teardown never hangs.
        """
        name = name.rsplit("/", 1)[-1]
        if not _DB_NAME.match(name):
            raise ValueError(f"refusing to drop {name!r}: not a test database")
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
