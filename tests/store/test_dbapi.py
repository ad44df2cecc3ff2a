"""The read path finds the same SQLite file SQLAlchemy would, for every URL form."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from deskctl.store.dbapi import sqlite_database


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///desk.db",
        "sqlite:////var/lib/deskctl/desk.db",
        "sqlite:///with%20space/desk.db",
        "sqlite+pysqlite:///rel/desk.db",
        "sqlite:///:memory:",
        "sqlite://",
    ],
)
def test_a_plain_sqlite_url_names_the_file_sqlalchemy_would_open(url: str) -> None:
    assert sqlite_database(url) == (make_url(url).database or ":memory:")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///desk.db?timeout=5",  # connect arguments: SQLAlchemy's business
        "sqlite+aiosqlite:///desk.db",
        "postgresql+psycopg://u:p@localhost/desk",
    ],
)
def test_other_urls_are_left_to_sqlalchemy(url: str) -> None:
    assert sqlite_database(url) is None
