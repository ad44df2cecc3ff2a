"""``deskctl channel test``: try a channel's connection without fetching anything."""

from __future__ import annotations

from typing import Any

from deskctl.auth import secrets
from deskctl.context import AppContext
from deskctl.services.channels import get_incoming


def probe_channel(context: AppContext, name: str) -> dict[str, Any]:
    """Connect, log in and open the folder; every failure raises one clear DeskError."""
    with context.transaction(write=False) as session:
        ch = get_incoming(session, name)
        kind, host, port, security = ch.kind, ch.host, ch.port, ch.security
        username, folder, ca_file, path = ch.username or ch.address, ch.folder, ch.ca_file, ch.path
        source, ref = ch.secret_source, ch.secret_ref
    if kind in ("imap", "gmail"):
        from deskctl.transport.imap import ImapSettings, probe

        found = probe(
            ImapSettings(
                host=host or "",
                port=port or 993,
                security=security or "ssl",
                username=username,
                password=secrets.resolve(source, ref, channel=name),
                folder=folder,
                ca_file=ca_file,
                gmail=kind == "gmail",
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
