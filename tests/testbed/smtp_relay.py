"""An aiosmtpd submission relay that hands local mail to Dovecot over LMTP.

deskctl sends replies over SMTP (STARTTLS on 587-style ports, implicit TLS
on 465-style ports, with AUTH).  This relay behaves like a small
submission server: it authenticates against the same user table as
Dovecot, delivers mail for local users into their Dovecot INBOX, records
everything it accepted, and can be told to refuse the next message with a
chosen SMTP reply, which a real server cannot be made to do on demand.
It can also act like the servers deskctl meets in the wild: one that does
not offer 8BITMIME, one that refuses a recipient ("550 5.1.1 user
unknown"), one that hangs up after too many refusals (Postfix's
``smtpd_hard_error_limit``), and one that hangs up on an idle session.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import logging
import smtplib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from ._proc import free_port, require_main_thread
from .certs import CertBundle

if TYPE_CHECKING:
    from .idp import FakeIdP

_START_ATTEMPTS = 5


class _QuietAiosmtpd(logging.Filter):
    """Drop aiosmtpd's per-connection warnings that are expected here.

    The implicit-TLS listener must not require TLS for AUTH (aiosmtpd only
    counts STARTTLS as TLS), and aiosmtpd itself still touches the
    deprecated ``Session.login_data`` on every AUTH; both would warn on
    every connection and drown real problems in the log.
    """

    _NOISE = (
        "auth_required == True but auth_require_tls == False",
        "Session.login_data is deprecated",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self._NOISE)


_quiet_filter = _QuietAiosmtpd()


def _install_log_filter() -> None:
    logger = logging.getLogger("mail.log")
    if _quiet_filter not in logger.filters:
        logger.addFilter(_quiet_filter)


@dataclass
class RelayedMessage:
    """One message the relay answered (accepted or, via ``fail_next``, refused)."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    auth_user: str | None
    listener: str
    delivered_to: list[str] = field(default_factory=list)
    reply: str = "250 2.0.0 OK"
    mail_options: list[str] = field(default_factory=list)  # ESMTP parameters, e.g. BODY=8BITMIME

    def message(self) -> EmailMessage:
        """The raw bytes parsed with the modern email policy."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


_TOO_MANY_ERRORS = "421 4.7.0 Error: too many errors"


class _Handler:
    """aiosmtpd handler: AUTH enforcement, failure injection, LMTP hand-off."""

    def __init__(self, relay: SmtpRelay, listener: str, enforce_auth: bool) -> None:
        self.relay = relay
        self.listener = listener
        self.enforce_auth = enforce_auth

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Count the session, and leave 8BITMIME out when the relay plays a 7-bit server."""
        session.host_name = hostname
        if not getattr(session, "deskctl_counted", False):
            session.deskctl_counted = True  # type: ignore[attr-defined]
            self.relay.sessions += 1
        if self.relay.offer_8bitmime:
            return responses
        return [r for r in responses if r[4:].upper() != "8BITMIME"]

    def _hang_up_if_fed_up(self, server: SMTP, session: Session) -> str | None:
        """Postfix's hard error limit: the next command after too many refusals gets 421."""
        limit = self.relay.drop_after_refusals
        if limit is None or getattr(session, "deskctl_refusals", 0) < limit:
            return None
        self.relay.hang_ups += 1
        transport = server.transport
        assert transport is not None
        # Closed after the reply is pushed: asyncio flushes the buffer first.
        server.loop.call_soon(transport.close)
        return _TOO_MANY_ERRORS

    def _refused(self, session: Session) -> None:
        session.deskctl_refusals = getattr(session, "deskctl_refusals", 0) + 1  # type: ignore[attr-defined]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if (fed_up := self._hang_up_if_fed_up(server, session)) is not None:
            return fed_up
        # The implicit-TLS listener enforces AUTH here instead of through
        # aiosmtpd's auth_required, whose constructor warns on every
        # connection when combined with auth_require_tls=False.
        if self.enforce_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if not self.relay.offer_8bitmime and "BODY=8BITMIME" in (o.upper() for o in mail_options):
            return "555 5.5.4 Unsupported option: BODY=8BITMIME"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if (fed_up := self._hang_up_if_fed_up(server, session)) is not None:
            return fed_up
        refusal = self.relay.refused_recipients.get(address.lower())
        if refusal is not None:
            self._refused(session)
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        record = RelayedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            auth_user=session.auth_data if isinstance(session.auth_data, str) else None,
            listener=self.listener,
            mail_options=list(envelope.mail_options),
        )
        if self.relay._take_hang_up():
            # The worst moment: the data is here, the client never hears whether.
            record.reply = "(hung up before replying)"
            self.relay._record(record, accepted=False)
            transport = server.transport
            assert transport is not None
            transport.close()
            return record.reply
        injected = self.relay._take_failure()
        if injected is not None:
            record.reply = injected
            self._refused(session)
            self.relay._record(record, accepted=False)
            return injected
        local = [r for r in record.rcpt_tos if r.lower() in self.relay.users]
        if local and self.relay.lmtp_port is not None:
            loop = asyncio.get_running_loop()
            record.delivered_to = await loop.run_in_executor(
                None, self.relay._lmtp_deliver, record.mail_from, local, raw
            )
            if not record.delivered_to:
                record.reply = "451 4.3.0 local delivery failed"
                self.relay._record(record, accepted=False)
                return record.reply
        self.relay._record(record, accepted=True)
        if self.relay.on_accept is not None:
            self.relay.on_accept(record)  # before the 250 goes out: the client is still waiting
        return record.reply


#: Gmail's XOAUTH2 error challenge (base64-encoded on the wire).
_XOAUTH2_ERROR = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
#: RFC 7628 §3.2.2 error challenge for OAUTHBEARER.
_OAUTHBEARER_ERROR = {"status": "invalid_token", "schemes": "bearer", "scope": "mail"}
_AUTH_REJECTED = "535 5.7.8 Username and Password not accepted"
_MALFORMED = "501 5.5.2 Malformed SASL response"


def parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """``user=U^Aauth=Bearer T^A^A`` -> (U, T), or None if it is not that shape."""
    fields = dict(
        part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01") if "=" in part
    )
    user, auth = fields.get("user", ""), fields.get("auth", "")
    if not user or not auth.lower().startswith("bearer "):
        return None
    return user, auth[7:].strip()


def parse_oauthbearer(blob: bytes) -> tuple[str | None, str] | None:
    """RFC 7628 ``n,a=U,^Aauth=Bearer T^A^A`` -> (U or None, T), or None if malformed."""
    text = blob.decode("utf-8", "replace")
    gs2, sep, rest = text.partition("\x01")
    if not sep or not gs2.startswith(("n,", "y,")):
        return None
    user = None
    for item in gs2.split(",")[1:]:
        if item.startswith("a="):
            user = item[2:].replace("=2C", ",").replace("=3D", "=")
    fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
    auth = fields.get("auth", "")
    if not auth.lower().startswith("bearer "):
        return None
    return user, auth[7:].strip()


class _OAuthHandler(_Handler):
    """Adds XOAUTH2 and OAUTHBEARER, validated against a :class:`FakeIdP`.

    A separate class because aiosmtpd advertises every ``auth_*`` method it
    finds on the handler: relays built without an IdP must keep offering
    only PLAIN and LOGIN.  Failures follow Gmail: a ``334`` error challenge
    carrying base64 JSON, the client's empty (XOAUTH2) or ``^A``
    (OAUTHBEARER) answer, then ``535 5.7.8``.
    """

    def __init__(self, relay: SmtpRelay, listener: str, enforce_auth: bool, idp: FakeIdP) -> None:
        super().__init__(relay, listener, enforce_auth)
        self.idp = idp

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._oauth(server, args, parse_xoauth2, _XOAUTH2_ERROR)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._oauth(server, args, parse_oauthbearer, _OAUTHBEARER_ERROR)

    async def _oauth(
        self,
        server: SMTP,
        args: list[str],
        parse: Callable[[bytes], tuple[str | None, str] | None],
        error: dict[str, str],
    ) -> AuthResult:
        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(
                    success=False, handled=False, message="501 5.5.2 Can't decode base64"
                )
        else:
            answer = await server.challenge_auth("")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            assert isinstance(answer, bytes)
            blob = answer
        parsed = parse(blob)
        if parsed is None:
            return AuthResult(success=False, handled=False, message=_MALFORMED)
        user, token = parsed
        owner = self.idp.valid_access(token)
        if owner is not None and (user is None or user.lower() == owner):
            self.relay.oauth_logins.append(owner)
            return AuthResult(success=True, auth_data=owner)
        # The error challenge; the client must answer it before the final 535.
        reply = await server.challenge_auth(json.dumps(error).encode())
        if reply is MISSING:  # client sent "*" (or junk); aiosmtpd already answered 501
            return AuthResult(success=False, handled=True)
        # handled=False: AuthResult defaults to handled=True, which means "reply
        # already sent" and would leave the client waiting forever.
        return AuthResult(success=False, handled=False, message=_AUTH_REJECTED)


class SaslAuthObject:
    """An ``smtplib.SMTP.auth`` authobject for a one-shot bearer mechanism.

    It sends the SASL string only as the initial response (use
    ``initial_response_ok=True``) and answers any later challenge, i.e. the
    provider's base64 JSON error, with ``error_answer``: a naive authobject
    would send the token again and never see the final 535.
    """

    def __init__(self, initial: str, error_answer: str) -> None:
        self.initial = initial
        self.error_answer = error_answer
        self.challenges: list[bytes] = []  # decoded error challenges, for assertions

    def __call__(self, challenge: bytes | None = None, /) -> str:
        if challenge is None:
            return self.initial
        self.challenges.append(challenge)
        return self.error_answer


def xoauth2_authobject(user: str, token: str) -> SaslAuthObject:
    """XOAUTH2 (Google/Microsoft): ``user=U^Aauth=Bearer T^A^A``; errors answered empty."""
    return SaslAuthObject(f"user={user}\x01auth=Bearer {token}\x01\x01", "")


def oauthbearer_authobject(user: str, token: str) -> SaslAuthObject:
    """OAUTHBEARER (RFC 7628): GS2 header plus ``auth=``; errors answered with ``^A``."""
    return SaslAuthObject(f"n,a={user},\x01auth=Bearer {token}\x01\x01", "\x01")


class SmtpRelay:
    """Three aiosmtpd listeners on 127.0.0.1, started by the constructor.

    - ``starttls_port``: STARTTLS required, then AUTH required (port 587 style).
    - ``smtps_port``: implicit TLS, AUTH required (port 465 style).
    - ``plain_port``: no TLS, no AUTH, for tests that only care about content.

    ``users`` is consulted live (pass ``dovecot.users`` so runtime
    ``add_user`` calls apply here too); recipients found in it are delivered
    over LMTP to ``lmtp_port``, all others are only recorded.  Accepted
    messages land in :attr:`messages`, refused ones in :attr:`rejected`.

    With ``idp`` the TLS listeners also offer XOAUTH2 and OAUTHBEARER, checked
    with ``idp.valid_access`` (the token must belong to the SASL user);
    :attr:`oauth_logins` lists who got in that way.

    Servers as they are (all off by default, read live so a test may change
    them on its own relay): ``offer_8bitmime=False`` leaves 8BITMIME out of
    EHLO and refuses ``BODY=8BITMIME``; :meth:`refuse_recipient` answers RCPT
    for one address with a chosen reply; ``drop_after_refusals=N`` answers
    the next command after N refusals in a session with ``421`` and hangs up;
    ``idle_timeout`` (seconds, fixed at start) closes a quiet session, as
    aiosmtpd's own timeout does. :attr:`sessions` counts the connections that
    said EHLO and :attr:`hang_ups` the 421s. ``on_accept`` is called with each
    accepted message before the client hears the 250, so a test can act at
    that exact point of the client's run.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        certs: CertBundle,
        lmtp_port: int | None = None,
        idp: FakeIdP | None = None,
        *,
        offer_8bitmime: bool = True,
        drop_after_refusals: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        require_main_thread("SmtpRelay")
        _install_log_filter()
        self.offer_8bitmime = offer_8bitmime
        self.drop_after_refusals = drop_after_refusals
        self.refused_recipients: dict[str, str] = {}
        self.sessions = 0
        self.hang_ups = 0
        self.on_accept: Callable[[RelayedMessage], None] | None = None
        self._hang_ups_in_data = 0
        self._timeout: dict[str, Any] = {"timeout": idle_timeout} if idle_timeout else {}
        self.users = users
        self.idp = idp
        self.oauth_logins: list[str] = []
        self.certs = certs
        self.lmtp_port = lmtp_port
        self.messages: list[RelayedMessage] = []
        self.rejected: list[RelayedMessage] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._failures: deque[str] = deque()
        self._controllers: list[Controller] = []
        server_ctx = certs.server_context()
        try:
            self.starttls_port = self._start(
                "starttls",
                enforce_auth=False,
                tls_context=server_ctx,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=self._authenticate,
            )
            self.smtps_port = self._start(
                "smtps",
                enforce_auth=True,
                ssl_context=server_ctx,
                auth_require_tls=False,
                authenticator=self._authenticate,
            )
            self.plain_port = self._start("plain", enforce_auth=False)
        except BaseException:
            self.stop()
            raise

    def _start(self, listener: str, *, enforce_auth: bool, **kwargs: Any) -> int:
        """Start one Controller, retrying on the free-port race."""
        handler = (
            _Handler(self, listener, enforce_auth)
            if self.idp is None
            else _OAuthHandler(self, listener, enforce_auth, self.idp)
        )
        last: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            controller = Controller(
                handler,
                hostname="127.0.0.1",
                port=port,
                ready_timeout=10,
                **self._timeout,
                **kwargs,
            )
            try:
                controller.start()
            except OSError as exc:  # address in use: somebody took the port meanwhile
                last = exc
                controller.stop(no_assert=True)
                continue
            self._controllers.append(controller)
            return port
        raise RuntimeError(f"SMTP {listener} listener did not start: {last}")

    def stop(self) -> None:
        """Stop every listener (each runs its own event loop thread)."""
        while self._controllers:
            self._controllers.pop().stop()

    def __enter__(self) -> SmtpRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------

    def fail_next(self, code: int, text: str, count: int = 1) -> None:
        """Answer the next ``count`` DATA commands with ``code text``.

        E.g. ``fail_next(451, "4.3.0 try later")`` for a temporary failure or
        ``fail_next(550, "5.1.1 no such user")`` for a permanent one.  Shared
        by all three listeners; the messages go to :attr:`rejected`.
        """
        if not 400 <= code <= 599:
            raise ValueError("fail_next needs a 4xx or 5xx code")
        with self._lock:
            self._failures.extend([f"{code} {text}"] * count)

    def hang_up_after_data(self, count: int = 1) -> None:
        """Close the connection after the next ``count`` messages' data, before any reply.

        The client cannot know whether the message was taken; it goes to
        :attr:`rejected` with the reply ``(hung up before replying)``.
        """
        with self._lock:
            self._hang_ups_in_data += count

    def _take_hang_up(self) -> bool:
        with self._lock:
            if self._hang_ups_in_data <= 0:
                return False
            self._hang_ups_in_data -= 1
            return True

    def refuse_recipient(self, address: str, reply: str) -> None:
        """Answer RCPT TO for ``address`` with ``reply``, e.g. ``550 5.1.1 user unknown``."""
        if reply[:1] not in ("4", "5"):
            raise ValueError("a refusal needs a 4xx or 5xx reply")
        with self._lock:
            self.refused_recipients[address.lower()] = reply

    def clear(self) -> None:
        """Forget recorded messages and pending injected failures."""
        with self._lock:
            self.messages.clear()
            self.rejected.clear()
            self._failures.clear()
            self.refused_recipients.clear()

    def wait_for(
        self, predicate: Callable[[RelayedMessage], bool], timeout: float = 5.0
    ) -> RelayedMessage:
        """Block until an accepted message matches ``predicate`` (for async senders)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for msg in self.messages:
                    if predicate(msg):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching message reached the SMTP relay")
                self._arrived.wait(remaining)

    # -- internals used by the handler ----------------------------------------

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """PLAIN/LOGIN against the shared user table; the address becomes ``auth_data``."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace").lower()
        password = auth_data.password.decode("utf-8", "replace")
        if self.users.get(login) == password:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    def _take_failure(self) -> str | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _record(self, record: RelayedMessage, *, accepted: bool) -> None:
        with self._arrived:
            (self.messages if accepted else self.rejected).append(record)
            self._arrived.notify_all()

    def _lmtp_deliver(self, mail_from: str, rcpts: list[str], raw: bytes) -> list[str]:
        """Hand ``raw`` to Dovecot over LMTP; returns the recipients it accepted.

        One transaction per recipient: LMTP answers DATA once per recipient,
        and ``smtplib`` only reads a single DATA reply, so batching would
        leave replies unread and hide per-recipient failures.
        """
        assert self.lmtp_port is not None
        delivered: list[str] = []
        try:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=10) as lmtp:
                for rcpt in rcpts:
                    try:
                        lmtp.sendmail(mail_from, [rcpt], raw)
                    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError):
                        lmtp.rset()
                        continue
                    delivered.append(rcpt)
        except (smtplib.SMTPException, OSError):
            logging.getLogger(__name__).exception("LMTP delivery failed")
        return delivered
