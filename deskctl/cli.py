"""The root command: global options, command groups, and the one exit boundary.

``main`` is the only place that turns a :class:`DeskError` into a message on
stderr and an exit status; commands end with :func:`deskctl.commands._common.finish`
for outcomes such as "partial" and raise for failures.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click import Command, Context, Parameter
    from typer._click.exceptions import UsageError as ClickUsageError

from deskctl.config import resolve_settings
from deskctl.context import AppContext
from deskctl.errors import DeskError, ExitCode

#: Each command's name, and where it lives: ``(module in deskctl.commands,
#: attribute)``, a Typer group or the function of a single command. In the
#: order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("db", "app"),
    "queue": ("queues", "app"),
    "ticket": ("tickets", "app"),
    "attachment": ("attachments", "app"),
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
    command = group.commands[name]
    accept_global_options(command)
    return command


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
    add_completion=False,  # its options import shellingham on every run; see main()
    cls=LazyGroup,
)


@dataclass
class RunState:
    """What ``main`` needs to know after the command ran (or failed)."""

    json: bool = False
    quiet: bool = False
    verbose: int = 0
    context: AppContext | None = field(default=None)
    #: --db, --config and --agent as given, before or after the command.
    given: dict[str, str | None] = field(default_factory=dict)

    def apply(self) -> None:
        """(Re)build logging and the context from the options given so far."""
        _setup_logging(self.quiet, self.verbose)
        settings = resolve_settings(
            db=self.given.get("db_url"),
            config=self.given.get("config"),
            agent=self.given.get("agent"),
        )
        self.context = AppContext(
            settings=settings, json=self.json, quiet=self.quiet, verbose=self.verbose
        )


def _global_after(ctx: Context, param: Parameter, value: Any) -> None:
    """A global option given after the command: it counts as if given before."""
    if ctx.resilient_parsing or value in (None, False, 0):
        return
    state: RunState = ctx.find_root().obj
    name = str(param.name).removeprefix(_AFTER)
    if name == "as_json":
        state.json = True
    elif name == "quiet":
        state.quiet = True
    elif name == "verbose":
        state.verbose += int(value)
    else:
        state.given[name] = str(value)
    state.apply()


#: The prefix of their names on a leaf command, where a parameter of the
#: command's own may have the same name (``ticket assign ID AGENT``).
_AFTER = "deskctl_global_"


def _global_options() -> list[Parameter]:
    """The root's options, for a leaf command (hidden: the root's --help lists them)."""
    from typer.core import TyperOption

    def option(decls: list[str], name: str, **kwargs: Any) -> Parameter:
        return TyperOption(
            param_decls=[_AFTER + name, *decls],
            callback=_global_after,
            expose_value=False,
            hidden=True,
            **kwargs,
        )

    return [
        option(["--db"], "db_url", type=str),
        option(["--config"], "config", type=str),
        option(["--agent"], "agent", type=str),
        option(["--json"], "as_json", is_flag=True, default=False),
        option(["-q", "--quiet"], "quiet", is_flag=True, default=False),
        option(["-v", "--verbose"], "verbose", count=True, default=0),
    ]


def accept_global_options(command: Command) -> None:
    """Let ``deskctl ticket list --json`` mean ``deskctl --json ticket list``, as in gh.

    Every leaf command takes the global options too; given there, they
    update the run's state the root callback set up. A command's own option
    of the same name (none today) would win.
    """
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            accept_global_options(sub)
        return
    taken = {opt for p in command.params for opt in getattr(p, "opts", [])}
    command.params.extend(
        p for p in _global_options() if not taken.intersection(getattr(p, "opts", []))
    )


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


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"deskctl {version('deskctl')}\n")
        raise typer.Exit()


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
    quiet: Annotated[
        bool,
        typer.Option("-q", "--quiet", help="cron: one summary line when a job did something"),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            metavar="",
            show_default=False,
            help="more logs on stderr; -vv for debug",
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="print the version"),
    ] = False,
) -> None:
    """Mail in from any inbox, tickets in one shared database, replies from the shell.

    The global options may also follow the command: deskctl ticket list --json
    """
    state: RunState = ctx.ensure_object(RunState)
    state.json, state.quiet, state.verbose = as_json, quiet, verbose
    state.given = {"db_url": db_url, "config": config, "agent": agent}
    state.apply()
    ctx.obj = state


def _report(state: RunState, code: str, message: str, exit_code: int) -> int:
    from deskctl.mail.sanitize import safe_text

    line = safe_text(message).replace("\n", " ")
    sys.stderr.write(f"deskctl: error: {line}\n")
    if state.json:
        sys.stdout.write(json.dumps({"error": {"code": code, "message": line}}) + "\n")
    return exit_code


#: The environment variable the shell's completion script sets (README: Shell completion).
COMPLETE_VAR = "_DESKCTL_COMPLETE"


def usage_message(exc: ClickUsageError) -> str:
    """A usage error as one line: what is wrong, the likeliest fix, where help is.

    Typer draws a box over several lines; every other deskctl error is one
    ``deskctl: error: ...`` line, and scripts read usage errors the same way.
    """
    from typer._click.exceptions import NoSuchOption

    if isinstance(exc, NoSuchOption):
        message = exc.message
        if exc.possibilities:
            message += f"; did you mean {' or '.join(sorted(exc.possibilities))}?"
    else:  # Typer's own suggestion for a command is a second sentence
        message = exc.format_message().replace(". Did you mean", "; did you mean")
    message = message[:1].lower() + message[1:]
    where = exc.ctx.command_path if exc.ctx is not None else "deskctl"
    return f"{message.rstrip('.')} (see '{where} --help')"


def main(argv: list[str] | None = None) -> int:
    """Run deskctl and return its exit status (the console script exits with it)."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
    from typer._click.exceptions import UsageError as ClickUsageError

    if COMPLETE_VAR in os.environ:
        # The shell asks for completions (or the script): Typer's shells are
        # registered only now, so an ordinary run never imports them.
        from typer.completion import completion_init

        completion_init()
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    state = RunState()
    if "--mta" in args:
        return _main_for_mail_server(command, args, state)
    try:
        # Not standalone: usage errors come here to be printed our way, in one line.
        result = command.main(args=args, prog_name="deskctl", standalone_mode=False, obj=state)
        return result if isinstance(result, int) else ExitCode.OK
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.OK
    except NoArgsIsHelpError as exc:  # a bare group: its help, as before
        exc.show()
        return exc.exit_code
    except ClickUsageError as exc:
        return _report(state, "usage", usage_message(exc), ExitCode.USAGE)
    except ClickException as exc:
        return _report(state, "usage", exc.format_message(), exc.exit_code)
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
