"""The root command: global options, command groups, and the one exit boundary.

``main`` is the only place that turns a :class:`DeskError` into a message on
stderr and an exit status; commands end with :func:`deskctl.commands._common.finish`
for outcomes such as "partial" and raise for failures.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click import Command

from deskctl.config import resolve_settings
from deskctl.context import AppContext
from deskctl.errors import DeskError, ExitCode, TempFail

#: Each command's name, and where it lives: ``(module in deskctl.commands,
#: attribute)``, a Typer group or the function of a single command. In the
#: order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("db", "app"),
    "queue": ("queues", "app"),
    "ticket": ("tickets", "app"),
    "quarantine": ("quarantine", "app"),
    "channel": ("channels", "app"),
    "ingest": ("ingest", "ingest"),
    "fetch": ("fetch", "fetch"),
    "agent": ("agents", "app"),
    "filter": ("filters", "app"),
    "outbox": ("outbox", "app"),
    "send-outbox": ("outbox", "send_outbox"),
    "explain": ("explain", "explain"),
    "doctor": ("explain", "doctor"),
}


def build_command(name: str) -> Command:
    """Import one command's module and build its Click command, as the root would."""
    module_name, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(f"deskctl.commands.{module_name}"), attribute)
    host = typer.Typer(add_completion=False)
    host.callback()(_host)
    if isinstance(target, typer.Typer):
        host.add_typer(target, name=name)
    else:
        host.command(name)(target)
    group = typer.main.get_command(host)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


def _host() -> None:
    """A callback, so that Typer builds a group even around a single command."""


class _LazyCommands(MutableMapping[str, "Command"]):
    """The root's subcommands, each built on first use.

    Typer builds a Click command for every function up front, reading each
    signature's type hints: about 30 ms on every start, and the import of
    every command module. Built lazily (Click's documented pattern for large
    CLIs), a run pays only for the command it runs; ``--help`` builds all.
    """

    def __init__(self) -> None:
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = build_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*COMMANDS, *(n for n in self._built if n not in COMMANDS)])

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))


class LazyGroup(TyperGroup):
    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands()


app = typer.Typer(
    name="deskctl",
    help="A help desk for the shell: support inboxes in, tickets out, replies from the shell.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LazyGroup,
)


@dataclass
class RunState:
    """What ``main`` needs to know after the command ran (or failed)."""

    json: bool = False
    verbose: int = 0
    context: AppContext | None = field(default=None)


class _SafeFormatter(logging.Formatter):
    """Log lines can quote mail (a subject, a header); none may reach the terminal raw.

    A message is one line: a newline in what it quotes (a file name, a header)
    is written as ``\\n``, so it cannot forge a log line of its own. A traceback
    (``-vv``) keeps its lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        from deskctl.mail.sanitize import one_line

        record.message = one_line(record.message)
        return super().formatMessage(record)

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
        typer.Option("--db", help="SQLAlchemy URL \\[env: DESKCTL_DB]", show_default=False),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="TOML config file \\[env: DESKCTL_CONFIG]")
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="who is acting \\[env: DESKCTL_AGENT]")
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
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    state = RunState()
    if "--mta" in args:
        return _main_for_mail_server(command, args, state)
    try:
        # Standalone mode lets Typer print usage errors its own way (exit 2);
        # our own failures are not Click exceptions and arrive here unchanged.
        command.main(args=args, prog_name="deskctl", standalone_mode=True, obj=state)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.OK
    except DeskError as exc:
        return _report(state, exc.code, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, no secrets
        return _report(state, "internal", _internal(state, exc), 1)
    return ExitCode.OK


def _internal(state: RunState, exc: Exception) -> str:
    logging.getLogger(__name__).debug("internal error", exc_info=True)
    hint = "" if state.verbose else " (run with -v for details)"
    return f"internal error: {type(exc).__name__}: {exc}{hint}"


def _main_for_mail_server(command: Command, args: list[str], state: RunState) -> int:
    """``ingest --mta``: 0 only once the mail is kept, every other outcome 75 and one line.

    A mail server bounces the customer's mail on any other non-zero status,
    and it runs the alias before any of our code can look at the mail: a
    misspelt option (Click's usage error, exit 2), an unreadable config
    file, an unusable home or an internal error must all ask it to retry
    instead. Click runs in non-standalone mode here so that its usage
    errors come back as exceptions rather than a usage screen and exit 2.
    """
    from typer._click.exceptions import ClickException

    retry = "not stored, the mail server will retry: "
    try:
        status = command.main(args=args, prog_name="deskctl", standalone_mode=False, obj=state)
    except TempFail as exc:
        return _report(state, exc.code, exc.message, ExitCode.TEMPFAIL)
    except DeskError as exc:
        return _report(state, exc.code, retry + exc.message, ExitCode.TEMPFAIL)
    except ClickException as exc:
        fix = f"fix the command line ({' '.join(args)}): {exc.format_message()}"
        return _report(state, "usage", retry + fix, ExitCode.TEMPFAIL)
    except (typer.Abort, KeyboardInterrupt):
        return _report(state, "tempfail", retry + "interrupted", ExitCode.TEMPFAIL)
    except SystemExit as exc:  # Typer's own exit on a broken pipe
        status = exc.code
    except Exception as exc:
        return _report(state, "internal", retry + _internal(state, exc), ExitCode.TEMPFAIL)
    if isinstance(status, int) and status != ExitCode.OK:
        message = f"{retry}deskctl ended with status {status}"
        return _report(state, "tempfail", message, ExitCode.TEMPFAIL)
    return ExitCode.OK


def run() -> None:
    sys.exit(main())
