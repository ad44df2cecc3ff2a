"""A team whose provider offers only POP3 points deskctl at it; cron turns the mail into tickets.

Every story runs against Dovecot's POP3 (dovecot-pop3d), over POP3S or STLS
verified with the test CA. POP3 reads the same INBOX as IMAP, so the tests
put mail there over IMAP and look over IMAP at what fetch left on the server.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from jobs.conftest import (
    big_mail,
    count,
    deskctl_process,
    fetch_over_the_limit,
    fill,
    kill_while_storing,
    left_alone_until_retried,
    new_user,
    retry_under_a_higher_limit,
)
from sqlalchemy import create_engine, text

from conftest import Run
from mailfactory import make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.fake_pop3 import FakePop3, Script

User = tuple[str, str]


def mails(n: int, tag: str) -> list[bytes]:
    return [
        make_mail(subject=f"{tag} question {i}", message_id=f"<{tag}-{i}@example.org>")
        for i in range(n)
    ]


def on_server(dovecot: Dovecot, user: User) -> list[str]:
    """The subjects still in the user's INBOX, as any mail program would see them."""
    with dovecot.mailbox(*user) as box:
        return sorted(m.subject for m in box.fetch(mark_seen=False, headers_only=True))


AddPop3 = Callable[..., None]


@pytest.fixture
def add_pop3(
    desk: Run, pop3_dovecot: Dovecot, certs: CertBundle, monkeypatch: pytest.MonkeyPatch
) -> AddPop3:
    """Add a POP3 channel for a test-bed user, over POP3S (or STLS), verified with the test CA."""

    def add(
        name: str, user: User, *extra: str, security: str = "ssl", port: int | None = None
    ) -> None:
        var = f"PW_{name.upper().replace('-', '_')}"
        monkeypatch.setenv(var, user[1])
        default = pop3_dovecot.pop3s_port if security == "ssl" else pop3_dovecot.pop3_port
        result = desk(
            "channel", "add", name, "--kind", "pop3", "--address", user[0],
            "--host", "localhost", "--port", str(port or default), "--security", security,
            "--ca-file", str(certs.ca_pem), "--password-env", var, *extra,
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr

    return add


def test_the_first_fetch_makes_tickets_and_a_rerun_stores_nothing_twice(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3, db_url: str
) -> None:
    user = new_user(pop3_dovecot, "pop")
    # Real mail breaks POP3's textbook rules: lines far over 2048 bytes (HTML
    # without breaks) and lines that start with a dot, which travel dot-stuffed.
    odd = make_mail(
        subject="long lines", message_id="<odd@example.org>",
        body="x" * 5000 + "\n.a line with a dot\n..two dots\n.\nend\n",
    )  # fmt: skip
    fill(pop3_dovecot, user, "INBOX", [*mails(3, "pop"), odd])
    add_pop3("support", user)
    assert desk("--json", "channel", "show", "support").json()["after_fetch"] == "keep"

    first = desk("--json", "fetch")
    assert first.exit_code == 0, first.stderr
    report = first.json()["channels"][0]
    assert report["fetched"] == 4 and report["tickets_created"] == 4 and report["error"] is None
    source = desk("ticket", "show", "4", "--raw", "<odd@example.org>").stdout.encode()
    assert source.replace(b"\r\n", b"\n") == odd.replace(b"\r\n", b"\n"), "bytes as they were sent"

    again = desk("--json", "fetch").json()["channels"][0]
    assert again["fetched"] == 0 and count(db_url, "SELECT count(*) FROM messages") == 4
    fill(pop3_dovecot, user, "INBOX", mails(1, "later"))
    later = desk("--json", "fetch").json()["channels"][0]
    assert later["fetched"] == 1 and later["tickets_created"] == 1
    assert len(on_server(pop3_dovecot, user)) == 5, "keep leaves every mail on the server"
    assert count(db_url, "SELECT count(*) FROM fetched_keys") == 5


def test_after_fetch_delete_removes_exactly_the_mail_that_was_stored(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3, db_url: str
) -> None:
    user = new_user(pop3_dovecot, "dele")
    fill(pop3_dovecot, user, "INBOX", mails(3, "dele"))
    add_pop3("support", user, "--after-fetch", "delete", security="starttls")

    some = desk("--json", "fetch", "--limit", "2")
    assert some.exit_code == 0, some.stderr
    assert some.json()["channels"][0]["tickets_created"] == 2
    assert on_server(pop3_dovecot, user) == ["dele question 2"]
    dry = desk("--json", "fetch", "--dry-run").json()["channels"][0]
    assert dry["fetched"] == 1 and on_server(pop3_dovecot, user) == ["dele question 2"]

    assert desk("fetch").exit_code == 0
    assert on_server(pop3_dovecot, user) == []
    assert count(db_url, "SELECT count(*) FROM tickets") == 3


def test_a_fetch_killed_at_random_points_deletes_only_what_it_stored_and_doubles_nothing(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3, db_url: str
) -> None:
    user = new_user(pop3_dovecot, "kill")
    fill(pop3_dovecot, user, "INBOX", mails(150, "kill"))
    add_pop3("support", user, "--after-fetch", "delete")
    everything = {f"kill question {i}" for i in range(150)}
    engine = create_engine(db_url)

    def nothing_lost() -> None:
        with engine.connect() as conn:
            stored = set(conn.scalars(text("SELECT subject FROM messages")))
        left = set(on_server(pop3_dovecot, user))
        assert stored | left == everything, "a mail was deleted before it was stored"

    try:
        kills = kill_while_storing(db_url, "-q", "fetch", after_kill=nothing_lost)
    finally:
        engine.dispose()
    final = desk("--json", "fetch")
    assert final.exit_code == 0, final.stderr
    seen = f"after {kills} kills"
    assert kills >= 1, "the run was never killed: the test proved nothing"
    assert count(db_url, "SELECT count(*) FROM messages") == 150, seen
    assert count(db_url, "SELECT count(DISTINCT message_id) FROM messages") == 150, seen
    assert count(db_url, "SELECT count(*) FROM tickets") == 150, seen
    assert on_server(pop3_dovecot, user) == [], "what the killed runs stored is deleted now"


def test_two_fetches_started_together_store_each_message_once(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3, db_url: str
) -> None:
    user = new_user(pop3_dovecot, "race")
    fill(pop3_dovecot, user, "INBOX", mails(100, "race"))
    add_pop3("support", user, "--after-fetch", "delete")
    procs = [deskctl_process("--json", "fetch") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    assert count(db_url, "SELECT count(*) FROM messages") == 100
    assert count(db_url, "SELECT count(*) FROM tickets") == 100
    assert on_server(pop3_dovecot, user) == []


def test_a_dead_server_is_exit_6_and_a_wrong_password_exit_5_never_showing_it(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3
) -> None:
    user = new_user(pop3_dovecot, "err")
    add_pop3("dead", user, port=1)
    dead = desk("fetch", "--channel", "dead")
    assert dead.exit_code == 6
    assert "POP3 server localhost:1 refused the connection" in dead.stderr
    assert len(dead.stderr.strip().splitlines()) == 1

    wrong = (user[0], "Wrong-Secret-4711")
    add_pop3("wrong", wrong)
    refused = desk("-vv", "--json", "fetch", "--channel", "wrong")
    assert refused.exit_code == 5, refused.stderr
    last_error = desk("--json", "channel", "show", "wrong").json()["last_error"]
    assert last_error.startswith(f"POP3 login refused for {user[0]} at localhost")
    assert "[AUTH]" in last_error, "the server's reason"
    for seen in (refused.stdout, refused.stderr, last_error):
        assert wrong[1] not in seen
    tested = desk("channel", "test", "wrong")
    assert tested.exit_code == 5 and wrong[1] not in tested.stderr


def test_a_message_over_the_size_limit_stays_on_the_server_listed_until_retried(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3, db_url: str
) -> None:
    user = new_user(pop3_dovecot, "big")
    big = big_mail()
    fill(pop3_dovecot, user, "INBOX", [*mails(1, "before"), big, *mails(1, "after")])
    add_pop3("support", user, "--after-fetch", "delete")
    item = fetch_over_the_limit(desk)
    assert item["kept"].startswith("on the server, UIDL ")
    assert on_server(pop3_dovecot, user) == ["huge"], "the stored ones are deleted, not this one"
    assert count(db_url, "SELECT count(*) FROM quarantine WHERE raw IS NOT NULL") == 0
    left_alone_until_retried(desk, item)
    assert on_server(pop3_dovecot, user) == ["huge"], "a rerun's catch-up leaves it alone too"

    retry_under_a_higher_limit(desk, item)
    assert on_server(pop3_dovecot, user) == [], "deleted once it was stored"


def test_a_big_mail_an_agent_drops_from_the_list_is_still_never_deleted(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3
) -> None:
    user = new_user(pop3_dovecot, "drop")
    fill(pop3_dovecot, user, "INBOX", [*mails(1, "before"), big_mail(), *mails(1, "after")])
    add_pop3("support", user, "--after-fetch", "delete")
    item = fetch_over_the_limit(desk)
    assert desk("quarantine", "drop", str(item["id"])).exit_code == 0
    again = desk("--json", "fetch")
    assert again.exit_code == 0 and again.json()["channels"][0]["fetched"] == 0
    assert on_server(pop3_dovecot, user) == ["huge"], "never downloaded, so never deleted"


def test_channel_test_logs_in_and_counts_the_maildrop_and_verifies_tls(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = new_user(pop3_dovecot, "probe")
    fill(pop3_dovecot, user, "INBOX", mails(2, "probe"))
    add_pop3("tls", user, security="starttls")
    found = desk("--json", "channel", "test", "tls")
    assert found.exit_code == 0, found.stderr
    assert found.json()["messages"] == 2 and "(starttls)" in found.json()["summary"]
    assert len(on_server(pop3_dovecot, user)) == 2, "a test reads and deletes nothing"

    monkeypatch.setenv("PW_SYSTRUST", user[1])
    desk("channel", "add", "systrust", "--kind", "pop3", "--address", user[0], "--host",
         "localhost", "--port", str(pop3_dovecot.pop3s_port), "--password-env", "PW_SYSTRUST")  # fmt: skip
    tls = desk("channel", "test", "systrust")
    assert tls.exit_code == 6 and "TLS certificate verification failed" in tls.stderr
    assert len(tls.stderr.strip().splitlines()) == 1


def test_a_pop3_channel_offers_what_pop3_can_do(desk: Run) -> None:
    assert "pop3" in desk("channel", "add", "--help").stdout
    base = ("channel", "add", "pop", "--kind", "pop3", "--address", "pop@example.test",
            "--host", "localhost", "--password-env", "X")  # fmt: skip
    for action in ("seen", "move:Archive"):
        refused = desk(*base, "--after-fetch", action)
        assert refused.exit_code == 2
        assert "POP3 has no flags or folders; use keep or delete" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert desk(*base, "--folder", "Archive").exit_code == 2
    plain = desk(*base, "--security", "none")
    assert plain.exit_code == 2 and "--allow-plaintext" in plain.stderr
    added = desk("--json", *base)
    assert added.exit_code == 0, added.stderr
    assert (added.json()["port"], added.json()["security"]) == (995, "ssl")
    assert added.json()["after_fetch"] == "keep"
    assert desk("channel", "set", "pop", "--after-fetch", "seen").exit_code == 2
    assert desk("channel", "set", "pop", "--after-fetch", "delete").exit_code == 0


def test_doctor_names_a_pop3_channel_whose_fetch_fails(
    desk: Run, pop3_dovecot: Dovecot, add_pop3: AddPop3
) -> None:
    user = new_user(pop3_dovecot, "doc")
    add_pop3("support", user)
    assert desk("fetch").exit_code == 0
    assert desk("--json", "doctor").exit_code == 0
    add_pop3("broken", (user[0], "not-the-password"))
    assert desk("fetch", "--channel", "broken").exit_code == 5
    doctor = desk("--json", "doctor")
    found = {f["check"]: f["message"] for f in doctor.json()["findings"]}
    assert doctor.exit_code == 6
    assert found["fetch-failed"].startswith("channel broken: the last fetch failed")
    assert "POP3 login refused" in found["fetch-failed"]


def add_fake(desk: Run, monkeypatch: pytest.MonkeyPatch, server: FakePop3, *extra: str) -> None:
    """A channel on the scripted server, in plaintext (it speaks no TLS) unless ``extra`` says."""
    monkeypatch.setenv("PW_FAKE", "fake-secret")
    added = desk(
        "channel", "add", "fake", "--kind", "pop3", "--address", "fake@example.test",
        "--host", "127.0.0.1", "--port", str(server.port), "--password-env", "PW_FAKE",
        "--after-fetch", "delete", *(extra or ("--security", "none", "--allow-plaintext")),
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr


def test_a_line_that_dies_mid_message_is_exit_6_and_deletes_nothing_until_a_good_run(
    desk: Run, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(mails(2, "drop"), drop_during=2)
    server = FakePop3(script)
    try:
        add_fake(desk, monkeypatch, server)
        dropped = desk("fetch")
        assert dropped.exit_code == 6
        assert f"POP3 server 127.0.0.1:{server.port} closed the connection" in dropped.stderr
        assert count(db_url, "SELECT count(*) FROM messages") == 1
        assert script.sessions[-1] == ([1], False), "the stored one marked, but no QUIT"
        assert script.deleted() == set()

        again = desk("--json", "fetch")
        assert again.exit_code == 0, again.stderr
        assert again.json()["channels"][0]["fetched"] == 1
        assert script.sessions[-1] == ([1, 2], True) and script.deleted() == {1, 2}
        assert count(db_url, "SELECT count(*) FROM tickets") == 2
    finally:
        server.stop()


def test_a_server_without_stls_gets_no_password_in_clear(
    desk: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(mails(1, "nostls"))
    server = FakePop3(script)
    try:
        add_fake(desk, monkeypatch, server, "--security", "starttls")
        refused = desk("fetch")
        assert refused.exit_code == 6
        assert "does not offer STLS" in refused.stderr
        assert "deskctl does not fall back to plaintext" in refused.stderr
        assert "USER" not in script.verbs and "PASS" not in script.verbs
    finally:
        server.stop()
