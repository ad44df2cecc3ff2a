"""``deskctl agent``: the people who work tickets."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deskctl.commands._common import app_context, read_text, report
from deskctl.output import emit

app = typer.Typer(help="Agents: who replies, notes and assigns.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="agent name (as in --agent / DESKCTL_AGENT)")],
    email: Annotated[str | None, typer.Option("--email")] = None,
    signature_file: Annotated[str | None, typer.Option("--signature-file")] = None,
) -> None:
    """Add an agent, with an address and a signature for replies.

    Example: deskctl agent add alice --email alice@example.com --signature-file ~/sig.txt
    """
    from deskctl.services import agents as svc

    context = app_context(ctx)
    signature = None
    if signature_file:
        signature = read_text(signature_file)
    with context.transaction() as session:
        data = svc.agent_to_dict(svc.add_agent(session, name, email=email, signature=signature))
    report(context, data, f"agent {name} added")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List agents.

    Example: deskctl agent list
    """
    from deskctl.services import agents as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        rows = [svc.agent_to_dict(a) for a in svc.list_agents(session)]

    def human(out: Console) -> None:
        table = Table("agent", "email", "signature", box=None)
        for row in rows:
            table.add_row(
                str(row["name"]), str(row["email"] or "-"), "yes" if row["signature"] else "no"
            )
        out.print(table)

    emit({"agents": rows}, as_json=context.json, human=human)
