"""``deskctl explain`` and ``deskctl doctor``: why deskctl does what it does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from deskctl.commands._common import app_context, finish, read_mail
from deskctl.commands.ingest import DEFAULT_MAX_SIZE
from deskctl.errors import ExitCode
from deskctl.mail.sanitize import safe_text
from deskctl.output import emit


def explain(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="an RFC 5322 message")],
    channel: Annotated[
        str | None, typer.Option("--channel", help="as if read by this channel")
    ] = None,
    max_size: Annotated[
        int, typer.Option("--max-size", help="bytes; larger would be quarantined, unread")
    ] = DEFAULT_MAX_SIZE,
) -> None:
    """Say what deskctl would do with a message, storing nothing.

    Example: deskctl explain --channel support suspicious.eml
    """
    from deskctl.jobs.pipeline import store_raw
    from deskctl.services.channels import get_incoming

    context = app_context(ctx)
    raw = read_mail(file, max_size, None)
    channel_id = None
    if channel is not None:
        with context.transaction(write=False) as session:
            channel_id = get_incoming(session, channel).id
    outcome = store_raw(context, raw, channel_id=channel_id, max_size=max_size, dry_run=True)
    data = outcome.to_dict()

    def human(out: Console) -> None:
        if outcome.quarantined is not None:
            out.print(Text(safe_text(f"quarantine: {outcome.reason}")))
            return
        d = outcome.details
        out.print(Text(safe_text(f"channel: {d['channel'] or '(none)'}, queue {d['queue']}")))
        if outcome.duplicate:
            out.print(Text(f"ticket: already stored on #{outcome.ticket}; nothing would change"))
        elif outcome.created:
            why = {
                "token-untrusted": " (its ticket token is not trusted from this sender)",
                "auto-reply-filed": ", filed as closed (an automatic reply to none of our mail)",
            }
            out.print(Text(f"ticket: a new ticket{why.get(outcome.rule or '', '')}"))
        else:
            out.print(Text(f"ticket: joins #{outcome.ticket} by {outcome.rule}"))
        reasons = "; ".join(d["flag_reasons"]) or "written by a person"
        flags = ", ".join(outcome.flags) or "normal"
        out.print(Text(safe_text(f"classification: {flags} ({reasons})")))
        ack = d["ack"] or "none: the message joins a ticket"
        out.print(Text(safe_text(f"acknowledgement: {ack}")))

    emit(data, as_json=context.json, human=human)


def doctor(ctx: typer.Context) -> None:
    """Check for mail loops, stale or failing channels, and replies failing or stuck.

    Exit 0: nothing found; 5: a configuration problem (loop risk, filter,
    sign-in, stale channel); 6: only mail not moving (a failed fetch, failed
    or stuck replies).

    Example: deskctl doctor
    """
    from deskctl.jobs.probe import oauth_warnings
    from deskctl.services.doctor import OPERATIONS, Finding, check_configuration

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        findings = check_configuration(session, datetime.now(UTC))
    oauth = [Finding("warning", "oauth", text) for text in oauth_warnings(context)]
    if oauth:
        findings = [f for f in findings if f.level == "warning"] + oauth
    warnings = [f for f in findings if f.level == "warning"]

    def human(out: Console) -> None:
        for f in findings:
            out.print(
                # A message may quote a server's words (last_error): no escapes reach the terminal.
                Text(
                    f"{f.level}: {safe_text(f.message)}",
                    style="yellow" if f.level == "warning" else "",
                )
            )

    emit({"findings": [f.to_dict() for f in findings]}, as_json=context.json, human=human)
    # 5: something in the configuration needs fixing; 6: only mail that is not moving.
    if any(f.check not in OPERATIONS for f in warnings):
        finish(ExitCode.CONFIG)
    finish(ExitCode.UNREACHABLE if warnings else ExitCode.OK)
