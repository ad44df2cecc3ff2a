"""Benchmark ``deskctl fetch --watch``: seconds from a mail's APPEND to its ticket.

Starts the test bed's Dovecot (IMAPS, test CA) and one ``deskctl -q fetch --watch``
on a fresh folder of support@example.test, then APPENDs N mails one at a time
(a pause between them, so each is measured alone) and, for each, polls the
database until its message is committed. Prints the median, min and max
seconds from the start of the APPEND to the committed ticket; issue 15's target
is a median within 3 s. Nothing here is asserted by the tests.

The same is measured first for a bare imap-tools IDLE client (APPEND to the
EXISTS it is sent): Dovecot itself holds an IDLE notice back about 0.5 s, so
the difference between the two rows is deskctl's share (wake, log in, fetch,
parse, commit).

    python bench/watch.py [--n 20] [--pause 0.5] [--db URL | --postgres]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from benchutil import REPO, deskctl_argv, table
from fetch import PASSWORD, USER, Server, databases, prepare_deskctl
from sqlalchemy import create_engine, text

sys.path.insert(0, str(REPO / "tests"))


def mail(tag: str, i: int) -> bytes:
    from mailfactory import make_mail

    return make_mail(subject=f"watch {i}", message_id=f"<{tag}-{i}@example.org>")


def bare_idle(dovecot: object, folder: str, n: int, pause: float) -> list[float]:
    """Seconds from APPEND to the EXISTS a second connection in IDLE is sent."""
    seconds = []
    with (
        dovecot.mailbox(USER, PASSWORD, folder) as waiting,  # type: ignore[attr-defined]
        dovecot.mailbox(USER, PASSWORD) as box,  # type: ignore[attr-defined]
    ):
        for i in range(n):
            time.sleep(pause)
            waiting.idle.start()
            started = time.perf_counter()
            box.append(mail("bare", i), folder)
            while not any(b"EXISTS" in line for line in waiting.idle.poll(timeout=60)):
                pass
            seconds.append(time.perf_counter() - started)
            waiting.idle.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="mails (default 20)")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between mails")
    parser.add_argument("--db", help="database URL for deskctl (should be empty; not dropped)")
    parser.add_argument("--postgres", action="store_true", help="throwaway PostgreSQL cluster")
    args = parser.parse_args()
    if args.db and args.postgres:
        parser.error("--db and --postgres exclude each other")

    from testbed.certs import make_certs
    from testbed.dovecot import Dovecot

    base = Path(tempfile.mkdtemp(prefix="deskctl-bench-watch-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        certs = make_certs()
        stack.callback(certs.remove)
        dovecot = Dovecot(certs, {USER: PASSWORD})
        stack.callback(dovecot.stop)
        folder = dovecot.create_folder(USER, PASSWORD, prefix="bench")
        bare = bare_idle(dovecot, dovecot.create_folder(USER, PASSWORD, "bare"), args.n, args.pause)
        db_url = next(databases(args, stack, base))
        env, name = prepare_deskctl(base / "home1", db_url, Server(dovecot.imaps_port,
                                    str(certs.ca_pem), folder))  # fmt: skip
        watcher = subprocess.Popen(
            deskctl_argv("--db", db_url, "-q", "fetch", "--watch", "--channel", name),
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        engine = create_engine(db_url)
        stack.callback(engine.dispose)
        tag = uuid.uuid4().hex[:10]

        def committed(i: int) -> bool:
            with engine.connect() as conn:
                query = text("SELECT count(*) FROM messages WHERE message_id = :m")
                return bool(conn.scalar(query, {"m": f"{tag}-{i}@example.org"}))

        def measure(box: object, i: int) -> float:
            started = time.perf_counter()
            box.append(mail(tag, i), folder)  # type: ignore[attr-defined]
            deadline = started + 120
            while not committed(i):
                if time.perf_counter() > deadline or watcher.poll() is not None:
                    said = watcher.stderr.read().decode() if watcher.stderr else ""
                    raise RuntimeError(f"mail {i} never became a ticket; the watcher said:\n{said}")
                time.sleep(0.005)
            return time.perf_counter() - started

        with dovecot.mailbox(USER, PASSWORD) as box:
            measure(box, 0)  # warm-up: the watcher's start and first fetch are not measured
            seconds = []
            for i in range(1, args.n + 1):
                time.sleep(args.pause)
                seconds.append(measure(box, i))
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=60)

    backend = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite"
    print(f"deskctl fetch --watch, IMAPS on 127.0.0.1, {backend}")
    print(f"{args.n} mails APPENDed one at a time ({args.pause} s apart); watcher exit {code}")
    print()
    rows: list[list[object]] = [
        [what, statistics.median(xs), min(xs), max(xs)]
        for what, xs in (
            ("bare IDLE: APPEND to EXISTS", bare),
            ("deskctl: APPEND to ticket committed", seconds),
        )
    ]
    print(table(["seconds", "median", "min", "max"], rows))


if __name__ == "__main__":
    main()
