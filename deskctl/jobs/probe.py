"""``deskctl channel test``: try a channel's connection without fetching anything."""

from __future__ import annotations

from typing import Any

from deskctl.auth import credentials
from deskctl.context import AppContext
from deskctl.services.channels import get_incoming


def probe_channel(context: AppContext, name: str) -> dict[str, Any]:
    """Connect, log in and open the folder; every failure raises one clear DeskError."""
    with context.transaction(write=False) as session:
        ch = get_incoming(session, name)
        kind, host, port, security = ch.kind, ch.host, ch.port, ch.security
        username, folder, ca_file, path = ch.username or ch.address, ch.folder, ch.ca_file, ch.path
        source, ref, extra = ch.secret_source, ch.secret_ref, dict(ch.settings or {})
    if kind in ("imap", "gmail", "o365"):
        from deskctl.transport.imap import ImapSettings, probe

        login = credentials.for_channel(
            name, settings=extra, account=username, secret_source=source, secret_ref=ref
        )
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
            )
        )
        summary = (
            f"{name}: logged in to {host}:{port} as {username}; folder {folder} has "
            f"{found['messages']} messages (UIDVALIDITY {found['uidvalidity']})"
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
