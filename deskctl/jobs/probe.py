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
    if kind in ("imap", "gmail", "o365"):
        from deskctl.transport.folders import FolderProblem
        from deskctl.transport.imap import ImapSettings, probe

        login = credentials.for_channel(
            name, settings=extra, account=username, secret_source=source, secret_ref=ref
        )
        move_to = after_fetch.removeprefix("move:") if after_fetch.startswith("move:") else None
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
            )
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
        return {"channel": name, "ok": True, **found, "summary": summary}
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
        age = oauth.token_age_days(oauth.OAuthSettings.from_channel(name, settings, account))
        if age is None:
            found.append(f"channel {name} is not signed in: run `deskctl channel login {name}`")
        elif age > oauth.STALE_AFTER_DAYS:
            found.append(
                f"the sign-in of channel {name} has not been used for {age:.0f} days and will "
                f"expire: run `deskctl fetch --channel {name}` or `deskctl channel login {name}`"
            )
    return found
