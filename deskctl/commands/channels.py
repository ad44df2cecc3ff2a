"""``deskctl channel``: the inboxes deskctl reads and the ways replies leave."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deskctl.commands._common import app_context, read_text, report
from deskctl.errors import UsageError
from deskctl.mail.sanitize import safe_text
from deskctl.output import emit, fmt_time, show_value, stderr, warn

app = typer.Typer(help="Incoming and outgoing channels.", no_args_is_help=True)

PasswordCmd = Annotated[
    str | None, typer.Option("--password-cmd", help="command that prints the password")
]
PasswordEnv = Annotated[
    str | None, typer.Option("--password-env", help="environment variable holding it")
]
PasswordFile = Annotated[str | None, typer.Option("--password-file", help="file holding it")]


SentFolder = Annotated[
    str | None,
    typer.Option(
        "--sent-folder", help="imap/o365: file sent replies in FOLDER (auto: the one marked \\Sent)"
    ),
]


def _warn_self_filing(channel: Any) -> None:
    """A Sent folder deskctl will not use: the reply-via server files the copy itself."""
    from deskctl.services.sent_copies import files_itself

    reason = files_itself(channel.reply_via) if channel.reply_via is not None else None
    if channel.settings.get("sent_folder") and reason:
        warn(
            f"channel {channel.name}: replies via {channel.reply_via.name} get no copy from "
            f"deskctl: {reason}"
        )


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="channel name")],
    kind: Annotated[str, typer.Option("--kind", help="imap|gmail|o365|pop3|maildir|pipe")],
    address: Annotated[str, typer.Option("--address", help="the support address")],
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    security: Annotated[str | None, typer.Option("--security", help="ssl|starttls|none")] = None,
    allow_plaintext: Annotated[
        bool, typer.Option("--allow-plaintext", help="accept --security none")
    ] = False,
    username: Annotated[str | None, typer.Option("--username")] = None,
    password_cmd: PasswordCmd = None,
    password_env: PasswordEnv = None,
    password_file: PasswordFile = None,
    folder: Annotated[str, typer.Option("--folder")] = "INBOX",
    after_fetch: Annotated[
        str, typer.Option("--after-fetch", help="keep|seen|move:FOLDER|delete (pop3: keep|delete)")
    ] = "keep",
    create_folder: Annotated[
        bool, typer.Option("--create-folder", help="move: create FOLDER when it is missing")
    ] = False,
    queue: Annotated[str | None, typer.Option("--queue", help="created if missing")] = None,
    reply_via: Annotated[str | None, typer.Option("--reply-via", help="outgoing channel")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Maildir folder")] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="maildir: a copy of the bundled sample mail")
    ] = False,
    ca_file: Annotated[str | None, typer.Option("--ca-file", help="CA for a private cert")] = None,
    auth: Annotated[
        str,
        typer.Option(
            "--auth",
            help="gmail: app-password or oauth; o365 is always oauth, over Graph also "
            "app-only (client credentials; the --password-* option gives the client secret)",
        ),
    ] = "app-password",
    transport: Annotated[
        str,
        typer.Option(
            "--transport", help="o365: imap (IMAP and SMTP AUTH) or graph (Microsoft Graph)"
        ),
    ] = "imap",
    graph_url: Annotated[
        str | None,
        typer.Option("--graph-url", help="o365 graph: API base URL (national clouds)"),
    ] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="o365: app id")] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="o365: tenant id or domain")
    ] = None,
    authority: Annotated[
        str | None, typer.Option("--authority", help="o365: sign-in authority URL")
    ] = None,
    client_secrets: Annotated[
        str | None, typer.Option("--client-secrets", help="gmail oauth: client secrets JSON")
    ] = None,
    smtp_host: Annotated[str | None, typer.Option("--smtp-host", help="direct: SMTP host")] = None,
    smtp_port: Annotated[int | None, typer.Option("--smtp-port", help="direct: SMTP port")] = None,
    smtp_security: Annotated[
        str | None, typer.Option("--smtp-security", help="direct: ssl|starttls")
    ] = None,
    sent_folder: SentFolder = None,
) -> None:
    """Add an incoming channel; gmail and o365 also get their outgoing channel.

    o365 and `gmail --auth oauth` sign in with `deskctl channel login NAME` afterwards.
    `--kind o365 --transport graph` reads and sends through Microsoft Graph (no IMAP,
    no SMTP AUTH); with `--auth app-only` as the app itself, for a shared mailbox.

    Example: deskctl channel add support --kind imap --host imap.example.com
    --address support@example.com --password-cmd "pass show mail/support" --sent-folder auto

    pop3 reads the inbox by UIDL and keeps the mail there (--after-fetch keep, the
    default) or deletes it once stored (--after-fetch delete); it has no seen or move.

    Example: deskctl channel add office --kind o365 --transport graph
    --address support@contoso.com --client-id APP-ID --tenant contoso.com
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    if sample:
        if kind != "maildir":
            raise UsageError("--sample goes with --kind maildir")
        from deskctl.transport.maildir import install_sample

        path = str(install_sample(context.settings.home / "sample-maildir"))
    if path:
        path = str(Path(path).expanduser().resolve())
    if auth not in ("app-password", "oauth", "app-only"):
        raise UsageError(f"unknown --auth {auth!r}: use app-password, oauth or app-only")
    if auth == "app-only" and kind != "o365":
        raise UsageError("--auth app-only goes with --kind o365 --transport graph")
    oauth = None
    if kind == "o365" or (kind == "gmail" and auth == "oauth"):
        secrets_file = str(Path(client_secrets).expanduser().resolve()) if client_secrets else None
        oauth = svc.OAuthOptions(
            token_file=str(context.settings.home / "tokens" / f"{name}.json"),
            client_id=client_id,
            tenant=tenant,
            authority=authority,
            client_secrets=secrets_file,
            app_only=auth == "app-only",
            graph_url=graph_url,
        )
    opts = svc.IncomingOptions(
        kind=kind,
        address=address,
        host=host,
        port=port,
        security=security,
        allow_plaintext=allow_plaintext,
        username=username,
        secret=svc.Secret.from_options(password_cmd, password_env, password_file),
        folder=folder,
        after_fetch=after_fetch,
        create_folder=create_folder,
        queue=queue,
        reply_via=reply_via,
        path=path,
        ca_file=ca_file,
        oauth=oauth,
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_security=smtp_security,
        transport=transport,
        sent_folder=sent_folder,
    )
    if security == "none" and allow_plaintext:
        warn(f"channel {name}: the password will travel unencrypted")
    with context.transaction() as session:
        channel = svc.add_incoming(session, name, opts)
        data = svc.incoming_to_dict(channel)
        _warn_self_filing(channel)
    via = f", replies via {data['reply_via']}" if data["reply_via"] else ""
    report(context, data, f"channel {name} added ({kind}, queue {data['queue']}{via})")


@app.command("add-outgoing")
def add_outgoing(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="channel name")],
    kind: Annotated[str, typer.Option("--kind", help="smtp|gmail|o365|sendmail")],
    from_header: Annotated[str, typer.Option("--from", help='"Name <addr>"')],
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    security: Annotated[str | None, typer.Option("--security", help="ssl|starttls|none")] = None,
    username: Annotated[str | None, typer.Option("--username")] = None,
    password_cmd: PasswordCmd = None,
    password_env: PasswordEnv = None,
    password_file: PasswordFile = None,
    ca_file: Annotated[str | None, typer.Option("--ca-file")] = None,
    signature_file: Annotated[str | None, typer.Option("--signature-file")] = None,
) -> None:
    """Add an outgoing channel that replies leave through.

    Example: deskctl channel add-outgoing smtp-support --kind smtp --host smtp.example.com
    --from "Example Support <support@example.com>" --password-env SMTP_PASSWORD
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    signature = None
    if signature_file:
        signature = read_text(signature_file)
    with context.transaction() as session:
        channel = svc.add_outgoing(
            session,
            name,
            kind=kind,
            from_header=from_header,
            host=host,
            port=port,
            security=security,
            username=username,
            secret=svc.Secret.from_options(password_cmd, password_env, password_file),
            ca_file=ca_file,
            signature=signature,
        )
        data = svc.outgoing_to_dict(channel)
    report(context, data, f"outgoing channel {name} added ({kind})")


@app.command("set-from")
def set_from(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="outgoing channel, e.g. local")],
    from_header: Annotated[str, typer.Argument(help='"Name <addr>"')],
) -> None:
    """Set the From address an outgoing channel sends as.

    The default `local` (sendmail) channel starts without one and sends as the
    address of the inbox a ticket came in on; with a From it sends every reply
    and acknowledgement as that address, also for mail that came in on no channel.

    Example: deskctl channel set-from local "Example Support <support@example.com>"
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    with context.transaction() as session:
        data = svc.outgoing_to_dict(svc.set_from(session, name, from_header))
    report(context, data, f"{name} sends as {data['from']['email']}")


@app.command("map")
def map_(
    ctx: typer.Context,
    incoming: Annotated[str, typer.Argument(help="incoming channel")],
    reply_via: Annotated[str, typer.Option("--reply-via", help="outgoing channel")],
) -> None:
    """Choose the outgoing channel that answers an incoming one.

    Example: deskctl channel map support --reply-via smtp-support
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    with context.transaction() as session:
        data = svc.incoming_to_dict(svc.map_reply_via(session, incoming, reply_via))
    report(context, data, f"{incoming} replies via {reply_via}")


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="incoming channel")],
    after_fetch: Annotated[
        str | None, typer.Option("--after-fetch", help="keep|seen|move:FOLDER|delete")
    ] = None,
    create_folder: Annotated[
        bool | None,
        typer.Option(
            "--create-folder/--no-create-folder", help="move: create FOLDER when it is missing"
        ),
    ] = None,
    sent_folder: SentFolder = None,
    no_sent_folder: Annotated[
        bool, typer.Option("--no-sent-folder", help="stop filing sent replies")
    ] = False,
) -> None:
    """Change what fetch does with stored mail (the sync state is kept) and where replies go.

    FOLDER is the name your mail program shows: `move:Archive` is INBOX.Archive on
    Courier or Cyrus, `move:\\Archive` the folder the server marks as the archive.

    --sent-folder FOLDER files every reply sent for the channel's tickets in FOLDER
    (`auto`: the folder the server marks \\Sent); --no-sent-folder stops that.

    Example: deskctl channel set support --after-fetch move:Archive --create-folder
    Example: deskctl channel set support --sent-folder auto
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    if sent_folder is not None and no_sent_folder:
        raise UsageError("give --sent-folder or --no-sent-folder, not both")
    filing = sent_folder is not None or no_sent_folder
    if not filing and after_fetch is None and create_folder is None:
        raise UsageError("nothing to change: give --after-fetch, --create-folder or --sent-folder")
    with context.transaction() as session:
        channel = svc.get_incoming(session, name)
        if after_fetch is not None or create_folder is not None:
            svc.set_after_fetch(session, name, after_fetch=after_fetch, create_folder=create_folder)
        if filing:
            svc.set_sent_folder(session, name, None if no_sent_folder else sent_folder)
            _warn_self_filing(channel)
        data = svc.incoming_to_dict(channel)
    create = ", creating the folder when missing" if data["create_folder"] else ""
    sent = f"; replies filed in {data['sent_folder']}" if data["sent_folder"] else ""
    report(context, data, f"{name}: after fetch, {data['after_fetch']}{create}{sent}")


def _set_enabled(ctx: typer.Context, name: str, enabled: bool) -> None:
    from deskctl.services import channels as svc

    context = app_context(ctx)
    with context.transaction() as session:
        data = svc.incoming_to_dict(svc.set_enabled(session, name, enabled))
    report(context, data, f"{name} {'enabled' if enabled else 'disabled'}")


@app.command("enable")
def enable(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Fetch this channel again.

    Example: deskctl channel enable support
    """
    _set_enabled(ctx, name, True)


@app.command("disable")
def disable(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Stop fetching this channel (its tickets stay).

    Example: deskctl channel disable support
    """
    _set_enabled(ctx, name, False)


@app.command("remove")
def remove(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a channel; its tickets and messages stay.

    Example: deskctl channel remove old-inbox
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    with context.transaction() as session:
        kind = svc.remove_channel(session, name)
    report(context, {"removed": name, "direction": kind}, f"removed {name}")


def _counts(data: dict[str, Any]) -> str:
    c = data["last_counts"]
    if not c:
        return "-"
    return (
        f"{c.get('fetched', 0)} in, {c.get('tickets_created', 0)} new, {c.get('quarantined', 0)} q"
    )


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List channels, their mapping and how their last fetch went.

    Example: deskctl channel list
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        incoming, outgoing = svc.list_channels(session)
        rows = [svc.incoming_to_dict(c) for c in incoming]
        outs = [svc.outgoing_to_dict(c) for c in outgoing]

    def human(out: Console) -> None:
        table = Table(
            "incoming",
            "kind",
            "address",
            "queue",
            "reply via",
            "on",
            "last fetch",
            "counts",
            "last error",
            box=None,
        )
        for r in rows:
            table.add_row(
                r["name"],
                r["kind"],
                r["address"],
                r["queue"],
                r["reply_via"] or "-",
                "yes" if r["enabled"] else "no",
                fmt_time(r["last_fetch_at"]),
                _counts(r),
                Text(safe_text(r["last_error"] or "-"), style="red" if r["last_error"] else ""),
            )
        out.print(table)
        table = Table("outgoing", "kind", "from", "server", box=None)
        for o in outs:
            server = (
                f"{o['host']}:{o['port']}"
                if o["host"]
                else "Microsoft Graph"
                if o["transport"] == "graph"
                else "local"
            )
            table.add_row(o["name"], o["kind"], show_value(o["from"]), server)
        out.print(table)

    emit({"incoming": rows, "outgoing": outs}, as_json=context.json, human=human)


@app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Show one channel's settings and where its secret comes from (never the secret).

    Example: deskctl channel show support
    """
    from deskctl.services import channels as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        data = svc.describe_channel(session, name)

    def human(out: Console) -> None:
        for key, value in data.items():
            out.print(Text(f"{key}: {show_value(value)}"))

    emit(data, as_json=context.json, human=human)


@app.command("login")
def login(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Sign in with OAuth: o365 by device code (works over SSH), Gmail by browser link.

    Example: deskctl channel login support
    """
    from deskctl.auth import oauth
    from deskctl.services import channels as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        settings, account = svc.oauth_settings_of(session, name)
    who = oauth.login(
        oauth.OAuthSettings.from_channel(name, settings, account),
        say=lambda text: stderr.print(Text(text)),
    )
    emit(
        {"channel": name, "signed_in_as": who},
        as_json=context.json,
        human=lambda out: out.print(Text(f"channel {name}: signed in as {who}")),
    )


@app.command("test")
def test(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Connect, log in, open the folder and find the after-fetch folder; say what is wrong.

    An outgoing channel: connect, TLS, EHLO and AUTH, no mail sent; sendmail:
    the program is there and runs.

    Example: deskctl channel test support
    Example: deskctl channel test smtp-out
    """
    from deskctl.errors import NotFound
    from deskctl.jobs.probe import probe_channel, probe_outgoing

    context = app_context(ctx)
    try:
        found = probe_channel(context, name)
    except NotFound:
        found = probe_outgoing(context, name)
    emit(found, as_json=context.json, human=lambda out: out.print(Text(found["summary"])))
