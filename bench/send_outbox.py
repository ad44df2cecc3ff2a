"""Benchmark: ``deskctl send-outbox`` against a bare smtplib loop, same SMTP server, same run.

Queues N replies (default 1,000) in a fresh SQLite database, then measures

* ``deskctl send-outbox`` as its own process (claims, filter check, one SMTP
  connection for the channel, a commit per item), and
* the practical limit: one smtplib connection sending the very same stored
  messages in a loop,

both against a local aiosmtpd server that accepts and discards. Prints
messages/second and the ratio; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from benchutil import child_env, deskctl_argv, run_child, table

SETUP = """
import sys
from email.message import EmailMessage
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from deskctl.mail.parse import parse_mail
from deskctl.services.channels import get_incoming
from deskctl.services.ingest import ingest_mail, load_ingest_cache
from deskctl.services.replies import ReplyRequest, reply_to_ticket

n = int(sys.argv[1])
with Session(create_engine(sys.argv[2])) as session, session.begin():
    channel = get_incoming(session, "support")
    cache = load_ingest_cache(session)
    for i in range(n):
        msg = EmailMessage()
        msg["From"] = f"Customer {i} <customer{i}@example.org>"
        msg["To"] = "support@example.test"
        msg["Subject"] = f"Question number {i} about my account"
        msg["Message-ID"] = f"<q{i}@example.org>"
        text = "Hello,\\n\\nmy invoice looks wrong, could you check it?\\n\\nThanks\\n"
        msg.set_content(text * 3)
        raw = msg.as_bytes()
        result = ingest_mail(session, raw, parse_mail(raw), reader=channel.id, cache=cache)
        body = "Thank you for your message. We corrected the invoice and sent it again.\\n" * 4
        reply_to_ticket(session, result.ticket.number, "bench", ReplyRequest(body=body, force=True))
"""


class Sink:
    """Accepts every message and counts it."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 2.0.0 accepted"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()

    sink = Sink()
    with socket.socket() as probe:  # a free port; aiosmtpd cannot be told port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory(prefix="deskctl-bench-send-") as tmp:
            home = Path(tmp) / "home"
            db_path = home / "deskctl.db"
            env = child_env(home)
            url = f"sqlite:///{db_path}"
            run_child(deskctl_argv("db", "upgrade"), env).check()
            run_child(
                deskctl_argv(
                    "channel",
                    "add-outgoing",
                    "out",
                    "--kind",
                    "smtp",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--security",
                    "none",
                    "--from",
                    "Support <support@example.test>",
                ),
                env,
            ).check()
            run_child(
                deskctl_argv(
                    "channel",
                    "add",
                    "support",
                    "--kind",
                    "pipe",
                    "--address",
                    "support@example.test",
                    "--reply-via",
                    "out",
                ),
                env,
            ).check()
            started = time.perf_counter()
            run_child([sys.executable, "-c", SETUP, str(args.n), url], env).check()
            print(f"queued {args.n} replies in {time.perf_counter() - started:.1f} s")

            with sqlite3.connect(db_path) as conn:
                rows = conn.execute(
                    "SELECT m.raw, m.from_email, json_extract(m.\"to\", '$[0].email') "
                    "FROM outbox_items o JOIN messages m ON m.id = o.message_id ORDER BY o.id"
                ).fetchall()

            before = sink.count
            desk = run_child(deskctl_argv("--json", "send-outbox", "--limit", str(args.n)), env)
            desk.check()
            sent_by_deskctl = sink.count - before

            before = sink.count
            bare_started = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as client:
                for raw, sender, rcpt in rows:
                    client.sendmail(sender, [rcpt], raw)
            bare_seconds = time.perf_counter() - bare_started
            sent_bare = sink.count - before
    finally:
        controller.stop()
        asyncio.set_event_loop(None)

    print()
    print(
        table(
            ["run", "messages", "seconds", "msg/s", "peak RSS MiB"],
            [
                [
                    "deskctl send-outbox",
                    sent_by_deskctl,
                    desk.seconds,
                    sent_by_deskctl / desk.seconds,
                    desk.peak_rss_mib,
                ],
                ["bare smtplib loop", sent_bare, bare_seconds, sent_bare / bare_seconds, "-"],
            ],
        )
    )
    print(
        f"\nratio deskctl/bare: time {desk.seconds / bare_seconds:.1f}x "
        "(deskctl's time includes interpreter start and imports)"
    )
    print(f"deskctl: {desk.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
