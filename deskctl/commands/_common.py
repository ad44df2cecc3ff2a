"""Small helpers every command module shares."""

from __future__ import annotations

import typer

from deskctl.context import AppContext


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext the root callback built."""
    state = ctx.find_root().obj
    assert state is not None and state.context is not None
    context: AppContext = state.context
    return context
