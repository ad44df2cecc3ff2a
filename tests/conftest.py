"""Shared fixtures: an isolated home, a fresh database, and deskctl run like a user runs it.

Every test gets its own ``DESKCTL_HOME`` so nothing touches the developer's
real data. ``DESKCTL_TEST_DB=postgres`` runs the same tests against a
throwaway PostgreSQL cluster instead of SQLite.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deskctl.cli import main

pytest_plugins = ["testbed.fixtures"]

BACKEND = os.environ.get("DESKCTL_TEST_DB", "sqlite")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DESKCTL_HOME", str(home))
    for var in ("DESKCTL_DB", "DESKCTL_CONFIG", "DESKCTL_AGENT"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL with no schema yet, on the backend this run tests."""
    if BACKEND == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'desk.db'}"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


Run = Callable[..., Result]


@pytest.fixture
def run_deskctl(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run deskctl in-process with the given arguments (and optional stdin bytes)."""

    def run(*args: str, stdin: bytes = b"") -> Result:
        capsysbinary.readouterr()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main([str(a) for a in args])
        out, err = capsysbinary.readouterr()
        return Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    return run


@pytest.fixture
def db_url(empty_db_url: str, run_deskctl: Run, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database at the current schema, selected through DESKCTL_DB like a user would."""
    monkeypatch.setenv("DESKCTL_DB", empty_db_url)
    result = run_deskctl("db", "upgrade")
    assert result.exit_code == 0, result.stderr
    return empty_db_url


@pytest.fixture
def desk(db_url: str, run_deskctl: Run) -> Iterator[Run]:
    """deskctl on a ready database: the fixture most user stories start from."""
    yield run_deskctl


def ingested(desk: Run, raw: bytes, *options: str) -> dict[str, Any]:
    """``deskctl --json ingest OPTIONS`` with ``raw`` on stdin, as a mail server pipes it.

    The JSON document it prints; stored means exit 0, so that is checked here.
    """
    result = desk("--json", "ingest", *options, stdin=raw)
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = result.json()
    return doc


def run_sql(url: str, statement: str) -> None:
    """One statement straight on the test database, for a state no command makes (an old date)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def maildir(tmp_path: Path, name: str = "Maildir") -> Path:
    """An empty Maildir (cur, new, tmp), as a mail program leaves one."""
    box = tmp_path / name
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    return box


def add_maildir_channel(desk: Run, box: Path, *extra: str, name: str = "md") -> None:
    """A channel ``name`` reading ``box``, for ``NAME@example.test``; ``extra`` options too."""
    added = desk("channel", "add", name, "--kind", "maildir", "--address",
                 f"{name}@example.test", "--path", str(box), *extra)  # fmt: skip
    assert added.exit_code == 0, added.stderr
