"""Sending mail: SMTP (smtplib) and the local sendmail.

Failures are sorted the way the outbox needs them: temporary (4xx, network
trouble: try again later) or permanent (5xx: the server said no for good),
each in the server's own words ("550 5.1.1 user unknown"), which is what the
agent reads in ``outbox list`` and ``ticket show``. A server that does not
offer STARTTLS is an error, never a plaintext fall-back.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import smtplib
import ssl
import subprocess
from dataclasses import dataclass

from deskctl.errors import ConfigError
from deskctl.transport.errors import network_error

log = logging.getLogger(__name__)

TIMEOUT = 60.0
EX_TEMPFAIL = 75

#: Where every mail system puts its sendmail, whatever PATH holds: cron's
#: PATH (/usr/bin:/bin) has neither, and a mail server's pipe has no PATH.
SENDMAIL_PLACES = ("/usr/sbin/sendmail", "/usr/lib/sendmail")


def find_sendmail(command: str) -> str:
    """The program for ``command``: a path as given; a bare name on PATH, then the usual places.

    Returns ``command`` itself when nothing is found, so the error names it.
    """
    if "/" in command:
        return command
    found = shutil.which(command)
    if found is None and command == "sendmail":
        found = next((p for p in SENDMAIL_PLACES if os.access(p, os.X_OK)), None)
    return found or command


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # ssl | starttls | none
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    oauth_token: str | None = None  # XOAUTH2 instead of the password
    relogin_hint: str = ""


def _context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def _answer(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}".strip()


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    """``kim@example.org: 550 5.1.1 user unknown; ...``: each recipient with the server's words."""
    return "; ".join(f"{r}: {_answer(c, m)}" for r, (c, m) in refused.items())


class _XOAuth2:
    """smtplib authobject: the SASL string first, then an empty answer to the error challenge.

    On failure the server sends a 334 with a JSON error; answering it with the
    token again would be wrong, so the second call returns "".
    """

    def __init__(self, user: str, token: str) -> None:
        self.initial = f"user={user}\x01auth=Bearer {token}\x01\x01"

    def __call__(self, challenge: bytes | None = None) -> str:
        return self.initial if challenge is None else ""


def _login_utf8(client: smtplib.SMTP, host: str, username: str, password: str) -> None:
    """AUTH PLAIN with UTF-8 (RFC 4616), for a password (or name) that is not ASCII.

    smtplib encodes every AUTH exchange as ASCII, and its encoding error names
    the first character it could not encode and where it is: a piece of the
    password in the outbox's last_error and the logs. So the exchange is written
    here, and a refusal raises the same SMTPAuthenticationError smtplib would.
    """
    client.ehlo_or_helo_if_needed()
    if "PLAIN" not in client.esmtp_features.get("auth", "").upper().split():
        raise ConfigError(
            f"SMTP server {host} offers no login for a password that is not ASCII "
            "(it does not announce AUTH PLAIN)"
        )
    blob = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, answer = client.docmd("AUTH", f"PLAIN {blob}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


class _SessionClosed(Exception):
    """The server ended the session before it took the message: sending again is safe."""


class SmtpSender:
    """One SMTP session for the items of one channel in a run, opened again when needed.

    Servers end sessions on their own: Postfix after too many refusals
    (``421 4.7.0 too many errors``), most after an idle minute or five. When
    that happens before the server took the message (at MAIL or RCPT, or a
    421 to DATA), the item is sent again at once on a new session; when the
    line drops while the server may already have it (after the data), the
    item waits for the next run, so it is not sent twice now, and the next
    item opens a new session.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.client: smtplib.SMTP | None = None
        #: The bytes the server last accepted: the reply, re-encoded for a server
        #: without 8BITMIME; what goes into the Sent folder.
        self.last_sent: bytes | None = None

    def __enter__(self) -> SmtpSender:
        self._connect()
        return self

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=TIMEOUT, context=_context(s.ca_file)
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=TIMEOUT)
                if s.security == "starttls":
                    client.ehlo()
                    if not client.has_extn("starttls"):
                        client.close()
                        raise ConfigError(
                            f"SMTP server {s.host}:{s.port} does not offer STARTTLS; "
                            "deskctl does not fall back to plaintext"
                        )
                    client.starttls(context=_context(s.ca_file))
            self.client = client
            if s.oauth_token is not None and s.username:
                client.ehlo_or_helo_if_needed()
                client.auth("XOAUTH2", _XOAuth2(s.username, s.oauth_token))
            elif s.username and s.password is not None:
                if (s.username + s.password).isascii():
                    client.login(s.username, s.password)
                else:
                    _login_utf8(client, s.host, s.username, s.password)
            client.ehlo_or_helo_if_needed()
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if s.oauth_token is not None:
                if "SmtpClientAuthentication" in answer or "5.7.139" in answer:
                    raise ConfigError(
                        f"SMTP AUTH is disabled for the mailbox {s.username}: enable "
                        "Authenticated SMTP for it (Microsoft 365 admin center, mailbox, "
                        "Manage email apps)"
                    ) from exc
                raise ConfigError(
                    f"SMTP OAuth login refused for {s.username} at {s.host}: {answer}; "
                    f"{s.relogin_hint or 'sign in again'}"
                ) from exc
            raise ConfigError(f"SMTP login refused for {s.username} at {s.host}: {answer}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            if isinstance(exc, ConfigError):
                raise
            raise network_error(exc, s.host, s.port, "SMTP") from exc
        except ConfigError:
            self.close()
            raise
        return client

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                self.client.close()
            self.client = None

    def _drop(self) -> None:
        """Forget a session the server has ended; the next item opens a new one."""
        if self.client is not None:
            self.client.close()
            self.client = None

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> list[str]:
        """Send; returns the recipients the server refused while accepting others.

        A session the server ended before taking the message is opened again
        once, for this item; a second hang-up leaves the item for a later run.
        """
        for attempt in (1, 2):
            try:
                return self._transaction(raw, sender, recipients)
            except _SessionClosed as closed:
                self._drop()
                log.info("SMTP server %s ended the session (%s)", self.settings.host, closed)
                if attempt == 2:
                    raise SendError(
                        f"the server ended the session twice: {closed}", permanent=False
                    ) from closed
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(self, raw: bytes, sender: str, recipients: list[str]) -> list[str]:
        """One MAIL, RCPT..., DATA exchange, told apart so a hang-up is judged by where it fell."""
        from deskctl.mail.transfer import has_8bit, to_7bit

        client = self.client or self._connect()
        options: list[str] = []
        body = raw
        if has_8bit(raw):
            if client.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            else:
                body = to_7bit(raw)
        if client.has_extn("size"):
            options.insert(0, f"SIZE={len(body)}")  # RFC 1870: too big is refused before DATA
        refused: dict[str, tuple[int, bytes]] = {}
        try:
            code, text = client.mail(sender, options)
            if code == 421:
                raise _SessionClosed(_answer(code, text))
            if code != 250:
                self._reset()
                raise SendError(_answer(code, text), permanent=code >= 500)
            for rcpt in recipients:
                code, text = client.rcpt(rcpt)
                if code == 421:
                    # What it refused before hanging up is the reason the agent needs.
                    before = f" (after {_refusals(refused)})" if refused else ""
                    raise _SessionClosed(_answer(code, text) + before)
                if code not in (250, 251):
                    refused[rcpt] = (code, text)
        except smtplib.SMTPServerDisconnected as exc:
            raise _SessionClosed(str(exc) or "connection closed") from exc
        except UnicodeError as exc:
            # An address smtplib cannot put on the wire (non-ASCII without SMTPUTF8):
            # the same on every retry, so it fails for good instead of blocking the queue.
            self._reset()
            raise SendError(
                "an address has a local part that is not ASCII, which needs SMTPUTF8; this SMTP"
                " client does not speak it (a sendmail channel can send it)",
                permanent=True,
            ) from exc
        except OSError as exc:
            raise _SessionClosed(f"connection trouble: {exc}") from exc
        if len(refused) == len(recipients):
            self._reset()
            raise SendError(
                _refusals(refused), permanent=all(c >= 500 for c, _ in refused.values())
            )
        try:
            code, text = client.data(body)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: nothing was sent
            if exc.smtp_code == 421:
                raise _SessionClosed(_answer(exc.smtp_code, exc.smtp_error)) from exc
            self._reset()
            raise SendError(
                _answer(exc.smtp_code, exc.smtp_error), permanent=exc.smtp_code >= 500
            ) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The data may have reached the server: this item waits for the next run.
            self._drop()
            raise SendError(f"connection lost during DATA: {exc}", permanent=False) from exc
        if code == 421:
            raise _SessionClosed(_answer(code, text))
        if code != 250:
            self._reset()
            raise SendError(_answer(code, text), permanent=code >= 500)
        self.last_sent = body
        return [_refusals({r: refusal}) for r, refusal in refused.items()]

    def _reset(self) -> None:
        """RSET after a refusal, so the session is clean for the next item (or gone)."""
        if self.client is None:
            return
        try:
            self.client.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()


class SendmailSender:
    """The local mail system: ``sendmail -oi -f FROM -- RCPT...`` with the message on stdin."""

    def __init__(self, command: str = "sendmail") -> None:
        self.command = command

    def __enter__(self) -> SendmailSender:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> list[str]:
        try:
            proc = subprocess.run(
                [find_sendmail(self.command), "-oi", "-f", sender, "--", *recipients],
                input=raw,
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            where = "" if "/" in self.command else f" (on PATH, {', '.join(SENDMAIL_PLACES)})"
            raise ConfigError(
                f"{self.command} not found{where}: install a local mail system (e.g. postfix)"
                " or add an SMTP outgoing channel"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise SendError("sendmail timed out", permanent=False) from exc
        if proc.returncode != 0:
            text = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = f"sendmail exited {proc.returncode}: {text[-1] if text else ''}".strip()
            raise SendError(detail, permanent=proc.returncode != EX_TEMPFAIL)
        return []
