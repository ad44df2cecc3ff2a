"""``deskctl fetch --watch``: a ticket within seconds of the mail, for as long as it runs.

The watcher runs as its own process, as systemd runs it, against the real
Dovecot; every story waits on the database with a generous deadline and
asserts what happened, never how fast (bench/watch.py measures that).
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jobs.conftest import SUPPORT, AddImap, fill, new_user
from jobs.test_workers import group_members
from sqlalchemy import create_engine, text

from conftest import Run
from mailfactory import make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.fixtures import DEFAULT_USERS
from testbed.launcher import REPO, write_launcher

DEADLINE = 60.0


def wait_until(what: Callable[[], bool], why: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not what():
        assert time.monotonic() < end, f"gave up after {deadline:.0f} s waiting for {why}"
        time.sleep(0.05)


@dataclass
class Watcher:
    """A running ``deskctl fetch --watch`` in its own process group (as a service runs)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self, sig: int = signal.SIGTERM, *, group: bool = False) -> int:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


StartWatcher = Callable[..., Watcher]


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[StartWatcher]:
    """Start ``deskctl ARGS`` (``-q fetch --watch`` by default); killed with its group after."""
    started: list[Watcher] = []

    def start(
        *args: str, command: list[str] | None = None, env: dict[str, str] | None = None
    ) -> Watcher:
        n = len(started)
        out, err = tmp_path / f"watch{n}.out", tmp_path / f"watch{n}.err"
        argv = command or [sys.executable, "-m", "deskctl", *(args or ("-q", "fetch", "--watch"))]
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                argv, stdout=o, stderr=e, env=env or dict(os.environ), start_new_session=True
            )
        started.append(Watcher(proc, out, err))
        return started[-1]

    yield start
    for w in started:
        if w.proc.poll() is None:
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait()


@pytest.fixture
def db(db_url: str) -> Iterator[Callable[[str], int]]:
    """``db(sql)``: one number from the test's database, on one engine the test disposes of."""
    engine = create_engine(db_url)

    def scalar(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.scalar(text(sql)) or 0)

    yield scalar
    engine.dispose()


Db = Callable[[str], int]


def stored(db: Db, tag: str) -> int:
    return db(f"SELECT count(*) FROM messages WHERE message_id LIKE '{tag}-%'")


def doubled(db: Db, tag: str) -> int:
    return db(
        "SELECT count(*) FROM (SELECT message_id FROM messages "
        f"WHERE message_id LIKE '{tag}-%' GROUP BY message_id HAVING count(*) > 1) AS d"
    )


def mail(tag: str, i: int, **kwargs: str) -> bytes:
    return make_mail(subject=f"{tag} {i}", message_id=f"<{tag}-{i}@example.org>", **kwargs)


def test_a_mail_appended_to_a_watched_folder_becomes_a_ticket_through_idle(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db: Db,
    watcher: StartWatcher,
) -> None:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    fill(dovecot, SUPPORT, fresh_folder, [mail(tag, 0)])
    add_imap("support", SUPPORT, folder=fresh_folder)
    # An hour between polls: only IDLE can bring the second mail within the deadline.
    w = watcher("-q", "fetch", "--watch", "--interval", "3600")
    wait_until(lambda: stored(db, tag) == 1, "the mail that was there at start")
    fill(dovecot, SUPPORT, fresh_folder, [mail(tag, 1, sender=f"Bea <bea-{tag}@example.org>")])
    wait_until(lambda: stored(db, tag) == 2, "the appended mail")
    # The journal (or a log file) gets each line as it happens, not at exit.
    wait_until(lambda: len(w.stdout().splitlines()) == 2, "a summary line per fetch", 10)

    assert w.stop() == 0, w.stderr()
    tickets = desk("--json", "ticket", "list").json()["tickets"]
    assert f"bea-{tag}@example.org" in {t["customer"]["email"] for t in tickets}
    # -q: the cron run's one line per fetch that did something, nothing for idle time.
    lines = w.stdout().splitlines()
    assert len(lines) == 2 and all(" fetch: 1 fetched, 1 new tickets, " in x for x in lines), lines
    assert w.stderr() == ""


def test_a_cron_fetch_beside_the_watcher_while_mail_pours_in_stores_each_once(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db: Db,
    watcher: StartWatcher,
) -> None:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    add_imap("support", SUPPORT, "--after-fetch", "seen", folder=fresh_folder)
    w = watcher()
    total = 40

    def pour() -> None:  # one APPEND (one connection) at a time, as mail arrives
        for i in range(total):
            fill(dovecot, SUPPORT, fresh_folder, [mail(tag, i)])
            time.sleep(0.02)

    pouring = threading.Thread(target=pour)
    pouring.start()
    cron_runs = 0
    while pouring.is_alive() or cron_runs < 3:
        cron = subprocess.run(
            [sys.executable, "-m", "deskctl", "-q", "fetch"], capture_output=True, check=False
        )
        assert cron.returncode == 0, cron.stderr
        cron_runs += 1
    pouring.join()
    wait_until(lambda: stored(db, tag) == total, f"all {total} mails")
    assert desk("fetch").exit_code == 0
    assert w.stop() == 0, w.stderr()
    assert stored(db, tag) == total and doubled(db, tag) == 0
    tickets = desk("--json", "ticket", "list", "--limit", "1000").json()["tickets"]
    assert len([t for t in tickets if t["title"].startswith(tag)]) == total
    with dovecot.mailbox(*SUPPORT, folder=fresh_folder) as box:
        assert all("\\Seen" in m.flags for m in box.fetch(mark_seen=False, headers_only=True))


@pytest.fixture
def own_dovecot(certs: CertBundle) -> Iterator[Dovecot]:
    """A Dovecot of this test's own, to stop and start without troubling the others."""
    server = Dovecot(certs, DEFAULT_USERS)
    yield server
    server.stop()


def test_the_watcher_reconnects_after_the_server_restarts_and_fetches_what_came_meanwhile(
    desk: Run, own_dovecot: Dovecot, add_imap: AddImap, db: Db, watcher: StartWatcher
) -> None:
    tag = uuid.uuid4().hex[:10]
    add_imap("support", SUPPORT, port=own_dovecot.imaps_port)
    w = watcher("-q", "fetch", "--watch", "--interval", "3600")
    fill(own_dovecot, SUPPORT, "INBOX", [mail(tag, 0)])
    wait_until(lambda: stored(db, tag) == 1, "the first mail")

    def delivered_while_down() -> None:
        new = own_dovecot.maildir_path(SUPPORT[0]) / "new"
        (new / f"{int(time.time())}.{tag}.mail.example.test").write_bytes(mail(tag, 1))

    own_dovecot.restart(delivered_while_down)
    wait_until(lambda: stored(db, tag) == 2, "the mail delivered while IMAP was down")
    assert "connected again" in w.stderr(), "the fetch after the reconnect brought it"
    fill(own_dovecot, SUPPORT, "INBOX", [mail(tag, 2)])  # and it waits with IDLE again
    wait_until(lambda: stored(db, tag) == 3, "a mail after the restart")
    assert w.stop() == 0, w.stderr()
    assert "deskctl: channel support: IMAP server localhost:" in w.stderr()
    assert "; trying again in 2 s" in w.stderr(), w.stderr()


def test_the_waiting_connection_wakes_for_new_mail_only_and_sees_mail_that_beat_idle(
    dovecot: Dovecot, certs: CertBundle, fresh_folder: str
) -> None:
    from deskctl.transport.imap import ImapIdle, ImapSettings

    tag = uuid.uuid4().hex[:10]
    fill(dovecot, SUPPORT, fresh_folder, [mail(tag, 0)])
    settings = ImapSettings("localhost", dovecot.imaps_port, "ssl", *SUPPORT, fresh_folder,
                            ca_file=str(certs.ca_pem))  # fmt: skip
    idle = ImapIdle(settings)
    assert idle.open()
    try:
        idle.start()
        assert not idle.read_ahead()
        # Our own after-fetch action, from the fetch's connection: a flag change, no new mail.
        with dovecot.mailbox(*SUPPORT, folder=fresh_folder) as box:
            box.flag(box.uids(), "\\Seen", True)
        assert select.select([idle.fileno()], [], [], DEADLINE)[0]
        assert idle.done() is False
        # Mail that comes between two IDLEs (while a fetch runs) is answered with IDLE's
        # "+" in one packet: the socket is never readable for it, the buffer holds it.
        fill(dovecot, SUPPORT, fresh_folder, [mail(tag, 1)])
        idle.start()
        assert idle.read_ahead()
        assert not select.select([idle.fileno()], [], [], 0.5)[0]
        assert idle.done() is True
    finally:
        idle.close()


def test_a_server_without_idle_is_polled_every_interval(
    desk: Run, own_dovecot: Dovecot, add_imap: AddImap, db: Db, watcher: StartWatcher
) -> None:
    # Dovecot announcing less after login, as a server without IDLE does.
    config = own_dovecot.config_path
    config.write_text(
        config.read_text()
        + "protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ UIDPLUS MOVE SPECIAL-USE\n}\n"
    )
    own_dovecot.restart()
    tag = uuid.uuid4().hex[:10]
    add_imap("support", SUPPORT, port=own_dovecot.imaps_port)
    w = watcher("-v", "fetch", "--watch", "--interval", "1")
    wait_until(lambda: "no IDLE here; fetched every 1s" in w.stderr(), "the watcher to notice")
    fill(own_dovecot, SUPPORT, "INBOX", [mail(tag, 0)])
    wait_until(lambda: stored(db, tag) == 1, "the mail, by polling")
    assert w.stop() == 0, w.stderr()


def test_a_refused_login_is_tried_again_with_backoff_until_the_server_takes_it(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, db: Db, watcher: StartWatcher
) -> None:
    tag = uuid.uuid4().hex[:10]
    user = new_user(dovecot, "watch")
    fill(dovecot, user, "INBOX", [mail(tag, 0)])
    add_imap("support", (user[0], "not-yet"))  # the channel's secret is what the server lacks
    w = watcher("-q", "fetch", "--watch", "--interval", "3600")
    wait_until(lambda: "trying again in 4 s" in w.stderr(), "a second refusal")
    assert w.proc.poll() is None, "a refused login must not end the watcher"
    dovecot.add_user(user[0], "not-yet")  # the administrator fixes it on the server
    wait_until(lambda: stored(db, tag) == 1, "the mail once the login works")
    assert w.stop() == 0
    err = w.stderr()
    assert "trying again in 2 s" in err and "trying again in 4 s" in err, err
    assert "connected again" in err
    # The first refusal was fetched too, so the channel says it as a cron run's would.
    assert "deskctl: error: channel support: IMAP login refused" in err
    assert "; failed: support" in w.stdout()


def test_sigterm_finishes_the_message_being_stored_releases_the_lease_and_leaves_no_process(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db: Db,
    watcher: StartWatcher,
) -> None:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    total = 300
    heavy = "<p>Der Drucker brennt <b>wieder</b>.</p>" * 1500  # the run parses on a worker
    fill(dovecot, SUPPORT, fresh_folder, [mail(tag, i, body=heavy) for i in range(total)])
    add_imap("support", SUPPORT, folder=fresh_folder)
    w = watcher()
    seen_worker = False

    def busy() -> bool:
        nonlocal seen_worker
        seen_worker = seen_worker or any(
            "spawn_main" in cmd for _pid, cmd in group_members(w.proc.pid)
        )
        return seen_worker and stored(db, tag) > 0

    wait_until(busy, "the watcher storing mail with its parse worker")
    # To the whole group, as systemd's default KillMode and a terminal's Ctrl-C do.
    assert w.stop(signal.SIGTERM, group=True) == 0, w.stderr()
    assert "error" not in w.stderr(), w.stderr()
    wait_until(lambda: group_members(w.proc.pid) == [], "no process of the watcher left", 10)
    assert db("SELECT count(*) FROM incoming_channels WHERE lease_owner IS NOT NULL") == 0
    before = stored(db, tag)
    assert 0 < before < total  # the signal came in the middle of the fetch
    # The channel is free at once: the next fetch claims it and brings the rest.
    after = desk("--json", "fetch").json()["channels"][0]
    assert "skipped" not in after and after["fetched"] == total - before
    assert stored(db, tag) == total and doubled(db, tag) == 0


def test_sigint_while_waiting_ends_the_watch_with_exit_0(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db: Db,
    watcher: StartWatcher,
) -> None:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    fill(dovecot, SUPPORT, fresh_folder, [mail(tag, 0)])
    add_imap("support", SUPPORT, folder=fresh_folder)
    w = watcher()
    wait_until(lambda: stored(db, tag) == 1, "the first fetch")
    time.sleep(0.5)  # waiting in IDLE now
    assert w.stop(signal.SIGINT) == 0, w.stderr()
    assert w.stderr() == ""


def maildir(root: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


def test_a_maildir_beside_an_imap_channel_is_polled_every_interval(
    desk: Run, dovecot: Dovecot, add_imap: AddImap, fresh_folder: str, db: Db,
    watcher: StartWatcher, tmp_path: Path,
) -> None:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    box = maildir(tmp_path / "Maildir")
    added = desk("channel", "add", "drop", "--kind", "maildir", "--address",
                 "local@example.test", "--path", str(box))  # fmt: skip
    assert added.exit_code == 0, added.stderr
    add_imap("support", SUPPORT, folder=fresh_folder)
    w = watcher("-q", "fetch", "--watch", "--interval", "1")
    time.sleep(1.5)  # both fetched once at start, the IMAP one waiting in IDLE now
    (box / "new" / f"1700000000.{tag}.host").write_bytes(mail(tag, 0, to="local@example.test"))
    fill(dovecot, SUPPORT, fresh_folder, [mail(tag, 1)])
    wait_until(lambda: stored(db, tag) == 2, "the Maildir mail and the IMAP mail")
    assert w.stop() == 0, w.stderr()
    channels = {c["name"]: c for c in desk("--json", "channel", "list").json()["incoming"]}
    assert channels["drop"]["last_error"] is None and channels["support"]["last_error"] is None


def test_a_pop3_channel_is_polled_every_interval(
    desk: Run, pop3_dovecot: Dovecot, certs: CertBundle, db: Db, watcher: StartWatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    user = new_user(pop3_dovecot, "watch")
    monkeypatch.setenv("PW_POP", user[1])
    added = desk("channel", "add", "pop", "--kind", "pop3", "--address", user[0],
                 "--host", "localhost", "--port", str(pop3_dovecot.pop3s_port), "--security",
                 "ssl", "--ca-file", str(certs.ca_pem), "--password-env", "PW_POP")  # fmt: skip
    assert added.exit_code == 0, added.stderr
    fill(pop3_dovecot, user, "INBOX", [mail(tag, 0)])
    w = watcher("-q", "fetch", "--watch", "--interval", "1")
    wait_until(lambda: stored(db, tag) == 1, "the mail there at start")
    fill(pop3_dovecot, user, "INBOX", [mail(tag, 1)])  # POP3 reads the INBOX IMAP fills
    wait_until(lambda: stored(db, tag) == 2, "the next mail, by polling")
    assert w.stop() == 0, w.stderr()
    assert w.stderr() == ""


@pytest.mark.parametrize(
    "args",
    [("--watch", "--dry-run"), ("--watch", "--limit", "5"), ("--interval", "5")],
    ids=["dry-run", "limit", "interval-alone"],
)
def test_watch_with_a_one_shot_option_is_a_usage_error(desk: Run, args: tuple[str, ...]) -> None:
    result = desk("fetch", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("deskctl: error: --") and "watch" in result.stderr


UNIT = REPO / "deskctl-watch.service"


def unit_service() -> tuple[dict[str, str], list[str]]:
    """The unit's Environment= assignments and its ExecStart command line."""
    env: dict[str, str] = {}
    command: list[str] = []
    for line in UNIT.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
        elif key == "ExecStart":
            command = shlex.split(value)
    return env, command


def test_the_systemd_unit_runs_deskctl_as_written_and_stops_cleanly(
    desk: Run, isolated_home: Path, tmp_path: Path, db_url: str, db: Db, watcher: StartWatcher
) -> None:
    env, command = unit_service()
    assert command[:2] == ["/usr/local/bin/deskctl", "-q"] and "--watch" in command
    assert {"PATH", "DESKCTL_HOME"} <= set(env)
    text = UNIT.read_text()
    assert "Restart=on-failure" in text and "KillMode=mixed" in text
    bindir = tmp_path / "bin"  # "if deskctl is not in /usr/local/bin", as the README says
    bindir.mkdir()
    launcher = write_launcher(bindir)
    if shutil.which("systemd-analyze"):
        copy = tmp_path / UNIT.name
        copy.write_text(text.replace("/usr/local/bin/deskctl", str(launcher)))
        verified = subprocess.run(
            ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
        )
        assert verified.returncode == 0 and verified.stderr == "", verified.stderr

    tag = uuid.uuid4().hex[:10]
    box = maildir(tmp_path / "Maildir")
    desk("channel", "add", "drop", "--kind", "maildir", "--address", "local@example.test",
         "--path", str(box))  # fmt: skip
    service_env = {**env, "PATH": f"{bindir}:{env['PATH']}", "DESKCTL_HOME": str(isolated_home)}
    service_env["DESKCTL_DB"] = db_url  # the unit's commented DESKCTL_DB line, filled in
    interval = command.index("--interval")
    command[interval + 1] = "1"  # a test cannot wait the unit's minute
    w = watcher(command=[str(launcher), *command[1:]], env=service_env)
    (box / "new" / f"1700000000.{tag}.host").write_bytes(mail(tag, 0, to="local@example.test"))
    wait_until(lambda: stored(db, tag) == 1, "the mail, fetched by the unit's command")
    assert w.stop() == 0, w.stderr()
    assert " fetch: 1 fetched, 1 new tickets, " in w.stdout()
