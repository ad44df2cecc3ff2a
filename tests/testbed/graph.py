"""A small fake Microsoft Graph (mail only) on 127.0.0.1, over HTTPS with the test CA.

deskctl reads and sends Office 365 mail through Graph; the real service is
out of reach offline, and mocking ``requests`` would only test the mock. So
this serves exactly the endpoints deskctl calls, with the answers Microsoft
documents for them (https://learn.microsoft.com/graph/api/...), errors
included, relative to ``/v1.0/me`` or ``/v1.0/users/{address}``:

- ``GET mailFolders/{id or well-known name}``, ``GET mailFolders?$filter=displayName eq 'X'``
  and ``GET mailFolders/{id}/childFolders?$filter=...``;
- ``GET mailFolders/{id}/messages/delta``: pages of :attr:`FakeGraph.page_size`
  (or fewer, as ``Prefer: odata.maxpagesize`` asks) linked by ``@odata.nextLink``,
  the last one carrying ``@odata.deltaLink``; a delta link lists what changed
  since (``@removed`` for mail that left the folder). :meth:`FakeGraph.expire_delta_tokens`
  makes every link issued so far answer ``410 Gone`` (``SyncStateNotFound``);
- ``GET messages/{id}/$value`` (the MIME, streamed in chunks: no Content-Length),
  ``PATCH messages/{id}`` (``isRead``),
  ``POST messages/{id}/move`` (201, the message under a new id);
- ``POST sendMail`` with base64 MIME as ``text/plain`` (202), the bytes kept
  in the sender's Sent Items and in :attr:`FakeGraph.sent`.

Bearer tokens are checked with the :class:`~testbed.idp.FakeIdP` that issued
them: ``401 InvalidAuthenticationToken`` for a missing, unknown, revoked or
expired token or one for another resource (an IMAP token); ``403
ErrorAccessDenied`` without the permission (delegated: the ``Mail.*`` scope;
app-only: the role granted with :meth:`FakeGraph.grant_app`) or for another
user's mailbox; ``400`` for ``/me`` with an app-only token; ``404
ErrorItemNotFound`` for an unknown message or folder. :meth:`FakeGraph.throttle`
answers the next requests with 429 or 503 and ``Retry-After``; :meth:`FakeGraph.refuse`
with another documented error (``400 ErrorInvalidRecipients`` for sendMail).
A sendMail body over 4 MB is refused with ``413``, as Graph's request limit is.
Ids are base64 with ``/``, ``+`` and ``=``, as Exchange's are, and each path
segment is unescaped on its own. What a broken or hostile service does, on
demand: :meth:`FakeGraph.answer_html` (a gateway's page, not JSON),
:attr:`FakeGraph.link_host` (next and delta links to another host) and
:attr:`FakeGraph.circle` (next links back to the page just read).
"""

from __future__ import annotations

import base64
import binascii
import collections
import http.server
import json
import secrets
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from typing import Any

from .certs import CertBundle
from .idp import FakeIdP, _Server

GRAPH = "https://graph.microsoft.com/"
#: sendMail's request body (JSON, or the base64 MIME) must stay under 4 MB.
SENDMAIL_LIMIT = 4 * 1024 * 1024
#: Folders every mailbox starts with: well-known name -> display name.
STANDARD_FOLDERS = {
    "inbox": "Inbox",
    "archive": "Archive",
    "deleteditems": "Deleted Items",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "junkemail": "Junk Email",
}


@dataclass
class GraphMessage:
    id: str
    raw: bytes
    folder: str  # folder id
    is_read: bool = False
    changed: int = 0  # the change sequence number of its last change


@dataclass
class GraphFolder:
    id: str
    display_name: str
    parent: str | None
    well_known: str | None = None


@dataclass
class Mailbox:
    address: str
    folders: dict[str, GraphFolder] = field(default_factory=dict)
    messages: dict[str, GraphMessage] = field(default_factory=dict)
    #: (folder id, message id, sequence): mail that left a folder, for delta's @removed.
    removed: list[tuple[str, str, int]] = field(default_factory=list)

    def folder(self, ref: str) -> GraphFolder | None:
        ref_lower = ref.lower()
        for f in self.folders.values():
            if f.id == ref or f.well_known == ref_lower:
                return f
        return None


@dataclass
class GraphRequest:
    """One request the fake answered, for assertions."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    #: The path's segments, each unescaped on its own: an id may hold ``/``.
    segments: list[str] = field(default_factory=list)


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    count: int
    path_contains: str
    code: str = ""
    message: str = ""
    html: bool = False  # a gateway's HTML page instead of Graph's JSON


class _Html(Exception):
    """Answered with an HTML page, not Graph's JSON."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class GraphError(Exception):
    """Graph's error answer: ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: Sent in chunks without a Content-Length, as Graph streams ``$value``.
    chunked: bool = False


def _json(status: int, obj: object) -> _Answer:
    return _Answer(status, json.dumps(obj).encode())


def _token(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _untoken(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


def _new_id() -> str:
    """Long and opaque, the shape of Exchange's ``AAMkAG...`` ids: base64 with ``/``, ``+``, ``=``.

    A client that puts one in a path unescaped reaches another resource.
    """
    return "AAMkAG/+" + base64.b64encode(secrets.token_bytes(46)).decode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _GraphServer
    protocol_version = "HTTP/1.1"
    timeout = 30
    # Headers and body go out in two writes: with Nagle on, the body waits for
    # the client's delayed ACK of the headers, 40 ms per request.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _handle(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        req = GraphRequest(
            method=self.command,
            path=urllib.parse.unquote(split.path),
            segments=[urllib.parse.unquote(s) for s in split.path.strip("/").split("/")],
            query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        graph = self.server.graph
        try:
            answer = graph._dispatch(req)
        except GraphError as exc:
            answer = _json(exc.status, {"error": {"code": exc.code, "message": exc.message}})
            answer.headers.update(exc.headers)
        except _Html as exc:
            page = f"<html><body><h1>{exc.status}</h1>Bad Gateway</body></html>"
            answer = _Answer(exc.status, page.encode(), "text/html")
        except Exception as exc:  # a bug in the fake shows as a 500, not a hang
            answer = _json(500, {"error": {"code": "generalException", "message": repr(exc)}})
        req.status = answer.status
        with graph._lock:
            graph.requests.append(req)
        cut = graph._cut(req)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        if answer.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        body = answer.body[: len(answer.body) // 2] if cut else answer.body
        if answer.chunked:
            for at in range(0, len(body), 65536):
                piece = body[at : at + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if not cut:
                self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)
        if cut:  # the connection drops halfway through the body
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: :attr:`FakeGraph.requests` is the access log."""


class _GraphServer(_Server):
    """The IdP's listener (TLS handshake per connection thread), serving Graph."""

    def __init__(self, graph: FakeGraph, tls: ssl.SSLContext) -> None:
        self.graph = graph
        self.tls = tls
        self.scheme = "https"
        http.server.ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), _Handler)


class FakeGraph:
    """The fake service; listening once constructed. ``base_url`` is deskctl's ``--graph-url``."""

    def __init__(self, certs: CertBundle, idp: FakeIdP) -> None:
        self.idp = idp
        self._lock = threading.RLock()
        self._seq = 0
        self._generation = 0
        self._rounds: dict[str, list[dict[str, Any]]] = {}
        self._faults: list[_Fault] = []
        self._cuts = 0
        self.mailboxes: dict[str, Mailbox] = {}
        self.app_roles: dict[str, set[str]] = {}
        self.requests: list[GraphRequest] = []
        self.sent: list[tuple[str, bytes]] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self.page_size = 10
        #: ``host:port`` for the next and delta links instead of the request's own.
        self.link_host: str | None = None
        #: From the second page on, every nextLink leads back to the page just read.
        self.circle = False
        self._server = _GraphServer(self, certs.server_context())
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-graph",
            daemon=True,
        )
        self._thread.start()
        self.base_url = f"https://127.0.0.1:{self._server.server_address[1]}/v1.0"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def reset(self) -> None:
        """Tunables and faults back to their defaults (the ``graph`` fixture does this)."""
        with self._lock:
            self.page_size = 10
            self.link_host = None
            self.circle = False
            self._faults.clear()
            self._cuts = 0

    # -- what tests set up and look at -----------------------------------------

    def mailbox(self, address: str) -> Mailbox:
        """The mailbox of ``address``, created with the standard folders on first use."""
        address = address.lower()
        with self._lock:
            box = self.mailboxes.get(address)
            if box is None:
                box = Mailbox(address)
                root = GraphFolder(_new_id(), "Top of Information Store", None, "msgfolderroot")
                box.folders[root.id] = root
                for well_known, name in STANDARD_FOLDERS.items():
                    folder = GraphFolder(_new_id(), name, root.id, well_known)
                    box.folders[folder.id] = folder
                self.mailboxes[address] = box
            return box

    def add_folder(self, address: str, name: str, parent: str = "msgfolderroot") -> str:
        box = self.mailbox(address)
        with self._lock:
            under = box.folder(parent)
            assert under is not None, parent
            folder = GraphFolder(_new_id(), name, under.id)
            box.folders[folder.id] = folder
            return folder.id

    def deliver(self, address: str, raw: bytes, folder: str = "inbox") -> str:
        """Put ``raw`` in a folder of the mailbox, unread; returns its Graph id."""
        box = self.mailbox(address)
        with self._lock:
            target = box.folder(folder)
            assert target is not None, folder
            message = GraphMessage(_new_id(), raw, target.id, changed=self._next())
            box.messages[message.id] = message
            return message.id

    def messages(self, address: str, folder: str = "inbox") -> list[GraphMessage]:
        box = self.mailbox(address)
        with self._lock:
            target = box.folder(folder)
            assert target is not None, folder
            return [m for m in box.messages.values() if m.folder == target.id]

    def grant_app(self, client_id: str, *roles: str) -> None:
        """Admin consent to application permissions, e.g. ``Mail.ReadWrite``, ``Mail.Send``."""
        with self._lock:
            self.app_roles.setdefault(client_id, set()).update(roles)

    def throttle(
        self, count: int, *, status: int = 429, retry_after: int | None = 1, path_contains: str = ""
    ) -> None:
        """Answer the next ``count`` requests (whose path contains ...) with ``status``."""
        with self._lock:
            self._faults.append(_Fault(status, retry_after, count, path_contains))

    def refuse(self, count: int, status: int, code: str, message: str, path_contains: str) -> None:
        """Answer the next ``count`` matching requests with this documented error."""
        with self._lock:
            self._faults.append(_Fault(status, None, count, path_contains, code, message))

    def answer_html(self, count: int, status: int, path_contains: str = "") -> None:
        """Answer the next ``count`` matching requests with ``status`` and an HTML page.

        What a proxy, a load balancer or Graph's own front door sends at times:
        a 200 sign-in page of a captive portal, a 502 from a gateway.
        """
        with self._lock:
            self._faults.append(_Fault(status, None, count, path_contains, html=True))

    def cut_downloads(self, count: int) -> None:
        """Drop the connection halfway through the next ``count`` ``$value`` answers."""
        with self._lock:
            self._cuts += count

    def _cut(self, req: GraphRequest) -> bool:
        with self._lock:
            if self._cuts and req.path.endswith("/$value"):
                self._cuts -= 1
                return True
            return False

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token issued so far answers 410 from now on."""
        with self._lock:
            self._generation += 1

    def calls(self, method: str, contains: str = "") -> list[GraphRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and contains in r.path]

    # -- internals -------------------------------------------------------------

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _fault(self, req: GraphRequest) -> None:
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and fault.path_contains in req.path:
                    fault.count -= 1
                    self.counters[f"throttled:{fault.status}"] += 1
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    if fault.html:
                        raise _Html(fault.status)
                    if fault.code:
                        raise GraphError(fault.status, fault.code, fault.message)
                    if fault.status == 429:
                        raise GraphError(
                            429,
                            "ApplicationThrottled",
                            "Application is over its MailboxConcurrency limit.",
                            **headers,
                        )
                    raise GraphError(
                        fault.status, "ServiceUnavailable", "Service Unavailable", **headers
                    )

    def _principal(self, req: GraphRequest, permission: str) -> tuple[str | None, str]:
        """(the signed-in user's address or None for the app, client id), or a 401/403."""
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        record = self.idp.token_record(auth[7:].strip())
        if record is None or record.kind != "access":
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if not record.usable():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        scopes = record.scope.split()
        if not any(s.startswith(GRAPH) for s in scopes):
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )
        allowed = (
            f"{GRAPH}{permission}" in scopes
            if record.email is not None
            else permission in self.app_roles.get(record.client_id, set())
        )
        if not allowed:
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        return record.email, record.client_id

    def _dispatch(self, req: GraphRequest) -> _Answer:
        parts = req.segments
        if parts[:1] != ["v1.0"] or len(parts) < 3:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{req.path}'.")
        self._fault(req)
        if parts[1] == "me":
            who, rest = None, parts[2:]
        elif parts[1] == "users" and len(parts) > 3:
            who, rest = parts[2].lower(), parts[3:]
        else:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[1]}'.")
        permission = "Mail.Send" if rest == ["sendMail"] else "Mail.ReadWrite"
        email, _client = self._principal(req, permission)
        if who is None:
            if email is None:
                raise GraphError(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            who = email
        elif email is not None and email != who:
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if who not in self.mailboxes:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{who}' is invalid.")
        box = self.mailboxes[who]
        prefix = "/".join(
            urllib.parse.quote(p, safe="@") for p in parts[: 2 if parts[1] == "me" else 3]
        )
        with self._lock:
            return self._route(req, box, rest, prefix)

    def _route(self, req: GraphRequest, box: Mailbox, rest: list[str], prefix: str) -> _Answer:
        method = req.method
        if rest[0] == "mailFolders":
            if len(rest) == 1 and method == "GET":
                return self._list_folders(req, box, "msgfolderroot")
            folder = box.folder(rest[1]) if len(rest) > 1 else None
            if folder is None:
                raise GraphError(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            if len(rest) == 2 and method == "GET":
                return _json(200, self._folder_json(box, folder))
            if rest[2:] == ["childFolders"] and method == "GET":
                return self._list_folders(req, box, folder.id)
            if rest[2:] == ["messages", "delta"] and method == "GET":
                return self._delta(req, box, folder, prefix)
        if rest[0] == "messages" and len(rest) >= 2:
            message = box.messages.get(rest[1])
            if message is None:
                raise GraphError(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            if rest[2:] == ["$value"] and method == "GET":
                return _Answer(200, message.raw, "text/plain", chunked=True)
            if len(rest) == 2 and method == "PATCH":
                changes = json.loads(req.body or b"{}")
                if "isRead" in changes:
                    message.is_read = bool(changes["isRead"])
                    message.changed = self._next()
                return _json(200, self._message_json(message, None))
            if rest[2:] == ["move"] and method == "POST":
                return self._move(req, box, message)
        if rest == ["sendMail"] and method == "POST":
            return self._send(req, box)
        raise GraphError(400, "BadRequest", f"Unsupported request: {method} {req.path}")

    def _folder_json(self, box: Mailbox, folder: GraphFolder) -> dict[str, Any]:
        inside = [m for m in box.messages.values() if m.folder == folder.id]
        return {
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": folder.parent,
            "totalItemCount": len(inside),
            "unreadItemCount": sum(not m.is_read for m in inside),
        }

    def _list_folders(self, req: GraphRequest, box: Mailbox, parent_ref: str) -> _Answer:
        parent = box.folder(parent_ref)
        assert parent is not None
        found = [f for f in box.folders.values() if f.parent == parent.id]
        wanted = req.query.get("$filter", "")
        if wanted:
            prefix = "displayName eq '"
            if not (wanted.startswith(prefix) and wanted.endswith("'")):
                raise GraphError(400, "BadRequest", f"Invalid filter clause: {wanted}")
            name = wanted[len(prefix) : -1].replace("''", "'")
            found = [f for f in found if f.display_name.lower() == name.lower()]
        return _json(200, {"value": [self._folder_json(box, f) for f in found]})

    def _message_json(self, message: GraphMessage, select: list[str] | None) -> dict[str, Any]:
        full = {
            "@odata.type": "#microsoft.graph.message",
            "id": message.id,
            "isRead": message.is_read,
            "parentFolderId": message.folder,
        }
        if select is None:
            return full
        return {k: v for k, v in full.items() if k in ("@odata.type", "id", *select)}

    def _delta(self, req: GraphRequest, box: Mailbox, folder: GraphFolder, prefix: str) -> _Answer:
        self.counters["delta"] += 1
        host = self.link_host or req.headers.get("host", "127.0.0.1")
        where = urllib.parse.quote(folder.id, safe="")
        base = f"https://{host}/{prefix}/mailFolders/{where}/messages/delta"
        skip, delta = req.query.get("$skiptoken"), req.query.get("$deltatoken")
        if skip is not None or delta is not None:
            state = _untoken(skip or delta or "")
            if state is None or state.get("f") != folder.id:
                raise GraphError(400, "BadRequest", "The provided token is not valid.")
            if state.get("g") != self._generation:
                self.counters["delta:gone"] += 1
                raise GraphError(
                    410, "SyncStateNotFound", "The sync state generation is not found."
                )
        else:
            state = None
        if skip is not None:
            assert state is not None
            round_id, offset, upto, select = state["r"], state["o"], state["u"], state["s"]
            items = self._rounds.get(round_id)
            if items is None:
                raise GraphError(
                    410, "SyncStateNotFound", "The sync state generation is not found."
                )
        else:
            since = state["u"] if state is not None else None
            select = (
                state["s"]
                if state is not None
                else [s for s in req.query.get("$select", "").split(",") if s]
            )
            upto = self._seq
            items = []
            for message in sorted(box.messages.values(), key=lambda m: m.changed):
                if message.folder == folder.id and (
                    since is None or since < message.changed <= upto
                ):
                    items.append(self._message_json(message, select or None))
            if since is not None:
                for folder_id, message_id, seq in box.removed:
                    if folder_id == folder.id and since < seq <= upto:
                        items.append({"id": message_id, "@removed": {"reason": "deleted"}})
            round_id, offset = secrets.token_hex(8), 0
            self._rounds[round_id] = items
        size = self.page_size
        prefer = req.headers.get("prefer", "")
        if prefer.startswith("odata.maxpagesize="):
            size = min(size, int(prefer.split("=", 1)[1]))
        page = items[offset : offset + size]
        body: dict[str, Any] = {"value": page}
        if offset + size < len(items):
            token = _token(
                {
                    "f": folder.id,
                    "g": self._generation,
                    "r": round_id,
                    "o": offset + size,
                    "u": upto,
                    "s": select,
                }
            )
            body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
            if self.circle and skip is not None:  # the page just read, once more
                body["@odata.nextLink"] = f"{base}?$skiptoken={skip}"
        else:
            self._rounds.pop(round_id, None)
            token = _token({"f": folder.id, "g": self._generation, "u": upto, "s": select})
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        return _json(200, body)

    def _move(self, req: GraphRequest, box: Mailbox, message: GraphMessage) -> _Answer:
        try:
            destination = json.loads(req.body or b"{}").get("destinationId", "")
        except ValueError:
            raise GraphError(
                400, "ErrorInvalidRequest", "The request body is not valid JSON."
            ) from None
        target = box.folder(destination)
        if target is None:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        del box.messages[message.id]
        box.removed.append((message.folder, message.id, self._next()))
        moved = GraphMessage(_new_id(), message.raw, target.id, message.is_read, self._next())
        box.messages[moved.id] = moved
        return _json(201, self._message_json(moved, None))

    def _send(self, req: GraphRequest, box: Mailbox) -> _Answer:
        if len(req.body) > SENDMAIL_LIMIT:
            raise GraphError(413, "RequestEntityTooLarge", "The request is larger than 4 MB.")
        if not req.headers.get("content-type", "").startswith("text/plain"):
            raise GraphError(
                400, "ErrorInvalidRequest", "Expected a JSON message or base64 MIME as text/plain."
            )
        try:
            raw = base64.b64decode(req.body, validate=True)
        except (ValueError, binascii.Error):
            raise GraphError(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            ) from None
        headers = BytesHeaderParser().parsebytes(raw)
        if not any(headers.get(h) for h in ("To", "Cc", "Bcc")):
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        self.sent.append((box.address, raw))
        sent = box.folder("sentitems")
        assert sent is not None
        copy = GraphMessage(_new_id(), raw, sent.id, True, self._next())
        box.messages[copy.id] = copy
        return _Answer(202)
