"""Everything deskctl prints goes through here.

Two promises meet in this module: ``--json`` prints exactly one JSON document
on stdout (logs and errors go to stderr, so ``| jq`` never breaks), and no
text that came from a mail reaches the terminal with control characters or
escape sequences in it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console

from deskctl.mail.sanitize import safe_text

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


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
        human(stdout)


def warn(message: str) -> None:
    stderr.print(f"deskctl: warning: {safe_text(message)}", markup=False)


def fmt_time(value: datetime | None) -> str:
    """Local time, short: the year only when it is not this year."""
    if value is None:
        return ""
    local = value.astimezone()
    same_year = local.year == datetime.now().astimezone().year
    return local.strftime("%m-%d %H:%M" if same_year else "%Y-%m-%d")
