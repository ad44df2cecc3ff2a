"""Start-up stays small: each command imports only what it uses (bench/cli.py has the timings)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import Run

MAIL = (
    b"From: Ada <ada@example.test>\r\nTo: support@example.test\r\n"
    b"Subject: The printer is on fire\r\nMessage-ID: <fire@example.test>\r\n\r\nHelp.\r\n"
)

HEAVY = (
    "imap_tools",
    "msal",
    "google",
    "alembic",
    "deskctl.mail.parse",
    "inscriptis",
    "lxml",
    "aiosmtpd",
    "flufl",
    "tnefparse",
    "charset_normalizer",
)


def modules_after(*args: str) -> tuple[set[str], str]:
    """The modules a whole deskctl process loaded for ``args``, and what it printed."""
    code = (
        "import sys, json, contextlib, io\n"
        "from deskctl.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    main({list(args)!r})\n"
        "sys.__stdout__.write(json.dumps([sorted(sys.modules), out.getvalue()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules, printed = json.loads(done.stdout.strip().splitlines()[-1])
    return set(modules), printed


def loaded(modules: set[str], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in modules)


def test_help_imports_neither_the_database_nor_mail_libraries() -> None:
    modules, printed = modules_after("--help")
    assert "ticket" in printed
    assert not loaded(modules, "sqlalchemy")
    assert [h for h in HEAVY if loaded(modules, h)] == []


def test_reading_tickets_loads_neither_the_orm_nor_mail_libraries(desk: Run, db_url: str) -> None:
    """An agent's everyday commands run on the driver alone: no SQLAlchemy, no pydantic."""
    assert desk("ingest", "-", stdin=MAIL).exit_code == 0
    for args in (
        ("ticket", "list"),
        ("ticket", "list", "--search", "printer"),
        ("ticket", "show", "1"),
    ):
        modules, printed = modules_after("--db", db_url, "--json", *args)
        assert "The printer is on fire" in printed, args
        slow = ["sqlalchemy", "pydantic", *HEAVY]
        assert [m for m in slow if loaded(modules, m)] == [], args
        # Only the command that runs is built, not its neighbours; JSON needs no rich.
        assert not loaded(modules, "deskctl.commands.channels"), args
        assert not loaded(modules, "rich"), args


def test_a_mistyped_command_is_refused_with_a_suggestion(run_deskctl: Run) -> None:
    result = run_deskctl("tiket", "list")
    assert result.exit_code == 2
    assert result.stderr == (
        "deskctl: error: no such command 'tiket'; did you mean 'ticket'? (see 'deskctl --help')\n"
    )
