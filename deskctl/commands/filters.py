"""``deskctl filter``: addresses deskctl never sends to."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deskctl.commands._common import app_context, report
from deskctl.output import emit

app = typer.Typer(help="The outgoing filter: addresses deskctl never mails.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Argument(help="address, @domain, or wildcard like *-noreply@*")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
) -> None:
    """Never send to addresses matching PATTERN (case-insensitive).

    Example: deskctl filter add '*-noreply@*' --reason "robots"
    """
    from deskctl.services import filters as svc

    context = app_context(ctx)
    with context.transaction() as session:
        data = svc.filter_to_dict(svc.add_filter(session, pattern, reason=reason))
    report(context, data, f"{data['pattern']} is on the outgoing filter")


@app.command("remove")
def remove(ctx: typer.Context, pattern: Annotated[str, typer.Argument()]) -> None:
    """Remove a pattern added by hand.

    Example: deskctl filter remove '*-noreply@*'
    """
    from deskctl.services import filters as svc

    context = app_context(ctx)
    with context.transaction() as session:
        svc.remove_filter(session, pattern)
    report(context, {"removed": pattern.lower()}, f"removed {pattern}")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the filter, with where each entry came from.

    Example: deskctl filter list
    """
    from deskctl.services import filters as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        rows = [svc.filter_to_dict(r) for r in svc.list_filters(session)]

    def human(out: Console) -> None:
        table = Table("pattern", "added by", "reason", box=None)
        for r in rows:
            source = "hand" if r["source"] == "manual" else str(r["source"]).replace(":", " ")
            table.add_row(str(r["pattern"]), source, Text(str(r["reason"] or "-")))
        out.print(table)

    emit({"filters": rows}, as_json=context.json, human=human)
