"""A team on many machines: several fetch and send-outbox workers at once, some of them killed.

The heavy story runs in the PostgreSQL pass of the suite (DESKCTL_TEST_DB=postgres),
where workers on several hosts meet; the lease stories run on both backends.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from jobs.conftest import SUPPORT, AddImap, deskctl_process, fill, new_user
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from conftest import BACKEND, Run
from mailfactory import make_mail
from testbed.dovecot import Dovecot
from testbed.smtp_relay import SmtpRelay


def count(db_url: str, sql: str) -> int:
    with create_engine(db_url).connect() as conn:
        return int(conn.scalar(text(sql)) or 0)


def queue_replies(db_url: str, n: int, tag: str) -> None:
    """n tickets with a queued reply each, made through the services (setup, not the story)."""
    from deskctl.mail.parse import parse_mail
    from deskctl.services.channels import get_incoming
    from deskctl.services.ingest import ingest_mail, load_ingest_cache
    from deskctl.services.replies import ReplyRequest, reply_to_ticket

    engine = create_engine(db_url)
    with Session(engine) as session, session.begin():
        channel = get_incoming(session, "inbox")
        cache = load_ingest_cache(session)
        for i in range(n):
            raw = make_mail(
                subject=f"w{i}",
                sender=f"c{i}-{tag}@example.org",
                to="inbox@example.test",
                message_id=f"<{tag}-{i}@x>",
            )
            result = ingest_mail(session, raw, parse_mail(raw), reader=channel.id, cache=cache)
            reply_to_ticket(
                session,
                result.ticket.number or 0,
                "setup",
                ReplyRequest(body=f"answer {i}", force=True),
            )


@pytest.mark.skipif(
    BACKEND != "postgres", reason="the many-workers story runs in the PostgreSQL pass"
)
def test_three_fetchers_and_three_senders_with_kills_lose_and_double_nothing(
    desk: Run,
    dovecot: Dovecot,
    smtp_relay: SmtpRelay,
    add_imap: AddImap,
    fresh_folder: str,
    db_url: str,
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    tag = f"{random.randrange(1 << 30):x}"
    fill(
        dovecot,
        SUPPORT,
        fresh_folder,
        [make_mail(subject=f"m{i}", message_id=f"<in-{tag}-{i}@x>") for i in range(500)],
    )
    add_imap("support", SUPPORT, folder=fresh_folder)
    agent = new_user(dovecot, "agent")
    monkeypatch.setenv("SMTP_PW", agent[1])
    desk("channel", "add-outgoing", "out", "--kind", "smtp", "--host", "127.0.0.1", "--port", str(smtp_relay.plain_port),
         "--security", "none", "--from", agent[0])  # fmt: skip
    desk(
        "channel",
        "add",
        "inbox",
        "--kind",
        "pipe",
        "--address",
        "inbox@example.test",
        "--reply-via",
        "out",
    )
    queue_replies(db_url, 500, tag)

    rng = random.Random(11)
    commands = [("-q", "fetch")] * 3 + [("-q", "send-outbox", "--limit", "40")] * 3
    slots: list[subprocess.Popen[bytes] | None] = [None] * len(commands)
    kills = 0
    deadline = time.monotonic() + 20
    next_kill = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for i, proc in enumerate(slots):
            if proc is None or proc.poll() is not None:
                slots[i] = deskctl_process(*commands[i])
        if time.monotonic() >= next_kill:
            victim = slots[rng.randrange(len(slots))]
            if victim is not None and victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
            next_kill = time.monotonic() + rng.uniform(1.0, 2.5)
        time.sleep(0.05)
    for proc in slots:
        if proc is not None:
            proc.wait(timeout=120)
    assert desk("fetch").exit_code == 0
    for _ in range(20):
        desk("send-outbox")
        if count(db_url, "SELECT count(*) FROM outbox_items WHERE state <> 'sent'") == 0:
            break
    assert kills >= 5
    assert count(db_url, f"SELECT count(*) FROM messages WHERE message_id LIKE 'in-{tag}-%'") == 500
    assert count(db_url, "SELECT count(*) FROM outbox_items WHERE state = 'sent'") == 500
    delivered = Counter(
        m.message()["Message-ID"]
        for m in smtp_relay.messages
        if m.auth_user is None and m.mail_from == agent[0]
    )
    assert len(delivered) == 500
    doubled = [mid for mid, n in delivered.items() if n > 1]
    # SMTP cannot be exactly-once: a kill between the server's 250 and our commit resends.
    assert len(doubled) <= kills, doubled


def test_a_foreign_workers_lease_is_respected_until_it_expires(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db_url: str
) -> None:
    fill(dovecot, SUPPORT, fresh_folder, [make_mail(subject="leased")])
    add_imap("support", SUPPORT, folder=fresh_folder)
    future = datetime.now(UTC) + timedelta(minutes=3)
    with create_engine(db_url).begin() as conn:
        conn.execute(
            text("UPDATE incoming_channels SET lease_owner = 'elsewhere:1:x', lease_until = :t"),
            {"t": future},
        )
    held = desk("--json", "fetch")
    assert held.exit_code == 0 and held.json()["channels"][0]["skipped"]
    with create_engine(db_url).begin() as conn:
        conn.execute(
            text("UPDATE incoming_channels SET lease_until = :t"),
            {"t": datetime.now(UTC) - timedelta(seconds=1)},
        )
    taken = desk("--json", "fetch").json()["channels"][0]
    assert taken["fetched"] == 1 and "skipped" not in taken


def test_two_agents_assigning_at_once_one_wins_the_other_hears_who(desk: Run, db_url: str) -> None:
    desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    for i in range(5):
        desk(
            "ingest",
            "--channel",
            "support",
            stdin=make_mail(subject=f"race {i}", sender=f"r{i}@example.org"),
        )
    for name in ("alice", "bob"):
        desk("agent", "add", name)
    for number in range(1, 4):
        procs = {
            name: deskctl_process("--agent", name, "ticket", "assign", str(number), "me")
            for name in ("alice", "bob")
        }
        results = {
            name: (p.wait(timeout=60), p.stderr.read().decode()) for name, p in procs.items()
        }  # type: ignore[union-attr]
        codes = sorted(code for code, _ in results.values())
        assert codes == [0, 4], results
        (winner,) = [n for n, (c, _) in results.items() if c == 0]
        (message,) = [m for n, (c, m) in results.items() if c == 4]
        assert winner in message
        assert (
            count(
                db_url,
                f"SELECT count(*) FROM ticket_events WHERE ticket_id = {number} AND kind = 'assign'",
            )
            == 1
        )
