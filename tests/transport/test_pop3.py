"""The POP3 session itself: the server removes marked mail at QUIT, and only then.

This is what fetch's "nothing is deleted before it is stored" rests on, so it
is checked on Dovecot's POP3 directly, below the fetch job.
"""

from __future__ import annotations

import uuid

import pytest

from deskctl.errors import ConfigError, Unreachable
from deskctl.transport.pop3 import Pop3Inbox, Pop3Settings
from mailfactory import make_mail
from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.fake_pop3 import FakePop3, Script


@pytest.fixture
def maildrop(pop3_dovecot: Dovecot, certs: CertBundle) -> Pop3Settings:
    """A fresh user with three mails, reached over POP3S with the test CA."""
    user = f"drop-{uuid.uuid4().hex[:8]}@example.test"
    pop3_dovecot.add_user(user, "drop-pw")
    for i in range(3):
        pop3_dovecot.deliver(make_mail(subject=f"mail {i}"), user=user)
    return Pop3Settings(
        host="localhost", port=pop3_dovecot.pop3s_port, security="ssl",
        username=user, password="drop-pw", ca_file=str(certs.ca_pem),
    )  # fmt: skip


def uidls(settings: Pop3Settings) -> list[str]:
    with Pop3Inbox(settings) as inbox:
        return [item.uidl for item in inbox.listing()]


def test_a_session_that_ends_without_quit_deletes_nothing(maildrop: Pop3Settings) -> None:
    before = uidls(maildrop)
    assert len(before) == 3 and len(set(before)) == 3
    with pytest.raises(RuntimeError), Pop3Inbox(maildrop) as inbox:
        inbox.delete(1)
        raise RuntimeError("the run dies before it is done")
    assert uidls(maildrop) == before, "DELE without QUIT removes nothing"

    with Pop3Inbox(maildrop) as inbox:
        inbox.delete(1)
    assert uidls(maildrop) == before[1:], "QUIT removes what was marked, and that only"


def test_the_uidl_names_the_same_mail_in_every_session(maildrop: Pop3Settings) -> None:
    first = uidls(maildrop)
    assert uidls(maildrop) == first
    with Pop3Inbox(maildrop) as inbox:
        listed = inbox.listing()
        got = dict(inbox.fetch(listed, max_size=1_000_000))
    assert [b"Subject: mail %d" % i in got[uidl] for i, uidl in enumerate(first)] == [True] * 3


def test_over_the_limit_only_the_header_is_read(maildrop: Pop3Settings) -> None:
    with Pop3Inbox(maildrop) as inbox:
        listed = inbox.listing()
        ((uidl, over),) = list(inbox.fetch(listed[:1], max_size=10))
    assert not isinstance(over, bytes) and over.remote_key == uidl == listed[0].uidl
    assert over.size == listed[0].size and b"Subject: mail 0" in over.head
    assert b"printer on floor 2" not in over.head, "the body was not downloaded"


def test_starttls_verifies_the_server_and_a_wrong_password_is_a_config_error(
    pop3_dovecot: Dovecot, maildrop: Pop3Settings
) -> None:
    starttls = Pop3Settings(
        host="localhost", port=pop3_dovecot.pop3_port, security="starttls",
        username=maildrop.username, password=maildrop.password, ca_file=maildrop.ca_file,
    )  # fmt: skip
    assert len(uidls(starttls)) == 3
    untrusted = Pop3Settings(**{**_fields(starttls), "ca_file": None})
    with pytest.raises(Unreachable, match="TLS certificate verification failed"):
        uidls(untrusted)
    wrong = Pop3Settings(**{**_fields(maildrop), "password": "nope-nope"})
    with pytest.raises(ConfigError, match=r"POP3 login refused .*\[AUTH\]") as refused:
        uidls(wrong)
    assert "nope-nope" not in str(refused.value)


def _fields(settings: Pop3Settings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__slots__}


def test_a_message_comes_byte_for_byte_whatever_its_lines() -> None:
    """A 3 MiB line (longer than a read), dot-stuffed lines and bare LFs from an odd server."""
    body = b"x" * (3 * 1024 * 1024) + b"\n..two\n.one\n.\r\nend\n"
    raw = b"From: a@example.org\nSubject: odd\n\n" + body
    server = FakePop3(Script([raw]))
    try:
        plain = Pop3Settings("127.0.0.1", server.port, "none", "u", "p")
        with Pop3Inbox(plain) as inbox:
            ((_uidl, got),) = list(inbox.fetch(inbox.listing(), max_size=10 * 1024 * 1024))
    finally:
        server.stop()
    assert got == raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_a_secret_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    """poplib would send the rest of the secret as a command of its own."""
    server = FakePop3(Script([]))
    try:
        broken = Pop3Settings("127.0.0.1", server.port, "none", "u", "pw\r\nDELE 1")
        with pytest.raises(ConfigError, match="holds a line break") as refused:
            uidls(broken)
        assert "DELE" not in str(refused.value)
        assert server.script.verbs == [] and server.script.sessions == []
    finally:
        server.stop()


def test_a_server_that_quotes_the_password_back_does_not_get_it_printed() -> None:
    server = FakePop3(Script([], refuse_echoing=True))
    try:
        with pytest.raises(ConfigError, match=r"\[AUTH\] wrong password: \*\*\*") as refused:
            uidls(Pop3Settings("127.0.0.1", server.port, "none", "u", "Sekrit-99"))
        assert "Sekrit-99" not in str(refused.value)
    finally:
        server.stop()
