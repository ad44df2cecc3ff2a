"""Benchmark deskctl's read commands at 100,000 tickets: whole processes, median wall time.

Generates the data set once (``gen_data.py``: 100,000 tickets, 400,000
messages) in a SQLite file under a temporary directory (``--reuse PATH`` keeps
and reuses the file between runs) or, with ``--postgres``, in a throwaway
PostgreSQL cluster (the test bed's ``PostgresCluster``), then times, each as
its own child process with ``DESKCTL_HOME`` a temporary directory and
``DESKCTL_DB`` the database URL, one warm-up round and ``--runs`` measured
rounds (commands interleaved, so drift hits them all alike):

* ``deskctl ticket list``, ``ticket list --search WORD`` (a word in a few
  hundred tickets), ``ticket list --queue billing --status open`` and
  ``ticket show N`` (a ticket with 6 messages; it records a view, a write,
  as the product does), each also with ``--json``;
* the floor: ``python -c pass``, the libraries every command needs (Typer,
  rich, logging, json), ``python -c "import deskctl.cli"`` and the
  bare ``sqlite3`` / ``psql`` client running SQL that returns the same rows.

Targets: under 300 ms on SQLite, and within 3x of (bare query + interpreter
start) on both.  Before timing, the ticket numbers each list command prints
(``--json``) are checked against the bare query's.  ``--explain`` adds, per
command, the SQL deskctl issues (captured in-process from the same service
calls the command makes), its time, and ``EXPLAIN QUERY PLAN`` / ``EXPLAIN
ANALYZE``; ``--importtime`` adds the slowest imports of ``import deskctl.cli``.

    python bench/cli.py [--runs 7] [--reuse PATH] [--postgres] [--explain] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchutil import REPO, ChildRun, child_env, deskctl_argv, run_child, table
from gen_data import PRODUCTS

sys.path.insert(0, str(REPO / "tests"))

SQLITE_TARGET_MS = 300.0
FRAMEWORK_MODULES = "typer, rich.console, logging, json"
FRAMEWORK = f"python -c 'import {FRAMEWORK_MODULES}'"
RATIO_TARGET = 3.0
QUEUE = "billing"
STATUS = "open"
SHOW_MESSAGES = 6
SEARCH_TICKETS = 300  # pick the product word whose ticket count is nearest this


@dataclass(frozen=True)
class Database:
    url: str
    dialect: str  # "sqlite" | "postgresql"
    bare: list[str]  # the client's argv; the SQL is appended


@dataclass(frozen=True)
class Case:
    label: str
    deskctl: list[str]  # arguments after ``deskctl``
    bare_sql: str
    kind: str  # "list" | "show"


# -- the data set ---------------------------------------------------------------


def generate(db: Database, env: dict[str, str], tickets: int, messages: int) -> None:
    run_child(deskctl_argv("--db", db.url, "db", "upgrade"), env).check()
    started = time.perf_counter()
    done = run_child(
        [
            sys.executable,
            str(REPO / "bench" / "gen_data.py"),
            db.url,
            f"--tickets={tickets}",
            f"--messages={messages}",
        ],
        env,
    ).check()
    print(done.stdout.rstrip())
    print(f"(gen_data: {time.perf_counter() - started:.1f} s wall)\n")


def ticket_count(url: str) -> int | None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.scalar(text("SELECT version_num FROM alembic_version")) is None:
                return None
            return int(conn.scalar(text("SELECT count(*) FROM tickets")) or 0)
    except Exception:
        return None
    finally:
        engine.dispose()


@contextmanager
def sqlite_database(
    work: Path, reuse: Path | None, tickets: int, messages: int
) -> Iterator[Database]:
    path = reuse.resolve() if reuse else work / "bench.db"
    url = f"sqlite:///{path}"
    client = shutil.which("sqlite3")
    if client is None:
        raise SystemExit("no sqlite3 client: apt-get install sqlite3")
    db = Database(url, "sqlite", [client, "-batch", "-readonly", str(path)])
    if path.exists() and ticket_count(url) == tickets:
        print(f"reusing {path} ({tickets:,} tickets), upgraded to the current schema\n")
        run_child(deskctl_argv("--db", url, "db", "upgrade"), child_env(work / "gen-home")).check()
    else:
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        generate(db, child_env(work / "gen-home"), tickets, messages)
    yield db


@contextmanager
def postgres_database(tickets: int, messages: int) -> Iterator[Database]:
    from testbed.postgres import PostgresCluster

    with PostgresCluster() as cluster:
        url = cluster.create_database()
        client = shutil.which("psql") or str(cluster.bindir / "psql")
        argv = [client, "-X", "-q", "-A", "-t", "-F", "|", "-h", "127.0.0.1"]
        argv += ["-p", str(cluster.port), "-U", "postgres", "-d", url.rsplit("/", 1)[-1], "-c"]
        db = Database(url, "postgresql", argv)
        with tempfile.TemporaryDirectory(prefix="dk-bench-gen-") as home:
            generate(db, child_env(Path(home)), tickets, messages)
        yield db


# -- what to run ----------------------------------------------------------------


def pick(db: Database) -> tuple[str, int, int]:
    """The search word (nearest SEARCH_TICKETS tickets) and a ticket with 6 messages."""
    from deskctl.services.tickets import search_clause
    from deskctl.store.dbapi import open_database

    conn = open_database(db.url)
    with conn.transaction():
        counts = {}
        for word in PRODUCTS[len(PRODUCTS) // 2 :]:
            clause, params = search_clause(db.dialect, word.lower())
            found = conn.scalar(f"SELECT count(*) FROM tickets t WHERE {clause}", **params)
            counts[word.lower()] = int(found or 0)
        number = conn.scalar(
            "SELECT max(number) FROM tickets WHERE message_count = :n", n=SHOW_MESSAGES
        )
    conn.close()
    word = min(counts, key=lambda w: abs(counts[w] - SEARCH_TICKETS))
    if number is None:
        raise SystemExit(f"no ticket with {SHOW_MESSAGES} messages")
    return word, counts[word], int(number)


LIST_SQL = """SELECT t.number, t.title, t.status, q.name, q.color, c.name, c.email, a.name,
  t.updated_at, t.message_count
FROM tickets t JOIN queues q ON q.id = t.queue_id
LEFT JOIN customers c ON c.id = t.customer_id LEFT JOIN agents a ON a.id = t.assignee_id
{where}ORDER BY t.updated_at DESC, t.id DESC LIMIT 50;"""

SHOW_SQL = """SELECT t.number, t.title, t.status, q.name, q.color, ch.name, c.name, c.email,
  a.name, t.created_at, t.updated_at
FROM tickets t JOIN queues q ON q.id = t.queue_id
LEFT JOIN incoming_channels ch ON ch.id = t.channel_id
LEFT JOIN customers c ON c.id = t.customer_id LEFT JOIN agents a ON a.id = t.assignee_id
WHERE t.number = {n};
SELECT m.id, m.direction, m.from_name, m.from_email, m."to", m.cc, m.subject, m.date,
  m.message_id, m.body_text, m.flags, m.flag_reasons, ag.name
FROM messages m LEFT JOIN agents ag ON ag.id = m.author_id
WHERE m.ticket_id = (SELECT id FROM tickets WHERE number = {n}) ORDER BY m.id;
SELECT a.message_id, a.filename, a.content_type, a.size, a.blob_sha256
FROM attachments a JOIN messages m ON m.id = a.message_id
WHERE m.ticket_id = (SELECT id FROM tickets WHERE number = {n});
SELECT o.message_id, o.state FROM outbox_items o
WHERE o.message_id IN (SELECT id FROM messages
  WHERE ticket_id = (SELECT id FROM tickets WHERE number = {n}) AND direction = 'out');"""


def search_where(dialect: str, word: str) -> str:
    by_address = f"t.customer_id IN (SELECT id FROM customers WHERE email LIKE '%{word}%')"
    if dialect == "sqlite":
        match = f"'\"{word}\"*'"
        return (
            f"WHERE t.id IN (SELECT rowid FROM tickets_fts WHERE tickets_fts MATCH {match})\n"
            "  OR t.id IN (SELECT ticket_id FROM messages WHERE id IN\n"
            f"    (SELECT rowid FROM messages_fts WHERE messages_fts MATCH {match}))\n"
            f"  OR {by_address}\n"
        )
    query = f"to_tsquery('simple', '{word}:*')"
    return (
        f"WHERE to_tsvector('simple', t.title) @@ {query}\n"
        f"  OR t.id IN (SELECT ticket_id FROM messages WHERE search @@ {query})\n"
        f"  OR {by_address}\n"
    )


#: ticket list's default: the work still to do (deskctl.services.tickets.OPEN_STATUSES).
TO_DO = "t.status IN ('new', 'open', 'pending')"


def cases(db: Database, word: str, number: int) -> list[Case]:
    queue_where = (
        f"WHERE t.status = '{STATUS}' AND t.queue_id = (SELECT id FROM queues WHERE name = "
        f"'{QUEUE}')\n"
    )
    base = [
        Case("ticket list", ["ticket", "list"], LIST_SQL.format(where=f"WHERE {TO_DO}\n"), "list"),
        Case(
            f"ticket list --search {word}",
            ["ticket", "list", "--search", word],
            LIST_SQL.format(where=f"WHERE {TO_DO} AND ({search_where(db.dialect, word)[6:]})\n"),
            "list",
        ),
        Case(
            f"ticket list --queue {QUEUE} --status {STATUS}",
            ["ticket", "list", "--queue", QUEUE, "--status", STATUS],
            LIST_SQL.format(where=queue_where),
            "list",
        ),
        Case(
            f"ticket show {number}",
            ["ticket", "show", str(number)],
            SHOW_SQL.format(n=number),
            "show",
        ),
    ]
    with_json = [
        Case(f"--json {c.label}", ["--json", *c.deskctl], c.bare_sql, c.kind) for c in base
    ]
    return [x for pair in zip(base, with_json, strict=True) for x in pair]


def check_rows(db: Database, env: dict[str, str], case: Case) -> str:
    """The deskctl --json rows against the bare query's; a short verdict."""
    out = json.loads(run_child(deskctl_argv("--json", *case.deskctl), env).check().stdout)
    bare = run_child([*db.bare, case.bare_sql], env).check().stdout
    if case.kind == "list":
        mine = [t["number"] for t in out["tickets"]]
        theirs = [int(line.split("|", 1)[0]) for line in bare.splitlines() if line]
        if mine != theirs:
            raise SystemExit(f"{case.label}: deskctl {mine[:10]}... != bare {theirs[:10]}...")
        return f"{len(mine)} tickets, same as the bare query"
    return f"{len(out['messages'])} messages"


# -- timing ---------------------------------------------------------------------


def measure(
    commands: dict[str, list[str]], env: dict[str, str], runs: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds per command over ``runs`` interleaved rounds after ``warmup`` rounds."""
    times: dict[str, list[float]] = {label: [] for label in commands}
    for round_ in range(warmup + runs):
        for label, argv in commands.items():
            done: ChildRun = run_child(argv, env).check()
            if round_ >= warmup:
                times[label].append(done.seconds * 1000)
    return times


def report(db: Database, env: dict[str, str], runs: int, warmup: int) -> list[Case]:
    word, hits, number = pick(db)
    print(f"search word {word!r}: {hits} tickets; ticket {number}: {SHOW_MESSAGES} messages")
    chosen = cases(db, word, number)
    for case in chosen[::2]:
        print(f"  check {case.label}: {check_rows(db, env, case)}")

    bare_label = {c.bare_sql: f"bare {Path(db.bare[0]).name}: {c.label}" for c in chosen[::2]}
    commands: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        # What any Typer + rich command pays before it does anything.
        FRAMEWORK: [sys.executable, "-c", f"import {FRAMEWORK_MODULES}"],
        "python -c 'import deskctl.cli'": [sys.executable, "-c", "import deskctl.cli"],
    }
    for case in chosen[::2]:
        commands[bare_label[case.bare_sql]] = [*db.bare, case.bare_sql]
    for case in chosen:
        commands[f"deskctl {case.label}"] = deskctl_argv(*case.deskctl)
    times = measure(commands, env, runs, warmup)
    med = {label: statistics.median(values) for label, values in times.items()}
    start_ms = med["python -c pass"]

    rows: list[list[object]] = []
    for label in commands:
        if label.startswith("deskctl "):
            continue
        rows.append([label, med[label], min(times[label]), "", ""])
    for case in chosen:
        label = f"deskctl {case.label}"
        limit = RATIO_TARGET * (med[bare_label[case.bare_sql]] + start_ms)
        checks = [f"<= {limit:.0f} (3x bare+start)"]
        ok = med[label] <= limit
        if db.dialect == "sqlite":
            checks.insert(0, f"< {SQLITE_TARGET_MS:.0f}")
            ok = ok and med[label] < SQLITE_TARGET_MS
        rows.append(
            [label, med[label], min(times[label]), " and ".join(checks), "ok" if ok else "MISS"]
        )
    print()
    print(f"{db.dialect}: median of {runs} runs after {warmup} warm-up, milliseconds")
    print(table(["command", "median ms", "min ms", "target ms", "verdict"], rows))
    return chosen


# -- diagnosis --------------------------------------------------------------------


def explain(db: Database, word: str, number: int) -> None:
    """The SQL each command's service calls issue, with time and plan."""
    from deskctl.services import tickets as svc
    from deskctl.services.seen import record_shown
    from deskctl.store import dbapi

    captured: list[tuple[str, dict[str, Any], float]] = []

    class Traced(dbapi.Database):
        """Times each statement with its fetch (sqlite3 runs a query as rows are read)."""

        def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
            started = time.perf_counter()
            found = super().rows(sql, **params)
            captured.append((sql, params, (time.perf_counter() - started) * 1000))
            return found

        def scalar(self, sql: str, **params: Any) -> Any:
            found = self.rows(sql, **params)
            return next(iter(found[0].values())) if found else None

        def execute(self, sql: str, **params: Any) -> None:
            started = time.perf_counter()
            super().execute(sql, **params)
            captured.append((sql, params, (time.perf_counter() - started) * 1000))

    opened = dbapi.open_database(db.url)
    conn = Traced(opened.conn, opened.dialect, opened.driver)

    def list_(**kw: Any) -> None:
        with conn.transaction():
            svc.list_tickets(conn, svc.TicketFilter(**kw))

    def show() -> None:
        with conn.transaction():
            data, _row = svc.ticket_detail(conn, number)
        try:
            with conn.transaction(write=True):
                record_shown(conn, "bench-explain", data)
                raise KeyboardInterrupt  # roll the view back: the bench leaves no trace
        except KeyboardInterrupt:
            pass

    calls = {
        "ticket list": lambda: list_(),
        f"ticket list --search {word}": lambda: list_(search=word),
        f"ticket list --queue {QUEUE} --status {STATUS}": lambda: list_(
            queue=QUEUE, statuses=(STATUS,)
        ),
        f"ticket show {number}": show,
    }
    for label, call in calls.items():
        call()  # warm the caches
        captured.clear()
        call()
        issued = [c for c in captured if not c[0].strip().upper().startswith(("BEGIN", "PRAGMA"))]
        print(f"\n== {label}: {len(issued)} statements, {sum(c[2] for c in issued):.1f} ms in SQL")
        for statement, params, ms in issued:
            print(f"-- {ms:.1f} ms, params {params!r}")
            print("   " + " ".join(statement.split())[:600])
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN (ANALYZE) "
            with opened.transaction():
                plan = opened.rows(prefix + statement, **params)
            for row in plan:
                print("   | " + str(list(row.values())[-1]))
    opened.close()


def importtime(env: dict[str, str], label: str, argv: list[str], top: int = 15) -> None:
    """Where the import time of one whole run goes (``-X importtime``, one run, not a median)."""
    done = run_child([sys.executable, "-X", "importtime", *argv], env)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((int(cumulative_us), int(self_us), depth, name.strip()))
    total = sum(r[1] for r in rows) / 1000
    print(f"\n== -X importtime {label}: {len(rows)} modules, {total:.0f} ms importing")
    print(f"   of {done.seconds * 1000:.0f} ms wall (importtime itself adds overhead)")
    outer = sorted((r for r in rows if r[2] == 0), reverse=True)[:top]
    print(table(["top-level import", "cumulative ms"], [[n, c / 1000] for c, _, _, n in outer]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--reuse", type=Path, help="SQLite file to keep and reuse between runs")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster")
    parser.add_argument("--explain", action="store_true", help="SQL, times and plans per command")
    parser.add_argument("--importtime", action="store_true", help="what each command imports")
    parser.add_argument(
        "--bytecode",
        choices=["cache", "env"],
        default="cache",
        help="cache: children write and reuse .pyc under a temporary PYTHONPYCACHEPREFIX, as"
        " an installed deskctl has them (default); env: keep the environment's setting"
        " (PYTHONDONTWRITEBYTECODE=1 compiles deskctl's modules from source on every run)",
    )
    args = parser.parse_args()
    if args.reuse and args.postgres:
        parser.error("--reuse is for the SQLite file")

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dk-bench-cli-")))
        db = stack.enter_context(
            postgres_database(args.tickets, args.messages)
            if args.postgres
            else sqlite_database(work, args.reuse, args.tickets, args.messages)
        )
        (work / "home").mkdir()
        env = child_env(work / "home", DESKCTL_DB=db.url)
        if args.bytecode == "cache":
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        print(f"bytecode: {args.bytecode}; load average {os.getloadavg()[0]:.2f}")
        chosen = report(db, env, args.runs, args.warmup)
        if args.explain:
            word = chosen[2].deskctl[-1]
            number = int(chosen[6].deskctl[-1])
            explain(db, word, number)
        if args.importtime:
            importtime(env, "import deskctl.cli", ["-c", "import deskctl.cli"])
            for case in chosen[::2]:
                importtime(env, f"deskctl {case.label}", ["-m", "deskctl", *case.deskctl])


if __name__ == "__main__":
    main()
