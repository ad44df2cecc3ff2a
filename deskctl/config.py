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


def make_private_dir(folder: Path, what: str = "the folder") -> None:
    """Create ``folder`` and any missing parents as 0700, whatever the umask.

    The home holds customer mail (the database, the quarantine spool) and
    token caches, so what deskctl creates is private by default. A folder
    that already exists keeps its mode: a team that shares one SQLite file
    gives the folder a group on purpose, and deskctl must not undo that.
    """
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made by a run beside us; its mode is its creator's
        except OSError as exc:
            raise ConfigError(
                f"cannot create {what} {candidate}: {exc.strerror}; set DESKCTL_HOME to a folder"
                " this user may write, or name the database with --db"
            ) from exc
        os.chmod(candidate, 0o700)  # mkdir's mode passes through the umask


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


def _read_config(path: Path, explicit: bool) -> dict[str, Any] | None:
    """The config file's settings; None when there is none (and none was asked for)."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from exc
        return None
    except OSError as exc:  # unreadable (mode, owner), a folder, a dangling home
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}; make it readable by this user"
            " or point --config (DESKCTL_CONFIG) elsewhere"
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse config file {path}: {exc}; fix the TOML") from exc


def resolve_settings(*, db: str | None, config: str | None, agent: str | None) -> Settings:
    """Resolve every global setting once, at start-up, in contract order."""
    explicit = config is not None or "DESKCTL_CONFIG" in os.environ
    config_path = Path(config or os.environ.get("DESKCTL_CONFIG") or default_config_path())
    found = _read_config(config_path.expanduser(), explicit)
    data = found or {}
    home = home_dir()
    db_url = (
        db or os.environ.get("DESKCTL_DB") or data.get("db") or f"sqlite:///{home / 'deskctl.db'}"
    )
    agent_name = agent or os.environ.get("DESKCTL_AGENT") or data.get("agent") or getpass.getuser()
    return Settings(
        db_url=str(db_url),
        agent=str(agent_name),
        home=home,
        config_path=config_path if found is not None else None,
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
