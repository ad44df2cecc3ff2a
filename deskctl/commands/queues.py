"""``deskctl queue``: named, coloured queues of tickets."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deskctl.commands._common import app_context, read_text, report
from deskctl.output import emit

app = typer.Typer(help="Queues of tickets, each with a name and a colour.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="queue name")],
    color: Annotated[str, typer.Option("--color", help="terminal colour or #rrggbb")] = "white",
    description: Annotated[str | None, typer.Option("--description")] = None,
) -> None:
    """Add a queue.

    Example: deskctl queue add billing --color yellow --description "Invoices"
    """
    from deskctl.services import queues as svc

    context = app_context(ctx)
    with context.transaction() as session:
        data = svc.queue_to_dict(svc.add_queue(session, name, color=color, description=description))
    report(context, data, f"queue {name} added")


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="queue name")],
    color: Annotated[str | None, typer.Option("--color")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    ack_file: Annotated[
        str | None,
        typer.Option("--ack-file", help="acknowledge new tickets with this text ($number, $title)"),
    ] = None,
    no_ack: Annotated[bool, typer.Option("--no-ack", help="stop acknowledging")] = False,
    ack_limit: Annotated[
        int | None, typer.Option("--ack-limit", help="at most N per sender per hour (default 3)")
    ] = None,
) -> None:
    """Change a queue: colour, description, acknowledgement of new tickets.

    Example: deskctl queue set general --ack-file ~/ack.txt --ack-limit 3
    """
    from deskctl.services import queues as svc

    context = app_context(ctx)
    template = None
    if ack_file is not None:
        template = read_text(ack_file)
    with context.transaction() as session:
        queue = svc.set_queue(
            session,
            name,
            color=color,
            description=description,
            ack_template=template,
            clear_ack=no_ack,
            ack_limit=ack_limit,
        )
        data = svc.queue_to_dict(queue)
    report(context, data, f"queue {name} updated")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List queues with their open tickets.

    Example: deskctl queue list --json
    """
    from deskctl.services import queues as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        rows = [svc.queue_to_dict(q, n) for q, n in svc.list_queues(session)]

    def human(out: Console) -> None:
        table = Table("queue", "colour", "open", "description", box=None)
        for row in rows:
            name = Text(str(row["name"]), style=str(row["color"]))
            if row["default"]:
                name.append(" (default)", style="dim")
            table.add_row(
                name,
                str(row["color"]),
                str(row["open_tickets"]),
                Text(str(row["description"] or "-")),
            )
        out.print(table)

    emit({"queues": rows}, as_json=context.json, human=human)
