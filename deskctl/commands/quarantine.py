"""``deskctl quarantine``: mail that could not be parsed or stored."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deskctl.commands._common import app_context, finish, read_file, report
from deskctl.errors import ExitCode
from deskctl.mail.sanitize import safe_text
from deskctl.output import emit, fmt_time, show_value

app = typer.Typer(
    help="Mail that could not be parsed or stored, kept byte for byte.", no_args_is_help=True
)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List quarantined messages, newest first.

    Example: deskctl quarantine list
    """
    from deskctl.services import quarantine as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        rows = [svc.quarantined_to_dict(q) for q in svc.list_quarantined(session)]

    def human(out: Console) -> None:
        table = Table("id", "when", "channel", "size", "reason", box=None)
        for row in rows:
            table.add_row(
                str(row["id"]),
                fmt_time(row["created_at"]),  # type: ignore[arg-type]
                Text(safe_text(str(row["channel"] or "-"))),
                str(row["size"]),
                Text(safe_text(str(row["reason"]))),
            )
        out.print(table if rows else "quarantine is empty")

    emit({"quarantine": rows}, as_json=context.json, human=human)


@app.command("show")
def show(
    ctx: typer.Context,
    item_id: Annotated[int, typer.Argument(help="quarantine id")],
    raw: Annotated[bool, typer.Option("--raw", help="print the stored bytes")] = False,
) -> None:
    """Show why a message was quarantined, or its raw bytes.

    Example: deskctl quarantine show 3 --raw > broken.eml
    """
    from deskctl.services import quarantine as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        item = svc.get_quarantined(session, item_id)
        data, source = svc.quarantined_to_dict(item), item.raw
    if raw:
        if sys.stdout.isatty():
            sys.stdout.write(safe_text(source.decode("utf-8", "replace")))
        else:
            sys.stdout.buffer.write(source)
        return

    def human(out: Console) -> None:
        for key, value in data.items():
            out.print(Text(f"{key}: {show_value(value)}"))

    emit(data, as_json=context.json, human=human)


@app.command("retry")
def retry(
    ctx: typer.Context,
    item_id: Annotated[int, typer.Argument(help="quarantine id")],
    file: Annotated[
        str | None, typer.Option("--file", help="repaired message to store instead")
    ] = None,
) -> None:
    """Try a quarantined message again, after a fix or with repaired bytes.

    Example: deskctl quarantine retry 3 --file fixed.eml
    """
    from deskctl.jobs.pipeline import retry_quarantined

    context = app_context(ctx)
    replacement = None
    if file is not None:
        replacement = read_file(file)
    outcome = retry_quarantined(context, item_id, replacement)
    emit(
        outcome.to_dict(),
        as_json=context.json,
        human=lambda out: out.print(
            Text(
                f"still quarantined: {outcome.reason}"
                if outcome.quarantined is not None
                else f"stored on ticket #{outcome.ticket}"
            )
        ),
    )
    finish(ExitCode.PARTIAL if outcome.quarantined is not None else ExitCode.OK)


@app.command("drop")
def drop(ctx: typer.Context, item_id: Annotated[int, typer.Argument(help="quarantine id")]) -> None:
    """Delete a quarantined message for good.

    Example: deskctl quarantine drop 3
    """
    from deskctl.services import quarantine as svc

    context = app_context(ctx)
    with context.transaction() as session:
        svc.drop_quarantined(session, item_id)
    report(context, {"dropped": item_id}, f"dropped {item_id}")
