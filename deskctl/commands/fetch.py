"""``deskctl fetch``: the cron job that reads every inbox."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text

from deskctl.commands._common import app_context, finish, log_stamp
from deskctl.errors import channel_reason
from deskctl.mail.sanitize import safe_text
from deskctl.output import emit, stderr

if TYPE_CHECKING:
    from deskctl.context import AppContext
    from deskctl.jobs.fetch import ChannelReport


def fetch(
    ctx: typer.Context,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="only this channel (repeatable)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="at most N per channel")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="read, store nothing")] = False,
    max_size: Annotated[
        int, typer.Option("--max-size", help="bytes; larger mail is quarantined")
    ] = 25 * 1024 * 1024,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="keep running: IMAP IDLE where the server has it, else poll"),
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=1.0,
            metavar="S",
            help="with --watch: seconds between fetches of channels without IDLE \\[default: 60]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Read new mail from every enabled channel into tickets.

    Example: deskctl -q fetch     (every minute from cron; see crontab.example)

    Or as a service, tickets within seconds: deskctl -q fetch --watch
    (deskctl-watch.service); it ends cleanly on SIGTERM or Ctrl-C.
    """
    from deskctl.jobs.fetch import FetchOptions, exit_code, fetch_all

    context = app_context(ctx)
    if watch or interval is not None:
        _watch(context, channel or [], watch, interval, max_size, limit=limit, dry_run=dry_run)
        return
    show_bar = sys.stderr.isatty() and not context.quiet and not context.json
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=stderr,
        transient=True,
        disable=not show_bar,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        opts = FetchOptions(limit=limit, dry_run=dry_run, max_size=max_size, progress=progress)
        reports = fetch_all(context, channel or [], opts)
    show(context, reports)
    finish(exit_code(reports))


def _watch(
    context: AppContext,
    names: list[str],
    watch: bool,
    interval: float | None,
    max_size: int,
    *,
    limit: int | None,
    dry_run: bool,
) -> None:
    """``fetch --watch``: each round that did something is shown as one cron run is."""
    from deskctl.errors import UsageError
    from deskctl.jobs.watch import DEFAULT_INTERVAL, WatchOptions
    from deskctl.jobs.watch import watch as run_watch

    if not watch:
        raise UsageError("--interval goes with --watch")
    if dry_run or limit is not None:
        # A watch stores what comes for as long as it runs; a dry run or a
        # count would be a fetch that never ends or one that ends at random.
        raise UsageError(f"--watch cannot be combined with {'--dry-run' if dry_run else '--limit'}")

    def say(line: str) -> None:
        stderr.print(Text(safe_text(f"deskctl: {line}")))

    opts = WatchOptions(interval=interval or DEFAULT_INTERVAL, max_size=max_size)
    run_watch(context, names, opts, on_round=lambda reports: show(context, reports), say=say)


def show(context: AppContext, reports: list[ChannelReport]) -> None:
    """A fetch's reports: one summary line with -q (none when idle), else a line per channel."""

    def human(out: Console) -> None:
        if context.quiet:
            # Cron's log: one line for a run that did something, none for an idle one;
            # what failed or was not read is named here, and said in full on stderr.
            busy = [r for r in reports if r.fetched or r.quarantined]
            failed = [r.name for r in reports if r.error]
            unread = sum(len(r.unread) for r in reports)
            if busy or failed or unread:
                total = {k: sum(getattr(r, k) for r in busy) for k in _SUMMED}
                names = f" ({', '.join(r.name for r in busy)})" if busy else ""
                problems = (f"; failed: {', '.join(failed)}" if failed else "") + (
                    f"; {unread} not read" if unread else ""
                )
                summary = f"{log_stamp()} fetch: {_counts(total)}{names}{problems}"
                out.print(Text(safe_text(summary)))
            return
        if not reports:
            out.print("no channels to fetch: add one with `deskctl channel add`")
        for r in reports:
            if r.error:
                # Mail stored before a failure (e.g. an after-fetch folder) is worth saying.
                done = (
                    f"{r.fetched} fetched, {r.tickets_created} new tickets; " if r.fetched else ""
                )
                line = Text(safe_text(f"{r.name}: {done}failed: {_reason(r)}"), style="red")
            elif r.skipped:
                line = Text(f"{r.name}: skipped: {r.skipped}")
            else:
                line = Text(f"{r.name}: {_counts({k: getattr(r, k) for k in _SUMMED})}")
            out.print(line)
            for entry in r.unread:
                out.print(Text(safe_text(f"{r.name}: not read: {entry}"), style="yellow"))

    emit({"channels": [r.to_dict() for r in reports]}, as_json=context.json, human=human)
    for r in reports:
        if r.error:
            stderr.print(Text(safe_text(f"deskctl: error: channel {r.name}: {_reason(r)}")))
        if context.quiet and not context.json:  # the log line only counts them
            for entry in r.unread:
                stderr.print(
                    Text(safe_text(f"deskctl: warning: channel {r.name}: not read: {entry}"))
                )


def _reason(report: ChannelReport) -> str:
    return channel_reason(report.name, report.error or "")


_SUMMED = (
    "fetched",
    "tickets_created",
    "messages_added",
    "skipped_duplicates",
    "quarantined",
    "left_on_server",
)


def _counts(n: dict[str, int]) -> str:
    return (
        f"{n['fetched']} fetched, {n['tickets_created']} new tickets, "
        f"{n['messages_added']} added to tickets, {n['skipped_duplicates']} duplicates, "
        f"{n['quarantined']} quarantined"
        + (f" ({n['left_on_server']} too large, left on the server)" if n["left_on_server"] else "")
    )
