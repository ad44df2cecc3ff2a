"""``deskctl ticket``: list, read and work tickets."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deskctl.commands._common import app_context
from deskctl.mail.sanitize import safe_text
from deskctl.output import emit, fmt_time
from deskctl.services import tickets as svc

app = typer.Typer(help="List, read and work tickets.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="new|open|pending|solved|closed")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="queue name")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="agent name, or 'me'")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="customer address")] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="text in title, body or address")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many")] = 50,
) -> None:
    """List tickets, newest activity first.

    Example: deskctl ticket list --status open --queue billing
    """
    context = app_context(ctx)
    if assignee == "me":
        assignee = context.settings.agent
    flt = svc.TicketFilter(status, queue, assignee, customer, search, limit)
    with context.transaction(write=False) as session:
        tickets = svc.list_tickets(session, flt)
        rows = [svc.ticket_summary(t) for t in tickets]
        colors = {t.id: t.queue.color for t in tickets}

    def human(out: Console) -> None:
        if not rows:
            out.print("no tickets", markup=False)
            return
        table = Table(box=None, expand=False)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("queue", no_wrap=True)
        # The fixed columns take about 50 cells; title and customer share the rest.
        spare = max(30, out.width - 50)
        table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=spare * 2 // 3)
        table.add_column("customer", no_wrap=True, overflow="ellipsis", max_width=spare // 3)
        table.add_column("assignee", no_wrap=True)
        table.add_column("msgs", justify="right", no_wrap=True)
        table.add_column("updated", no_wrap=True)
        for row in rows:
            cust = row["customer"]
            table.add_row(
                str(row["number"]),
                row["status"],
                Text(safe_text(row["queue"]), style=colors[row["id"]]),
                Text(safe_text(row["title"]), overflow="ellipsis", no_wrap=True),
                Text(safe_text(cust["email"] or "")),
                Text(safe_text(row["assignee"] or "")),
                str(row["messages"]),
                fmt_time(row["updated_at"]),
            )
        out.print(table)

    emit({"tickets": rows}, as_json=context.json, human=human)


def _render_ticket(out: Console, data: dict[str, Any], color: str) -> None:
    cust = data["customer"]
    head = Text()
    head.append(f"#{data['number']} ", style="bold")
    head.append(safe_text(data["title"]), style="bold")
    out.print(head)
    meta = Text()
    meta.append(f"{data['status']}  ")
    meta.append(safe_text(data["queue"]), style=color)
    meta.append(f"  customer {safe_text(cust['name'] or '')} <{safe_text(cust['email'] or '')}>")
    meta.append(f"  assignee {safe_text(data['assignee'] or '-')}")
    out.print(meta)
    for msg in data["messages"]:
        out.rule(style="dim")
        sender = msg["from"]
        line = Text(f"[{msg['id']}] {msg['direction']}  ", style="dim")
        line.append(safe_text(f"{sender['name']} <{sender['email']}>"))
        line.append(f"  {fmt_time(msg['date'])}", style="dim")
        if msg["flags"]:
            line.append("  " + ",".join(msg["flags"]), style="yellow")
        out.print(line)
        out.print(Text(safe_text(msg["body"]).rstrip()))
        for att in msg["attachments"]:
            out.print(
                Text(
                    f"  attachment: {safe_text(att['filename'])} "
                    f"({att['content_type']}, {att['size']} bytes)",
                    style="cyan",
                )
            )


@app.command("show")
def show(
    ctx: typer.Context,
    number: Annotated[int, typer.Argument(help="ticket number")],
    raw: Annotated[
        str | None,
        typer.Option("--raw", help="print the stored source of this message (id or Message-ID)"),
    ] = None,
) -> None:
    """Show a ticket with its conversation, or one message's raw source.

    Example: deskctl ticket show 1042
    """
    context = app_context(ctx)
    with context.transaction(write=False) as session:
        ticket = svc.get_ticket(session, number)
        if raw is not None:
            source = svc.get_raw(session, ticket, raw)
        else:
            data, color = svc.ticket_detail(ticket), ticket.queue.color
    if raw is not None:
        # Exactly the stored bytes for pipes and files; a terminal gets them
        # sanitised, because raw mail may carry escape sequences.
        if sys.stdout.isatty():
            sys.stdout.write(safe_text(source.decode("utf-8", "replace")))
        else:
            sys.stdout.buffer.write(source)
        sys.stdout.flush()
        return
    emit(data, as_json=context.json, human=lambda out: _render_ticket(out, data, color))
