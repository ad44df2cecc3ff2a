"""A small fake OAuth2/OIDC identity provider on 127.0.0.1 (plain http and https).

deskctl signs in to Microsoft 365 (msal, device code) and Google
(google-auth / google-auth-oauthlib, loopback authorization code) and then
uses the access token for IMAP/SMTP XOAUTH2.  Testing that against the real
clouds is impossible offline, and mocking msal or google-auth would only
test the mocks; so this module runs just enough of an identity provider for
the *real* client libraries to talk to it:

- OpenID discovery, both Entra-style (``<base>/<tenant>/v2.0/.well-known/...``,
  which msal fetches for ``authority=<tls_base_url>/<tenant>``) and root-level;
- the device-code grant (RFC 8628), approved by the test
  (:meth:`FakeIdP.approve_device_code`) or automatically
  (:attr:`FakeIdP.auto_approve_device_as`);
- the authorization-code grant with PKCE for InstalledAppFlow, auto-approved
  for :attr:`FakeIdP.auto_approve_as` and redirected to the loopback URI;
- the refresh-token grant with rotation (the old token is revoked);
- the client-credentials grant for registered confidential clients, as Entra
  answers it: ``invalid_client`` (401) for a wrong secret, ``invalid_scope``
  unless the scope is one ``<resource>/.default``;
- Google-style ``/tokeninfo`` and RFC 7662 ``/introspect`` so Dovecot's
  oauth2 passdb (and the SMTP relay) can validate access tokens.

Both listeners share one state.  The plain-http one exists because Dovecot
and google-auth are happy with http and it needs no CA plumbing; msal and
oauthlib insist on https, which is served with the test CA's leaf.
Tokens are opaque random strings; the id_token is an unsigned JWT
(``alg: none``), which msal and google-auth only decode.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import http.server
import json
import math
import re
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .certs import CertBundle

DEFAULT_CLIENT_ID = "deskctl-test-client"
DEFAULT_SCOPE = "openid profile email offline_access https://mail.example.test/.default"

#: Tunables and their defaults; :meth:`FakeIdP.reset_settings` restores these.
DEFAULT_SETTINGS: dict[str, Any] = {
    "access_ttl": 3600.0,
    "refresh_ttl": None,
    "rotate_refresh_tokens": True,
    "device_code_ttl": 600.0,
    "device_interval": 1,
    "auth_code_ttl": 60.0,
    "auto_approve_as": None,
    "auto_approve_device_as": None,
    "check_pkce": True,
}

_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_WELL_KNOWN = "/.well-known/openid-configuration"
_ENDPOINT = re.compile(
    r"^(?:/(?P<tenant>[^/]+)/oauth2(?:/v2\.0)?)?"
    r"/(?P<ep>token|authorize|auth|devicecode|device/code|device|tokeninfo|introspect"
    r"|revoke|userinfo|keys)$"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(obj: object) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def _uuid_for(kind: str, value: str) -> str:
    """Stable GUIDs (oid, tid) derived from an address or tenant name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"deskctl-test:{kind}:{value.lower()}"))


def _tenant_id(tenant: str) -> str:
    """Keep a tenant that already is a GUID; map names to a stable GUID, as Entra does."""
    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        return _uuid_for("tenant", tenant)


def _is_loopback_redirect(uri: str) -> bool:
    """Installed apps may only redirect to http loopback (RFC 8252 §7.3)."""
    parsed = urllib.parse.urlsplit(uri)
    return parsed.scheme == "http" and parsed.hostname in ("localhost", "127.0.0.1", "::1")


@dataclass
class TokenRecord:
    """One access or refresh token the IdP issued (or a test minted)."""

    token: str
    kind: Literal["access", "refresh"]
    email: str | None  # None for client-credentials (app-only) tokens
    client_id: str
    scope: str
    tenant: str | None
    issued_at: float
    expires_at: float | None
    revoked: bool = False
    replaced_by: str | None = None  # set when a refresh rotated this token away

    def usable(self, now: float | None = None) -> bool:
        """Not revoked and not past its expiry."""
        now = time.time() if now is None else now
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


@dataclass
class DeviceCode:
    """One pending RFC 8628 device authorization."""

    device_code: str
    user_code: str
    client_id: str
    scope: str
    tenant: str | None
    expires_at: float
    approved_email: str | None = None
    denied: bool = False
    redeemed: bool = False
    polls: int = 0


@dataclass
class AuthCode:
    """One authorization code handed to a loopback redirect URI."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    email: str
    tenant: str | None
    expires_at: float
    code_challenge: str | None
    code_challenge_method: str
    nonce: str | None
    used: bool = False


@dataclass
class LoggedRequest:
    """One HTTP request the IdP answered, for assertions in tests."""

    scheme: str
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    at: float = field(default_factory=time.time)

    @property
    def params(self) -> dict[str, str]:
        """Query and form parameters merged (form wins)."""
        return {**self.query, **self.form}


class OAuthError(Exception):
    """An OAuth error response: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str = "", status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, obj: object, **headers: str) -> _Response:
    body = json.dumps(obj).encode()
    return _Response(status, body, headers={"Cache-Control": "no-store", **headers})


class _Handler(http.server.BaseHTTPRequestHandler):
    """Parses one request and hands it to :meth:`FakeIdP._dispatch`."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like real IdPs; every reply has a length
    timeout = 30  # idle keep-alive connections must not pin threads forever

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        form: dict[str, str] = {}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if raw and ctype.startswith("application/x-www-form-urlencoded"):
            form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), True))
        entry = LoggedRequest(
            scheme=self.server.scheme,
            method=self.command,
            path=split.path,
            query=query,
            form=form,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        idp = self.server.idp
        try:
            response = idp._dispatch(entry)
        except OAuthError as exc:
            response = _json(exc.status, {"error": exc.error, "error_description": exc.description})
        except Exception as exc:  # a bug in the fake must show up as a 500, not a hang
            response = _json(500, {"error": "server_error", "error_description": repr(exc)})
        entry.status = response.status
        idp._log_request(entry)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; :attr:`FakeIdP.requests` has it."""


class _Server(http.server.ThreadingHTTPServer):
    """One listener; with ``tls`` set it does the TLS handshake per connection thread.

    Wrapping the listening socket instead would run every handshake in the
    accept loop, so one stalled client (or one that rejects our cert on
    purpose) would block all others.
    """

    daemon_threads = True

    def __init__(self, idp: FakeIdP, tls: ssl.SSLContext | None) -> None:
        self.idp = idp
        self.tls = tls
        self.scheme = "https" if tls is not None else "http"
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # e.g. a client that does not trust the test CA
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection resets and TLS errors are normal here; don't print tracebacks."""


class FakeIdP:
    """The identity provider; listening on both ports once constructed.

    URLs:

    - :attr:`base_url` ``http://127.0.0.1:<port>``: root endpoints
      ``/token``, ``/auth``, ``/device/code``, ``/tokeninfo``, ``/introspect``,
      ``/revoke``, ``/userinfo``; discovery at ``/.well-known/openid-configuration``.
    - :attr:`tls_base_url` ``https://127.0.0.1:<port>``: the same, plus the
      Entra-style tenant paths ``/<tenant>/oauth2/v2.0/{token,authorize,devicecode}``
      advertised by ``/<tenant>/v2.0/.well-known/openid-configuration``
      (both listeners serve every path).

    Any ``client_id`` is accepted as a public client unless it was
    registered with a secret through :meth:`register_client`.  Tunables
    (see :data:`DEFAULT_SETTINGS`) are plain attributes, e.g.
    ``idp.access_ttl = 2``; :meth:`settings` changes them temporarily.
    """

    access_ttl: float
    refresh_ttl: float | None
    rotate_refresh_tokens: bool
    device_code_ttl: float
    device_interval: int
    auth_code_ttl: float
    auto_approve_as: str | None
    auto_approve_device_as: str | None
    check_pkce: bool

    def __init__(self, certs: CertBundle) -> None:
        self.certs = certs
        self.reset_settings()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._tokens: dict[str, TokenRecord] = {}
        self._device_codes: dict[str, DeviceCode] = {}
        self._auth_codes: dict[str, AuthCode] = {}
        self._clients: dict[str, str | None] = {}
        self.requests: list[LoggedRequest] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        try:
            self._http = self._serve(None)
            self._https = self._serve(certs.server_context())
        except BaseException:
            self.stop()
            raise
        self.base_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.tls_base_url = f"https://127.0.0.1:{self._https.server_address[1]}"

    # -- lifecycle -----------------------------------------------------------

    def _serve(self, tls: ssl.SSLContext | None) -> _Server:
        server = _Server(self, tls)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll
            name=f"fake-idp-{server.scheme}",
            daemon=True,
        )
        thread.start()
        self._servers.append(server)
        self._threads.append(thread)
        return server

    def stop(self) -> None:
        """Stop both listeners (idle keep-alive threads are daemons and die with us)."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeIdP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def http_port(self) -> int:
        """Port of the plain-http listener."""
        return int(self._http.server_address[1])

    @property
    def https_port(self) -> int:
        """Port of the https listener (test CA leaf for localhost / 127.0.0.1)."""
        return int(self._https.server_address[1])

    # -- settings ------------------------------------------------------------

    def reset_settings(self) -> None:
        """Restore every tunable to :data:`DEFAULT_SETTINGS` (the ``idp`` fixture does this)."""
        for name, value in DEFAULT_SETTINGS.items():
            setattr(self, name, value)

    @contextlib.contextmanager
    def settings(self, **changes: Any) -> Iterator[FakeIdP]:
        """Temporarily change tunables: ``with idp.settings(access_ttl=2): ...``."""
        unknown = set(changes) - set(DEFAULT_SETTINGS)
        if unknown:
            raise TypeError(f"unknown IdP settings: {sorted(unknown)}")
        saved = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def register_client(self, client_id: str, secret: str | None = None) -> None:
        """Register a client; with a ``secret`` it becomes confidential and must present it."""
        with self._lock:
            self._clients[client_id] = secret

    # -- URLs ----------------------------------------------------------------

    def authority(self, tenant: str = "test-tenant") -> str:
        """msal ``authority=``: https and one path segment, as msal requires."""
        return f"{self.tls_base_url}/{tenant}"

    def token_url(self, tls: bool = False) -> str:
        """Root token endpoint (google-auth ``token_uri``); oauthlib needs ``tls=True``."""
        return f"{self.tls_base_url if tls else self.base_url}/token"

    def auth_url(self, tls: bool = True) -> str:
        """Root authorization endpoint (InstalledAppFlow ``auth_uri``)."""
        return f"{self.tls_base_url if tls else self.base_url}/auth"

    def google_client_config(
        self, client_id: str = DEFAULT_CLIENT_ID, client_secret: str = "test-secret"
    ) -> dict[str, dict[str, Any]]:
        """An ``InstalledAppFlow.from_client_config`` dict pointing at the https listener."""
        return {
            "installed": {
                "client_id": client_id,
                "client_secret": client_secret,
                "auth_uri": self.auth_url(tls=True),
                "token_uri": self.token_url(tls=True),
                "redirect_uris": ["http://localhost"],
            }
        }

    def write_google_client_secrets(
        self, path: Path, client_id: str = DEFAULT_CLIENT_ID, client_secret: str = "test-secret"
    ) -> Path:
        """Write :meth:`google_client_config` as a client-secrets JSON file (for
        ``InstalledAppFlow.from_client_secrets_file``, which deskctl uses)."""
        path.write_text(json.dumps(self.google_client_config(client_id, client_secret)))
        return path

    def google_authorized_user_info(
        self,
        email: str,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = "test-secret",
        tls: bool = False,
    ) -> dict[str, str]:
        """A signed-in Google token file's content (``Credentials.to_json()`` shape) for ``email``.

        Carries only a fresh refresh token, so the first use refreshes
        against this IdP; ``Credentials.from_authorized_user_info`` reads it.
        """
        return {
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": self.issue_refresh_token(email, client_id),
            "token_uri": self.token_url(tls=tls),
        }

    def dovecot_oauth2_conf(
        self, mode: Literal["tokeninfo", "introspect"] = "tokeninfo", ca_file: Path | None = None
    ) -> str:
        """Text of Dovecot's ``dovecot-oauth2.conf.ext`` validating against this IdP.

        ``tokeninfo`` is Google-style (GET ``/tokeninfo?access_token=``),
        ``introspect`` is RFC 7662 (POST ``/introspect``).  With ``ca_file``
        (a path Dovecot's account can read) Dovecot talks https instead.
        """
        base = self.base_url if ca_file is None else self.tls_base_url
        if mode == "tokeninfo":
            lines = [
                f"tokeninfo_url = {base}/tokeninfo?access_token=",
                "username_attribute = email",
            ]
        else:
            lines = [
                "introspection_mode = post",
                f"introspection_url = {base}/introspect",
                "username_attribute = username",
                "active_attribute = active",
                "active_value = true",
                "force_introspection = yes",
            ]
        if ca_file is not None:
            lines.append(f"tls_ca_cert_file = {ca_file}")
        lines += ["timeout_msecs = 5000", "debug = no"]
        return "\n".join(lines) + "\n"

    def _base_for(self, scheme: str) -> str:
        return self.tls_base_url if scheme == "https" else self.base_url

    def _issuer(self, scheme: str, tenant: str | None) -> str:
        base = self._base_for(scheme)
        return f"{base}/{tenant}/v2.0" if tenant else base

    def _discovery(self, scheme: str, tenant: str | None) -> dict[str, Any]:
        base = self._base_for(scheme)
        prefix = f"{base}/{tenant}/oauth2/v2.0" if tenant else base
        return {
            "issuer": self._issuer(scheme, tenant),
            "authorization_endpoint": f"{prefix}/{'authorize' if tenant else 'auth'}",
            "token_endpoint": f"{prefix}/token",
            "device_authorization_endpoint": f"{prefix}/{'devicecode' if tenant else 'device/code'}",
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/keys",
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["none"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "tenant_region_scope": "EU",
        }

    # -- test controls -------------------------------------------------------

    def issue_access_token(
        self,
        email: str,
        client_id: str = DEFAULT_CLIENT_ID,
        scope: str = DEFAULT_SCOPE,
        ttl: float | None = None,
    ) -> str:
        """Mint an access token for ``email`` directly (no grant); ``ttl`` defaults to access_ttl."""
        with self._lock:
            return self._new_token("access", email.lower(), client_id, scope, None, ttl).token

    def issue_refresh_token(
        self,
        email: str,
        client_id: str = DEFAULT_CLIENT_ID,
        scope: str = DEFAULT_SCOPE,
        ttl: float | None = None,
    ) -> str:
        """Mint a refresh token, e.g. to seed google-auth ``Credentials``."""
        with self._lock:
            return self._new_token("refresh", email.lower(), client_id, scope, None, ttl).token

    def revoke(self, token: str) -> None:
        """Revoke one access or refresh token (unknown tokens are ignored)."""
        with self._lock:
            record = self._tokens.get(token)
            if record is not None:
                record.revoked = True

    def revoke_all_for(self, email: str) -> int:
        """Revoke every token of ``email`` (password reset / admin sign-out); returns the count."""
        email = email.lower()
        with self._lock:
            hits = [r for r in self._tokens.values() if r.email == email and not r.revoked]
            for record in hits:
                record.revoked = True
            return len(hits)

    def expire(self, token: str) -> None:
        """Make a token (access, refresh, device code or auth code) expired right now."""
        past = time.time() - 1
        with self._lock:
            if token in self._tokens:
                self._tokens[token].expires_at = past
            elif token in self._device_codes:
                self._device_codes[token].expires_at = past
            elif token in self._auth_codes:
                self._auth_codes[token].expires_at = past
            else:
                raise KeyError(f"unknown token: {token[:12]}…")

    def valid_access(self, token: str) -> str | None:
        """The user an access token is valid for right now, or None."""
        with self._lock:
            record = self._tokens.get(token)
            if record is None or record.kind != "access" or not record.usable():
                return None
            return record.email

    def token_record(self, token: str) -> TokenRecord | None:
        """The bookkeeping for ``token`` (a copy is not made: do not mutate)."""
        with self._lock:
            return self._tokens.get(token)

    def tokens_for(self, email: str, kind: Literal["access", "refresh"] | None = None) -> list[str]:
        """All tokens ever issued for ``email`` (oldest first), optionally of one kind."""
        email = email.lower()
        with self._lock:
            return [
                r.token
                for r in self._tokens.values()
                if r.email == email and (kind is None or r.kind == kind)
            ]

    def approve_device_code(self, user_code: str, email: str) -> None:
        """Approve a pending device flow as ``email`` (what the user does in the browser)."""
        with self._changed:
            self._find_user_code(user_code).approved_email = email.lower()

    def deny_device_code(self, user_code: str) -> None:
        """Decline a pending device flow; the next poll gets ``access_denied``."""
        with self._changed:
            self._find_user_code(user_code).denied = True

    def wait_for_device_code(self, timeout: float = 10.0) -> str:
        """Block until a device flow is pending (not approved/denied); return its user code.

        For tests where deskctl runs the device flow itself and only prints
        the code: approve it from the test thread with this plus
        :meth:`approve_device_code`.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for dc in self._device_codes.values():
                    pending = not (dc.approved_email or dc.denied or dc.redeemed)
                    if pending and dc.expires_at > time.time():
                        return dc.user_code
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no device flow started at the fake IdP")
                self._changed.wait(remaining)

    def find_requests(
        self,
        path: str | None = None,
        *,
        method: str | None = None,
        grant_type: str | None = None,
        predicate: Callable[[LoggedRequest], bool] | None = None,
    ) -> list[LoggedRequest]:
        """Logged requests matching all given filters.

        ``path`` matches the end of the path, so ``"/token"`` finds both the
        root and the tenant token endpoints.
        """
        with self._lock:
            entries = list(self.requests)
        return [
            e
            for e in entries
            if (path is None or e.path.endswith(path))
            and (method is None or e.method == method.upper())
            and (grant_type is None or e.form.get("grant_type") == grant_type)
            and (predicate is None or predicate(e))
        ]

    def clear_log(self) -> None:
        """Forget logged requests and reset the counters."""
        with self._lock:
            self.requests.clear()
            self.counters.clear()

    @property
    def refresh_grants(self) -> int:
        """Successful ``grant_type=refresh_token`` exchanges so far."""
        return self.counters["grant:refresh_token:ok"]

    @property
    def device_polls(self) -> int:
        """Device-code token polls so far (pending ones included)."""
        return self.counters["grant:device_code"]

    # -- internals: bookkeeping ------------------------------------------------

    def _log_request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def _find_user_code(self, user_code: str) -> DeviceCode:
        wanted = user_code.replace("-", "").upper()
        for dc in self._device_codes.values():
            if dc.user_code.replace("-", "") == wanted:
                return dc
        raise KeyError(f"unknown user code {user_code!r}")

    def _new_token(
        self,
        kind: Literal["access", "refresh"],
        email: str | None,
        client_id: str,
        scope: str,
        tenant: str | None,
        ttl: float | None = None,
    ) -> TokenRecord:
        """Create and store a token; caller holds the lock."""
        now = time.time()
        if ttl is None:
            ttl = self.access_ttl if kind == "access" else self.refresh_ttl
        prefix = "at" if kind == "access" else "rt"
        record = TokenRecord(
            token=f"{prefix}.{secrets.token_urlsafe(24)}",
            kind=kind,
            email=email,
            client_id=client_id,
            scope=scope,
            tenant=tenant,
            issued_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        self._tokens[record.token] = record
        return record

    def _id_token(
        self, email: str, client_id: str, scheme: str, tenant: str | None, nonce: str | None
    ) -> str:
        now = int(time.time())
        tid = _tenant_id(tenant or "default-tenant")
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self._issuer(scheme, tenant),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "sub": _uuid_for("sub", email),
            "oid": _uuid_for("oid", email),
            "tid": tid,
            "preferred_username": email,
            "email": email,
            "email_verified": True,
            "name": email.split("@")[0].title(),
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        return f"{_b64url_json({'alg': 'none', 'typ': 'JWT'})}.{_b64url_json(claims)}."

    def _token_response(
        self,
        email: str | None,
        client_id: str,
        scope: str,
        scheme: str,
        tenant: str | None,
        *,
        with_refresh: bool = True,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """Issue an access (and refresh) token and build the JSON reply; caller holds the lock."""
        access = self._new_token("access", email, client_id, scope, tenant)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access.token,
            "expires_in": max(0, math.ceil(self.access_ttl)),
            "scope": scope,
        }
        if email is None:
            return body
        if with_refresh:
            body["refresh_token"] = self._new_token(
                "refresh", email, client_id, scope, tenant
            ).token
        if "openid" in scope.split():
            body["id_token"] = self._id_token(email, client_id, scheme, tenant, nonce)
        tid = _tenant_id(tenant or "default-tenant")
        body["client_info"] = _b64url_json({"uid": _uuid_for("oid", email), "utid": tid})
        return body

    # -- internals: HTTP -------------------------------------------------------

    def _dispatch(self, req: LoggedRequest) -> _Response:
        if req.path.endswith(_WELL_KNOWN):
            prefix = req.path[: -len(_WELL_KNOWN)].strip("/")
            prefix = prefix.removesuffix("v2.0").strip("/")
            if "/" in prefix:
                return _json(404, {"error": "not_found"})
            return _json(200, self._discovery(req.scheme, prefix or None))
        match = _ENDPOINT.match(req.path)
        if match is None:
            return _json(404, {"error": "not_found", "error_description": req.path})
        tenant, ep = match.group("tenant"), match.group("ep")
        if ep in ("authorize", "auth"):
            return self._authorize(req, tenant)
        if ep == "device":
            return _Response(200, b"<html><body>Enter the code.</body></html>", "text/html")
        if ep == "keys":
            return _json(200, {"keys": []})
        if ep == "tokeninfo":
            return self._tokeninfo(req)
        if ep == "userinfo":
            return self._userinfo(req)
        if req.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "use POST"})
        if ep in ("devicecode", "device/code"):
            return self._device_authorization(req, tenant)
        if ep == "introspect":
            return self._introspect(req)
        if ep == "revoke":
            self.revoke(req.params.get("token", ""))
            return _json(200, {})
        return self._token(req, tenant)

    def _client_credentials(self, req: LoggedRequest) -> tuple[str, str | None]:
        """(client_id, secret) from HTTP Basic (RFC 6749 §2.3.1) or the form."""
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            decoded = base64.b64decode(auth[6:].strip()).decode("utf-8", "replace")
            cid, _, secret = decoded.partition(":")
            return urllib.parse.unquote(cid), urllib.parse.unquote(secret)
        return req.form.get("client_id", ""), req.form.get("client_secret")

    def _check_client(self, req: LoggedRequest) -> str:
        """Authenticate the client; caller holds the lock.  Returns the client_id."""
        client_id, secret = self._client_credentials(req)
        if not client_id:
            raise OAuthError("invalid_request", "client_id is required")
        expected = self._clients.get(client_id)
        if expected is not None and secret != expected:
            raise OAuthError(
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret ID, for a secret "
                f"added to app '{client_id}'.",
                401,
            )
        return client_id

    def _authorize(self, req: LoggedRequest, tenant: str | None) -> _Response:
        q = req.query
        redirect_uri = q.get("redirect_uri", "")
        if not _is_loopback_redirect(redirect_uri):
            raise OAuthError("redirect_uri_mismatch", f"not a loopback URI: {redirect_uri!r}")
        if q.get("response_type") != "code" or not q.get("client_id"):
            raise OAuthError("unsupported_response_type", "only response_type=code")
        reply: dict[str, str] = {}
        email = self.auto_approve_as
        if email is None:
            reply["error"] = "access_denied"
        else:
            code = AuthCode(
                code=f"ac.{secrets.token_urlsafe(24)}",
                client_id=q["client_id"],
                redirect_uri=redirect_uri,
                scope=q.get("scope", ""),
                email=email.lower(),
                tenant=tenant,
                expires_at=time.time() + self.auth_code_ttl,
                code_challenge=q.get("code_challenge"),
                code_challenge_method=q.get("code_challenge_method", "plain"),
                nonce=q.get("nonce"),
            )
            with self._lock:
                self._auth_codes[code.code] = code
                self.counters["authorize:approved"] += 1
            reply["code"] = code.code
        if "state" in q:
            reply["state"] = q["state"]
        sep = "&" if "?" in redirect_uri else "?"
        location = redirect_uri + sep + urllib.parse.urlencode(reply)
        return _Response(302, b"", "text/plain", {"Location": location})

    def _device_authorization(self, req: LoggedRequest, tenant: str | None) -> _Response:
        with self._changed:
            client_id = self._check_client(req)
            letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
            dc = DeviceCode(
                device_code=f"dc.{secrets.token_urlsafe(24)}",
                user_code=f"{letters[:4]}-{letters[4:]}",
                client_id=client_id,
                scope=req.form.get("scope", ""),
                tenant=tenant,
                expires_at=time.time() + self.device_code_ttl,
                approved_email=(self.auto_approve_device_as or None),
            )
            if dc.approved_email:
                dc.approved_email = dc.approved_email.lower()
            self._device_codes[dc.device_code] = dc
            self.counters["device_authorization"] += 1
            self._changed.notify_all()
        verify = f"{self._base_for(req.scheme)}/device"
        return _json(
            200,
            {
                "device_code": dc.device_code,
                "user_code": dc.user_code,
                "verification_uri": verify,
                "verification_uri_complete": f"{verify}?user_code={dc.user_code}",
                "expires_in": math.ceil(self.device_code_ttl),
                "interval": self.device_interval,
                "message": f"To sign in, open {verify} and enter the code {dc.user_code}.",
            },
        )

    def _token(self, req: LoggedRequest, tenant: str | None) -> _Response:
        grant = req.form.get("grant_type", "")
        short = grant.rsplit(":", 1)[-1]  # urn:ietf:params:oauth:grant-type:device_code
        handlers = {
            "authorization_code": self._grant_authorization_code,
            "refresh_token": self._grant_refresh_token,
            "device_code": self._grant_device_code,
            "client_credentials": self._grant_client_credentials,
        }
        handler = handlers.get(short)
        with self._changed:
            self.counters[f"grant:{short}"] += 1
            if handler is None:
                raise OAuthError("unsupported_grant_type", grant)
            try:
                body = handler(req, tenant)
            except OAuthError as exc:
                self.counters[f"grant:{short}:{exc.error}"] += 1
                raise
            self.counters[f"grant:{short}:ok"] += 1
            self._changed.notify_all()
        return _json(200, body)

    def _grant_authorization_code(self, req: LoggedRequest, tenant: str | None) -> dict[str, Any]:
        client_id = self._check_client(req)
        code = self._auth_codes.get(req.form.get("code", ""))
        if code is None or code.used or time.time() >= code.expires_at:
            raise OAuthError("invalid_grant", "unknown, used or expired authorization code")
        code.used = True  # one attempt only, as RFC 6749 §4.1.2 demands
        if code.client_id != client_id:
            raise OAuthError("invalid_grant", "code was issued to another client")
        if req.form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        if self.check_pkce and code.code_challenge:
            verifier = req.form.get("code_verifier", "")
            if code.code_challenge_method == "S256":
                derived = _b64url(hashlib.sha256(verifier.encode()).digest())
            else:
                derived = verifier
            if not verifier or derived != code.code_challenge:
                raise OAuthError("invalid_grant", "PKCE code_verifier does not match")
        return self._token_response(
            code.email, client_id, code.scope, req.scheme, tenant or code.tenant, nonce=code.nonce
        )

    def _grant_refresh_token(self, req: LoggedRequest, tenant: str | None) -> dict[str, Any]:
        client_id = self._check_client(req)
        old = self._tokens.get(req.form.get("refresh_token", ""))
        if old is None or old.kind != "refresh" or not old.usable():
            raise OAuthError("invalid_grant", "refresh token is unknown, revoked or expired")
        if old.client_id != client_id:
            raise OAuthError("invalid_grant", "refresh token was issued to another client")
        assert old.email is not None
        scope = req.form.get("scope") or old.scope
        body = self._token_response(
            old.email,
            client_id,
            scope,
            req.scheme,
            tenant or old.tenant,
            with_refresh=self.rotate_refresh_tokens,
        )
        if self.rotate_refresh_tokens:
            old.revoked = True
            old.replaced_by = body["refresh_token"]
        return body

    def _grant_device_code(self, req: LoggedRequest, tenant: str | None) -> dict[str, Any]:
        client_id = self._check_client(req)
        dc = self._device_codes.get(req.form.get("device_code", ""))
        if dc is None or dc.redeemed or dc.client_id != client_id:
            raise OAuthError("invalid_grant", "unknown or already redeemed device code")
        dc.polls += 1
        if time.time() >= dc.expires_at:
            raise OAuthError("expired_token", "the device code expired")
        if dc.denied:
            raise OAuthError("access_denied", "the user declined")
        if dc.approved_email is None:
            raise OAuthError("authorization_pending", "waiting for the user")
        dc.redeemed = True
        return self._token_response(
            dc.approved_email, client_id, dc.scope, req.scheme, tenant or dc.tenant
        )

    def _grant_client_credentials(self, req: LoggedRequest, tenant: str | None) -> dict[str, Any]:
        client_id = self._check_client(req)
        if self._clients.get(client_id) is None:
            raise OAuthError(
                "unauthorized_client", "client_credentials needs a confidential client"
            )
        scope = req.form.get("scope", "")
        # Entra: the app asks for the permissions granted to it, as "<resource>/.default".
        resources = [s for s in scope.split() if s not in ("openid", "profile", "offline_access")]
        if len(resources) != 1 or not resources[0].endswith("/.default"):
            raise OAuthError(
                "invalid_scope",
                f"AADSTS1002012: The provided value for scope {scope} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        return self._token_response(None, client_id, resources[0], req.scheme, tenant)

    def _bearer_or_param(self, req: LoggedRequest, name: str) -> str:
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return req.params.get(name, "")

    def _tokeninfo(self, req: LoggedRequest) -> _Response:
        """Google's ``oauth2/v3/tokeninfo``: 200 with ``email`` or 400 ``invalid_token``."""
        token = self._bearer_or_param(req, "access_token")
        with self._lock:
            self.counters["tokeninfo"] += 1
            record = self._tokens.get(token)
            if record is None or record.kind != "access" or not record.usable():
                self.counters["tokeninfo:invalid"] += 1
                raise OAuthError("invalid_token", "Invalid Value")
            remaining = math.ceil((record.expires_at or time.time() + 3600) - time.time())
            info = {
                "aud": record.client_id,
                "azp": record.client_id,
                "scope": record.scope,
                "exp": str(int(record.expires_at or time.time() + 3600)),
                "expires_in": str(max(1, remaining)),
            }
            if record.email is not None:
                info |= {
                    "sub": _uuid_for("sub", record.email),
                    "email": record.email,
                    "email_verified": "true",
                }
        return _json(200, info)

    def _introspect(self, req: LoggedRequest) -> _Response:
        """RFC 7662: always 200; ``{"active": false}`` for anything not usable."""
        token = req.params.get("token") or self._bearer_or_param(req, "token")
        with self._lock:
            self.counters["introspect"] += 1
            record = self._tokens.get(token)
            if record is None or record.kind != "access" or not record.usable():
                return _json(200, {"active": False})
            body: dict[str, Any] = {
                "active": True,
                "client_id": record.client_id,
                "scope": record.scope,
                "token_type": "Bearer",
                "iat": int(record.issued_at),
            }
            if record.expires_at is not None:
                body["exp"] = int(record.expires_at)
            if record.email is not None:
                body |= {"username": record.email, "email": record.email, "sub": record.email}
        return _json(200, body)

    def _userinfo(self, req: LoggedRequest) -> _Response:
        email = self.valid_access(self._bearer_or_param(req, "access_token"))
        if email is None:
            return _json(401, {"error": "invalid_token"}, **{"WWW-Authenticate": "Bearer"})
        return _json(200, {"sub": _uuid_for("sub", email), "email": email})


class HeadlessBrowser(webbrowser.BaseBrowser):
    """A ``webbrowser`` stand-in: "opening" a URL GETs it (following redirects) in a thread.

    InstalledAppFlow opens the browser *before* it serves its loopback
    redirect, so the visit must not block ``open()``.  TLS is verified
    against the test CA only, and proxies from the environment are ignored.
    Register it with :func:`webbrowser.register` (the ``headless_browser``
    fixture does that); :attr:`visits` records what happened.
    """

    name = "deskctl-headless"

    def __init__(self, certs: CertBundle) -> None:
        super().__init__(self.name)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=certs.client_context()),
        )
        self.visits: list[BrowserVisit] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        """Start the visit and return at once, like a real browser."""
        visit = BrowserVisit(url)
        with self._lock:
            self.visits.append(visit)
        thread = threading.Thread(target=self._visit, args=(visit,), daemon=True)
        self._threads.append(thread)
        thread.start()
        return True

    def open_new(self, url: str) -> bool:
        return self.open(url, 1)

    def open_new_tab(self, url: str) -> bool:
        return self.open(url, 2)

    def _visit(self, visit: BrowserVisit) -> None:
        try:
            with self._opener.open(visit.url, timeout=15) as resp:
                visit.final_url = resp.geturl()
                visit.status = resp.status
                visit.body = resp.read()
        except urllib.error.HTTPError as exc:
            visit.final_url, visit.status, visit.error = exc.geturl(), exc.code, repr(exc)
        except OSError as exc:
            visit.error = repr(exc)
        finally:
            visit.done.set()

    def wait(self, timeout: float = 15.0) -> list[BrowserVisit]:
        """Wait for every visit so far to finish; returns :attr:`visits`."""
        for thread in list(self._threads):
            thread.join(timeout)
        return self.visits


@dataclass
class BrowserVisit:
    """What the headless browser saw for one ``open()``."""

    url: str
    final_url: str | None = None
    status: int | None = None
    body: bytes = b""
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
