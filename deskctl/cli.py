"""The root command: global options, command groups, and the one exit boundary.

``main`` is the only place that turns a :class:`DeskError` into a message on
stderr and an exit status; commands end with :func:`deskctl.commands._common.finish`
for outcomes such as "partial" and raise for failures.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Annotated

import typer

from deskctl.commands import (
    agents,
    channels,
    db,
    explain,
    fetch,
    filters,
    ingest,
    outbox,
    quarantine,
    queues,
    tickets,
)
from deskctl.config import resolve_settings
from deskctl.context import AppContext
from deskctl.errors import DeskError, ExitCode

app = typer.Typer(
    name="deskctl",
    help="A help desk for the shell: support inboxes in, tickets out, replies from the shell.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(queues.app, name="queue")
app.add_typer(tickets.app, name="ticket")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(channels.app, name="channel")
app.command("ingest")(ingest.ingest)
app.command("fetch")(fetch.fetch)
app.add_typer(agents.app, name="agent")
app.add_typer(filters.app, name="filter")
app.add_typer(outbox.app, name="outbox")
app.command("send-outbox")(outbox.send_outbox)
app.command("explain")(explain.explain)
app.command("doctor")(explain.doctor)


@dataclass
class RunState:
    """What ``main`` needs to know after the command ran (or failed)."""

    json: bool = False
    verbose: int = 0
    context: AppContext | None = field(default=None)


class _SafeFormatter(logging.Formatter):
    """Log lines can quote mail (a subject, a header); none may reach the terminal raw."""

    def format(self, record: logging.LogRecord) -> str:
        from deskctl.mail.sanitize import safe_text

        return safe_text(super().format(record))


def _setup_logging(quiet: bool, verbose: int) -> None:
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("deskctl: %(levelname)s: %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@app.callback()
def root(
    ctx: typer.Context,
    db_url: Annotated[
        str | None,
        typer.Option("--db", help="SQLAlchemy URL [env: DESKCTL_DB]", show_default=False),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="TOML config file [env: DESKCTL_CONFIG]")
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="who is acting [env: DESKCTL_AGENT]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="nothing on success")] = False,
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="more logs")] = 0,
) -> None:
    """Mail in from any inbox, tickets in one shared database, replies from the shell."""
    state: RunState = ctx.ensure_object(RunState)
    state.json, state.verbose = as_json, verbose
    _setup_logging(quiet, verbose)
    settings = resolve_settings(db=db_url, config=config, agent=agent)
    state.context = AppContext(settings=settings, json=as_json, quiet=quiet, verbose=verbose)
    ctx.obj = state


def _report(state: RunState, code: str, message: str, exit_code: int) -> int:
    from deskctl.mail.sanitize import safe_text

    line = safe_text(message).replace("\n", " ")
    sys.stderr.write(f"deskctl: error: {line}\n")
    if state.json:
        sys.stdout.write(json.dumps({"error": {"code": code, "message": line}}) + "\n")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    """Run deskctl and return its exit status (the console script exits with it)."""
    command = typer.main.get_command(app)
    state = RunState()
    try:
        # Standalone mode lets Typer print usage errors its own way (exit 2);
        # our own failures are not Click exceptions and arrive here unchanged.
        command.main(args=argv, prog_name="deskctl", standalone_mode=True, obj=state)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.OK
    except DeskError as exc:
        return _report(state, exc.code, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, no secrets
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        hint = "" if state.verbose else " (run with -v for details)"
        return _report(state, "internal", f"internal error: {type(exc).__name__}: {exc}{hint}", 1)
    return ExitCode.OK


def run() -> None:
    sys.exit(main())
