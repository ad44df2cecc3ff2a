"""Small helpers every command module shares."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from deskctl.context import AppContext
from deskctl.errors import ExitCode

if TYPE_CHECKING:
    from deskctl.transport.spool import Oversize


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


def log_stamp() -> str:
    """The time at the start of a cron job's summary line (UTC), so a log says when."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(context: AppContext, document: Any, line: str) -> None:
    """What a changing command prints: the JSON document, or one line (nothing with -q)."""
    from rich.text import Text

    from deskctl.output import emit

    emit(
        document,
        as_json=context.json,
        human=lambda out: None if context.quiet else out.print(Text(line)),
    )


def read_file(path: str) -> bytes:
    """A file named on the command line; a missing or unreadable one is a usage error."""
    from pathlib import Path

    from deskctl.errors import UsageError

    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def read_mail(source: str, max_size: int, spool: Path | None) -> bytes | Oversize:
    """A message from a file or stdin (``-``), read in chunks and never past ``max_size``.

    Larger mail is streamed to ``spool`` (see transport/spool.py), or with
    ``spool`` None (a dry run) only measured.
    """
    import sys

    from deskctl.errors import UsageError
    from deskctl.transport.spool import read_bounded

    if source == "-":
        return read_bounded(sys.stdin.buffer, max_size, spool)
    try:
        with Path(source).expanduser().open("rb") as fh:
            return read_bounded(fh, max_size, spool)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from exc


def read_text(path: str) -> str:
    return read_file(path).decode("utf-8", "replace")
