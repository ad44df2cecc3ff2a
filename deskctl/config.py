"""Where settings come from: flag > environment > config file > default.

One home directory (``DESKCTL_HOME``) holds the default database, the config
file and token caches, so a test or a second installation points one variable
elsewhere and shares nothing with the user's real data.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskctl.errors import ConfigError


def home_dir() -> Path:
    """The data home: ``DESKCTL_HOME`` or the platform's user data dir."""
    env = os.environ.get("DESKCTL_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("deskctl")


def default_config_path() -> Path:
    env_home = os.environ.get("DESKCTL_HOME")
    if env_home:
        return Path(env_home).expanduser() / "config.toml"
    from platformdirs import user_config_path

    return user_config_path("deskctl") / "config.toml"


#: How many of the answered mail's other recipients a reply keeps as Cc when
#: config.toml (``reply_max_cc``) and ``DESKCTL_REPLY_MAX_CC`` say nothing.
DEFAULT_REPLY_MAX_CC = 10


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    agent: str
    home: Path
    config_path: Path | None
    reply_max_cc: int  # Cc kept from the answered mail (services/recipients.py)


def _read_config(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


def resolve_settings(*, db: str | None, config: str | None, agent: str | None) -> Settings:
    """Resolve every global setting once, at start-up, in contract order."""
    explicit = config is not None or "DESKCTL_CONFIG" in os.environ
    config_path = Path(config or os.environ.get("DESKCTL_CONFIG") or default_config_path())
    data = _read_config(config_path.expanduser(), explicit)
    home = home_dir()
    db_url = (
        db or os.environ.get("DESKCTL_DB") or data.get("db") or f"sqlite:///{home / 'deskctl.db'}"
    )
    agent_name = agent or os.environ.get("DESKCTL_AGENT") or data.get("agent") or getpass.getuser()
    return Settings(
        db_url=str(db_url),
        agent=str(agent_name),
        home=home,
        config_path=config_path if config_path.exists() else None,
        reply_max_cc=_max_cc(os.environ.get("DESKCTL_REPLY_MAX_CC", data.get("reply_max_cc"))),
    )


def _max_cc(value: object) -> int:
    """``reply_max_cc``: how many of the answered mail's other recipients a reply keeps."""
    if value is None:
        return DEFAULT_REPLY_MAX_CC
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number < 0 or isinstance(value, bool):
        raise ConfigError(f"reply_max_cc must be a whole number of 0 or more, not {value!r}")
    return number
