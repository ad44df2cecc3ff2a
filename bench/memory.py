"""Benchmark memory under the size limit: peak RSS of huge mail, on stdin and over IMAP.

Promise 7 says memory stays bounded by ``--max-size`` (default 25 MiB). Two
runs, each its own child process (peak RSS via wait4, see benchutil):

* ``deskctl ingest`` of one 200 MB mail piped to its stdin (a feeder thread
  writes it in 1 MiB blocks, so the driver never holds it): over the limit, it
  is spooled to disk and listed in the quarantine;
* ``deskctl fetch`` from the test bed's Dovecot (IMAPS, test CA) of a folder
  holding a 30 MB message between small ones, under the default limit: the big
  one's RFC822.SIZE is over it, so it is never downloaded and stays listed.

For contrast, the same fetch with ``--max-size`` raised above the message
(downloaded and parsed) is shown too. Both runs under the default limit must
stay below 150 MiB; the script exits 1 otherwise.

    python bench/memory.py [--ingest-mb 200] [--imap-mb 30] [--small 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchutil import MIB, ChildRun, child_env, deskctl_argv, run_child, table
from fetch import PASSWORD, PW_VAR, USER, Server, fetch_report, prepare_deskctl  # adds tests/

BUDGET_MIB = 150
LINE = b"A" * 76 + b"\r\n"
BLOCK = LINE * (MIB // len(LINE))


def header(subject: str, message_id: str) -> bytes:
    return (
        "From: Ada Lovelace <ada@example.org>\r\nTo: support@example.test\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
        "Date: Mon, 02 Nov 2026 09:30:00 +0000\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()


def big_mail(size: int, subject: str, message_id: str) -> Iterator[bytes]:
    """A mail of about ``size`` bytes, in 1 MiB blocks."""
    yield header(subject, message_id)
    for _ in range(size // len(BLOCK)):
        yield BLOCK


# -- filling the folder (runs in a child: ``memory.py --append-child``) -----------------


def append_child(cfg: dict[str, Any]) -> None:
    """APPEND the big mail and the small ones; a child, so the driver's RSS stays small."""
    from imap_tools import MailBox

    context = ssl.create_default_context(cafile=cfg["ca"])
    with MailBox("localhost", cfg["port"], ssl_context=context).login(
        USER, os.environ[PW_VAR], initial_folder=None
    ) as box:
        for i in range(cfg["small"] // 2):
            box.append(header(f"small {i}", f"small-{i}@bench") + b"hello\r\n", cfg["folder"])
        size = cfg["mb"] * 1000 * 1000
        box.append(b"".join(big_mail(size, "huge", "huge@bench")), cfg["folder"])
        for i in range(cfg["small"] // 2, cfg["small"]):
            box.append(header(f"small {i}", f"small-{i}@bench") + b"hello\r\n", cfg["folder"])


# -- the runs ---------------------------------------------------------------------------


def ingest_stdin(base: Path, size: int) -> tuple[ChildRun, dict[str, Any]]:
    home = base / "ingest"
    env = child_env(home)
    db_url = f"sqlite:///{home / 'deskctl.db'}"
    run_child(deskctl_argv("--db", db_url, "db", "upgrade"), env).check()
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            try:
                for block in big_mail(size, "disk image", "image@bench"):
                    pipe.write(block)
            except BrokenPipeError:
                pass  # the child's exit code tells

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        run = run_child(deskctl_argv("--db", db_url, "--json", "ingest"), env, stdin=read_end)
    finally:
        os.close(read_end)
    feeder.join()
    return run.check(7), json.loads(run.stdout)


def fetch_imap(
    base: Path, server: Server, run: int, *limit: str
) -> tuple[ChildRun, dict[str, Any]]:
    home = base / f"fetch{run}"
    db_url = f"sqlite:///{home / 'deskctl.db'}"
    env, name = prepare_deskctl(home, db_url, server)
    desk = run_child(
        deskctl_argv("--db", db_url, "--json", "fetch", "--channel", name, *limit), env
    )
    return desk.check(0, 7), fetch_report(desk)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--append-child":
        append_child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ingest-mb", type=int, default=200, help="mail on stdin (default 200)")
    parser.add_argument("--imap-mb", type=int, default=30, help="IMAP message (default 30)")
    parser.add_argument("--small", type=int, default=20, help="small messages around it")
    args = parser.parse_args()

    from testbed.certs import make_certs
    from testbed.dovecot import Dovecot

    base = Path(tempfile.mkdtemp(prefix="deskctl-bench-memory-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        ingest, outcome = ingest_stdin(base, args.ingest_mb * 1000 * 1000)

        certs = make_certs()
        stack.callback(certs.remove)
        dovecot = Dovecot(certs, {USER: PASSWORD})
        stack.callback(dovecot.stop)
        folder = dovecot.create_folder(USER, PASSWORD, prefix="bench")
        server = Server(dovecot.imaps_port, str(certs.ca_pem), folder)
        cfg = {"port": server.port, "ca": server.ca_file, "folder": folder,
               "mb": args.imap_mb, "small": args.small}  # fmt: skip
        env = child_env(base / "append", **{PW_VAR: PASSWORD})
        run_child([sys.executable, __file__, "--append-child", json.dumps(cfg)], env).check()

        bounded, report = fetch_imap(base, server, 1)
        raised = str((args.imap_mb + 10) * MIB)
        unbounded, unbounded_report = fetch_imap(base, server, 2, "--max-size", raised)

        print(f"ingest: one {args.ingest_mb} MB mail on stdin; fetch: one {args.imap_mb} MB "
              f"message among {args.small} small ones, Dovecot IMAPS")  # fmt: skip
        print()
        rows: list[list[object]] = [
            ["ingest (stdin), default limit", ingest.seconds, ingest.peak_rss_mib,
             f"quarantined {outcome.get('quarantined')}: spooled"],
            ["fetch (IMAP), default limit", bounded.seconds, bounded.peak_rss_mib,
             f"fetched {report['fetched']}, left on server {report['left_on_server']}"],
            [f"fetch (IMAP), --max-size {raised}", unbounded.seconds, unbounded.peak_rss_mib,
             f"fetched {unbounded_report['fetched']}, "
             f"left on server {unbounded_report['left_on_server']}"],
        ]  # fmt: skip
        print(table(["run", "seconds", "peak RSS MiB", "outcome"], rows))
        worst = max(ingest.peak_rss_mib, bounded.peak_rss_mib)
        print()
        print(f"under the default limit: peak {worst:.1f} MiB, budget {BUDGET_MIB} MiB: "
              + ("ok" if worst < BUDGET_MIB else "OVER"))  # fmt: skip
        if worst >= BUDGET_MIB or report["left_on_server"] != 1:
            sys.exit(1)


if __name__ == "__main__":
    main()
