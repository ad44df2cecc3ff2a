"""Everything deskctl prints goes through here.

Two promises meet in this module: ``--json`` prints exactly one JSON document
on stdout (logs and errors go to stderr, so ``| jq`` never breaks), and no
text that came from a mail reaches the terminal with control characters or
escape sequences in it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from deskctl.mail.sanitize import safe_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    # rich Consoles on the process's streams, made on first use (see __getattr__).
    stdout: Console
    stderr: Console

_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    if name not in _consoles:
        from rich.console import Console

        _consoles[name] = Console(stderr=name == "stderr", highlight=False, soft_wrap=True)
    return _consoles[name]


def __getattr__(name: str) -> Console:
    """``stdout`` and ``stderr`` come to life when first used, so ``--json`` never loads rich."""
    if name in ("stdout", "stderr"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def scrub(value: Any) -> Any:
    """Sanitise every string in a JSON-able structure; datetimes become ISO 8601."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(scrub(document), ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def emit(document: Any, *, as_json: bool, human: Callable[[Console], None]) -> None:
    """Print ``document`` as JSON, or call ``human`` to render it for a person."""
    if as_json:
        print_json(document)
    else:
        human(_console("stdout"))


#: The pager when neither $DESKCTL_PAGER nor $PAGER names one, as git's.
DEFAULT_PAGER = "less -FRX"


def pager_command() -> str | None:
    """The pager to run, like git: $DESKCTL_PAGER, $PAGER, else ``less -FRX``.

    None for no pager: stdout is not a terminal (a pipe, a file), the
    variable is empty or ``cat``, or the default is not installed.
    """
    import shutil

    if not sys.stdout.isatty():
        return None
    for var in ("DESKCTL_PAGER", "PAGER"):
        if var in os.environ:
            command = os.environ[var].strip()
            return None if command in ("", "cat") else command
    return DEFAULT_PAGER if shutil.which("less") else None


@contextmanager
def paged(enabled: bool = True) -> Iterator[Console]:
    """A console whose output goes through the pager on a terminal, else straight out.

    The text is rendered for the terminal (its width and colours) into a
    buffer and handed to the pager through the shell, as git runs its pager;
    less gets ``LESS=FRX`` unless the user set LESS, so that one screen or
    less prints as it is and colours stay.
    """
    import io
    import subprocess

    command = pager_command() if enabled else None
    terminal = _console("stdout")
    if command is None:
        yield terminal
        return
    from rich.console import Console

    buffer = io.StringIO()
    yield Console(
        file=buffer,
        force_terminal=True,
        color_system=terminal.color_system,  # type: ignore[arg-type]
        width=terminal.width,
        highlight=False,
        soft_wrap=True,
    )
    env = {**os.environ, "LESS": os.environ.get("LESS", "FRX"), "LV": os.environ.get("LV", "-c")}
    proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(buffer.getvalue().encode("utf-8", "replace"))
    except BrokenPipeError:  # the reader quit the pager early
        pass
    finally:
        with suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait()


def show_value(value: Any) -> str:
    """A value as a person reads it: ``-`` for nothing, yes/no, an address as ``Name <addr>``.

    Human output never shows Python's own spelling (``None``, ``True``,
    ``{'name': ''}``); JSON keeps the values as they are.
    """
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, dict) and set(value) <= {"name", "email"}:
        return address(value.get("name"), value.get("email"))
    if isinstance(value, list | tuple):
        return ", ".join(show_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {show_value(v)}" for k, v in value.items())
    return safe_text(str(value))


def address(name: str | None, email: str | None) -> str:
    """``Name <addr>``, or whichever half there is, or ``-``."""
    name, email = safe_text(name or "").strip(), safe_text(email or "").strip()
    if name and email:
        return f"{name} <{email}>"
    return name or email or "-"


def warn(message: str) -> None:
    _console("stderr").print(f"deskctl: warning: {safe_text(message)}", markup=False)


def fmt_time(value: datetime | None) -> str:
    """Local time, short: the year only when it is not this year; ``-`` for none."""
    if value is None:
        return "-"
    local = value.astimezone()
    same_year = local.year == datetime.now().astimezone().year
    return local.strftime("%m-%d %H:%M" if same_year else "%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    max_width: int | None = None
    right: bool = False
    share: int = 0  # > 0: takes this share of the room the other columns leave
    min_width: int = 8  # a flexible column narrower than this is unreadable
    drop: int = 0  # > 0: may be left out when the room is short, 1 first


def columns(specs: Sequence[Column], rows: Sequence[Sequence[Text]], width: int) -> Text:
    """Rows laid out as aligned columns within ``width``, cut with an ellipsis.

    rich's Table measures every cell through its full renderer, about a
    millisecond a row here; ``ticket list`` prints fifty rows many times a
    day, so it lays out its columns itself, from rich's own cell widths.
    When the flexible columns would get less than their ``min_width``, the
    droppable columns go, in their ``drop`` order, until they fit.
    """
    from rich.cells import cell_len
    from rich.text import Text

    keep = list(range(len(specs)))
    for victim in sorted((i for i, c in enumerate(specs) if c.drop), key=lambda i: specs[i].drop):
        if _fits([specs[i] for i in keep], [[row[i] for i in keep] for row in rows], width):
            break
        keep.remove(victim)
    if len(keep) < len(specs):
        specs = [specs[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
    widths = []
    for i, spec in enumerate(specs):
        natural = max([cell_len(spec.header), *(row[i].cell_len for row in rows)])
        widths.append(min(natural, spec.max_width) if spec.max_width else natural)
    flexible = [i for i, spec in enumerate(specs) if spec.share]
    fixed = sum(w for i, w in enumerate(widths) if i not in flexible) + 2 * (len(specs) - 1)
    room = max(width - fixed, 8 * len(flexible))
    # The narrowest first: a column that needs less than its share leaves
    # the rest to the wider ones.
    pending = sorted(flexible, key=lambda i: widths[i])
    for n, i in enumerate(pending):
        shares = sum(specs[j].share for j in pending[n:])
        widths[i] = min(widths[i], room * specs[i].share // shares)
        room -= widths[i]
    lines = [Text("  ").join(_cells([Text(c.header) for c in specs], specs, widths))]
    lines[0].stylize("bold")
    lines += [Text("  ").join(_cells(row, specs, widths)) for row in rows]
    for line in lines:
        line.rstrip()
    return Text("\n").join(lines)


def _fits(specs: Sequence[Column], rows: Sequence[Sequence[Text]], width: int) -> bool:
    """Whether the flexible columns get at least their ``min_width`` (or all they need)."""
    from rich.cells import cell_len

    need = 2 * (len(specs) - 1)
    for i, spec in enumerate(specs):
        natural = max([cell_len(spec.header), *(row[i].cell_len for row in rows)])
        if spec.max_width:
            natural = min(natural, spec.max_width)
        need += min(natural, spec.min_width) if spec.share else natural
    return need <= width


def _cells(row: Sequence[Text], specs: Sequence[Column], widths: list[int]) -> list[Text]:
    from rich.text import Text

    cells = []
    for cell, spec, width in zip(row, specs, widths, strict=True):
        cell = cell.copy()
        cell.truncate(width, overflow="ellipsis")
        pad = " " * (width - cell.cell_len)
        cells.append(Text(pad) + cell if spec.right else cell + Text(pad))
    return cells


def human_size(size: int | None) -> str:
    """Bytes as a person reads them: 512 bytes, 12 KB, 3.4 MB."""
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} bytes"
    value, unit = size / 1024, "KB"
    for bigger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
