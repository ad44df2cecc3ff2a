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


def run_sql(url: str, statement: str) -> None:
    """One statement straight on the test database, for a state no command makes (an old date)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()
