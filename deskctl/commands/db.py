"""``deskctl db``: create and upgrade the schema."""

from __future__ import annotations

from typing import Annotated

import typer

from deskctl.commands._common import app_context, report
from deskctl.output import emit

app = typer.Typer(help="Create, upgrade and inspect the database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    token_tag: Annotated[
        str | None,
        typer.Option(
            "--token-tag",
            help="this installation's ticket token tag, set once: ACME makes [ACME #12]",
        ),
    ] = None,
) -> None:
    """Create the schema or bring it up to date. Safe to run again.

    Example: deskctl db upgrade --token-tag ACME
    """
    from deskctl.services.threading import set_token_tag, token_scheme
    from deskctl.store import migrate

    context = app_context(ctx)
    before, after = migrate.upgrade(context.engine(check_schema=False))
    with context.transaction(write=token_tag is not None) as session:
        scheme = set_token_tag(session, token_tag) if token_tag else token_scheme(session)
        token = scheme.token(12)
    was = "" if before == after else f" (was {before})"
    report(
        context,
        {"from": before, "to": after, "token_tag": scheme.tag},
        f"database at revision {after}{was}; ticket tokens look like {token}",
    )


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and the one this deskctl needs.

    Example: deskctl db current
    """
    from deskctl.store import migrate

    context = app_context(ctx)
    engine = context.engine(check_schema=False)
    cur, head = migrate.current_revision(engine), migrate.head_revision(engine)
    emit(
        {"current": cur, "head": head, "up_to_date": cur == head},
        as_json=context.json,
        human=lambda out: out.print(
            f"current {cur or '(none)'}, head {head}"
            + ("" if cur == head else " - run `deskctl db upgrade`"),
            markup=False,
        ),
    )
