"""Start-up stays small: each command imports only what it uses (bench/cli.py has the timings)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "imap_tools",
    "msal",
    "google",
    "alembic",
    "deskctl.mail.parse",
    "inscriptis",
    "lxml",
    "aiosmtpd",
)


def modules_after(*args: str) -> set[str]:
    code = (
        "import sys, json, contextlib, io\n"
        "from deskctl.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main({list(args)!r})\n"
        "sys.__stdout__.write(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in modules)


def test_help_imports_neither_the_database_nor_mail_libraries() -> None:
    modules = modules_after("--help")
    assert not loaded(modules, "sqlalchemy")
    assert [h for h in HEAVY if loaded(modules, h)] == []


def test_ticket_list_imports_no_mail_or_oauth_library(db_url: str) -> None:
    modules = modules_after("--db", db_url, "ticket", "list")
    assert loaded(modules, "sqlalchemy")
    assert [h for h in HEAVY if loaded(modules, h)] == []
