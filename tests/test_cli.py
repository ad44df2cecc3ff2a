"""Options where people put them: the global ones after the command too, errors in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import Run, add_maildir_channel, maildir

MAIL = (
    b"From: Ada <ada@example.test>\r\nTo: support@example.test\r\n"
    b"Subject: Printer on fire\r\nMessage-ID: <fire@example.test>\r\n\r\nHelp.\r\n"
)


def test_json_after_the_subcommand_gives_the_same_document(desk: Run) -> None:
    assert desk("ingest", "-", stdin=MAIL).exit_code == 0
    before = desk("--json", "ticket", "list")
    after = desk("ticket", "list", "--json")
    assert before.exit_code == after.exit_code == 0
    assert (
        after.stdout == before.stdout and after.json()["tickets"][0]["title"] == "Printer on fire"
    )
    shown = desk("ticket", "show", "1", "--json", "--no-pager")
    assert shown.json()["number"] == 1


def test_quiet_and_verbose_after_the_subcommand(desk: Run, tmp_path: Path) -> None:
    assert desk("ingest", "-", stdin=MAIL).exit_code == 0
    assert desk("ticket", "status", "1", "open").stdout == "ticket #1 is open\n"
    assert desk("ticket", "status", "1", "pending", "-q").stdout == ""
    box = maildir(tmp_path, "box")
    add_maildir_channel(desk, box, name="box")
    (box / "cur").rmdir()  # the next fetch fails; -vv logs the traceback
    assert "DEBUG" not in desk("fetch").stderr
    assert "deskctl: DEBUG: deskctl.jobs.fetch: box failed" in desk("fetch", "-v", "-v").stderr
    assert "deskctl: DEBUG:" in desk("fetch", "-vv").stderr


def test_db_and_agent_after_the_subcommand(empty_db_url: str, run_deskctl: Run) -> None:
    assert run_deskctl("db", "upgrade", "--db", empty_db_url).exit_code == 0
    assert run_deskctl("ingest", "-", "--db", empty_db_url, stdin=MAIL).exit_code == 0
    taken = run_deskctl("ticket", "assign", "1", "me", "--agent", "grace", "--db", empty_db_url)
    assert taken.exit_code == 0, taken.stderr
    assert "assigned to grace" in taken.stdout


def test_version(run_deskctl: Run) -> None:
    result = run_deskctl("--version")
    assert (result.exit_code, result.stdout) == (0, f"deskctl {version('deskctl')}\n")


def test_verbose_shows_as_a_counter_in_help(run_deskctl: Run) -> None:
    result = run_deskctl("--help")
    (line,) = [x for x in result.stdout.splitlines() if "--verbose" in x]
    assert "<int>" not in line and "-vv" in line


def test_usage_errors_are_one_line_with_the_fix(run_deskctl: Run) -> None:
    cases = {
        ("ticket", "lst"): "no such command 'lst'; did you mean 'list'?"
        " (see 'deskctl ticket --help')",
        ("ticket", "list", "--jsn"): "no such option: --jsn; did you mean --json?"
        " (see 'deskctl ticket list --help')",
        ("ticket", "show"): "missing argument 'number' (see 'deskctl ticket show --help')",
    }
    for args, message in cases.items():
        result = run_deskctl(*args)
        assert result.exit_code == 2, args
        assert result.stderr == f"deskctl: error: {message}\n", args
        assert result.stdout == ""
    as_json = run_deskctl("--json", "ticket", "list", "--limit", "x")
    assert as_json.exit_code == 2
    assert as_json.json()["error"]["code"] == "usage"


def test_shell_completion_completes_commands_and_options(tmp_path: Path) -> None:
    """What the bash script the README installs asks deskctl, and what deskctl answers."""
    env = {**os.environ, "DESKCTL_HOME": str(tmp_path)}

    def complete(words: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "deskctl"],
            env={
                **env,
                "_DESKCTL_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - 1),
            },
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.split()

    assert complete("deskctl tick") == ["ticket"]
    assert complete("deskctl ticket sh") == ["show"]
    assert "--status" in complete("deskctl ticket list --st")
    script = subprocess.run(
        [sys.executable, "-m", "deskctl"],
        env={**env, "_DESKCTL_COMPLETE": "source_bash"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "complete -o default -F _deskctl_completion deskctl" in script.stdout


def test_a_postgresql_url_without_psycopg_says_how_to_install_it(tmp_path: Path) -> None:
    """An installation without the postgres extra: psycopg cannot be imported at all."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "psycopg.py").write_text("raise ImportError('No module named psycopg')\n")
    env = {**os.environ, "DESKCTL_HOME": str(tmp_path), "PYTHONPATH": str(shadow)}
    env["DESKCTL_DB"] = "postgresql+psycopg://deskctl@127.0.0.1:1/deskctl"
    for args in (["ticket", "list"], ["db", "upgrade"], ["queue", "list"]):
        done = subprocess.run(
            [sys.executable, "-m", "deskctl", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 5, (args, done.stderr)
        assert done.stderr == (
            "deskctl: error: a PostgreSQL database needs psycopg, which is not installed:"
            " pip install 'deskctl[postgres]'\n"
        ), args


def test_reading_a_home_without_a_database_creates_nothing(
    run_deskctl: Run, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = isolated_home / "fresh"
    monkeypatch.setenv("DESKCTL_HOME", str(home))
    for args in (("ticket", "list"), ("ticket", "show", "1"), ("queue", "list"), ("doctor",)):
        result = run_deskctl(*args)
        assert result.exit_code == 5, args
        assert result.stderr == (
            f"deskctl: error: there is no database at {home / 'deskctl.db'} yet:"
            " run `deskctl db upgrade`\n"
        ), args
        assert not home.exists(), args
    assert run_deskctl("db", "upgrade").exit_code == 0
    assert run_deskctl("ticket", "list").stdout == "no tickets\n"
