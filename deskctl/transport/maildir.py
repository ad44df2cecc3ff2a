"""A local Maildir: the embedded default that needs no account.

Each message is known by its Maildir unique name (the file name before the
``:2,`` info), which never changes when a mail program marks it seen, so it
is the key deskctl records for what it has already fetched.

Only mail is read (promise 7): an entry is opened without following a link
and must be a regular file, so a link to ``/etc/shadow`` dropped into ``new/``
never reaches the quarantine or the database. An entry that cannot be read
(a link, a FIFO, permission denied, a name that is not UTF-8, gone before it
was read) is not a reason to stop: it is recorded in :attr:`MaildirInbox.skipped`
and the mail after it is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deskctl.errors import ConfigError
from deskctl.mail.sanitize import one_line
from deskctl.transport.files import NotRegularFile, open_regular
from deskctl.transport.spool import Oversize, read_bounded


def unique_name(filename: str) -> str:
    return filename.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """A Maildir entry that was not read, and why; ``name`` is safe to print (one line)."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def _why_unreadable(exc: OSError) -> str:
    if isinstance(exc, NotRegularFile):
        return f"{exc.strerror}, not a mail file: skipped"
    if isinstance(exc, FileNotFoundError):
        return "gone before it could be read (moved or deleted by another program)"
    return f"cannot be read: {exc.strerror or exc}"


class MaildirInbox:
    def __init__(self, path: str) -> None:
        self.root = Path(path).expanduser()
        for sub in ("cur", "new", "tmp"):
            if not (self.root / sub).is_dir():
                raise ConfigError(f"{self.root} is not a Maildir (no {sub}/ folder): check --path")
        #: Entries seen but not read, in the order met; the fetch reports them.
        self.skipped: list[SkippedEntry] = []

    def _skip(self, sub: str, name: str, reason: str) -> None:
        self.skipped.append(SkippedEntry(one_line(f"{sub}/{name}"), reason))

    def messages(self) -> list[tuple[str, Path]]:
        """(unique name, path) of every message, oldest first by file name.

        A name that is not UTF-8 cannot be a key in the database (nor round-trip
        through it), so that entry is skipped here, with its bytes escaped.
        """
        found = []
        for sub in ("new", "cur"):
            for entry in os.scandir(self.root / sub):
                if entry.name.startswith("."):
                    continue
                try:
                    entry.name.encode("utf-8")
                except UnicodeEncodeError:
                    self._skip(sub, entry.name, "its name is not valid UTF-8")
                    continue
                found.append((unique_name(entry.name), Path(entry.path)))
        return sorted(found, key=lambda item: item[0])

    def read(
        self, items: list[tuple[str, Path]], max_size: int, spool: Path | None
    ) -> Iterator[tuple[str, Path, bytes | Oversize]]:
        """(key, path, contents) of each entry that is a readable regular file."""
        for key, path in items:
            try:
                raw = read_entry(path, max_size, spool)
            except OSError as exc:
                self._skip(path.parent.name, path.name, _why_unreadable(exc))
                continue
            yield key, path, raw

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
    """One entry in chunks, never more than ``max_size`` in memory; larger is spooled.

    Only a regular file is read, never what a link points to.
    """
    with open_regular(path, follow_links=False) as fh:
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
