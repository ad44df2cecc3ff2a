"""Sending mail: SMTP (smtplib) and the local sendmail.

Failures are sorted the way the outbox needs them: temporary (4xx, network
trouble: try again later) or permanent (5xx: the server said no for good).
A server that does not offer STARTTLS is an error, never a plaintext fall-back.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import ssl
import subprocess
from dataclasses import dataclass

from deskctl.errors import ConfigError
from deskctl.transport.errors import network_error

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


class _XOAuth2:
    """smtplib authobject: the SASL string first, then an empty answer to the error challenge.

    On failure the server sends a 334 with a JSON error; answering it with the
    token again would be wrong, so the second call returns "".
    """

    def __init__(self, user: str, token: str) -> None:
        self.initial = f"user={user}\x01auth=Bearer {token}\x01\x01"

    def __call__(self, challenge: bytes | None = None) -> str:
        return self.initial if challenge is None else ""


class SmtpSender:
    """One SMTP connection, used for every item of one channel in a run."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.client: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSender:
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
                client.login(s.username, s.password)
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
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                self.client.close()
            self.client = None

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> list[str]:
        """Send; returns the recipients the server refused while accepting others."""
        assert self.client is not None
        try:
            refused = self.client.sendmail(sender, recipients, raw)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{r}: {_answer(c, m)}" for r, (c, m) in exc.recipients.items())
            raise SendError(detail, permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            raise SendError(
                _answer(exc.smtp_code, exc.smtp_error), permanent=exc.smtp_code >= 500
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise SendError(f"connection trouble: {exc}", permanent=False) from exc
        except UnicodeError as exc:
            # An address smtplib cannot put on the wire (non-ASCII without SMTPUTF8):
            # the same on every retry, so it fails for good instead of blocking the queue.
            raise SendError(f"cannot send to this address: {exc}", permanent=True) from exc
        return [f"{r}: {_answer(c, m)}" for r, (c, m) in refused.items()]


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
