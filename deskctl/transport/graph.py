"""Microsoft Graph for an Office 365 mailbox: list, download as MIME, flag, move, send.

Graph needs neither IMAP nor SMTP AUTH switched on in the tenant. deskctl uses
exactly these calls, relative to ``/me`` (signed in as the mailbox's user) or
``/users/{address}`` (signed in as the app, for a shared mailbox):

- ``GET mailFolders/{folder}/messages/delta``: the folder's messages, page by
  page (``@odata.nextLink``), ending in an ``@odata.deltaLink`` that lists only
  what changed since: the channel's cursor. A delta link the server no longer
  knows (410 Gone) means a full listing again; dedupe skips what is stored.
- ``GET messages/{id}/$value``: the message as MIME, streamed within the size
  limit, so the same parser, dedupe and quarantine serve Graph as IMAP.
- ``PATCH messages/{id}`` (``isRead``) and ``POST messages/{id}/move``: the
  after-fetch action, only ever on mail already committed.
- ``POST sendMail`` with the base64 MIME we composed: our Message-ID,
  In-Reply-To and References go out as written, and Exchange files the reply
  in Sent Items itself.

Throttling (429, 503, 504) is answered by waiting as ``Retry-After`` says,
a bounded number of times; then the run stops with "unreachable" (exit 6) and
the next run goes on. TLS is verified against the channel's CA file when it
has one. Tokens are never logged.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3

from deskctl.errors import ConfigError, Unreachable
from deskctl.transport.smtp import SendError
from deskctl.transport.spool import Oversize, read_bounded

log = logging.getLogger(__name__)

TIMEOUT = 60.0
#: Throttled or briefly unavailable: try this many times in all, waiting as told.
ATTEMPTS = 5
#: Never wait longer than this for one Retry-After (seconds).
LONGEST_WAIT = 60.0
#: Messages per delta page (``Prefer: odata.maxpagesize``); Graph may send fewer.
PAGE_SIZE = 200
#: Statuses Graph documents as "try again after Retry-After".
THROTTLED = (429, 503, 504)
#: sendMail takes at most 4 MB of request body (the base64 of our MIME): larger
#: is refused (413) or cut off mid-upload, which would look like an outage and be
#: uploaded again every run.
SENDMAIL_LIMIT = 4 * 1024 * 1024
#: Folders every Exchange mailbox has, addressed by these names in every language.
WELL_KNOWN = frozenset(
    (
        "archive", "clutter", "conflicts", "conversationhistory", "deleteditems", "drafts",
        "inbox", "junkemail", "localfailures", "msgfolderroot", "outbox",
        "recoverableitemsdeletions", "scheduled", "searchfolders", "sentitems",
        "serverfailures", "syncissues",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GraphSettings:
    base_url: str  # https://graph.microsoft.com/v1.0
    address: str
    token: str
    app_only: bool = False  # /users/{address} instead of /me
    ca_file: str | None = None
    relogin_hint: str = ""
    #: A new token when Graph refuses this one (401) before it expired: tried once.
    renew: Callable[[], str] | None = field(default=None, compare=False, repr=False)


class SyncStateGone(Exception):
    """410: the delta link expired or the server dropped its state; list everything again."""


class ItemGone(Exception):
    """404 ErrorItemNotFound: the message was deleted or moved away in the meantime."""


class FolderMissing(ConfigError):
    """A folder named on the channel is not in the mailbox."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}".strip(": ")


def _refusal(resp: requests.Response) -> Refusal:
    """Graph's error body ``{"error": {"code", "message"}}`` in one printable line."""
    try:
        body = resp.json()
    except ValueError:  # a gateway's HTML page: its status line says enough
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or resp.reason or "").splitlines()
    return Refusal(resp.status_code, str(error.get("code") or ""), message[0] if message else "")


def _retry_after(resp: requests.Response, attempt: int) -> float:
    """Seconds to wait: Retry-After (seconds or an HTTP date), else 1, 2, 4... bounded."""
    value = resp.headers.get("Retry-After", "").strip()
    wait: float | None = None
    if value.isdigit():
        wait = float(value)
    elif value:
        try:
            wait = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            wait = None  # not a date either: back off on our own
    if wait is None:
        wait = float(2**attempt)
    return min(max(wait, 0.0), LONGEST_WAIT)


class GraphMailbox:
    """One mailbox over Graph, for one run: a requests session with the run's token."""

    def __init__(self, settings: GraphSettings, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        who = f"users/{quote(settings.address, safe='@')}" if settings.app_only else "me"
        self.root = f"{settings.base_url.rstrip('/')}/{who}"
        self.host = urlsplit(settings.base_url).netloc
        self.verify: str | bool = settings.ca_file or True
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {settings.token}"
        self._sleep = sleep
        self._renew = settings.renew

    def __enter__(self) -> GraphMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    # -- HTTP ------------------------------------------------------------------

    def request(
        self, method: str, url: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> requests.Response:
        """One call, retried while throttled; a refusal raises what the caller must know.

        ``verify`` is passed on every call: requests would otherwise let
        REQUESTS_CA_BUNDLE override the session's CA file. The bearer token
        goes only to the configured Graph URL: a link anywhere else is refused
        before it is requested.
        """
        if not self.owns(url):
            raise GraphRefused(
                Refusal(0, "", f"a link outside {self.settings.base_url} was not followed: {url}")
            )
        for attempt in range(ATTEMPTS):
            try:
                resp = self.session.request(
                    method, url, timeout=TIMEOUT, verify=self.verify, **kwargs
                )
            except requests.exceptions.SSLError as exc:
                raise Unreachable(
                    f"TLS verification failed for Microsoft Graph at {self.host}: {exc}; "
                    "for a private CA give --ca-file"
                ) from None
            except requests.exceptions.Timeout:
                raise Unreachable(
                    f"Microsoft Graph at {self.host} did not answer in time"
                ) from None
            except requests.exceptions.ConnectionError as exc:
                raise Unreachable(
                    f"cannot reach Microsoft Graph at {self.host}: {_why(exc)}"
                ) from None
            if resp.status_code in expect:
                return resp
            if resp.status_code == 401 and self._renew is not None:
                log.info("Graph refused the access token; taking a new one")
                resp.close()
                token, self._renew = self._renew(), None  # once a run
                self.session.headers["Authorization"] = f"Bearer {token}"
                continue
            if resp.status_code in THROTTLED and attempt + 1 < ATTEMPTS:
                wait = _retry_after(resp, attempt)
                log.info("Graph answered %s; waiting %.0f s as told", resp.status_code, wait)
                resp.close()
                self._sleep(wait)
                continue
            raise self._failure(resp)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def owns(self, url: str) -> bool:
        """Whether ``url`` is under the configured Graph URL (scheme, host, port and path).

        ``graph.microsoft.com:443`` is ``graph.microsoft.com``: Graph writes its
        links as it likes, and only where they lead matters.
        """
        base, there = urlsplit(self.settings.base_url), urlsplit(url)
        try:
            ports = [
                (u.port or {"https": 443, "http": 80}.get(u.scheme.lower())) for u in (base, there)
            ]
        except ValueError:  # a port that is not a number
            return False
        return (
            there.scheme.lower() == base.scheme.lower()
            and there.hostname == base.hostname
            and ports[0] == ports[1]
            and there.path.startswith(base.path.rstrip("/") + "/")
            and ".." not in there.path.split("/")
            and there.username is None
        )

    def json(self, resp: requests.Response) -> dict[str, Any]:
        """The answer's JSON object; anything else (a proxy's HTML page) is an outage."""
        try:
            value = resp.json()
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise Unreachable(
                f"Microsoft Graph at {self.host} answered {resp.status_code} with something "
                f"that is not Graph's JSON ({resp.headers.get('Content-Type', 'no type')})"
            )
        return value

    def _failure(self, resp: requests.Response) -> Exception:
        refusal = _refusal(resp)
        resp.close()
        if resp.status_code == 401:
            hint = f": {self.settings.relogin_hint}" if self.settings.relogin_hint else ""
            return ConfigError(f"Microsoft Graph refused the sign-in ({refusal}){hint}")
        if resp.status_code == 403:
            return ConfigError(
                f"Microsoft Graph denied access to {self.settings.address} ({refusal}): the app "
                "registration needs Mail.ReadWrite and Mail.Send (for a shared mailbox as "
                "application permissions, granted by an admin)"
            )
        if resp.status_code == 404:
            return ItemGone(str(refusal))
        if resp.status_code == 410:
            return SyncStateGone(str(refusal))
        if resp.status_code in THROTTLED or resp.status_code >= 500:
            return Unreachable(f"Microsoft Graph at {self.host} is not available now ({refusal})")
        return GraphRefused(refusal)

    # -- folders ---------------------------------------------------------------

    def folder(self, name: str) -> dict[str, Any]:
        """The folder ``name``: a well-known name (inbox, archive, ...) or a display-name path.

        ``INBOX`` (the IMAP default) is the well-known inbox; ``Support/Done``
        walks child folders by display name, as Outlook shows them.
        """
        if name.lower() in WELL_KNOWN:
            try:
                return self.json(self.request("GET", f"{self.root}/mailFolders/{name.lower()}"))
            except ItemGone:
                raise FolderMissing(f"the mailbox has no {name} folder") from None
        parent = f"{self.root}/mailFolders"
        found: dict[str, Any] = {}
        for part in name.strip("/").split("/"):
            escaped = part.replace("'", "''")
            resp = self.request("GET", parent, params={"$filter": f"displayName eq '{escaped}'"})
            matches = self.json(resp).get("value") or []
            if not matches:
                raise FolderMissing(f"there is no folder {name!r} in {self.settings.address}")
            found = dict(matches[0])
            parent = f"{self.root}/mailFolders/{quote(str(found['id']), safe='')}/childFolders"
        return found

    def folder_id(self, name: str) -> str:
        return str(self.folder(name)["id"])

    # -- reading ---------------------------------------------------------------

    def delta(self, folder_id: str, link: str | None) -> tuple[list[str], str]:
        """The ids of messages new or changed since ``link`` (all, without), and the next link.

        Pages are followed to the end; removals are left out (a stored message
        stays stored). Raises :class:`SyncStateGone` when the server wants a
        full listing again. A saved link to another Graph URL (the channel's
        ``--graph-url`` changed since) is dropped for a full listing; one the
        server sends to another host is refused, the token is never sent there.
        """
        if link is not None and not self.owns(link):
            log.warning(
                "the saved delta link is not under %s: listing the folder again",
                self.settings.base_url,
            )
            link = None
        url = link or f"{self.root}/mailFolders/{quote(folder_id, safe='')}/messages/delta"
        params = None if link else {"$select": "id"}
        ids: dict[str, None] = {}
        followed: set[str] = set()
        while True:
            resp = self.request(
                "GET", url, params=params, headers={"Prefer": f"odata.maxpagesize={PAGE_SIZE}"}
            )
            page = self.json(resp)
            items = page.get("value") or []
            if not isinstance(items, list):
                raise GraphRefused(Refusal(resp.status_code, "", "a delta page without a list"))
            for item in items:
                if isinstance(item, dict) and "@removed" not in item and item.get("id"):
                    ids[str(item["id"])] = None
            if "@odata.nextLink" in page:
                url, params = str(page["@odata.nextLink"]), None
                if url in followed:  # a server paging in a circle would hold the run for ever
                    raise GraphRefused(
                        Refusal(
                            resp.status_code, "", "the delta pages lead back to a page already read"
                        )
                    )
                followed.add(url)
                continue
            if "@odata.deltaLink" not in page:
                raise GraphRefused(Refusal(resp.status_code, "", "a delta page without a link"))
            return list(ids), str(page["@odata.deltaLink"])

    def download(self, message_id: str, max_size: int, spool: Path | None) -> bytes | Oversize:
        """The message's MIME, read within ``max_size``; beyond it, spooled (or only measured)."""
        resp = self.request("GET", f"{self._message(message_id)}/$value", stream=True)
        with resp:
            resp.raw.decode_content = True  # a gzip'd answer is read as the MIME it carries
            try:
                return read_bounded(resp.raw, max_size, spool)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                # Cut off mid-message: nothing of it is stored, the next run reads it again.
                raise Unreachable(
                    f"Microsoft Graph at {self.host} broke off a message download: {exc}"
                ) from None

    def mark_read(self, message_id: str) -> None:
        self.request("PATCH", self._message(message_id), json={"isRead": True})

    def move(self, message_id: str, destination_id: str) -> None:
        self.request(
            "POST",
            f"{self._message(message_id)}/move",
            json={"destinationId": destination_id},
            expect=(200, 201),
        )

    def _message(self, message_id: str) -> str:
        return f"{self.root}/messages/{quote(message_id, safe='')}"


class GraphRefused(Exception):
    """Any other refusal (400 and the like), in Graph's own words."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


def _why(exc: requests.exceptions.ConnectionError) -> str:
    """The innermost reason ("Connection refused"), not urllib3's pool description."""
    inner: BaseException | None = exc
    while inner is not None and inner.__context__ is not None:
        inner = inner.__context__
    text = str(getattr(inner, "strerror", None) or inner or exc)
    return text.split("] ")[-1] if "] " in text else text


class GraphSender:
    """send-outbox's sender for an o365 channel over Graph: one ``sendMail`` per reply.

    Graph reads the recipients from the MIME's To and Cc (``recipients`` is
    what the outbox checked against the filter, the same addresses). 202 means
    accepted. A refusal of the message (400) fails the item for good; the
    service busy past our retries defers it; a refused token makes the channel
    unusable, so every item waits (as an SMTP login failure does).
    """

    def __init__(self, settings: GraphSettings) -> None:
        self.mailbox = GraphMailbox(settings)

    def __enter__(self) -> GraphSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.mailbox.session.close()

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> list[str]:
        body = base64.b64encode(raw)
        if len(body) > SENDMAIL_LIMIT:
            raise SendError(
                f"the reply is {len(body) / 2**20:.1f} MiB as sendMail's base64, over Microsoft "
                f"Graph's 4 MiB limit: send the attachments as links, or reply through SMTP "
                f"(deskctl channel map CHANNEL --reply-via OUTGOING)",
                permanent=True,
            )
        try:
            self.mailbox.request(
                "POST",
                f"{self.mailbox.root}/sendMail",
                data=body,
                headers={"Content-Type": "text/plain"},
                expect=(202,),
            )
        except (GraphRefused, ItemGone, SyncStateGone) as exc:
            raise SendError(
                f"Microsoft Graph refused the message ({exc})", permanent=True
            ) from None
        except Unreachable as exc:
            raise SendError(exc.message, permanent=False) from None
        return []
