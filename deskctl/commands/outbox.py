"""``deskctl outbox`` and ``deskctl send-outbox``: replies on their way out."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from deskctl.commands._common import app_context, finish, log_stamp, report
from deskctl.errors import ExitCode
from deskctl.mail.sanitize import safe_text
from deskctl.output import emit, fmt_time, stderr

app = typer.Typer(help="Replies waiting to leave, sent, failed or blocked.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[
        str | None,
        typer.Option("--state", help="queued|sending|sent|failed|blocked|cancelled|bounced"),
    ] = None,
) -> None:
    """List outbox items, newest first.

    Example: deskctl outbox list --state failed
    """
    from deskctl.services import outbox as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        rows = [svc.item_to_dict(i) for i in svc.list_items(session, state)]

    def human(out: Console) -> None:
        # The server's words are the point of the last column: wrap them, never cut them.
        last_error = Column("last error", overflow="fold")
        table = Table(
            "id",
            "ticket",
            "to",
            "channel",
            "state",
            "tries",
            "next",
            "sent copy",
            last_error,
            box=None,
        )
        for r in rows:
            problems = [r["last_error"]] if r["last_error"] else []
            if r["sent_copy_error"]:
                problems.append(f"not filed in Sent: {r['sent_copy_error']}")
            table.add_row(
                str(r["id"]),
                f"#{r['ticket']}",
                Text(safe_text(", ".join(r["to"]))),
                Text(r["channel"] or "-"),
                r["state"],
                str(r["attempts"]),
                fmt_time(r["next_attempt_at"]) if r["state"] == "queued" else "-",
                Text(safe_text(_sent_copy(r))),
                Text(safe_text("; ".join(problems) or "-")),
            )
        out.print(table if rows else "the outbox is empty")

    emit({"outbox": rows}, as_json=context.json, human=human)


def _sent_copy(row: dict[str, Any]) -> str:
    """``filed in Sent``, ``due`` (a later run files it), ``failed``, or ``-`` for no copy."""
    if row["sent_copy"] == "filed":
        return f"filed in {row['sent_copy_folder']}"
    return row["sent_copy"] or "-"


def _change(ctx: typer.Context, item_id: int, retry: bool) -> None:
    from deskctl.services import outbox as svc

    context = app_context(ctx)
    with context.transaction() as session:
        item = svc.retry_item(session, item_id) if retry else svc.cancel_item(session, item_id)
        data = svc.item_to_dict(item)
    line = f"outbox item {item_id} is {data['state']}"
    if retry and data["state"] == "sent":
        line += "; the next send-outbox files its copy in Sent (the reply is not sent again)"
    report(context, data, line)


@app.command("retry")
def retry(ctx: typer.Context, item_id: Annotated[int, typer.Argument()]) -> None:
    """Queue a failed, blocked or cancelled item again, due now.

    A sent reply whose copy could not be filed in the Sent folder gets that copy
    filed by the next send-outbox run; the reply itself is not sent again.

    Example: deskctl outbox retry 17
    """
    _change(ctx, item_id, retry=True)


@app.command("cancel")
def cancel(ctx: typer.Context, item_id: Annotated[int, typer.Argument()]) -> None:
    """Cancel an item that has not been sent.

    Example: deskctl outbox cancel 17
    """
    _change(ctx, item_id, retry=False)


def send_outbox(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most N items this run")] = 500,
) -> None:
    """Send the queued replies that are due.

    Example: deskctl -q send-outbox     (every minute from cron; see crontab.example)
    """
    from deskctl.jobs.send_outbox import send_outbox as run_send_outbox

    context = app_context(ctx)
    report = run_send_outbox(context, limit)
    code = report.exit_code()
    line = (
        f"{report.sent} sent, {report.failed} failed, {report.blocked} blocked, "
        f"{report.deferred} deferred"
    )
    if report.filed or report.not_filed:
        line += f"; {report.filed} filed in Sent, {len(report.not_filed)} not filed"
    if context.quiet:
        # Cron's log: one line for a run that did something, none for an idle one.
        active = bool(report.sent or report.failed or report.blocked or report.deferred)
        active = active or bool(report.filed or report.not_filed)
        line = f"{log_stamp()} send-outbox: {line}" if active else ""
    emit(
        report.to_dict(),
        as_json=context.json,
        human=lambda out: out.print(Text(line)) if line else None,
    )
    for message, _ in report.errors:
        stderr.print(Text(safe_text(f"deskctl: error: {message}")))
    for message in report.not_filed:
        # The reply went out: a warning, and the exit status stays the sending's.
        stderr.print(Text(safe_text(f"deskctl: warning: {message}")))
    if code == ExitCode.UNREACHABLE and not report.errors:
        # Cron mails stderr only (stdout is the log): exit 6 alone would tell nobody.
        stderr.print(
            f"deskctl: error: every due reply was deferred ({report.deferred}); each is retried"
            " later, the server's answer is in `deskctl outbox list`"
        )
    finish(code)
