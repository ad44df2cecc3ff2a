"""POP3 mailboxes through the standard library's poplib, read by UIDL.

POP3 has no folders, flags or UIDs, only a numbered list of the messages in
the maildrop for this session and, with UIDL (RFC 1939 section 7), a name
for each that stays the same across sessions. deskctl remembers those names,
so each message is stored once however often it is listed. DELE only marks a
message; the server removes it at QUIT. So a fetch marks a message after it
is committed and quits after that: a run that dies before QUIT deletes
nothing, and the next run deletes what was stored.

TLS is verified exactly as for IMAP (``transport.imap.tls_context``), with
``--ca-file`` adding a private CA, never switching verification off; a
server that does not offer STLS is an error, never a fall-back to plaintext.
"""

from __future__ import annotations

import logging
import poplib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from deskctl.errors import ConfigError, DeskError, Unreachable
from deskctl.transport.errors import network_error
from deskctl.transport.imap import TIMEOUT, tls_context
from deskctl.transport.spool import CHUNK, HEAD_BYTES, Oversize

log = logging.getLogger(__name__)
T = TypeVar("T")

#: RFC 2449/3206 response codes that mean "try again later", not "fix the account".
_TEMPORARY = re.compile(rb"^-ERR \[(SYS/TEMP|IN-USE|LOGIN-DELAY)\]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    host: str
    port: int
    security: str  # ssl | starttls | none
    username: str
    password: str
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    """One message in this session's maildrop: its number now, its lasting name, its size."""

    number: int
    uidl: str
    size: int


class _BoundedLines:
    """A multi-line reader that keeps at most ``limit`` bytes, mixed into POP3 and POP3_SSL.

    poplib's own reader holds the whole answer and refuses lines over 2048
    bytes, which real mail with long HTML lines has. This one reads in
    chunks, so a message keeps its bytes exactly (CRLF line ends,
    dot-unstuffed) and memory stays bounded however much the server sends.
    STLS replaces ``file`` under either class, so both keep working after it.
    """

    file: Any

    def bounded(self, command: str, limit: int) -> tuple[bytes, int]:
        """(the first ``limit`` bytes of the answer to ``command``, the size of all of it).

        The size lets a message the listing called small, but that is not, be
        recognised as large.
        """
        self._shortcmd(command)  # type: ignore[attr-defined]
        readline = self.file.readline
        kept: list[bytes] = []
        held = total = 0
        line_start, after_cr = True, False
        while True:
            piece = readline(CHUNK)
            if piece[-2:] == b"\r\n" and piece[:1] != b".":
                line_start, after_cr = True, False  # the usual line: nothing to undo
            else:
                if not piece:
                    raise poplib.error_proto("-ERR EOF")
                if line_start and piece in (b".\r\n", b".\n"):
                    return b"".join(kept), total
                piece = _undone(piece, line_start, after_cr)
                line_start, after_cr = piece.endswith(b"\n"), piece.endswith(b"\r")
            total += len(piece)
            if held < limit:
                kept.append(piece if held + len(piece) <= limit else piece[: limit - held])
                held += len(kept[-1])


def _undone(piece: bytes, line_start: bool, after_cr: bool) -> bytes:
    """A line as the message has it: dot-stuffing undone, a bare LF (``\\n``) as CRLF."""
    if line_start and piece.startswith(b".."):
        piece = piece[1:]
    if piece.endswith(b"\n") and not piece.endswith(b"\r\n") and not (piece == b"\n" and after_cr):
        piece = piece[:-1] + b"\r\n"
    return piece


class _Pop3(_BoundedLines, poplib.POP3):
    pass


class _Pop3Ssl(_BoundedLines, poplib.POP3_SSL):
    pass


class Pop3Inbox:
    """One logged-in POP3 maildrop; use as a context manager.

    Leaving the block normally sends QUIT (and so applies the DELEs made);
    leaving it with an exception only closes the connection, so nothing is
    deleted by a run that did not finish (the next run catches up).
    """

    def __init__(self, settings: Pop3Settings) -> None:
        self.settings = settings
        self.client: _Pop3 | _Pop3Ssl | None = None

    def __enter__(self) -> Pop3Inbox:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.quit()
        else:
            self.close()

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _connect(self) -> _Pop3 | _Pop3Ssl:
        s = self.settings
        try:
            if s.security == "ssl":
                return _Pop3Ssl(s.host, s.port, timeout=TIMEOUT, context=tls_context(s.ca_file))
            client = _Pop3(s.host, s.port, timeout=TIMEOUT)
        except (poplib.error_proto, OSError) as exc:
            raise self._failure(exc) from exc
        if s.security == "starttls":
            try:
                client.stls(tls_context(s.ca_file))
            except poplib.error_proto as exc:
                _drop(client)
                raise Unreachable(
                    f"POP3 server {self._where()} does not offer STLS ({_said(exc)}); "
                    "deskctl does not fall back to plaintext"
                ) from exc
            except OSError as exc:
                _drop(client)  # a failed handshake leaves a socket that cannot be shut down
                raise self._failure(exc) from exc
        return client

    def open(self) -> None:
        s = self.settings
        if any(c in s.username + s.password for c in "\r\n\0"):
            # poplib sends what it is given: a line break would end the command
            # there and make the rest of the secret a command of its own.
            raise ConfigError(
                "the POP3 user name or password holds a line break or NUL, which POP3 "
                "cannot send: check where the secret comes from"
            )
        client = self._connect()
        self.client = client
        try:
            client.user(s.username)
            client.pass_(s.password)
        except poplib.error_proto as exc:
            self.close()
            said = exc.args[0] if exc.args and isinstance(exc.args[0], bytes) else b""
            if said == b"-ERR EOF":
                raise self._failure(exc) from exc
            # The server's words name the reason (a wrong password, a locked
            # account); should one echo what we sent, the secret is blanked out.
            reason = _said(exc).replace(s.password, "***") if s.password else _said(exc)
            if _TEMPORARY.match(said):
                raise Unreachable(
                    f"POP3 server {self._where()} refused the login for now: {reason}"
                ) from exc
            if said.startswith(b"-ERR"):
                raise ConfigError(
                    f"POP3 login refused for {s.username} at {s.host}: check the password "
                    f"({reason})"
                ) from exc
            raise self._failure(exc) from exc
        except OSError as exc:
            self.close()
            raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> DeskError:
        """A dropped line, a timeout or a garbled answer: the server cannot be used now."""
        if isinstance(exc, poplib.error_proto):
            if _said(exc) == "-ERR EOF":  # poplib's words for a line that went dead
                return Unreachable(f"POP3 server {self._where()} closed the connection")
            return Unreachable(f"POP3 server {self._where()} failed: {_said(exc)}")
        return network_error(exc, self.settings.host, self.settings.port, "POP3")

    def _guarded(self, call: Callable[[_Pop3 | _Pop3Ssl], T]) -> T:
        assert self.client is not None, "not connected"
        try:
            return call(self.client)
        except (poplib.error_proto, OSError) as exc:
            raise self._failure(exc) from exc

    def listing(self) -> list[Listed]:
        """Every message with its UIDL and size, in the server's order (oldest first)."""

        def ask(client: _Pop3 | _Pop3Ssl) -> list[Listed]:
            try:
                _, uidl_lines, _ = client.uidl()
            except poplib.error_proto as exc:
                raise ConfigError(
                    f"POP3 server {self._where()} does not answer UIDL ({_said(exc)}); deskctl "
                    "needs it to store each message once"
                ) from exc
            _, list_lines, _ = client.list()
            sizes = dict(_pairs(list_lines))
            return [
                Listed(int(number), uidl.decode("ascii", "replace"), int(sizes.get(number, b"0")))
                for number, uidl in _pairs(uidl_lines)
            ]

        return self._guarded(ask)

    def fetch(self, wanted: list[Listed], max_size: int) -> Iterator[tuple[str, bytes | Oversize]]:
        """Yield (uidl, raw bytes), in order; over ``max_size`` only the header is read (TOP n 0).

        Mail over the limit comes as an :class:`Oversize` holding the start of
        its header, so memory stays bounded and the message stays on the server.
        """
        for item in wanted:
            if item.size > max_size:
                yield item.uidl, self._oversize(item, item.size, max_size)
                continue
            raw, total = self._bounded(f"RETR {item.number}", max_size)
            if total > max_size:  # the listing understated it: still never held whole
                yield item.uidl, Oversize(total, max_size, raw[:HEAD_BYTES], remote_key=item.uidl)
                continue
            yield item.uidl, raw

    def _bounded(self, command: str, limit: int) -> tuple[bytes, int]:
        return self._guarded(lambda c: c.bounded(command, limit))

    def _oversize(self, item: Listed, size: int, limit: int) -> Oversize:
        head, _ = self._bounded(f"TOP {item.number} 0", HEAD_BYTES)
        return Oversize(size, limit, head, remote_key=item.uidl)

    def delete(self, number: int) -> None:
        """Mark message ``number``; the server removes it at QUIT, never before."""
        self._guarded(lambda c: c.dele(number))

    def quit(self) -> None:
        """End the session, which makes the server remove the messages marked with DELE."""
        if self.client is None:
            return
        try:
            self._guarded(lambda c: c.quit())
        finally:
            self.close()

    def close(self) -> None:
        """Drop the connection without QUIT: the server deletes nothing of this session."""
        if self.client is not None:
            _drop(self.client)
            self.client = None


def _drop(client: poplib.POP3) -> None:
    try:
        client.close()
    except OSError:  # already gone; nothing to save
        log.debug("POP3 close failed", exc_info=True)


def _pairs(lines: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``b"1 abc"`` lines as (number, value); anything else is skipped."""
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            yield parts[0], parts[1]


def _said(exc: BaseException) -> str:
    """The server's answer as one printable line."""
    value = exc.args[0] if exc.args else exc
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]


def probe(settings: Pop3Settings) -> dict[str, Any]:
    """Connect, log in and count the messages: what ``channel test`` reports. Deletes nothing."""
    with Pop3Inbox(settings) as inbox:
        listed = inbox.listing()
        return {"messages": len(listed), "octets": sum(item.size for item in listed)}
