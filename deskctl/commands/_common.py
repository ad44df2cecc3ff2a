"""Small helpers every command module shares."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

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


def open_named(path: str) -> BinaryIO:
    """A file named on the command line, open for reading; anything else is a usage error.

    Only a regular file (a link to one is fine): a FIFO, a device or a directory
    is refused at once, before anything could block on it or read it forever.
    """
    from deskctl.errors import UsageError
    from deskctl.transport.files import NotRegularFile, open_regular

    try:
        return open_regular(Path(path).expanduser())
    except NotRegularFile as exc:
        raise UsageError(f"cannot read {path}: it is {exc.strerror}, not a regular file") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def read_file(path: str, *, limit: int | None = None, over_limit: str = "") -> bytes:
    """The bytes of a file named on the command line (see :func:`open_named`).

    With ``limit``, a file of more than that many bytes is refused too, with
    ``over_limit`` as the reason (no more than ``limit + 1`` bytes are read).
    """
    from deskctl.errors import UsageError

    with open_named(path) as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise UsageError(over_limit or f"{path} is over the limit of {limit} bytes")
    return data


def read_mail(source: str, max_size: int, spool: Path | None) -> bytes | Oversize:
    """A message from a file or stdin (``-``), read in chunks and never past ``max_size``.

    Larger mail is streamed to ``spool`` (see transport/spool.py), or with
    ``spool`` None (a dry run) only measured.
    """
    import sys

    from deskctl.transport.spool import read_bounded

    if source == "-":
        return read_bounded(sys.stdin.buffer, max_size, spool)
    with open_named(source) as fh:
        return read_bounded(fh, max_size, spool)


def read_text(path: str) -> str:
    return read_file(path).decode("utf-8", "replace")
