"""Everything deskctl prints goes through here.

Two promises meet in this module: ``--json`` prints exactly one JSON document
on stdout (logs and errors go to stderr, so ``| jq`` never breaks), and no
text that came from a mail reaches the terminal with control characters or
escape sequences in it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
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
