"""Incoming and outgoing channels: where mail comes from and how replies leave.

A channel stores where its secret comes from, never the secret. Creating a
channel puts its own address on the outgoing filter, so a support inbox can
never be mailed by its own help desk (promise 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from deskctl.auth import secrets
from deskctl.auth.oauth import CLIENT_CREDENTIALS, GRAPH_APP_SCOPES, GRAPH_SCOPES
from deskctl.errors import Conflict, NotFound, UsageError
from deskctl.services.filters import add_filter, remove_source
from deskctl.services.queues import default_queue, ensure_queue
from deskctl.store.models import (
    IncomingChannel,
    Message,
    OutboxItem,
    OutgoingChannel,
    QuarantinedMessage,
    Ticket,
)

INCOMING_KINDS = ("imap", "gmail", "o365", "pop3", "maildir", "pipe")
OUTGOING_KINDS = ("smtp", "gmail", "o365", "sendmail")
SECURITY = ("ssl", "starttls", "none")
#: Direct connections: (host, port, security) of the provider's IMAP and SMTP.
PRESETS = {
    "gmail": (("imap.gmail.com", 993, "ssl"), ("smtp.gmail.com", 465, "ssl")),
    "o365": (("outlook.office365.com", 993, "ssl"), ("smtp.office365.com", 587, "starttls")),
}
IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
#: How an o365 channel reaches its mailbox: IMAP and SMTP AUTH, or Microsoft Graph.
TRANSPORTS = ("imap", "graph")
GRAPH_URL = "https://graph.microsoft.com/v1.0"


@dataclass(frozen=True, slots=True)
class OAuthOptions:
    """How a direct connection signs in; tokens live in ``token_file``, never in the database."""

    token_file: str
    client_id: str | None = None
    tenant: str | None = None
    authority: str | None = None
    client_secrets: str | None = None
    #: Graph only: sign in as the app (client credentials) to a shared mailbox.
    app_only: bool = False
    graph_url: str | None = None

    def settings(self, kind: str, transport: str = "imap") -> dict[str, Any]:
        if kind == "o365":
            if not self.client_id:
                raise UsageError("an o365 channel needs --client-id (your Entra app registration)")
            if self.app_only and not self.tenant and not self.authority:
                raise UsageError(
                    "signing in as the app needs the tenant: give --tenant (id or domain)"
                )
            authority = self.authority or f"{MICROSOFT_AUTHORITY}/{self.tenant or 'common'}"
            settings: dict[str, Any] = {
                "auth": "oauth",
                "provider": "microsoft",
                "client_id": self.client_id,
                "authority": authority.rstrip("/"),
                "token_file": self.token_file,
            }
            if transport == "graph":
                settings["transport"] = "graph"
                settings["graph_url"] = (self.graph_url or GRAPH_URL).rstrip("/")
                settings["scopes"] = list(GRAPH_APP_SCOPES if self.app_only else GRAPH_SCOPES)
                if self.app_only:
                    settings["flow"] = CLIENT_CREDENTIALS
            return settings
        if not self.client_secrets:
            raise UsageError("--auth oauth for Gmail needs --client-secrets FILE")
        return {
            "auth": "oauth",
            "provider": "google",
            "client_secrets": self.client_secrets,
            "token_file": self.token_file,
        }


@dataclass(frozen=True, slots=True)
class Secret:
    source: str | None = None
    ref: str | None = None

    @classmethod
    def from_options(cls, cmd: str | None, env: str | None, file: str | None) -> Secret:
        given = [(s, r) for s, r in (("cmd", cmd), ("env", env), ("file", file)) if r]
        if len(given) > 1:
            raise UsageError("give only one of --password-cmd, --password-env, --password-file")
        return cls(*given[0]) if given else cls()


@dataclass(frozen=True, slots=True)
class IncomingOptions:
    kind: str
    address: str
    host: str | None = None
    port: int | None = None
    security: str | None = None
    allow_plaintext: bool = False
    username: str | None = None
    secret: Secret = Secret()
    folder: str = "INBOX"
    after_fetch: str = "keep"
    create_folder: bool = False
    queue: str | None = None
    reply_via: str | None = None
    path: str | None = None
    ca_file: str | None = None
    oauth: OAuthOptions | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str | None = None
    transport: str = "imap"
    sent_folder: str | None = None


def normalise_address(address: str) -> str:
    _, addr = parseaddr(address)
    if "@" not in addr:
        raise UsageError(f"{address!r} is not an email address")
    return addr.strip().lower()


def from_parts(from_header: str) -> tuple[str, str]:
    """``"Name <addr>"`` as (display name, normalised address); refuses a value without one."""
    display, _ = parseaddr(from_header)
    return display, normalise_address(from_header)


def check_after_fetch(action: str, kind: str, *, graph: bool = False) -> str:
    if kind == "pop3" and action not in ("keep", "delete"):
        raise UsageError(
            f"a pop3 channel cannot --after-fetch {action}: POP3 has no flags or folders; "
            "use keep or delete"
        )
    if graph and action == "delete":
        raise UsageError(
            "over Graph, deskctl moves mail rather than deleting it: "
            "use --after-fetch move:deleteditems (or keep, seen, move:FOLDER)"
        )
    if action in ("keep", "seen", "delete"):
        return action
    if action.startswith("move:") and len(action) > 5:
        if kind == "maildir":
            raise UsageError("a Maildir channel cannot move mail; use keep, seen or delete")
        return action
    raise UsageError(f"unknown --after-fetch {action!r}: use keep, seen, move:FOLDER or delete")


def check_sent_folder(value: str, kind: str, folder: str, settings: dict[str, Any]) -> str:
    """``--sent-folder FOLDER|auto``: only where deskctl, and nobody else, files what it sends.

    Gmail's SMTP and Graph's sendMail put a copy in Sent themselves, and a
    Maildir or a pipe has no server to file into. The folder fetch reads is
    refused too: the copy would come back as mail.
    """
    if kind == "gmail":
        raise UsageError(
            "a gmail channel needs no --sent-folder: Gmail files the mail it sends in Sent itself"
        )
    if settings.get("transport") == "graph":
        raise UsageError(
            "an o365 channel over Graph needs no --sent-folder: sendMail files in Sent Items itself"
        )
    if kind not in ("imap", "o365"):
        raise UsageError(
            f"--sent-folder is for IMAP channels (imap, o365): a {kind} channel has no "
            "server folder to file replies in"
        )
    value = value.strip()
    if not value:
        raise UsageError("--sent-folder needs a folder name, or auto for the one marked \\Sent")
    if value == folder or value.upper() == folder.upper() == "INBOX":
        raise UsageError(
            f"--sent-folder {value!r} is the folder fetch reads: replies filed there would be "
            "fetched as new mail"
        )
    return value


def _check_create_folder(after_fetch: str, create_folder: bool) -> None:
    if create_folder and not after_fetch.startswith("move:"):
        raise UsageError("--create-folder goes with --after-fetch move:FOLDER")


def _unique_name(session: Session, name: str) -> None:
    taken = session.scalar(select(IncomingChannel.id).where(IncomingChannel.name == name)) or (
        session.scalar(select(OutgoingChannel.id).where(OutgoingChannel.name == name))
    )
    if taken:
        raise Conflict(f"a channel named {name!r} exists already")


def _server(kind: str, opts: IncomingOptions) -> tuple[str, int, str]:
    if kind in PRESETS:
        host, port, security = PRESETS[kind][0]
        # Sovereign clouds (and tests) reach the same service under other names.
        return opts.host or host, opts.port or port, opts.security or security
    if not opts.host:
        raise UsageError(f"an {kind} channel needs --host")
    security = opts.security or "ssl"
    if security not in SECURITY:
        raise UsageError(f"unknown --security {security!r}: use ssl, starttls or none")
    if security == "none" and not opts.allow_plaintext:
        raise UsageError(
            "--security none sends the password in clear text; add --allow-plaintext if you mean it"
        )
    ports = {"ssl": 995, "starttls": 110, "none": 110} if kind == "pop3" else IMAP_PORTS
    return opts.host, opts.port or ports[security], security


def add_incoming(session: Session, name: str, opts: IncomingOptions) -> IncomingChannel:
    """Create an incoming channel; a Gmail one also gets its outgoing twin."""
    if opts.kind not in INCOMING_KINDS:
        raise UsageError(f"unknown --kind {opts.kind!r}: use one of {', '.join(INCOMING_KINDS)}")
    _unique_name(session, name)
    address = normalise_address(opts.address)
    channel = IncomingChannel(
        name=name,
        kind=opts.kind,
        address=address,
        folder=opts.folder,
        after_fetch=check_after_fetch(opts.after_fetch, opts.kind),
        queue=ensure_queue(session, opts.queue) if opts.queue else default_queue(session),
        ca_file=opts.ca_file,
        settings={},
        last_counts={},
    )
    graph = _check_transport(opts)
    oauth = (
        opts.oauth.settings(opts.kind, opts.transport)
        if opts.oauth is not None and opts.kind in PRESETS
        else None
    )
    if graph:
        assert oauth is not None
        if opts.oauth is not None and opts.oauth.app_only and opts.secret.source is None:
            raise UsageError(
                "signing in as the app needs its client secret: "
                "--password-cmd, --password-env or --password-file"
            )
        # No host: Graph is one HTTPS service, its URL in the settings.
        channel.username = opts.username or address
        channel.secret_source, channel.secret_ref = opts.secret.source, opts.secret.ref
        channel.settings = oauth
        check_after_fetch(channel.after_fetch, opts.kind, graph=True)
        if opts.create_folder:
            raise UsageError(
                "--create-folder is for IMAP; over Graph, create the folder in Outlook"
            )
    elif opts.kind in ("imap", "gmail", "o365"):
        if oauth is None and opts.kind == "o365":
            raise UsageError("an o365 channel signs in with OAuth: give --client-id")
        if oauth is None and opts.secret.source is None:
            raise UsageError(
                f"an {opts.kind} channel needs --password-cmd, --password-env or --password-file"
            )
        channel.host, channel.port, channel.security = _server(opts.kind, opts)
        channel.username = opts.username or address
        channel.secret_source, channel.secret_ref = opts.secret.source, opts.secret.ref
        if oauth is not None:
            channel.settings = oauth
        _check_create_folder(channel.after_fetch, opts.create_folder)
        if opts.create_folder:
            channel.settings = {**channel.settings, "create_folder": True}
    elif opts.kind == "pop3":
        if opts.secret.source is None:
            raise UsageError(
                "a pop3 channel needs --password-cmd, --password-env or --password-file"
            )
        if opts.folder != "INBOX":
            raise UsageError("a pop3 channel has no folders: POP3 reads the inbox only")
        channel.host, channel.port, channel.security = _server(opts.kind, opts)
        channel.username = opts.username or address
        channel.secret_source, channel.secret_ref = opts.secret.source, opts.secret.ref
        _check_create_folder(channel.after_fetch, opts.create_folder)
    elif opts.kind == "maildir":
        if not opts.path:
            raise UsageError("a maildir channel needs --path (or --sample)")
        channel.path = opts.path
    if opts.sent_folder is not None:
        sent = check_sent_folder(opts.sent_folder, opts.kind, opts.folder, channel.settings)
        channel.settings = {**channel.settings, "sent_folder": sent}
    if opts.reply_via:
        channel.reply_via = get_outgoing(session, opts.reply_via)
    session.add(channel)
    session.flush()
    add_filter(session, address, source=f"channel:{name}", reason="the channel's own address")
    if opts.kind in PRESETS and channel.reply_via is None:
        # A direct connection sets up both directions at once.
        channel.reply_via = add_outgoing(
            session,
            f"{name}-graph" if graph else f"{name}-smtp",
            kind=opts.kind,
            from_header=address,
            host=opts.smtp_host,
            port=opts.smtp_port,
            security=opts.smtp_security,
            username=channel.username,
            secret=opts.secret,
            ca_file=opts.ca_file,
            settings={**oauth, "login_channel": name} if oauth is not None else None,
        )
    return channel


def _check_transport(opts: IncomingOptions) -> bool:
    """True for an o365 channel over Graph; refuses Graph for any other kind."""
    if opts.transport not in TRANSPORTS:
        raise UsageError(f"unknown --transport {opts.transport!r}: use imap or graph")
    if opts.transport == "graph" and opts.kind != "o365":
        raise UsageError("--transport graph is for --kind o365 (Microsoft 365 mailboxes)")
    if opts.oauth is not None and opts.oauth.app_only and opts.transport != "graph":
        raise UsageError("--auth app-only goes with --kind o365 --transport graph")
    return opts.transport == "graph"


def add_outgoing(
    session: Session,
    name: str,
    *,
    kind: str,
    from_header: str,
    host: str | None = None,
    port: int | None = None,
    security: str | None = None,
    username: str | None = None,
    secret: Secret = Secret(),
    ca_file: str | None = None,
    signature: str | None = None,
    settings: dict[str, Any] | None = None,
) -> OutgoingChannel:
    if kind not in OUTGOING_KINDS:
        raise UsageError(f"unknown --kind {kind!r}: use one of {', '.join(OUTGOING_KINDS)}")
    _unique_name(session, name)
    display, address = from_parts(from_header)
    channel = OutgoingChannel(
        name=name,
        kind=kind,
        from_address=address,
        from_name=display,
        ca_file=ca_file,
        signature=signature,
        settings=settings or {},
    )
    if (settings or {}).get("transport") == "graph":
        pass  # Graph's sendMail: the URL is in the settings, no SMTP server
    elif kind in PRESETS:
        preset_host, preset_port, preset_security = PRESETS[kind][1]
        channel.host, channel.port = host or preset_host, port or preset_port
        channel.security = security or preset_security
    elif kind == "smtp":
        if not host:
            raise UsageError("an smtp channel needs --host")
        channel.security = security or "starttls"
        if channel.security not in SECURITY:
            raise UsageError(f"unknown --security {channel.security!r}")
        channel.host = host
        channel.port = port or {"ssl": 465, "starttls": 587, "none": 25}[channel.security]
    if kind in ("smtp", "gmail", "o365"):
        oauth = (settings or {}).get("auth") == "oauth"
        channel.username = username or (address if secret.source or oauth else None)
        channel.secret_source, channel.secret_ref = secret.source, secret.ref
    session.add(channel)
    session.flush()
    add_filter(session, address, source=f"channel:{name}", reason="the channel's own address")
    return channel


def set_from(session: Session, name: str, from_header: str) -> OutgoingChannel:
    """Give an outgoing channel the From its mail leaves with (``local`` has none at first).

    Every mail through the channel then carries it, also on tickets that came
    in on no channel; the address goes on the outgoing filter in place of the old one.
    """
    channel = get_outgoing(session, name)
    channel.from_name, channel.from_address = from_parts(from_header)
    remove_source(session, f"channel:{name}")
    add_filter(
        session, channel.from_address, source=f"channel:{name}", reason="the channel's own address"
    )
    return channel


def get_incoming(session: Session, name: str) -> IncomingChannel:
    channel = session.scalar(select(IncomingChannel).where(IncomingChannel.name == name))
    if channel is None:
        raise NotFound(f"no incoming channel named {name!r} (see `deskctl channel list`)")
    return channel


def get_outgoing(session: Session, name: str) -> OutgoingChannel:
    channel = session.scalar(select(OutgoingChannel).where(OutgoingChannel.name == name))
    if channel is None:
        raise NotFound(f"no outgoing channel named {name!r} (see `deskctl channel list`)")
    return channel


def map_reply_via(session: Session, incoming: str, outgoing: str) -> IncomingChannel:
    channel = get_incoming(session, incoming)
    channel.reply_via = get_outgoing(session, outgoing)
    return channel


def set_after_fetch(
    session: Session, name: str, *, after_fetch: str | None, create_folder: bool | None
) -> IncomingChannel:
    """Change what fetch does with mail it has stored; mail left behind gets the new action.

    Mail stored while the old action could not be applied (a missing folder)
    is caught up by the next fetch, so fixing the setting is all it takes.
    """
    channel = get_incoming(session, name)
    if after_fetch is None and create_folder is None:
        raise UsageError("nothing to change: give --after-fetch or --create-folder")
    if after_fetch is not None:
        channel.after_fetch = check_after_fetch(
            after_fetch, channel.kind, graph=transport_of(channel.settings, None) == "graph"
        )
    settings = dict(channel.settings or {})
    if create_folder is not None:
        settings["create_folder"] = create_folder
    elif not channel.after_fetch.startswith("move:"):
        settings.pop("create_folder", None)  # it went with the move given up
    _check_create_folder(channel.after_fetch, bool(settings.get("create_folder")))
    channel.settings = settings  # a new dict, so the JSON column is written
    return channel


def set_sent_folder(session: Session, name: str, sent_folder: str | None) -> IncomingChannel:
    """Name the folder replies are filed in (``auto``: the one marked \\Sent); None stops it.

    Items already sent whose copy is still due are filed by the next
    send-outbox run under the new setting.
    """
    channel = get_incoming(session, name)
    settings = dict(channel.settings or {})
    if sent_folder is None:
        settings.pop("sent_folder", None)
    else:
        settings["sent_folder"] = check_sent_folder(
            sent_folder, channel.kind, channel.folder, settings
        )
    channel.settings = settings  # a new dict, so the JSON column is written
    return channel


def set_enabled(session: Session, name: str, enabled: bool) -> IncomingChannel:
    channel = get_incoming(session, name)
    channel.enabled = enabled
    return channel


def remove_channel(session: Session, name: str) -> str:
    """Remove a channel; its tickets and messages stay, no longer linked to it."""
    incoming = session.scalar(select(IncomingChannel).where(IncomingChannel.name == name))
    if incoming is not None:
        for model in (Ticket, Message, QuarantinedMessage):
            session.execute(
                update(model).where(model.channel_id == incoming.id).values(channel_id=None)
            )
        session.delete(incoming)
        kind = "incoming"
    else:
        outgoing = get_outgoing(session, name)
        users = session.scalar(
            select(func.count()).where(IncomingChannel.reply_via_id == outgoing.id)
        )
        if users:
            raise Conflict(
                f"outgoing channel {name!r} is the reply-via of {users} channel(s); "
                "map them elsewhere first"
            )
        queued = session.scalar(
            select(func.count()).select_from(OutboxItem).where(OutboxItem.channel_id == outgoing.id)
        )
        if queued:
            raise Conflict(
                f"outgoing channel {name!r} carried {queued} outbox item(s); it stays as their "
                "record (remove its password reference instead)"
            )
        session.delete(outgoing)
        kind = "outgoing"
    remove_source(session, f"channel:{name}")
    return kind


def list_channels(session: Session) -> tuple[list[IncomingChannel], list[OutgoingChannel]]:
    incoming = list(session.scalars(select(IncomingChannel).order_by(IncomingChannel.name)))
    outgoing = list(session.scalars(select(OutgoingChannel).order_by(OutgoingChannel.name)))
    return incoming, outgoing


def incoming_to_dict(channel: IncomingChannel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "direction": "incoming",
        "kind": channel.kind,
        "address": channel.address,
        "queue": channel.queue.name,
        "reply_via": channel.reply_via.name if channel.reply_via else None,
        "host": channel.host,
        "port": channel.port,
        "security": channel.security,
        "username": channel.username,
        "secret": _secret(channel.secret_source, channel.secret_ref, channel.settings),
        "transport": transport_of(
            channel.settings, "imap" if channel.kind in ("imap", "gmail", "o365") else None
        ),
        "folder": channel.folder if channel.kind in ("imap", "gmail") else None,
        "path": channel.path,
        "after_fetch": channel.after_fetch,
        "create_folder": bool((channel.settings or {}).get("create_folder")),
        "sent_folder": (channel.settings or {}).get("sent_folder"),
        "enabled": channel.enabled,
        "last_fetch_at": channel.last_fetch_at,
        "last_success_at": channel.last_success_at,
        "last_error": channel.last_error,
        "last_counts": channel.last_counts or {},
    }


def outgoing_to_dict(channel: OutgoingChannel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "direction": "outgoing",
        "kind": channel.kind,
        "from": {"name": channel.from_name, "email": channel.from_address},
        "host": channel.host,
        "port": channel.port,
        "security": channel.security,
        "username": channel.username,
        "secret": _secret(channel.secret_source, channel.secret_ref, channel.settings),
        "transport": transport_of(
            channel.settings, "smtp" if channel.kind in ("smtp", "gmail", "o365") else None
        ),
        "default": channel.is_default,
    }


def describe_channel(session: Session, name: str) -> dict[str, Any]:
    """An incoming or outgoing channel by name, as ``channel show`` prints it."""
    incoming = session.scalar(select(IncomingChannel).where(IncomingChannel.name == name))
    if incoming is not None:
        return incoming_to_dict(incoming)
    return outgoing_to_dict(get_outgoing(session, name))


def transport_of(settings: dict[str, Any] | None, usual: str | None) -> str | None:
    """``graph`` for an o365 channel over Microsoft Graph, else the protocol of its kind."""
    return "graph" if (settings or {}).get("transport") == "graph" else usual


def _secret(source: str | None, ref: str | None, settings: dict[str, Any] | None) -> str:
    if settings and settings.get("flow") == CLIENT_CREDENTIALS:
        return (
            f"OAuth as the app (client credentials), client secret from "
            f"{secrets.describe(source, ref)}, tokens in {settings['token_file']}"
        )
    if settings and settings.get("auth") == "oauth":
        return f"OAuth ({settings['provider']}), tokens in {settings['token_file']}"
    return secrets.describe(source, ref)


def oauth_settings_of(session: Session, name: str) -> tuple[dict[str, Any], str]:
    """The OAuth settings and account of a channel, for ``channel login``."""
    incoming = session.scalar(select(IncomingChannel).where(IncomingChannel.name == name))
    if incoming is not None:
        settings, account = dict(incoming.settings or {}), incoming.username or incoming.address
    else:
        outgoing = get_outgoing(session, name)
        settings, account = (
            dict(outgoing.settings or {}),
            outgoing.username or outgoing.from_address,
        )
    if settings.get("auth") != "oauth":
        raise UsageError(f"channel {name!r} does not sign in with OAuth; nothing to log in to")
    return settings, account
