"""A team on many machines: several fetch and send-outbox workers at once, some of them killed.

The heavy story runs in the PostgreSQL pass of the suite (DESKCTL_TEST_DB=postgres),
where workers on several hosts meet; the lease stories run on both backends.

A killed run also leaves nothing behind: cron and systemd kill a run that takes
too long (SIGKILL, no chance to clean up), and the parse worker and resource
tracker it started must go with it, or every such kill leaves two processes on
the host for good.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jobs.conftest import SUPPORT, AddImap, count, deskctl_process, fill, new_user
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from conftest import BACKEND, Run
from mailfactory import make_mail
from testbed.dovecot import Dovecot
from testbed.smtp_relay import SmtpRelay


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


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rpartition(")")[2].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":  # a zombie has exited; only its entry is left
            found.append((int(entry.name), cmdline))
    return found


def big_batch(tmp_path: Path, count: int = 400) -> list[Path]:
    """Enough mail, and heavy enough to parse, that the run uses its parse worker."""
    html = "<html><body>" + "<p>Der Drucker brennt <b>wieder</b>.</p>" * 2000 + "</body></html>"
    paths = []
    for i in range(count):
        path = tmp_path / "mail" / f"{1_700_000_000 + i}.m{i}.host"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(make_mail(subject=f"batch {i}", body=html))
        paths.append(path)
    return paths


def kill_while_the_worker_runs(args: list[str]) -> tuple[list[tuple[int, str]], list]:
    """Start deskctl in its own process group, SIGKILL it once its worker runs.

    Returns the processes it had started and those still alive afterwards.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "deskctl", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    started: list[tuple[int, str]] = []
    while time.monotonic() < deadline and proc.poll() is None:
        started = [m for m in group_members(proc.pid) if m[0] != proc.pid]
        if any("spawn_main" in cmd for _pid, cmd in started):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its parse worker started"
    time.sleep(0.3)  # the worker is parsing now
    started = [m for m in group_members(proc.pid) if m[0] != proc.pid]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = group_members(proc.pid)
    for _ in range(100):
        if not left:
            break
        time.sleep(0.1)
        left = group_members(proc.pid)
    for pid, _cmd in left:  # do not leave them to the next test either
        os.kill(pid, signal.SIGKILL)
    return started, left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_ingest_leaves_no_worker_or_resource_tracker(desk: Run, tmp_path: Path) -> None:
    paths = big_batch(tmp_path)
    started, left = kill_while_the_worker_runs(["-q", "ingest", *map(str, paths)])
    assert any("spawn_main" in cmd for _pid, cmd in started), started
    assert left == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_fetch_leaves_no_worker_or_resource_tracker(desk: Run, tmp_path: Path) -> None:
    paths = big_batch(tmp_path)
    box = tmp_path / "mail"
    (box / "new").mkdir()
    for sub in ("cur", "tmp"):
        (box / sub).mkdir()
    for path in paths:
        path.rename(box / "new" / path.name)
    desk("channel", "add", "md", "--kind", "maildir", "--address", "md@example.test",
         "--path", str(box))  # fmt: skip
    started, left = kill_while_the_worker_runs(["-q", "fetch"])
    assert any("spawn_main" in cmd for _pid, cmd in started), started
    assert left == []
