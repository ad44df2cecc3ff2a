"""The list an agent starts the day with: the work to do, readable at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BACKEND, Run, run_sql
from mailfactory import make_mail

LONG = "The invoice for October is missing the VAT number and the delivery address"


def numbers(desk: Run, *args: str) -> list[int]:
    result = desk("--json", "ticket", "list", *args)
    assert result.exit_code == 0, result.stderr
    return [t["number"] for t in result.json()["tickets"]]


@pytest.fixture
def five(desk: Run) -> Run:
    """Tickets 1-5, then 1 solved, 2 closed, 3 pending, 4 open; 5 stays new."""
    for n in range(1, 6):
        raw = make_mail(subject=f"{LONG} {n}", sender=f"customer{n}@example.org")
        assert desk("ingest", "-", stdin=raw).exit_code == 0
    for number, status in ((1, "solved"), (2, "closed"), (3, "pending"), (4, "open")):
        assert desk("ticket", "status", str(number), status).exit_code == 0
    return desk


def test_the_default_list_is_the_work_still_to_do(five: Run) -> None:
    assert numbers(five) == [4, 3, 5]  # newest activity first
    assert numbers(five, "--status", "all") == [4, 3, 2, 1, 5]
    assert numbers(five, "--status", "solved,closed") == [2, 1]
    assert numbers(five, "--status", "solved", "--status", "new") == [1, 5]
    assert numbers(five, "--status", "Open") == [4]


def test_unknown_names_are_errors_not_an_empty_list(five: Run) -> None:
    for args, code, words in (
        (("--queue", "nosuch"), 3, "no queue named 'nosuch'"),
        (("--assignee", "nobody-here"), 3, "no agent named 'nobody-here'"),
        (("--status", "opne"), 2, "unknown status 'opne'"),
        (("--status", "open,bogus"), 2, "unknown status 'bogus'"),
    ):
        result = five("ticket", "list", *args)
        assert result.exit_code == code, args
        assert words in result.stderr and "no tickets" not in result.stdout


def test_mine_is_assignee_me(five: Run) -> None:
    assert five("ticket", "assign", "3", "me", "--agent", "grace").exit_code == 0
    assert five("ticket", "assign", "5", "me", "--agent", "alan").exit_code == 0
    assert numbers(five, "--mine", "--agent", "grace") == [3]
    assert numbers(five, "--agent", "alan", "--mine") == [5]
    assert five("ticket", "list", "--mine", "--assignee", "alan").exit_code == 2


def test_mine_for_an_agent_who_never_acted_is_no_tickets(five: Run) -> None:
    """A new agent's first `ticket list --mine` (the README's tour) is an empty list."""
    for args in (("--mine",), ("--assignee", "me"), ("--mine", "--status", "all")):
        result = five("ticket", "list", *args, "--agent", "ivy")
        assert (result.exit_code, result.stdout, result.stderr) == (0, "no tickets\n", ""), args
    assert numbers(five, "--mine", "--agent", "ivy") == []
    # The agent's name typed out is still checked: a typo is not "no tickets".
    assert five("ticket", "list", "--assignee", "ivy").exit_code == 3


def test_updated_is_the_last_mail_with_the_year_when_not_this_year(desk: Run, db_url: str) -> None:
    assert desk("ingest", "-", stdin=make_mail(message_id="<old@example.org>")).exit_code == 0
    old = "2019-03-04 05:06:07.000000" if BACKEND == "sqlite" else "2019-03-04 05:06:07+00"
    run_sql(db_url, f"UPDATE messages SET created_at = '{old}'")
    # A status change moves the ticket to the top; its last mail is still the 2019 one.
    assert desk("ticket", "status", "1", "open").exit_code == 0
    (row,) = desk("--json", "ticket", "list").json()["tickets"]
    assert row["last_message_at"].startswith("2019-03-04")
    assert not row["updated_at"].startswith("2019")
    assert " 2019-03-0" in desk("ticket", "list").stdout.splitlines()[1]


def listing(width: int) -> list[str]:
    """``ticket list`` as a terminal of ``width`` columns shows it."""
    env = {**os.environ, "COLUMNS": str(width), "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "deskctl", "ticket", "list", "--status", "all"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_at_80_columns_titles_stay_readable(five: Run, tmp_path: Path) -> None:
    assert five("ticket", "assign", "4", "me", "--agent", "grace").exit_code == 0
    narrow = listing(80)
    assert all(len(line) <= 80 for line in narrow)
    header = narrow[0].split()
    assert header[:2] == ["#", "status"] and "title" in header and "updated" in header
    assert "msgs" not in header  # dropped before the title is cut short
    title_at = narrow[0].index("title")
    title_width = narrow[0].index("customer") - title_at - 2
    assert title_width >= 32
    assert narrow[1][title_at:].startswith(LONG[:30])
    wide = listing(160)
    assert wide[0].split() == [
        "#", "status", "queue", "title", "customer", "assignee", "msgs", "updated",
    ]  # fmt: skip
    assert any("grace" in line for line in wide)
    assert any(f"{LONG} 4" in line for line in wide)
