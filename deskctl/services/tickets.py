"""Finding and describing tickets; the dict shapes are the JSON contract.

This is the path agents run all day (``ticket list``, ``--search``,
``show``), so it is plain SQL over :class:`~deskctl.store.dbapi.Database`
and never imports SQLAlchemy; see that module for why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deskctl.errors import ConfigError, NotFound, UsageError
from deskctl.mail.quotes import new_text_end
from deskctl.mail.tnef import is_tnef, tnef_files
from deskctl.store.dbapi import Database, as_datetime, as_json

STATUSES = ("new", "open", "pending", "solved", "closed")

#: What ``ticket list`` shows when no --status is given: the work still to do.
OPEN_STATUSES = ("new", "open", "pending")

#: The event kind of a ticket that mail opened but that is no one's work (an
#: out-of-office answering none of our mail): it is closed on arrival, so the
#: default list (OPEN_STATUSES) leaves it out; ``--status closed`` or ``--flag`` show it.
FILED = "filed"

# Tickets with a message flagged so (auto_reply, bounce, bulk, own, help_desk, ...).
# The "not []" term matches the partial index ix_messages_flagged, so only the
# few flagged messages are read.
_FLAGGED = {
    "sqlite": """t.id IN (SELECT m.ticket_id FROM messages m, json_each(m.flags) f
                          WHERE m.flags <> '[]' AND f.value = :flag)""",
    "postgresql": """t.id IN (SELECT m.ticket_id FROM messages m
                              WHERE m.flags::text <> '[]' AND m.flags::jsonb ? :flag)""",
}

#: The largest id or number a column holds on both databases (PostgreSQL's integer).
MAX_ID = 2**31 - 1

_SUMMARY = """
SELECT t.id, t.number, t.title, t.status, q.name AS queue, q.color AS queue_color,
       c.name AS customer_name, c.email AS customer_email, a.name AS assignee,
       t.created_at, t.updated_at, t.message_count, ch.name AS channel
FROM tickets t
JOIN queues q ON q.id = t.queue_id
LEFT JOIN customers c ON c.id = t.customer_id
LEFT JOIN agents a ON a.id = t.assignee_id
LEFT JOIN incoming_channels ch ON ch.id = t.channel_id
"""

_MESSAGES = """
SELECT m.id, m.direction, m.from_name, m.from_email, m."to", m.cc, m.subject, m.date,
       m.created_at, m.message_id, m.body_text, m.flags, m.flag_reasons, a.name AS author,
       (SELECT o.state FROM outbox_items o WHERE o.message_id = m.id
        ORDER BY o.id DESC LIMIT 1) AS delivery,
       (SELECT o.last_error FROM outbox_items o WHERE o.message_id = m.id
        ORDER BY o.id DESC LIMIT 1) AS delivery_error
FROM messages m
LEFT JOIN agents a ON a.id = m.author_id
WHERE m.ticket_id = :ticket_id
ORDER BY m.id
"""

#: The Sent-folder copy of each reply (its newest outbox item's), as ``delivery`` is.
_SENT_COPIES = """
SELECT message_id, sent_copy, sent_copy_folder, sent_copy_error
FROM outbox_items
WHERE message_id IN (SELECT id FROM messages WHERE ticket_id = :ticket_id AND direction = 'out')
ORDER BY id
"""

_ATTACHMENTS = """
SELECT id, message_id, filename, content_type, size, blob_sha256, inline
FROM attachments
WHERE message_id IN (SELECT id FROM messages WHERE ticket_id = :ticket_id)
ORDER BY id
"""

_ATTACHMENT = """
SELECT a.id, a.filename, a.content_type, a.size, a.blob_sha256, a.inline, b.data,
       t.number AS ticket
FROM attachments a
JOIN blobs b ON b.sha256 = a.blob_sha256
JOIN messages m ON m.id = a.message_id
JOIN tickets t ON t.id = m.ticket_id
WHERE a.id = :id
"""

# The search: every word as a prefix, through the full-text indexes the
# migrations create (FTS5 on SQLite, tsvector GIN on PostgreSQL), or the
# customer's address containing the text.
_BY_ADDRESS = "SELECT id FROM customers WHERE email LIKE :address"
_SEARCH = {
    "sqlite": f"""(
        t.id IN (SELECT rowid FROM tickets_fts WHERE tickets_fts MATCH :match)
        OR t.id IN (SELECT ticket_id FROM messages WHERE id IN
                    (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :match))
        OR t.customer_id IN ({_BY_ADDRESS}))""",
    # One id list from the three indexes (not a per-row OR), so a rare word
    # costs index probes, not a walk over every ticket.
    "postgresql": f"""t.id IN (
        SELECT id FROM tickets
         WHERE to_tsvector('simple', title) @@ to_tsquery('simple', :tsquery)
        UNION SELECT ticket_id FROM messages
         WHERE search @@ to_tsquery('simple', :tsquery)
        UNION SELECT id FROM tickets WHERE customer_id IN ({_BY_ADDRESS}))""",
}


def check_status(status: str) -> str:
    value = status.strip().lower()
    if value not in STATUSES:
        raise UsageError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    return value


def list_statuses(given: list[str], *, flag: str | None = None) -> tuple[str, ...] | None:
    """The statuses ``ticket list`` shows; None for every status.

    ``--status`` may be repeated and may list several (``open,pending``);
    ``all`` is every status. Without it the list is the work to do, except
    with ``--flag``: that asks for flagged mail wherever it lies (filed
    auto-replies are closed).
    """
    words = [w.strip() for value in given for w in value.split(",") if w.strip()]
    if not words:
        return None if flag else OPEN_STATUSES
    if any(w.lower() == "all" for w in words):
        return None
    return tuple(dict.fromkeys(check_status(w) for w in words))


@dataclass(frozen=True, slots=True)
class TicketFilter:
    statuses: tuple[str, ...] | None = OPEN_STATUSES
    queue: str | None = None
    assignee: str | None = None
    customer: str | None = None
    search: str | None = None
    limit: int = 50
    flag: str | None = None
    #: the assignee is the acting agent (``--mine``, ``--assignee me``): one who
    #: has no record yet has never been given a ticket, which is no tickets,
    #: not "no agent named ..." (that is for a name typed wrong).
    mine: bool = False


def search_words(text: str) -> list[str]:
    """The words of a search, stripped of every character a query syntax could use."""
    return [w for w in re.findall(r"\w+", text.lower()) if w]


#: The longest search, in UTF-8 bytes: PostgreSQL's longest indexed word. Far
#: longer ones hit the databases' own limits (SQLite's LIKE pattern length,
#: PostgreSQL's stack depth for a query of many thousand words): a usage
#: error naming the limit, not a database error.
MAX_SEARCH_BYTES = 2047


def search_clause(dialect: str, text: str) -> tuple[str, dict[str, Any]]:
    """The WHERE condition (on ``tickets t``) of a search, and its parameters."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SEARCH_BYTES:
        raise UsageError(
            f"--search is too long for the index: at most {MAX_SEARCH_BYTES} bytes, "
            f"this one has {size}"
        )
    words = search_words(text)
    if not words:
        raise UsageError("--search needs at least one word")
    if dialect not in _SEARCH:
        raise ConfigError(f"search needs SQLite or PostgreSQL, not {dialect}")
    params: dict[str, Any] = {"address": f"%{text.strip().lower()}%"}
    if dialect == "sqlite":
        params["match"] = " ".join(f'"{w}"*' for w in words)
    else:
        params["tsquery"] = " & ".join(f"{w}:*" for w in words)
    return _SEARCH[dialect], params


def _id_of(db: Database, table: str, name: str, hint: str, missing_ok: bool = False) -> int | None:
    """The id of a queue or agent named in a filter; an unknown name is exit 3, not "no tickets".

    With ``missing_ok`` an unknown name is None, which ``= :id`` matches to no row.
    """
    found = db.scalar(f"SELECT id FROM {table} WHERE name = :name", name=name)
    if found is None:
        if missing_ok:
            return None
        raise NotFound(f"no {table[:-1]} named {name!r} (see `deskctl {hint} list`)")
    return int(found)


def _where(db: Database, flt: TicketFilter) -> tuple[list[str], dict[str, Any]]:
    dialect = db.dialect
    where: list[str] = []
    params: dict[str, Any] = {}
    if flt.statuses:
        names = {f"status{i}": check_status(s) for i, s in enumerate(flt.statuses)}
        where.append(f"t.status IN ({', '.join(':' + n for n in names)})")
        params.update(names)
    if flt.queue:
        where.append("t.queue_id = :queue_id")
        params["queue_id"] = _id_of(db, "queues", flt.queue, "queue")
    if flt.assignee:
        where.append("t.assignee_id = :assignee_id")
        params["assignee_id"] = _id_of(db, "agents", flt.assignee, "agent", missing_ok=flt.mine)
    if flt.customer:
        where.append("t.customer_id = (SELECT id FROM customers WHERE email = :customer)")
        params["customer"] = flt.customer.strip().lower()
    if flt.search:
        clause, search_params = search_clause(dialect, flt.search)
        where.append(clause)
        params.update(search_params)
    if flt.flag:
        if dialect not in _FLAGGED:
            raise ConfigError(f"--flag needs SQLite or PostgreSQL, not {dialect}")
        where.append(_FLAGGED[dialect])
        params["flag"] = flt.flag.strip().lower()
    return where, params


def list_tickets(db: Database, flt: TicketFilter) -> list[dict[str, Any]]:
    """Ticket rows, newest activity first: what an agent works on next is at the top."""
    if flt.limit < 1:
        raise UsageError("--limit must be at least 1")
    where, params = _where(db, flt)
    sql = _SUMMARY + (f"WHERE {' AND '.join(where)}\n" if where else "")
    sql += "ORDER BY t.updated_at DESC, t.id DESC LIMIT :limit"
    rows = db.rows(sql, limit=flt.limit, **params)
    last = _last_mail(db, [row["id"] for row in rows])
    for row in rows:
        row["last_message_at"] = last.get(row["id"])
    return rows


def _last_mail(db: Database, ticket_ids: list[int]) -> dict[int, Any]:
    """When the last mail came in or went out on each ticket (notes and status changes aside).

    A second statement over the page's few ids: as a column of the list
    query it would run for every row the sort reads, not the fifty it keeps.
    """
    if not ticket_ids:
        return {}
    names = {f"t{i}": tid for i, tid in enumerate(ticket_ids)}
    sql = f"""SELECT ticket_id, MAX(created_at) AS at FROM messages
              WHERE ticket_id IN ({", ".join(":" + n for n in names)}) AND direction <> 'note'
              GROUP BY ticket_id"""
    return {row["ticket_id"]: row["at"] for row in db.rows(sql, **names)}


def get_row(db: Database, number: int) -> dict[str, Any]:
    rows = db.rows(_SUMMARY + "WHERE t.number = :number", number=number)
    if not rows:
        raise NotFound(f"no ticket {number} (see `deskctl ticket list`)")
    return rows[0]


def _ticket(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "number": row["number"],
        "title": row["title"],
        "status": row["status"],
        "queue": row["queue"],
        "customer": {"name": row["customer_name"], "email": row["customer_email"]},
        "assignee": row["assignee"],
        "updated_at": as_datetime(row["updated_at"]),
    }


def ticket_summary(row: dict[str, Any]) -> dict[str, Any]:
    """One line of ``ticket list --json`` from a row of :func:`list_tickets`."""
    data = {**_ticket(row), "messages": row["message_count"]}
    if "last_message_at" in row:
        data["last_message_at"] = as_datetime(row["last_message_at"]) or data["updated_at"]
    return data


def _message(row: dict[str, Any], attachments: list[dict[str, Any]]) -> dict[str, Any]:
    data = {
        "id": row["id"],
        "direction": row["direction"],
        "from": {"name": row["from_name"], "email": row["from_email"]},
        "to": list(as_json(row["to"]) or []),
        "cc": list(as_json(row["cc"]) or []),
        "subject": row["subject"],
        "date": as_datetime(row["date"] or row["created_at"]),
        "message_id": row["message_id"],
        "body": row["body_text"],
        "flags": list(as_json(row["flags"]) or []),
        "flag_reasons": list(as_json(row["flag_reasons"]) or []),
        "author": row["author"],
        "attachments": attachments,
        # Where the mail's own text ends and the history it quotes begins
        # (an offset into body, in characters); body itself stays whole.
        "new_text_end": new_text_end(row["body_text"] or ""),
    }
    if row["direction"] == "out":
        data["delivery"] = row["delivery"]
        # The server's own words for a refusal or bounce ("550 5.1.1 user unknown").
        data["delivery_error"] = row["delivery_error"]
    return data


def ticket_detail(db: Database, number: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``ticket show --json`` for ticket ``number``, and the row it was built from."""
    row = get_row(db, number)
    attachments: dict[int, list[dict[str, Any]]] = {}
    for att in db.rows(_ATTACHMENTS, ticket_id=row["id"]):
        item = {
            "id": att["id"],
            "filename": att["filename"],
            "content_type": att["content_type"],
            "size": att["size"],
            "sha256": att["blob_sha256"],
            "inline": bool(att["inline"]),
        }
        if is_tnef(att["filename"], att["content_type"]):
            data = db.scalar("SELECT data FROM blobs WHERE sha256 = :sha", sha=att["blob_sha256"])
            files = tnef_files(bytes(data or b""))
            item["contents"] = [{"filename": f.filename, "size": f.size} for f in files]
        attachments.setdefault(att["message_id"], []).append(item)
    messages = [
        _message(m, attachments.get(m["id"], [])) for m in db.rows(_MESSAGES, ticket_id=row["id"])
    ]
    copies = {c["message_id"]: c for c in db.rows(_SENT_COPIES, ticket_id=row["id"])}
    for message in messages:
        if message["direction"] == "out":
            copy = copies.get(message["id"], {})
            for key in ("sent_copy", "sent_copy_folder", "sent_copy_error"):
                message[key] = copy.get(key)
    head = _ticket(row)
    detail = {key: head[key] for key in ("id", "number", "title", "status", "queue")}
    detail["channel"] = row["channel"]
    detail |= {key: head[key] for key in ("customer", "assignee")}
    detail["created_at"] = as_datetime(row["created_at"])
    detail |= {"updated_at": head["updated_at"], "messages": messages}
    return detail, row


def attachment(db: Database, attachment_id: int) -> dict[str, Any]:
    """One attachment with its bytes, by the id ``ticket show`` prints."""
    rows = db.rows(_ATTACHMENT, id=attachment_id)
    if not rows:
        raise NotFound(f"no attachment {attachment_id} (`deskctl ticket show N` lists them)")
    found = rows[0]
    found["data"] = bytes(found["data"])
    found["inline"] = bool(found["inline"])
    return found


def raw_source(db: Database, number: int, message_ref: str) -> bytes:
    """The stored source of one message of ticket ``number``, by our id or its Message-ID.

    A Message-ID may name several messages (mail that reused it is stored too);
    then the user is asked for our id, which names one.
    """
    ticket_id = get_row(db, number)["id"]
    ref = message_ref.strip().strip("<>")
    by_id = ref.isascii() and ref.isdigit() and int(ref) <= MAX_ID
    column, value = ("id", int(ref)) if by_id else ("message_id", ref)
    rows = db.rows(
        f"SELECT id, raw FROM messages WHERE ticket_id = :ticket_id AND {column} = :value"
        " AND raw IS NOT NULL ORDER BY id",
        ticket_id=ticket_id,
        value=value,
    )
    if not rows:
        raise NotFound(f"ticket {number} has no message {message_ref} with a stored source")
    if len(rows) > 1:
        ids = ", ".join(str(row["id"]) for row in rows)
        raise UsageError(
            f"Message-ID {message_ref} names messages {ids} of ticket {number}: give one id"
        )
    return bytes(rows[0]["raw"])
