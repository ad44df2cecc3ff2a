"""``deskctl quarantine``: mail that could not be parsed or stored."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deskctl.commands._common import app_context, finish, read_mail, report
from deskctl.commands.ingest import DEFAULT_MAX_SIZE
from deskctl.errors import ExitCode, NotFound, UsageError
from deskctl.mail.sanitize import one_line, safe_text
from deskctl.output import emit, fmt_time, show_value

#: On a terminal, ``show --raw`` prints at most this much (sanitised); a pipe gets every byte.
TERMINAL_BYTES = 1024 * 1024

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
        table = Table("id", "when", "channel", "size", "from", "reason", box=None)
        for row in rows:
            table.add_row(
                str(row["id"]),
                fmt_time(row["created_at"]),  # type: ignore[arg-type]
                Text(safe_text(str(row["channel"] or "-"))),
                str(row["size"]),
                Text(safe_text(str(row["sender"] or "-"))),
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

    --raw streams the bytes (from the database or the spool file) a slice at a
    time; on a terminal it shows the first MiB, made harmless.

    Example: deskctl quarantine show 3 --raw > broken.eml
    """
    from deskctl.services import quarantine as svc

    context = app_context(ctx)
    with context.transaction(write=False) as session:
        item = svc.get_quarantined(session, item_id)
        data = svc.quarantined_to_dict(item)
        if raw and (item.remote_uid is not None or item.remote_key is not None):
            raise NotFound(
                f"quarantined message {item_id} was never downloaded: it is still "
                f"{svc.kept_where(item)} ({item.size} bytes, over the size limit)"
            )
        if raw and item.spool_path is None:
            _write_raw(svc.raw_chunks(session, item_id), item.size)
            return
        spool, size = item.spool_path, item.size
    if raw and spool is not None:
        from deskctl.transport.spool import stream_file

        try:
            _write_raw(stream_file(Path(spool)), size)
        except OSError as exc:
            raise NotFound(
                f"the spool file of quarantined message {item_id} cannot be read: {exc.strerror}"
            ) from exc
        return

    def human(out: Console) -> None:
        # One line per field: a newline in a source (a file name) cannot add a field.
        for key, value in data.items():
            out.print(Text(f"{key}: {one_line(safe_text(show_value(value)))}"))

    emit(data, as_json=context.json, human=human)


def _write_raw(chunks: Iterable[bytes], size: int) -> None:
    """Every byte to a pipe or file; on a terminal, the first MiB through the sanitiser."""
    if not sys.stdout.isatty():
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        return
    shown = b""
    for chunk in chunks:
        shown += chunk[: TERMINAL_BYTES - len(shown)]
        if len(shown) >= TERMINAL_BYTES:
            break
    sys.stdout.write(safe_text(shown.decode("utf-8", "replace")))
    if size > len(shown):
        more = size - len(shown)
        sys.stdout.write(f"\n[{more} more bytes: redirect to a file for all of them]\n")


@app.command("retry")
def retry(
    ctx: typer.Context,
    item_id: Annotated[int, typer.Argument(help="quarantine id")],
    file: Annotated[
        str | None, typer.Option("--file", help="repaired message to store instead")
    ] = None,
    max_size: Annotated[
        int, typer.Option("--max-size", help="bytes; mail over it stays quarantined")
    ] = DEFAULT_MAX_SIZE,
) -> None:
    """Try a quarantined message again, after a fix or with repaired bytes.

    Example: deskctl quarantine retry 3 --file fixed.eml
    """
    from deskctl.jobs.pipeline import retry_quarantined

    context = app_context(ctx)
    replacement = None
    if file is not None:
        read = read_mail(file, max_size, None)
        if not isinstance(read, bytes):
            raise UsageError(f"{file} is {read.size} bytes, over the limit of {max_size}")
        replacement = read
    outcome = retry_quarantined(context, item_id, replacement, max_size)
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
    from deskctl.transport.spool import remove_spooled

    context = app_context(ctx)
    with context.transaction() as session:
        spooled = svc.drop_quarantined(session, item_id)
    remove_spooled(Path(spooled) if spooled is not None else None)
    report(context, {"dropped": item_id}, f"dropped {item_id}")
