"""``deskctl channel test``: try a channel's connection without fetching anything."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deskctl.auth import credentials
from deskctl.context import AppContext
from deskctl.errors import ConfigError
from deskctl.services.channels import get_incoming

if TYPE_CHECKING:
    from deskctl.transport.folders import FolderProblem


def folder_error(channel: str, action: str, reading: str, problem: FolderProblem) -> ConfigError:
    """The server's refusal, what happened to the mail, and the command that fixes it.

    One line, because fetch and ``channel test`` print it as one, and cron
    mails it to someone who must know what to type.
    """
    if problem.missing:
        fix = (
            "create it in your mail program, or let deskctl create it: "
            f"deskctl channel set {channel} --create-folder"
        )
    elif action.startswith("move:"):
        fix = f"choose another folder: deskctl channel set {channel} --after-fetch move:FOLDER"
    else:
        fix = (
            "give the account write access to the folder, or leave mail alone: "
            f"deskctl channel set {channel} --after-fetch keep"
        )
    return ConfigError(f"{problem.message}; the mail stays in {reading}; {fix}")


def probe_channel(context: AppContext, name: str) -> dict[str, Any]:
    """Connect, log in and open the folder; every failure raises one clear DeskError."""
    with context.transaction(write=False) as session:
        ch = get_incoming(session, name)
        kind, host, port, security = ch.kind, ch.host, ch.port, ch.security
        username, folder, ca_file, path = ch.username or ch.address, ch.folder, ch.ca_file, ch.path
        source, ref, extra = ch.secret_source, ch.secret_ref, dict(ch.settings or {})
        after_fetch = ch.after_fetch
    if kind == "o365" and extra.get("transport") == "graph":
        from deskctl.jobs.fetch_graph import probe_graph

        return probe_graph(context, name)
    if kind in ("imap", "gmail", "o365"):
        from deskctl.transport.folders import FolderProblem, SentFolderProblem
        from deskctl.transport.imap import ImapSettings, probe

        login = credentials.for_channel(
            name, settings=extra, account=username, secret_source=source, secret_ref=ref
        )
        move_to = after_fetch.removeprefix("move:") if after_fetch.startswith("move:") else None
        sent_folder = extra.get("sent_folder") if kind in ("imap", "o365") else None
        try:
            found = probe(
                ImapSettings(
                    host=host or "",
                    port=port or 993,
                    security=security or "ssl",
                    username=username,
                    password=login.password or "",
                    folder=folder,
                    ca_file=ca_file,
                    gmail=kind == "gmail",
                    oauth_token=login.oauth_token,
                    relogin_hint=login.relogin_hint,
                ),
                move_to=move_to,
                create=bool(extra.get("create_folder")),
                sent_folder=sent_folder,
            )
        except SentFolderProblem as exc:
            raise ConfigError(
                f"{exc.message}; replies are sent but not filed; choose the folder: "
                f"deskctl channel set {name} --sent-folder FOLDER|auto"
            ) from exc
        except FolderProblem as exc:
            raise folder_error(name, after_fetch, folder, exc) from exc
        summary = (
            f"{name}: logged in to {host}:{port} as {username}; folder {folder} has "
            f"{found['messages']} messages (UIDVALIDITY {found['uidvalidity']})"
        )
        target = found.get("after_fetch_folder")
        if target is not None:
            summary += f"; after fetch, mail moves to {target['name']}" + (
                "" if target["exists"] else " (deskctl creates it on the first fetch)"
            )
        if "sent_folder" in found:
            summary += f"; replies are filed in {found['sent_folder']['name']}"
        return {"channel": name, "ok": True, **found, "summary": summary}
    if kind == "pop3":
        return _probe_pop3(context, name)
    if kind == "maildir":
        from deskctl.transport.maildir import MaildirInbox

        count = len(MaildirInbox(path or "").messages())
        return {
            "channel": name,
            "ok": True,
            "messages": count,
            "summary": f"{name}: Maildir {path} has {count} messages",
        }
    return {"channel": name, "ok": True, "summary": f"{name}: a pipe channel has nothing to test"}


def _probe_pop3(context: AppContext, name: str) -> dict[str, Any]:
    """Connect, TLS, log in and list the maildrop; nothing is read or deleted."""
    from deskctl.jobs.fetch import select_channels
    from deskctl.jobs.fetch_pop3 import pop3_settings
    from deskctl.transport.pop3 import probe

    (ch,) = select_channels(context, [name])
    settings = pop3_settings(ch)
    found = probe(settings)
    summary = (
        f"{name}: logged in to POP3 {settings.host}:{settings.port} ({settings.security}) as "
        f"{settings.username}; the maildrop has {found['messages']} messages; "
        f"after fetch, mail is {'deleted' if ch.after_fetch == 'delete' else 'kept'}"
    )
    return {"channel": name, "ok": True, **found, "summary": summary}


def oauth_warnings(context: AppContext) -> list[str]:
    """Sign-ins that are missing or idle long enough to expire (Microsoft: 90 days)."""
    from sqlalchemy import select

    from deskctl.auth import oauth
    from deskctl.store.models import IncomingChannel

    with context.transaction(write=False) as session:
        rows = [
            (c.name, dict(c.settings or {}), c.username or c.address)
            for c in session.scalars(select(IncomingChannel))
            if (c.settings or {}).get("auth") == "oauth"
        ]
    found = []
    for name, settings, account in rows:
        if settings.get("flow") == oauth.CLIENT_CREDENTIALS:
            continue  # the app signs in by itself each time: there is no sign-in to go stale
        age = oauth.token_age_days(oauth.OAuthSettings.from_channel(name, settings, account))
        if age is None:
            found.append(f"channel {name} is not signed in: run `deskctl channel login {name}`")
        elif age > oauth.STALE_AFTER_DAYS:
            found.append(
                f"the sign-in of channel {name} has not been used for {age:.0f} days and will "
                f"expire: run `deskctl fetch --channel {name}` or `deskctl channel login {name}`"
            )
    return found


def probe_outgoing(context: AppContext, name: str) -> dict[str, Any]:
    """Connect, TLS, EHLO and AUTH as a reply would, and send nothing.

    The same sender ``send-outbox`` opens, so a channel that passes here
    fails there only for what the server says about a message. For sendmail:
    the program is there and runs (``-bp`` lists the queue, sending nothing).
    """
    from deskctl.jobs.send_outbox import open_sender
    from deskctl.services.channels import get_outgoing
    from deskctl.transport.smtp import SmtpSender

    with context.transaction(write=False) as session:
        ch = get_outgoing(session, name)
        channel_id, kind, host, port = ch.id, ch.kind, ch.host, ch.port
        security, user = ch.security or "starttls", ch.username
        command = str(dict(ch.settings or {}).get("sendmail", "sendmail"))
        graph = dict(ch.settings or {}).get("transport") == "graph"
    if kind == "sendmail":
        return _probe_sendmail(name, command)
    if graph:
        from deskctl.transport.graph import GraphSender

        with open_sender(context, channel_id) as sending:
            assert isinstance(sending, GraphSender)
            sending.mailbox.folder("sentitems")  # the token is taken and Graph accepts it
        summary = (
            f"{name}: signed in to Microsoft Graph for {sending.mailbox.settings.address}; "
            "replies go out through sendMail and Exchange files them in Sent Items; no mail sent"
        )
        return {"channel": name, "ok": True, "kind": kind, "summary": summary}
    with open_sender(context, channel_id) as sender:
        assert isinstance(sender, SmtpSender) and sender.client is not None
        code, _answer = sender.client.ehlo()
        if code != 250:
            raise ConfigError(f"{name}: {host}:{port} answered EHLO with {code}")
    login = f"logged in as {user}" if user else "no login configured"
    summary = f"{name}: connected to {host}:{port} ({security}), EHLO ok, {login}; no mail sent"
    return {"channel": name, "ok": True, "kind": kind, "summary": summary}


def _probe_sendmail(name: str, command: str) -> dict[str, Any]:
    import shutil
    import subprocess

    found = shutil.which(command)
    if found is None:
        raise ConfigError(
            f"{name}: {command} not found: install a local mail system (e.g. postfix)"
            " or add an SMTP outgoing channel"
        )
    try:
        done = subprocess.run(
            [found, "-bp"], capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{name}: {found} does not run: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConfigError(
            f"{name}: {found} -bp exited {done.returncode}: {said[-1] if said else ''}".rstrip(": ")
            + "; is the local mail system running?"
        )
    summary = f"{name}: {found} runs (its queue is readable); no mail sent"
    return {"channel": name, "ok": True, "kind": "sendmail", "summary": summary}
