"""``deskctl ingest``: mail given as files or piped in by a mail server."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from deskctl.commands._common import app_context, finish, read_mail
from deskctl.errors import ExitCode, UsageError
from deskctl.mail.sanitize import one_line, safe_text
from deskctl.output import emit, warn

DEFAULT_MAX_SIZE = 25 * 1024 * 1024


def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[str] | None, typer.Argument(help="RFC 5322 files; stdin when none")
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel",
            help="the channel the mail arrived on (default: the one whose address it was sent to)",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would happen")] = False,
    max_size: Annotated[int, typer.Option("--max-size", help="bytes; larger is quarantined")] = (
        DEFAULT_MAX_SIZE
    ),
    mta: Annotated[
        bool,
        typer.Option(
            "--mta", help="for a mail server: exit 75 (try later) unless the mail is kept"
        ),
    ] = False,
) -> None:
    """Turn mail into tickets: files, or one message on stdin from a mail server.

    In an alias (the README's "Mail from a mail server" has the whole recipe):
    support: "|/usr/bin/env DESKCTL_HOME=/var/lib/deskctl /usr/local/bin/deskctl ingest --mta"

    With --mta, exit 0 means the mail is kept (as a ticket or in quarantine); anything
    else exits 75 (EX_TEMPFAIL), so the mail server queues the mail and retries instead
    of bouncing it to the customer.

    Example: deskctl ingest --json message.eml
    """
    from deskctl.jobs.pipeline import ingest_many
    from deskctl.services.channels import get_incoming

    context = app_context(ctx)
    channel_id = None
    if channel is not None:
        with context.transaction(write=False) as session:
            channel_id = get_incoming(session, channel).id
    sources = files or ["-"]
    if sources.count("-") > 1:
        raise UsageError("stdin ('-') can be read only once")
    from deskctl.transport.spool import spool_dir

    # Mail over the limit is streamed to the spool, never held (a dry run keeps nothing).
    spool = None if dry_run else spool_dir(context.settings.home)
    messages = (
        ("stdin" if source == "-" else source, read_mail(source, max_size, spool))
        for source in sources
    )
    outcomes = ingest_many(
        context,
        messages,
        len(sources),
        channel_id=channel_id,
        max_size=max_size,
        dry_run=dry_run,
    )
    documents = [o.to_dict() for o in outcomes]

    def human(out: Console) -> None:
        if context.quiet:
            return
        prefix = "would be " if dry_run else ""
        for source, o in zip(sources, outcomes, strict=True):
            name = "stdin" if source == "-" else one_line(source)
            if o.quarantined is not None:
                out.print(Text(safe_text(f"{name}: quarantined as {o.quarantined}: {o.reason}")))
            elif o.duplicate:
                out.print(Text(f"{name}: already stored on ticket #{o.ticket}"))
            else:
                what = "new ticket" if o.created else f"added to ticket ({o.rule})"
                where = f" on channel {o.details['channel']}" if o.details["channel"] else ""
                out.print(Text(safe_text(f"{name}: {prefix}{what} #{o.ticket}{where}")))
                if (o.details["ack"] or "").startswith("not sent"):
                    warn(f"{name}: acknowledgement {o.details['ack']}")

    emit(documents[0] if len(documents) == 1 else documents, as_json=context.json, human=human)
    quarantined = any(o.quarantined is not None for o in outcomes)
    finish(ExitCode.PARTIAL if quarantined and not mta else ExitCode.OK)
