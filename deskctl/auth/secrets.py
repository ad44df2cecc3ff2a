"""Where a channel's secret comes from: a command, an environment variable or a file.

The database stores only the reference (promise 6). The secret is read when
needed and never logged; error messages name the reference, never the value.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from deskctl.errors import ConfigError

SOURCES = ("cmd", "env", "file")


def describe(source: str | None, ref: str | None) -> str:
    """A safe description for ``channel show``: where, never what."""
    if source == "cmd":
        return f"output of command: {ref}"
    if source == "env":
        return f"environment variable {ref}"
    if source == "file":
        return f"file {ref}"
    return "none"


def resolve(source: str | None, ref: str | None, *, channel: str) -> str:
    """The secret, or a ConfigError whose message starts ``channel NAME: ``.

    That one prefix is how every auth error names its channel: send-outbox
    prints the message as it is, and fetch and doctor, which name the channel
    themselves, take it off (:func:`deskctl.errors.channel_reason`).
    """
    if source is None or ref is None:
        raise ConfigError(
            f"channel {channel}: no secret given: set --password-cmd, --password-env "
            "or --password-file"
        )
    if source == "env":
        value = os.environ.get(ref)
        if not value:
            raise ConfigError(f"channel {channel}: environment variable {ref} is not set")
        return value
    if source == "file":
        try:
            return Path(ref).expanduser().read_text().strip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"channel {channel}: cannot read secret file {ref}: {exc.strerror}"
            ) from exc
    if source == "cmd":
        try:
            proc = subprocess.run(
                ref, shell=True, capture_output=True, text=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(f"channel {channel}: password command timed out") from exc
        if proc.returncode != 0:
            raise ConfigError(f"channel {channel}: password command exited {proc.returncode}")
        value = proc.stdout.splitlines()[0] if proc.stdout else ""
        if not value:
            raise ConfigError(f"channel {channel}: password command printed nothing")
        return value
    raise ConfigError(f"channel {channel}: unknown secret source {source!r}")
