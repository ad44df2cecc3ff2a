"""The schema: migrations and models agree, and an old database is refused, not guessed at."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from conftest import Run, ingested
from deskctl.store.engine import make_engine
from deskctl.store.migrate import alembic_config
from deskctl.store.models import Base, managed_by_models
from mailfactory import make_mail


def test_the_migrations_build_exactly_what_the_models_describe(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": managed_by_models}
            ),
            Base.metadata,
        )
    assert diff == []


def test_every_command_refuses_a_database_without_schema(
    empty_db_url: str, run_deskctl: Run
) -> None:
    result = run_deskctl("--db", empty_db_url, "ticket", "list")
    assert result.exit_code == 5
    assert "run `deskctl db upgrade`" in result.stderr


def test_a_database_behind_the_code_is_refused(db_url: str, run_deskctl: Run) -> None:
    with create_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    result = run_deskctl("ticket", "list")
    assert result.exit_code == 5 and "is at revision 0000" in result.stderr


def test_upgrade_twice_is_harmless_and_current_reports_it(db_url: str, run_deskctl: Run) -> None:
    assert run_deskctl("db", "upgrade").exit_code == 0
    doc = run_deskctl("--json", "db", "current").json()
    assert doc["up_to_date"] is True and doc["current"] == doc["head"]


def test_sqlite_runs_with_wal_busy_timeout_and_foreign_keys(db_url: str) -> None:
    from deskctl.store.engine import make_engine

    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite pragmas only")
    with make_engine(db_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_the_fast_schema_check_knows_the_newest_migration(db_url: str) -> None:
    from deskctl.store.engine import make_engine
    from deskctl.store.migrate import head_revision
    from deskctl.store.version import SCHEMA_HEAD

    assert head_revision(make_engine(db_url)) == SCHEMA_HEAD


def test_mail_stored_before_fingerprints_is_carried_over_and_still_deduplicated(
    empty_db_url: str, run_deskctl: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows as the code before migration 0011 wrote them: same mail again, other mail, long ids."""
    engine = make_engine(empty_db_url)
    config = alembic_config(engine)
    before = ScriptDirectory.from_config(config).get_revision("0011").down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)

    long_id = "b" * 900 + "-stored@example.org"
    stored = {
        "old@example.org": make_mail(message_id="<old@example.org>"),
        long_id: make_mail(message_id=f"<{long_id}>", subject="Long id"),
        None: b"From: ann@example.org\r\nSubject: no id\r\n\r\nbody\r\n",
    }
    with engine.begin() as conn:
        queue = conn.scalar(text("SELECT id FROM queues WHERE name = 'general'"))
        first = None
        for message_id, raw in stored.items():
            number = conn.scalar(
                text(
                    "INSERT INTO tickets (title, status, queue_id, message_count, created_at,"
                    " updated_at) VALUES ('t', 'new', :q, 1, :at, :at) RETURNING id"
                ),
                {"q": queue, "at": "2026-11-02 09:30:00+00:00"},
            )
            conn.execute(text("UPDATE tickets SET number = id WHERE id = :n"), {"n": number})
            first = first or number
            key = message_id[:900] if message_id else "sha256:whatever-0008-wrote"
            conn.execute(
                text(
                    'INSERT INTO messages (ticket_id, direction, message_id, "references",'
                    ' subject, from_name, from_email, "to", cc, body_text, raw, flags,'
                    " flag_reasons, dedupe_scope, dedupe_key, created_at) VALUES (:n, 'in', :mid,"
                    " '[]', 't', '', 'ada@example.org', '[]', '[]', 'b', :raw, '[]', '[]', 0,"
                    " :key, :at)"
                ),
                {"n": number, "mid": message_id, "raw": raw, "key": key, "at": "2026-11-02"},
            )
        # Our reply, as replies wrote it: no fingerprint to compute, its key stays.
        conn.execute(
            text(
                'INSERT INTO messages (ticket_id, direction, message_id, "references", subject,'
                ' from_name, from_email, "to", cc, body_text, flags, flag_reasons, dedupe_scope,'
                " dedupe_key, created_at) VALUES (:first, 'out', 'reply@desk', '[]', 'Re: t', '',"
                " 'support@example.test', '[]', '[]', 'ok', '[]', '[]', -1, 'reply@desk', :at)"
            ),
            {"first": first, "at": "2026-11-02"},
        )
    monkeypatch.setenv("DESKCTL_DB", empty_db_url)
    assert run_deskctl("db", "upgrade").exit_code == 0
    with engine.connect() as conn:
        carried = conn.execute(
            text("SELECT direction, fingerprint, dedupe_key FROM messages ORDER BY id")
        ).all()
    assert [len(f or "") for _, f, _ in carried] == [64, 64, 64, 0]
    assert carried[3].dedupe_key == "reply@desk"
    assert carried[2].dedupe_key == "sha256:whatever-0008-wrote"

    received = b"Received: from mx2.example.test by imap.example.test; Tue, 3 Nov 2026\r\n"
    again = ingested(run_deskctl, received + stored["old@example.org"])
    assert again["duplicate"] is True and again["ticket"] == first
    assert ingested(run_deskctl, received + stored[long_id])["duplicate"] is True
    other = ingested(
        run_deskctl, make_mail(message_id="<old@example.org>", body="Someone else's mail.\n")
    )
    assert other["created"] is True and "message_id_reused" in other["flags"]
    sibling = ingested(
        run_deskctl, make_mail(message_id=f"<{'b' * 900}-other@example.org>", subject="Long id")
    )
    assert sibling["created"] is True and "message_id_reused" not in sibling["flags"]


def test_downgrading_past_the_fingerprints_keeps_search_working(
    db_url: str, run_deskctl: Run
) -> None:
    config = alembic_config(make_engine(db_url))
    command.downgrade(
        config, ScriptDirectory.from_config(config).get_revision("0011").down_revision
    )
    command.upgrade(config, "head")
    assert run_deskctl("ingest", stdin=make_mail(subject="Kerberos ticket expired")).exit_code == 0
    found = run_deskctl("--json", "ticket", "list", "--search", "kerberos").json()["tickets"]
    assert [t["title"] for t in found] == ["Kerberos ticket expired"]
