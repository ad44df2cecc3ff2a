"""Small helpers every command module shares."""

from __future__ import annotations

import typer

from deskctl.context import AppContext
from deskctl.errors import ExitCode


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext the root callback built."""
    state = ctx.find_root().obj
    assert state is not None and state.context is not None
    context: AppContext = state.context
    return context


def finish(code: ExitCode) -> None:
    """End a command with an outcome status such as "partial" (7)."""
    if code != ExitCode.OK:
        raise typer.Exit(int(code))
