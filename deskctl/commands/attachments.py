"""``deskctl attachment``: a customer's files, out of the database.

The ids are the ones ``ticket show`` prints next to each attachment (inline
images too). Reading them takes the driver-only path, like ``ticket show``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deskctl.commands._common import app_context, report
from deskctl.errors import ConfigError, Conflict, UsageError
from deskctl.services.tickets import MAX_ID

if TYPE_CHECKING:
    from deskctl.context import AppContext

app = typer.Typer(help="Save or open a ticket's attachments.", no_args_is_help=True)

AttachmentId = Annotated[
    int, typer.Argument(help="attachment id, as `ticket show` lists it", min=1, max=MAX_ID)
]


def _load(context: AppContext, attachment_id: int) -> dict[str, Any]:
    from deskctl.services import tickets as svc

    with context.database() as db, db.transaction():
        return svc.attachment(db, attachment_id)


def _name(found: dict[str, Any]) -> str:
    """The stored name, sanitised again: it must not leave the folder it is written to."""
    from deskctl.mail.sanitize import fallback_filename, safe_filename

    return safe_filename(found["filename"], fallback_filename(found["id"], found["content_type"]))


def _write(path: Path, data: bytes, *, force: bool) -> None:
    """Write a new file (mode 0600 where it is created); an existing one only with ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError as exc:
        raise Conflict(f"{path} exists; --force overwrites it") from exc
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@app.command("save")
def save(
    ctx: typer.Context,
    attachment_id: AttachmentId,
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="file or folder to write, - for stdout"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write an attachment's bytes to a file, by default its own name in this folder.

    Example: deskctl attachment save 17
    Example: deskctl attachment save 17 -o - | file -
    """
    context = app_context(ctx)
    found = _load(context, attachment_id)
    if output == "-":
        sys.stdout.buffer.write(found["data"])
        sys.stdout.flush()
        return
    target = Path(output).expanduser() if output else Path.cwd()
    if target.is_dir():
        target = target / _name(found)
    _write(target, found["data"], force=force)
    document = {
        "attachment": found["id"],
        "ticket": found["ticket"],
        "path": str(target),
        "size": len(found["data"]),
        "sha256": found["blob_sha256"],
    }
    report(context, document, f"saved {target} ({len(found['data'])} bytes)")


def _opener() -> list[str]:
    """How this desktop opens a file: $DESKCTL_OPENER, else xdg-open or macOS's open."""
    import shlex
    import shutil

    chosen = os.environ.get("DESKCTL_OPENER", "").strip()
    if chosen:
        return shlex.split(chosen)
    for candidate in ("xdg-open", "open"):
        found = shutil.which(candidate)
        if found:
            return [found]
    raise ConfigError(
        "no program to open files (xdg-open, open): set DESKCTL_OPENER,"
        " or use `deskctl attachment save`"
    )


@app.command("open")
def open_(ctx: typer.Context, attachment_id: AttachmentId) -> None:
    """Open an attachment: text in the pager, anything else with the desktop's opener.

    The file is written to a private folder in the deskctl home first
    (attachments/ID/NAME, readable by you only) and left there for the viewer.

    Example: deskctl attachment open 17
    """
    import subprocess

    from deskctl.mail.sanitize import safe_text
    from deskctl.output import paged

    context = app_context(ctx)
    found = _load(context, attachment_id)
    if found["content_type"].lower().startswith("text/") and not context.json:
        from rich.text import Text

        with paged() as out:
            out.print(Text(safe_text(found["data"].decode("utf-8", "replace"))))
        return
    opener = _opener()
    folder = context.settings.home / "attachments" / str(found["id"])
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (context.settings.home / "attachments").chmod(0o700)
    path = folder / _name(found)
    _write(path, found["data"], force=True)
    try:
        done = subprocess.run([*opener, str(path)], check=False)
    except OSError as exc:
        raise ConfigError(f"cannot run {opener[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise ConfigError(f"{opener[0]} exited {done.returncode} on {path}")
    report(context, {"attachment": found["id"], "path": str(path)}, f"opened {path}")
