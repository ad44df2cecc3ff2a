"""IMAP mailboxes through imap-tools, fetched by UID in bounded batches.

imap-tools handles connection, TLS and login; the bulk fetch uses the raw
``UID FETCH ... BODY.PEEK[]`` so no message is parsed twice (imap-tools'
MailMessage would parse every message on arrival) and nothing is marked seen
before deskctl has committed it.
"""

from __future__ import annotations

import contextlib
import imaplib
import io
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from imap_tools import AND, H, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import (
    MailboxLoginError,
    MailboxStarttlsError,
    UnexpectedCommandStatusError,
)
from imap_tools.mailbox import BaseMailBox

from deskctl.errors import ConfigError, Unreachable
from deskctl.transport import folders
from deskctl.transport.errors import network_error
from deskctl.transport.spool import HEAD_BYTES, Oversize

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Fetch at most this many messages, or this many bytes, per round trip, so a
#: fetch's memory stays flat however large the mailbox is.
BATCH_COUNT = 100
BATCH_BYTES = 8 * 1024 * 1024
TIMEOUT = 60.0
#: TCP keepalive on a waiting connection: a peer gone without a word (a NAT that
#: forgot us, a host that died) is noticed in about two minutes, not at renewal.
KEEPALIVE = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 20), ("TCP_KEEPCNT", 3))

_FETCH_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    port: int
    security: str  # ssl | starttls | none
    username: str
    password: str
    folder: str = "INBOX"
    ca_file: str | None = None
    gmail: bool = False
    oauth_token: str | None = None  # XOAUTH2 instead of the password
    relogin_hint: str = ""  # what to run when the token is refused


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verification always on; a private CA is added, never a reason to switch it off."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


class ImapInbox:
    """One logged-in IMAP folder; use as a context manager.

    ``readonly`` opens it with EXAMINE: a connection that only waits takes no
    ``\\Recent`` flags from the mail programs that share the mailbox.
    """

    def __init__(self, settings: ImapSettings, *, readonly: bool = False) -> None:
        self.settings = settings
        self.readonly = readonly
        self.box: BaseMailBox | None = None
        self.uidvalidity = 0
        self.uidnext = 0
        self.messages = 0

    def __enter__(self) -> ImapInbox:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> BaseMailBox:
        s = self.settings
        try:
            if s.security == "ssl":
                return MailBox(s.host, s.port, timeout=TIMEOUT, ssl_context=tls_context(s.ca_file))
            if s.security == "starttls":
                # A server without STARTTLS is an error, never a silent fall-back.
                return MailBoxStartTls(
                    s.host, s.port, timeout=TIMEOUT, ssl_context=tls_context(s.ca_file)
                )
            return MailBoxUnencrypted(s.host, s.port, timeout=TIMEOUT)
        except MailboxStarttlsError as exc:
            raise Unreachable(
                f"IMAP server {s.host}:{s.port} refused STARTTLS ({exc}); "
                "deskctl does not fall back to plaintext"
            ) from exc
        except (imaplib.IMAP4.error, OSError) as exc:
            if isinstance(exc, imaplib.IMAP4.error) and "STARTTLS" in str(exc).upper():
                raise Unreachable(
                    f"IMAP server {s.host}:{s.port} does not offer STARTTLS; "
                    "deskctl does not fall back to plaintext"
                ) from exc
            raise network_error(exc, s.host, s.port, "IMAP") from exc

    def open(self) -> None:
        s = self.settings
        box = self._connect()
        self.box = box
        try:
            if s.oauth_token is not None:
                box.xoauth2(s.username, s.oauth_token, initial_folder=None)
            elif (s.username + s.password).isascii():
                box.login(s.username, s.password, initial_folder=None)
            else:
                self._login_utf8(box)
        except (MailboxLoginError, imaplib.IMAP4.error) as exc:
            self.close()
            if s.oauth_token is not None:
                # imap-tools raises IMAP4.error, not MailboxLoginError, for XOAUTH2.
                raise ConfigError(
                    f"IMAP OAuth login refused for {s.username} at {s.host}: the token was not "
                    f"accepted; {s.relogin_hint or 'sign in again'}"
                ) from exc
            hint = (
                " Gmail needs an app password, which needs 2-step verification on the account"
                if s.gmail
                else ""
            )
            raise ConfigError(
                f"IMAP login refused for {s.username} at {s.host}: check the password.{hint}"
            ) from exc
        except OSError as exc:
            self.close()
            raise network_error(exc, s.host, s.port, "IMAP") from exc
        except ConfigError:
            self.close()
            raise
        try:
            self._guarded(self._select)
        except BaseException:
            self.close()
            raise

    def _login_utf8(self, box: BaseMailBox) -> None:
        """Log in with a password (or name) that is not ASCII, without ever quoting it.

        IMAP LOGIN is ASCII only, and imaplib's encoding error names the first
        character it could not encode and where it is: a piece of the password
        in an error message, a log and the channel's last_error. SASL PLAIN
        (RFC 4616) carries UTF-8, so the login goes that way instead.
        """
        s = self.settings
        if "AUTH=PLAIN" not in box.client.capabilities:
            raise ConfigError(
                f"IMAP server {s.host} offers no login for a password that is not ASCII "
                "(it does not announce AUTH=PLAIN)"
            )
        secret = f"\0{s.username}\0{s.password}".encode()
        box.client.authenticate("PLAIN", lambda _challenge: secret)

    def _select(self) -> None:
        assert self.box is not None
        client = self.box.client
        typ, _ = client.select(_quote(self.settings.folder), readonly=self.readonly)
        if typ != "OK":
            folders = ", ".join(f.name for f in self.box.folder.list()) or "none"
            raise ConfigError(
                f"IMAP folder {self.settings.folder!r} does not exist for "
                f"{self.settings.username}; folders: {folders}"
            )
        typ, data = client.status(_quote(self.settings.folder), "(UIDVALIDITY UIDNEXT MESSAGES)")
        text = data[0].decode() if typ == "OK" and isinstance(data[0], bytes) else ""
        self.uidvalidity = _status_value(text, "UIDVALIDITY")
        self.uidnext = _status_value(text, "UIDNEXT")
        self.messages = _status_value(text, "MESSAGES")

    def close(self) -> None:
        if self.box is not None:
            try:
                self.box.logout()
            except Exception:  # the connection may already be gone; nothing to save
                log.debug("IMAP logout failed", exc_info=True)
            self.box = None

    def _guarded(self, call: Callable[[], T]) -> T:
        """Run a raw IMAP exchange; a dropped connection becomes one clear error."""
        try:
            return call()
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise network_error(exc, self.settings.host, self.settings.port, "IMAP") from exc

    def _client(self) -> imaplib.IMAP4:
        assert self.box is not None, "not connected"
        return self.box.client

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid``; ``N:*`` also names the highest UID, so filter."""
        typ, data = self._guarded(lambda: self._client().uid("SEARCH", f"UID {last_uid + 1}:*"))
        if typ != "OK":
            raise Unreachable(f"IMAP SEARCH failed on {self.settings.host}: {data!r}")
        return sorted(u for u in (int(x) for x in b" ".join(data).split()) if u > last_uid)

    def uids_between(self, low: int, high: int) -> list[int]:
        """UIDs in (low, high] still in the folder."""
        if high <= low:
            return []
        typ, data = self._guarded(lambda: self._client().uid("SEARCH", f"UID {low + 1}:{high}"))
        if typ != "OK":
            raise Unreachable(f"IMAP SEARCH failed on {self.settings.host}: {data!r}")
        return sorted(u for u in (int(x) for x in b" ".join(data).split()) if low < u <= high)

    def sizes(self, uids: list[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        for start in range(0, len(uids), 500):
            chunk = ",".join(str(u) for u in uids[start : start + 500])
            typ, data = self._guarded(partial(self._client().uid, "FETCH", chunk, "(RFC822.SIZE)"))
            if typ != "OK":
                raise Unreachable(f"IMAP FETCH failed on {self.settings.host}")
            for item in data:
                line = item[0] if isinstance(item, tuple) else item
                uid = _FETCH_UID.search(line) if isinstance(line, bytes) else None
                size = _SIZE.search(line) if isinstance(line, bytes) else None
                if uid and size:
                    found[int(uid.group(1))] = int(size.group(1))
        return found

    def fetch(
        self, uids: list[int], max_size: int | None = None
    ) -> Iterator[tuple[int, bytes | Oversize]]:
        """Yield (uid, raw bytes) in UID order, in batches bounded by count and size.

        A message whose RFC822.SIZE is over ``max_size`` is never downloaded: it
        comes as an :class:`Oversize` holding the start of its header only.
        """
        sizes = self.sizes(uids)
        batch: list[int] = []
        batch_bytes = 0
        for uid in uids:
            if uid not in sizes:
                continue  # expunged since the search
            if max_size is not None and sizes[uid] > max_size:
                if batch:  # UID order is kept: the watermark must never pass a message
                    yield from self._fetch_batch(batch)
                    batch, batch_bytes = [], 0
                yield uid, self._oversize(uid, sizes[uid], max_size)
                continue
            if batch and (len(batch) >= BATCH_COUNT or batch_bytes + sizes[uid] > BATCH_BYTES):
                yield from self._fetch_batch(batch)
                batch, batch_bytes = [], 0
            batch.append(uid)
            batch_bytes += sizes[uid]
        if batch:
            yield from self._fetch_batch(batch)

    def _fetch_batch(self, uids: list[int]) -> Iterator[tuple[int, bytes]]:
        typ, data = self._client().uid("FETCH", ",".join(str(u) for u in uids), "(UID BODY.PEEK[])")
        if typ != "OK":
            raise Unreachable(f"IMAP FETCH failed on {self.settings.host}: {typ}")
        got: dict[int, bytes] = {}
        for item in data:
            if isinstance(item, tuple) and (m := _FETCH_UID.search(item[0])):
                got[int(m.group(1))] = item[1]
        for uid in uids:
            if uid in got:
                yield uid, got[uid]

    def _oversize(self, uid: int, size: int, limit: int) -> Oversize:
        """Size and the first bytes of the header (a partial FETCH), never the body."""
        spec = f"(UID BODY.PEEK[HEADER]<0.{HEAD_BYTES}>)"
        typ, data = self._guarded(partial(self._client().uid, "FETCH", str(uid), spec))
        if typ != "OK":
            raise Unreachable(f"IMAP FETCH failed on {self.settings.host}: {typ}")
        head = next((item[1] for item in data if isinstance(item, tuple)), b"")
        return Oversize(size, limit, head[:HEAD_BYTES], uid=uid, uidvalidity=self.uidvalidity)

    def move_target(self, wanted: str, *, create: bool, check_only: bool = False) -> folders.Target:
        """The server's name for ``move:FOLDER`` (see transport/folders.py), created if allowed."""
        box = self.box
        assert box is not None, "not connected"
        reading = self.settings.folder
        return self._guarded(
            lambda: folders.move_target(
                box, wanted, reading=reading, create=create, check_only=check_only
            )
        )

    def sent_target(self, wanted: str) -> folders.Target:
        """The server's name for a channel's ``--sent-folder`` (see transport/folders.py)."""
        box = self.box
        assert box is not None, "not connected"
        reading = self.settings.folder
        return self._guarded(lambda: folders.sent_target(box, wanted, reading=reading))

    def file_copy(self, raw: bytes, folder: str, sent_at: datetime) -> None:
        """APPEND ``raw`` to ``folder``, flagged \\Seen, dated when it was sent.

        The team's answers then show in the mailbox's Sent folder, read, in the
        order they went out. A refusal (quota, a folder gone since) is the
        server's answer in its words; a dropped line is Unreachable.
        """
        box = self.box
        assert box is not None, "not connected"
        with self._answered(f"the copy for {folder!r}"):
            box.append(raw, folder, dt=sent_at, flag_set=["\\Seen"])

    def holds_copy(self, folder: str, message_id: str) -> bool:
        """Whether ``folder`` already has a mail with this Message-ID.

        A run killed after its APPEND and before its commit left the copy on
        the server and the item due: the run that retries it looks first, so
        the folder does not get it twice. Read-only (EXAMINE): no flag changes.
        """
        box = self.box
        assert box is not None, "not connected"
        with self._answered(f"looking for the copy in {folder!r}"):
            box.folder.set(folder, readonly=True)
            return bool(box.uids(AND(header=H("Message-ID", message_id))))

    @contextlib.contextmanager
    def _answered(self, what: str) -> Iterator[None]:
        """A refusal is the server's answer (a FolderProblem in its words), not a line problem."""
        try:
            yield
        except UnexpectedCommandStatusError as exc:
            said = folders.server_said(exc)
            raise folders.FolderProblem(
                f"{self.settings.host} refused {what}: {said}", missing="TRYCREATE" in said.upper()
            ) from exc
        except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError) as exc:
            raise Unreachable(f"{what} failed on {self.settings.host}: {exc}") from exc

    def after_fetch(self, action: str, uids: list[int]) -> None:
        """Apply the channel's after-fetch action, once the messages are committed.

        ``move:`` takes the server's own folder name (``move_target``). A
        refusal (a folder gone since, a quota, a read-only mailbox) is the
        server's answer, not a network problem: a FolderProblem in its words.
        """
        if not uids or action == "keep":
            return
        box = self.box
        assert box is not None
        ids = [str(u) for u in uids]
        with self._answered(f"the after-fetch action {action!r}"):
            if action == "seen":
                box.flag(ids, "\\Seen", True)
            elif action == "delete":
                box.delete(ids)
            elif action.startswith("move:"):
                box.move(ids, action.removeprefix("move:"))


class ImapIdle:
    """A second connection to a channel's folder that only waits for mail (IDLE, RFC 2177).

    Fetching stays on a connection of its own (the fetch job's), so waiting
    holds no lease and the fetch is exactly cron's. Any untagged answer ends
    the wait: :meth:`done` then says whether it was new mail (EXISTS or
    RECENT) rather than a flag change or a keepalive.
    """

    def __init__(self, settings: ImapSettings) -> None:
        self.inbox = ImapInbox(settings, readonly=True)
        self.idling = False

    def open(self) -> bool:
        """Connect, log in and open the folder; False (and closed) without IDLE on the server."""
        self.inbox.open()
        try:
            typ, data = self.inbox._guarded(self.inbox._client().capability)
            announced = b" ".join(d for d in data if isinstance(d, bytes)).upper().split()
            if typ != "OK" or b"IDLE" not in announced:
                self.close()
                return False
            sock = self.inbox._client().sock
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in KEEPALIVE:
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        except BaseException:
            self.close()
            raise
        return True

    def fileno(self) -> int:
        return self.inbox._client().sock.fileno()

    def start(self) -> None:
        """Send IDLE; the server answers on the socket when the folder changes."""
        client = self.inbox._client()
        client.untagged_responses.clear()
        box = self.inbox.box
        assert box is not None
        self.inbox._guarded(box.idle.start)
        self.idling = True

    def read_ahead(self) -> bool:
        """True when the server's answer is already read into our buffers.

        imaplib reads through a buffered file (and TLS through its own
        buffer), so an EXISTS that came in the packet with IDLE's ``+`` is no
        longer on the socket, and waiting on the socket would miss it.
        """
        client = self.inbox._client()
        sock = client.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        file = client.file
        if not isinstance(file, io.BufferedReader):
            return False
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            return bool(file.peek(1))
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True  # a broken connection: done() says how
        finally:
            sock.settimeout(timeout)

    def done(self) -> bool:
        """End IDLE; True when the folder has new mail since :meth:`start`."""
        box = self.inbox.box
        assert box is not None
        self.idling = False
        self.inbox._guarded(box.idle.stop)
        seen = self.inbox._client().untagged_responses
        return "EXISTS" in seen or "RECENT" in seen

    def close(self, timeout: float = 2.0) -> None:
        """Leave IDLE and log out, waiting at most ``timeout`` for a server that is gone."""
        box = self.inbox.box
        if box is None:
            return
        try:
            box.client.sock.settimeout(timeout)
            if self.idling:
                box.idle.stop()
        except Exception:  # closing anyway; the server may be gone
            log.debug("IMAP IDLE end failed", exc_info=True)
        self.idling = False
        self.inbox.close()
        with contextlib.suppress(OSError):  # a failed LOGOUT leaves the socket open
            box.client.shutdown()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _status_value(text: str, key: str) -> int:
    match = re.search(rf"{key} (\d+)", text)
    return int(match.group(1)) if match else 0


def probe(
    settings: ImapSettings,
    move_to: str | None = None,
    create: bool = False,
    sent_folder: str | None = None,
) -> dict[str, Any]:
    """Connect, log in, open the folder and find the after-fetch one: what ``channel test`` reports.

    The after-fetch folder is only looked for, never created: a test changes
    nothing on the server.
    """
    with ImapInbox(settings) as inbox:
        found: dict[str, Any] = {
            "uidvalidity": inbox.uidvalidity,
            "uidnext": inbox.uidnext,
            "messages": inbox.messages,
        }
        if move_to is not None:
            target = inbox.move_target(move_to, create=create, check_only=True)
            found["after_fetch_folder"] = {
                "name": target.name,
                "exists": target.exists,
                "how": target.how,
            }
        if sent_folder is not None:
            sent = inbox.sent_target(sent_folder)
            found["sent_folder"] = {"name": sent.name, "exists": sent.exists, "how": sent.how}
        return found
