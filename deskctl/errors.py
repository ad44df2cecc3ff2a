"""Every failure deskctl reports, each with the exit code scripts rely on.

Exit codes are part of the command-line contract (CLI.md): cron wrappers and
monitoring branch on them, so each failure kind maps to exactly one code and
only ``deskctl.cli.main`` turns an error into a process exit.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    CONFIG = 5
    UNREACHABLE = 6
    PARTIAL = 7
    TEMPFAIL = 75  # sysexits EX_TEMPFAIL: only `ingest --mta`, so the mail server retries


class DeskError(Exception):
    """Base of every expected failure; the message tells the user what to do."""

    exit_code: ExitCode = ExitCode.INTERNAL
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(DeskError):
    exit_code = ExitCode.USAGE
    code = "usage"


class NotFound(DeskError):
    exit_code = ExitCode.NOT_FOUND
    code = "not_found"


class Conflict(DeskError):
    exit_code = ExitCode.CONFLICT
    code = "conflict"


class ConfigError(DeskError):
    """Configuration or credentials: a missing secret, a refused login, an old schema."""

    exit_code = ExitCode.CONFIG
    code = "config"


class SchemaBehind(ConfigError):
    code = "schema_behind"


class Unreachable(DeskError):
    """The mail server could not be reached: DNS, connect, TLS, temporary refusal."""

    exit_code = ExitCode.UNREACHABLE
    code = "unreachable"


def channel_reason(channel: str, message: str) -> str:
    """``message`` without the ``channel NAME: `` that auth errors start with.

    An auth error names its channel, because send-outbox prints it as it is;
    a line that names the channel itself (fetch's, doctor's) takes the
    prefix off rather than say the name twice.
    """
    return message.removeprefix(f"channel {channel}: ")
