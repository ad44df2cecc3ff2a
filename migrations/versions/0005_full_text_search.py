"""Full-text search over ticket titles and message subjects and bodies.

FTS5 tables kept in step by triggers on SQLite; a generated tsvector column
with a GIN index on PostgreSQL. The 'simple' configuration (no stemming) on
both, so a help desk in several languages finds what was typed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE_UP = [
    """CREATE VIRTUAL TABLE messages_fts USING fts5(
        subject, body_text, content='messages', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, subject, body_text)
        VALUES (new.id, new.subject, new.body_text); END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, subject, body_text)
        VALUES ('delete', old.id, old.subject, old.body_text); END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, body_text ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, subject, body_text)
        VALUES ('delete', old.id, old.subject, old.body_text);
        INSERT INTO messages_fts(rowid, subject, body_text)
        VALUES (new.id, new.subject, new.body_text); END""",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    """CREATE VIRTUAL TABLE tickets_fts USING fts5(
        title, content='tickets', content_rowid='id', tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER tickets_fts_insert AFTER INSERT ON tickets BEGIN
        INSERT INTO tickets_fts(rowid, title) VALUES (new.id, new.title); END""",
    """CREATE TRIGGER tickets_fts_delete AFTER DELETE ON tickets BEGIN
        INSERT INTO tickets_fts(tickets_fts, rowid, title) VALUES ('delete', old.id, old.title); END""",
    """CREATE TRIGGER tickets_fts_update AFTER UPDATE OF title ON tickets BEGIN
        INSERT INTO tickets_fts(tickets_fts, rowid, title) VALUES ('delete', old.id, old.title);
        INSERT INTO tickets_fts(rowid, title) VALUES (new.id, new.title); END""",
    "INSERT INTO tickets_fts(tickets_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER tickets_fts_update",
    "DROP TRIGGER tickets_fts_delete",
    "DROP TRIGGER tickets_fts_insert",
    "DROP TABLE tickets_fts",
    "DROP TRIGGER messages_fts_update",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_insert",
    "DROP TABLE messages_fts",
]
POSTGRES_UP = [
    """ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', coalesce(subject, '') || ' ' || coalesce(body_text, ''))) STORED""",
    "CREATE INDEX ix_messages_search ON messages USING gin (search)",
    "CREATE INDEX ix_tickets_title_search ON tickets USING gin (to_tsvector('simple', title))",
]
POSTGRES_DOWN = [
    "DROP INDEX ix_tickets_title_search",
    "DROP INDEX ix_messages_search",
    "ALTER TABLE messages DROP COLUMN search",
]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_UP)
    elif dialect == "postgresql":
        _run(POSTGRES_UP)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_DOWN)
    elif dialect == "postgresql":
        _run(POSTGRES_DOWN)
