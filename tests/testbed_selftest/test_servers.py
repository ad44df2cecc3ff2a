"""Self-tests of the test bed: each server really speaks its protocol.

These are the guarantees the rest of the suite builds on: TLS is trusted
only through the test CA, mail submitted over SMTP lands in Dovecot,
injected SMTP failures surface as real SMTP replies, a failed login does
not slow down the next one, and PostgreSQL hands out working databases.
"""

from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage, Message
from email.utils import make_msgid

import pytest
import sqlalchemy as sa
from imap_tools import AND, H, MailBox, MailboxLoginError

from testbed.certs import CertBundle
from testbed.dovecot import Dovecot
from testbed.postgres import PostgresCluster
from testbed.smtp_relay import SmtpRelay

SUPPORT = ("support@example.test", "support-pw")
CUSTOMER = ("customer@example.test", "customer-pw")


def _message(sender: str, to: str, subject: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.test")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(f"{subject}\n")
    return msg


def _find(dovecot: Dovecot, user: tuple[str, str], message_id: str) -> list[Message]:
    with dovecot.mailbox(*user) as mb:
        return [m.obj for m in mb.fetch(AND(header=H("Message-ID", message_id)))]


# -- IMAP ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_imaps_login_trusts_only_the_test_ca(
    dovecot: Dovecot, certs: CertBundle, host: str
) -> None:
    ctx = certs.client_context()
    with MailBox(host, dovecot.imaps_port, timeout=10, ssl_context=ctx).login(*SUPPORT) as mb:
        assert "INBOX" in [f.name for f in mb.folder.list()]

    with pytest.raises(ssl.SSLCertVerificationError):
        MailBox(host, dovecot.imaps_port, timeout=10, ssl_context=ssl.create_default_context())


def test_append_then_fetch(dovecot: Dovecot, fresh_folder: str) -> None:
    msg = _message("customer@example.test", "support@example.test", "append test")
    uid = dovecot.deliver(bytes(msg), folder=fresh_folder, user=SUPPORT[0])
    assert uid == 1  # a fresh folder starts its UIDs at 1

    with dovecot.mailbox(*SUPPORT, folder=fresh_folder) as mb:
        fetched = list(mb.fetch())
        status = mb.folder.status(fresh_folder)
    assert [m.uid for m in fetched] == [str(uid)]
    assert fetched[0].subject == "append test"
    assert fetched[0].headers["message-id"] == (msg["Message-ID"],)
    assert status["UIDNEXT"] == uid + 1


def test_maildir_is_inside_the_instance(dovecot: Dovecot) -> None:
    dovecot.deliver(
        bytes(_message("a@example.test", "sales@example.test", "x")), user="sales@example.test"
    )
    maildir = dovecot.maildir_path("Sales@Example.test")
    assert maildir.is_relative_to(dovecot.base)
    assert any((maildir / "new").iterdir()) or any((maildir / "cur").iterdir())


def test_wrong_password_is_rejected_without_penalty(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxLoginError):
        dovecot.mailbox(SUPPORT[0], "wrong-password")
    # Without the anvil fix the next login from 127.0.0.1 would wait >= 2 s.
    t0 = time.monotonic()
    with dovecot.mailbox(*SUPPORT):
        pass
    assert time.monotonic() - t0 < 1.5


def test_add_user_at_runtime(dovecot: Dovecot, smtp_relay: SmtpRelay, certs: CertBundle) -> None:
    email = f"new-{uuid.uuid4().hex[:8]}@example.test"
    dovecot.add_user(email, "new-pw")
    with dovecot.mailbox(email, "new-pw") as mb:
        assert mb.folder.exists("INBOX")
    # the relay shares the user table: the new user can AUTH and receive mail
    msg = _message(email, email, "to myself")
    with smtplib.SMTP_SSL("localhost", smtp_relay.smtps_port, context=certs.client_context()) as s:
        s.login(email, "new-pw")
        s.send_message(msg)
    assert len(_find(dovecot, (email, "new-pw"), msg["Message-ID"])) == 1


# -- SMTP ----------------------------------------------------------------------


def test_round_trip_customer_to_support_and_reply(
    dovecot: Dovecot, smtp_relay: SmtpRelay, certs: CertBundle
) -> None:
    question = _message(CUSTOMER[0], SUPPORT[0], "Printer on fire")
    with smtplib.SMTP("localhost", smtp_relay.starttls_port, timeout=10) as s:
        s.starttls(context=certs.client_context())
        s.login(*CUSTOMER)
        s.send_message(question)

    record = smtp_relay.wait_for(lambda m: m.message()["Message-ID"] == question["Message-ID"])
    assert record.auth_user == CUSTOMER[0]
    assert record.delivered_to == [SUPPORT[0]]
    assert record.listener == "starttls"
    [arrived] = _find(dovecot, SUPPORT, question["Message-ID"])
    assert arrived["Subject"] == "Printer on fire"

    reply = _message(
        SUPPORT[0],
        CUSTOMER[0],
        "Re: Printer on fire",
        In_Reply_To=question["Message-ID"],
        References=question["Message-ID"],
    )
    with smtplib.SMTP_SSL(
        "localhost", smtp_relay.smtps_port, timeout=10, context=certs.client_context()
    ) as s:
        s.login(*SUPPORT)
        s.send_message(reply)

    [answer] = _find(dovecot, CUSTOMER, reply["Message-ID"])
    assert answer["In-Reply-To"] == question["Message-ID"]
    assert answer["References"] == question["Message-ID"]


def test_starttls_port_requires_tls_then_auth(smtp_relay: SmtpRelay, certs: CertBundle) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_relay.starttls_port, timeout=10) as s:
        s.ehlo()
        assert not s.has_extn("auth")  # AUTH only after STARTTLS
        code, _ = s.mail("customer@example.test")
        assert code == 530
        s.starttls(context=certs.client_context())
        s.ehlo()
        assert s.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(CUSTOMER[0], "wrong")


def test_smtps_port_requires_auth(smtp_relay: SmtpRelay, certs: CertBundle) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", smtp_relay.smtps_port, timeout=10, context=certs.client_context()
    ) as s:
        s.ehlo()
        assert s.has_extn("auth")
        code, _ = s.mail("customer@example.test")
        assert code == 530


def test_plain_port_records_external_mail(smtp_relay: SmtpRelay) -> None:
    msg = _message(SUPPORT[0], "someone@elsewhere.invalid", "external")
    with smtplib.SMTP("127.0.0.1", smtp_relay.plain_port, timeout=10) as s:
        s.send_message(msg)
    record = smtp_relay.wait_for(lambda m: m.message()["Message-ID"] == msg["Message-ID"])
    assert record.rcpt_tos == ["someone@elsewhere.invalid"]
    assert record.delivered_to == []
    assert record.auth_user is None


@pytest.mark.parametrize(("code", "text"), [(451, "4.3.0 try later"), (550, "5.1.1 no such user")])
def test_fail_next_answers_data_with_the_injected_reply(
    smtp_relay: SmtpRelay, code: int, text: str
) -> None:
    smtp_relay.fail_next(code, text)
    first = _message(SUPPORT[0], "someone@elsewhere.invalid", "refused")
    second = _message(SUPPORT[0], "someone@elsewhere.invalid", "accepted")
    with smtplib.SMTP("127.0.0.1", smtp_relay.plain_port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.send_message(first)
        assert info.value.smtp_code == code
        error = info.value.smtp_error
        assert (error.decode() if isinstance(error, bytes) else error) == text
        s.rset()
        s.send_message(second)  # only the next one fails
    ids = [m.message()["Message-ID"] for m in smtp_relay.messages]
    assert second["Message-ID"] in ids
    assert first["Message-ID"] not in ids
    assert smtp_relay.rejected[-1].message()["Message-ID"] == first["Message-ID"]


# -- PostgreSQL ----------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_database_is_fresh_and_queryable(pg_url: str, pg_cluster: PostgresCluster) -> None:
    assert pg_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert (
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                ).scalar()
                == 0
            )
            conn.execute(sa.text("CREATE TABLE ticket (id serial PRIMARY KEY, subject text)"))
            conn.execute(sa.text("INSERT INTO ticket (subject) VALUES ('hello')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT subject FROM ticket")).scalar_one() == "hello"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_drop_database_removes_it(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    name = url.rsplit("/", 1)[-1]
    pg_cluster.drop_database(url)
    with pg_cluster.connect() as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is None
