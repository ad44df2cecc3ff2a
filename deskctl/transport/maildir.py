"""A local Maildir: the embedded default that needs no account.

Each message is known by its Maildir unique name (the file name before the
``:2,`` info), which never changes when a mail program marks it seen, so it
is the key deskctl records for what it has already fetched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from deskctl.errors import ConfigError
from deskctl.transport.spool import Oversize, read_bounded


def unique_name(filename: str) -> str:
    return filename.split(":", 1)[0]


class MaildirInbox:
    def __init__(self, path: str) -> None:
        self.root = Path(path).expanduser()
        for sub in ("cur", "new", "tmp"):
            if not (self.root / sub).is_dir():
                raise ConfigError(f"{self.root} is not a Maildir (no {sub}/ folder): check --path")

    def messages(self) -> list[tuple[str, Path]]:
        """(unique name, path) of every message, oldest first by file name."""
        found = []
        for sub in ("new", "cur"):
            for entry in os.scandir(self.root / sub):
                if entry.is_file() and not entry.name.startswith("."):
                    found.append((unique_name(entry.name), Path(entry.path)))
        return sorted(found, key=lambda item: item[0])

    def read(
        self, items: list[tuple[str, Path]], max_size: int, spool: Path | None
    ) -> Iterator[tuple[str, Path, bytes | Oversize]]:
        for key, path in items:
            try:
                yield key, path, read_entry(path, max_size, spool)
            except FileNotFoundError:
                continue  # another reader moved or deleted it meanwhile

    def needs_action(self, action: str, path: Path) -> bool:
        """Whether a stored message still waits for its after-fetch action."""
        if action == "delete":
            return True
        if action == "seen":
            info = path.name.partition(":2,")[2]
            return path.parent.name == "new" or "S" not in info
        return False

    def after_fetch(self, action: str, path: Path) -> None:
        """Mark seen (move to cur/ with the S flag), delete, or keep."""
        if action == "keep":
            return
        if action == "delete":
            path.unlink(missing_ok=True)
            return
        if action == "seen":
            name = path.name
            base, _, info = name.partition(":2,")
            flags = "".join(sorted(set(info) | {"S"})) if info or ":2," in name else "S"
            target = self.root / "cur" / f"{base}:2,{flags}"
            if path != target:
                os.replace(path, target)
            return
        raise ConfigError(f"after-fetch action {action!r} is not available for a Maildir")


def read_entry(path: Path, max_size: int, spool: Path | None) -> bytes | Oversize:
    """One entry in chunks, never more than ``max_size`` in memory; larger is spooled."""
    with path.open("rb") as fh:
        return read_bounded(fh, max_size, spool)


def install_sample(dest: Path) -> Path:
    """Copy the bundled sample mailbox to ``dest`` (once), so fetch can move and flag freely."""
    import shutil
    from importlib.resources import as_file, files

    if (dest / "cur").is_dir():
        return dest
    from deskctl.config import make_private_dir

    with as_file(files("deskctl.samples") / "maildir") as source:
        for sub in ("cur", "new", "tmp"):  # DESKCTL_HOME too, if missing: 0700
            make_private_dir(dest / sub, "the sample mailbox")
        for item in (source / "new").iterdir():
            if item.is_file():
                shutil.copyfile(item, dest / "new" / item.name)
    return dest
