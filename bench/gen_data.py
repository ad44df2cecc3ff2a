"""Fill a deskctl database with a help desk's two years: 100,000 tickets, 400,000 messages.

Run ``python -m deskctl --db URL db upgrade`` first, then::

    python bench/gen_data.py URL [--tickets 100000] [--messages 400000] [--seed 2026]

What it writes (deterministic for a seed and end date):

* 10 agents, 4 queues (``general`` from the migration plus billing, technical,
  sales) with one incoming channel each, ~5,000 customers (a few write often,
  most rarely: Zipf-like);
* tickets spread evenly over the two years before ``--end``; recent tickets are
  mostly new/open/pending, older ones solved/closed; ~70 % of the worked tickets
  have an assignee; ``number`` = ``id``, ``message_count`` = its messages;
* 1..10 messages per ticket (mean exactly messages/tickets): the customer's
  mail (``in``), agents' replies (``out``, each with a sent outbox item, as the
  product's replies always have) and internal notes (``note``); subjects and
  bodies in English, German, French, Spanish, Italian, Dutch and Polish; 40 % of
  first mails name a product from :data:`PRODUCTS` (Zipf-weighted, so the rare
  ones occur in a few hundred tickets: the benchmark's search words);
  ``dedupe_scope``/``dedupe_key`` as ingest and replies set them, ``raw`` and
  ``body_html`` NULL.

Rows go in through SQLAlchemy Core ``insert()`` executemany in batches, a few
transactions in all, never through the ORM or deskctl's ingest.  Full text:

* SQLite: the FTS5 tables are external-content tables kept by triggers
  (migration 0005).  ``--fts rebuild`` (default) drops the six triggers, loads,
  recreates them from the very SQL text ``sqlite_master`` held, and runs the
  FTS5 ``rebuild`` command; ``--fts triggers`` loads through the triggers.
* PostgreSQL: the ``search`` tsvector column is generated; ``--gin rebuild``
  (default) drops the two GIN indexes during the load and recreates them from
  their ``pg_indexes`` definitions; ``--gin keep`` loads with them in place.

Ends with ``ANALYZE`` (SQLite) / ``VACUUM ANALYZE`` (PostgreSQL) and prints the
rows written and seconds per phase.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from corpus_gen import _CLOSINGS, _FILLER, _OPENINGS, _REPLIES, _TOPICS, _customers
from sqlalchemy import Connection, Engine, create_engine, func, insert, select, text

from deskctl.services.tickets import STATUSES
from deskctl.store.models import (
    Agent,
    Customer,
    IncomingChannel,
    Message,
    OutboxItem,
    OutgoingChannel,
    Queue,
    Ticket,
)

BATCH_TICKETS = 2_000  # one executemany per table per batch
TRANSACTION_TICKETS = 25_000  # four transactions for 100,000 tickets

#: Rare words for the search benchmark: each names a product in 40 % of the
#: first mails, weighted 1/rank, so the last ones occur in a few hundred tickets.
PRODUCTS = [
    "Kestrel", "Marlin", "Osprey", "Quokka", "Tamarin", "Wombat", "Axolotl", "Bongo",
    "Caracal", "Dugong", "Echidna", "Fossa", "Gharial", "Hoatzin", "Ibex", "Jacana",
    "Kinkajou", "Lorikeet", "Margay", "Numbat", "Okapi", "Pangolin", "Quetzal", "Serval",
    "Tarsier", "Uakari", "Vicuna", "Xerus", "Yapok", "Zorilla",
]  # fmt: skip
PRODUCT_SHARE = 0.4

AGENTS = [
    ("Alice Martin", "alice"), ("Bruno Keller", "bruno"), ("Chiara Bianchi", "chiara"),
    ("Daniel Nowak", "daniel"), ("Elif Demir", "elif"), ("Femi Adebayo", "femi"),
    ("Greta Lindqvist", "greta"), ("Hugo Lefèvre", "hugo"), ("Isabel Ortega", "isabel"),
    ("Jonas Weber", "jonas"),
]  # fmt: skip
#: (name, colour, weight of new tickets); ``general`` exists after the migrations.
QUEUES = [("general", "cyan", 40), ("billing", "yellow", 25), ("technical", "magenta", 25),
          ("sales", "green", 10)]  # fmt: skip
CUSTOMERS = 5_000
SUPPORT_DOMAIN = "example.test"

_EXTRA_TOPICS: dict[str, list[str]] = {
    "Problema con la factura {n}": [
        "La factura de este mes incluye un cargo que no reconocemos.",
        "Según nuestro contrato pagamos por veinte usuarios, no por treinta.",
        "¿Podrían enviarnos una factura corregida lo antes posible?",
        "Adjunto una copia del contrato firmado.",
    ],
    "Il pagamento non è andato a buon fine": [
        "Ho provato a pagare con la carta aziendale ma il pagamento viene rifiutato.",
        "La banca dice che dal loro lato non risulta nessun blocco.",
        "Potete verificare se il problema è nel vostro sistema?",
        "Abbiamo bisogno della licenza attiva entro venerdì.",
    ],
    "Wachtwoord vergeten en geen reset-mail": [
        "Ik ben mijn wachtwoord vergeten en de reset-mail komt niet aan.",
        "Ook in de map met ongewenste e-mail staat niets.",
        "Kunt u de link handmatig naar mij sturen?",
        "Mijn collega's kunnen wel gewoon inloggen.",
    ],
    "Nie mogę pobrać raportu miesięcznego": [
        "Od wczoraj nie mogę pobrać raportu miesięcznego z panelu.",
        "Przycisk pobierania nic nie robi, nie ma też komunikatu o błędzie.",
        "Próbowałem w dwóch przeglądarkach z tym samym skutkiem.",
        "Raport jest nam potrzebny do zamknięcia miesiąca.",
    ],
}
_LANG = {
    "Änderung der Lieferadresse": "de",
    "Demande de remboursement": "fr",
    "Problema con la factura {n}": "es",
    "Il pagamento non è andato a buon fine": "it",
    "Wachtwoord vergeten en geen reset-mail": "nl",
    "Nie mogę pobrać raportu miesięcznego": "pl",
}
_AGENT_LINES: dict[str, list[str]] = {
    "en": [
        "Thank you for reaching out, I am looking into this now.",
        "I have forwarded your message to our billing team.",
        "Could you send us a screenshot of the error message?",
        "We have reset the account; please try again and let me know.",
        "The replacement was shipped today, the tracking number follows by mail.",
        "This is a known issue and a fix is planned for the next release.",
        "Our engineers are on it and I will update you tomorrow.",
        "The corrected invoice is attached to this message.",
        "I am marking this as solved; just reply if anything is still unclear.",
        "Sorry for the trouble, and thank you for your patience.",
    ],
    "de": [
        "Vielen Dank für Ihre Nachricht, wir kümmern uns darum.",
        "Die Lieferadresse ist geändert, die nächste Bestellung geht an die neue Anschrift.",
        "Bitte geben Sie uns kurz Bescheid, ob jetzt alles passt.",
    ],
    "fr": [
        "Merci pour votre message, nous regardons cela tout de suite.",
        "Le remboursement a été effectué, il apparaîtra sous trois à cinq jours.",
        "N'hésitez pas à nous recontacter si besoin.",
    ],
    "es": [
        "Gracias por su mensaje, ya estamos revisando la factura.",
        "Le enviamos la factura corregida en un mensaje aparte.",
        "Disculpe las molestias.",
    ],
    "it": [
        "Grazie per la segnalazione, stiamo verificando con il nostro fornitore.",
        "Il pagamento ora dovrebbe andare a buon fine, può riprovare?",
        "Restiamo a disposizione per qualsiasi domanda.",
    ],
    "nl": [
        "Bedankt voor uw bericht, we hebben de link opnieuw verstuurd.",
        "Controleert u of het adres in uw profiel nog klopt?",
        "Laat het ons weten als het nog steeds niet lukt.",
    ],
    "pl": [
        "Dziękujemy za zgłoszenie, sprawdzamy problem z raportem.",
        "Błąd został naprawiony, raport można już pobrać.",
        "W razie pytań prosimy o kontakt.",
    ],
}
_CUSTOMER_REPLIES: dict[str, list[str]] = {
    "en": _REPLIES,
    "de": ["Danke, jetzt funktioniert es.", "Gibt es schon etwas Neues?"],
    "fr": ["Merci, c'est réglé.", "Avez-vous des nouvelles ?"],
    "es": ["Gracias, ya está resuelto.", "¿Hay alguna novedad?"],
    "it": ["Grazie, ora funziona.", "Ci sono novità?"],
    "nl": ["Dank u, het werkt nu.", "Is er al nieuws?"],
    "pl": ["Dziękuję, teraz działa.", "Czy są jakieś nowości?"],
}
_GREETINGS = {"en": "Hello", "de": "Guten Tag", "fr": "Bonjour", "es": "Hola", "it": "Buongiorno",
              "nl": "Beste", "pl": "Dzień dobry"}  # fmt: skip
_NOTES = [
    "Called the customer, waiting for the logs.",
    "Escalated to second level, see the linked issue.",
    "Customer is on the enterprise plan: priority handling.",
    "Checked the payment provider: the charge went through twice.",
    "Same problem as last month's outage, probably fixed by the hotfix.",
    "Asked the warehouse to check the parcel.",
    "Intern: Rückruf vereinbart für Donnerstag.",
]
_TOPIC_LIST = [*_TOPICS, *_EXTRA_TOPICS]
_TOPIC_WEIGHTS = [1 if t in _LANG else 3 for t in _TOPIC_LIST]
_POOLS = {**_TOPICS, **_EXTRA_TOPICS}


@dataclass
class Refs:
    """Ids the generated rows point at."""

    agents: list[int]
    agent_names: dict[int, str]
    queues: list[int]  # in the order of QUEUES
    channels: list[tuple[int, str]]  # (id, address) per queue
    customers: list[tuple[int, str, str]]  # (id, name, email)
    outgoing: int | None


@dataclass
class Batch:
    tickets: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)


def message_counts(rng: random.Random, tickets: int, messages: int) -> list[int]:
    """1..10 messages per ticket, most tickets short, summing to exactly ``messages``."""
    if not tickets <= messages <= 10 * tickets:
        raise SystemExit("--messages must lie between --tickets and 10 x --tickets")
    weights = [14, 17, 16, 14, 11, 9, 7, 5, 4, 3]  # mean 4.0
    counts = rng.choices(range(1, 11), weights=weights, k=tickets)
    total = sum(counts)
    while total != messages:
        i = rng.randrange(tickets)
        if total > messages and counts[i] > 1:
            counts[i] -= 1
            total -= 1
        elif total < messages and counts[i] < 10:
            counts[i] += 1
            total += 1
    return counts


def pick_status(rng: random.Random, age: timedelta) -> str:
    if age < timedelta(days=14):
        weights = [25, 35, 20, 15, 5]
    elif age < timedelta(days=60):
        weights = [1, 10, 8, 40, 41]
    else:
        weights = [0.2, 2, 1.5, 16, 80]
    return rng.choices(STATUSES, weights=weights)[0]


class Writer:
    """Builds the rows of one ticket after another; ids are assigned here."""

    def __init__(self, rng: random.Random, refs: Refs, ticket_id: int, message_id: int) -> None:
        self.rng = rng
        self.refs = refs
        self.ticket_id = ticket_id
        self.message_id = message_id
        n = len(refs.customers)
        self.customer_cum = list(accumulate(1 / (r + 1) ** 0.9 for r in range(n)))
        self.product_cum = list(accumulate(1 / (r + 1) for r in range(len(PRODUCTS))))
        self.queue_cum = list(accumulate(w for _, _, w in QUEUES))
        self.topic_cum = list(accumulate(_TOPIC_WEIGHTS))

    def _paragraphs(self, topic: str) -> list[str]:
        rng, pool = self.rng, _POOLS[topic]
        english = topic not in _LANG
        paragraphs = []
        for _ in range(rng.randint(1, 4)):
            sentences = rng.sample(pool, k=min(len(pool), rng.randint(2, 4)))
            if english:
                sentences += rng.sample(_FILLER, k=rng.randint(0, 2))
            paragraphs.append(" ".join(sentences))
        return paragraphs

    def ticket(self, batch: Batch, created: datetime, end: datetime, count: int) -> None:
        rng, refs = self.rng, self.refs
        tid = self.ticket_id
        self.ticket_id += 1
        q = rng.choices(range(len(QUEUES)), cum_weights=self.queue_cum)[0]
        queue_id = refs.queues[q]
        channel_id, channel_address = refs.channels[q]
        cust_id, cust_name, cust_email = rng.choices(refs.customers, cum_weights=self.customer_cum)[
            0
        ]
        topic = rng.choices(_TOPIC_LIST, cum_weights=self.topic_cum)[0]
        lang = _LANG.get(topic, "en")
        title = topic.format(n=rng.randint(1000, 99999))
        status = pick_status(rng, end - created)
        assignee = None if status == "new" or rng.random() < 0.3 else rng.choice(refs.agents)
        token = f"[#{tid}]"
        domain = cust_email.partition("@")[2]
        first_name = cust_name.split()[0]

        # When each message arrived: hours to days apart, squeezed before ``end``.
        times = [created]
        for _ in range(count - 1):
            times.append(times[-1] + timedelta(hours=rng.expovariate(1 / 20)))
        if times[-1] > end:
            scale = (end - created) * rng.random() / (times[-1] - created)
            times = [created + (t - created) * scale for t in times]

        thread: list[str] = []  # Message-IDs of the conversation so far
        previous_text = ""
        public = "in"
        for k, when in enumerate(times):
            mid = self.message_id
            self.message_id += 1
            if k == 0 or status == "new":
                direction = "in"
            else:
                r = rng.random()
                direction = "note" if r < 0.15 else ("out" if public == "in" and r < 0.9 else "in")
            row: dict[str, Any] = {
                "id": mid,
                "ticket_id": tid,
                "direction": direction,
                "created_at": when,
                "date": when,
                "flags": [],
                "flag_reasons": [],
                "cc": [],
                "in_reply_to": thread[-1] if thread else None,
                "references": thread[-10:],
                "author_id": None,
                "thread_rule": None,
                "channel_id": None,
            }
            if direction == "in":
                message_id = f"{rng.getrandbits(48):012x}.{mid}@{domain}"
                if k == 0:
                    subject = title
                    parts = [rng.choice(_OPENINGS), *self._paragraphs(topic)]
                    if rng.random() < PRODUCT_SHARE:
                        product = rng.choices(PRODUCTS, cum_weights=self.product_cum)[0]
                        parts.append(f"Product: {product} {rng.randint(1, 9)}.{rng.randint(0, 9)}")
                    rule = "new"
                else:
                    subject = f"Re: {title} {token}" if rng.random() < 0.7 else f"Re: {title}"
                    parts = [rng.choice(_CUSTOMER_REPLIES[lang])]
                    if lang == "en":
                        parts += rng.sample(_FILLER, k=rng.randint(0, 2))
                    rule = "references" if rng.random() < 0.8 else "token"
                body = "\n\n".join(
                    [*parts, f"{rng.choice(_CLOSINGS)}\n{cust_name}\nCustomer no. {cust_id:05d}"]
                )
                if previous_text and rng.random() < 0.5:
                    quoted = "\n".join(f"> {line}" for line in previous_text.splitlines()[:8])
                    body += f"\n\nOn an earlier day, support wrote:\n{quoted}"
                row |= {
                    "channel_id": channel_id,
                    "message_id": message_id,
                    "subject": subject,
                    "from_name": cust_name,
                    "from_email": cust_email,
                    "to": [{"name": "Support", "email": channel_address}],
                    "cc": [{"name": "", "email": f"team@{domain}"}] if rng.random() < 0.1 else [],
                    "body_text": body + "\n",
                    "thread_rule": rule,
                    "dedupe_scope": channel_id,
                    "dedupe_key": message_id,
                }
                thread.append(message_id)
            elif direction == "out":
                author = assignee or rng.choice(refs.agents)
                agent_name = refs.agent_names[author]
                message_id = f"{when:%Y%m%d%H%M%S}.{mid}.{rng.getrandbits(32):08x}@{SUPPORT_DOMAIN}"
                lines = _AGENT_LINES[lang]
                said = " ".join(rng.sample(lines, k=min(len(lines), rng.randint(1, 3))))
                body = (
                    f"{_GREETINGS[lang]} {first_name},\n\n{said}\n\n{agent_name}\n"
                    f"Support team, {SUPPORT_DOMAIN}\n"
                )
                row |= {
                    "message_id": message_id,
                    "subject": f"Re: {title} {token}",
                    "from_name": "Support",
                    "from_email": channel_address,
                    "to": [{"name": cust_name, "email": cust_email}],
                    "body_text": body,
                    "dedupe_scope": -1,
                    "dedupe_key": message_id,
                    "author_id": author,
                }
                thread.append(message_id)
                batch.outbox.append(
                    {
                        "message_id": mid,
                        "channel_id": self.refs.outgoing,
                        "state": "sent",
                        "attempts": 1,
                        "next_attempt_at": when,
                        "created_at": when,
                        "sent_at": when + timedelta(seconds=rng.randint(1, 300)),
                    }
                )
            else:
                row |= {
                    "message_id": None,
                    "subject": "",
                    "from_name": "",
                    "from_email": "",
                    "to": [],
                    "body_text": rng.choice(_NOTES),
                    "dedupe_scope": 0,
                    "dedupe_key": None,
                    "author_id": assignee or rng.choice(refs.agents),
                }
            if direction != "note":
                public = direction
                previous_text = row["body_text"]
            batch.messages.append(row)

        batch.tickets.append(
            {
                "id": tid,
                "number": tid,
                "title": title,
                "status": status,
                "queue_id": queue_id,
                "channel_id": channel_id,
                "customer_id": cust_id,
                "assignee_id": assignee,
                "message_count": count,
                "created_at": created,
                "updated_at": times[-1],
            }
        )


def _existing(conn: Connection, model: Any, key: str) -> dict[str, int]:
    column = getattr(model, key)
    return {name: id_ for id_, name in conn.execute(select(model.id, column))}


def ensure_refs(conn: Connection, rng: random.Random, start: datetime) -> Refs:
    """Agents, queues, channels and customers, reusing the rows that exist by name."""
    agents = _existing(conn, Agent, "name")
    missing = [
        {
            "name": name,
            "email": f"{login}@{SUPPORT_DOMAIN}",
            "signature": f"{name}\nSupport team",
            "created_at": start,
        }
        for name, login in AGENTS
        if name not in agents
    ]
    if missing:
        conn.execute(insert(Agent), missing)
        agents = _existing(conn, Agent, "name")
    agent_ids = [agents[name] for name, _ in AGENTS]

    queues = _existing(conn, Queue, "name")
    missing = [
        {"name": name, "color": color, "is_default": False, "ack_limit": 3, "created_at": start}
        for name, color, _ in QUEUES
        if name not in queues
    ]
    if missing:
        conn.execute(insert(Queue), missing)
        queues = _existing(conn, Queue, "name")
    queue_ids = [queues[name] for name, _, _ in QUEUES]

    channels = _existing(conn, IncomingChannel, "name")
    missing = [
        {
            "name": f"{name}-inbox",
            "kind": "imap",
            "address": f"{name}@{SUPPORT_DOMAIN}",
            "queue_id": queues[name],
            "host": f"imap.{SUPPORT_DOMAIN}",
            "port": 993,
            "security": "ssl",
            "username": f"{name}@{SUPPORT_DOMAIN}",
            "folder": "INBOX",
            "after_fetch": "keep",
            "enabled": False,  # never fetched: there is no server
            "settings": {},
            "last_uid": 0,
            "acted_uid": 0,
            "last_counts": {},
            "created_at": start,
        }
        for name, _, _ in QUEUES
        if f"{name}-inbox" not in channels
    ]
    if missing:
        conn.execute(insert(IncomingChannel), missing)
        channels = _existing(conn, IncomingChannel, "name")
    channel_refs = [(channels[f"{n}-inbox"], f"{n}@{SUPPORT_DOMAIN}") for n, _, _ in QUEUES]

    outgoing = conn.scalar(select(OutgoingChannel.id).order_by(OutgoingChannel.id).limit(1))

    if conn.scalar(select(func.count()).select_from(Customer)):
        raise SystemExit("the database has customers already: gen_data fills a fresh database")
    people = _customers(rng, CUSTOMERS)
    first_id = 1
    rows = [
        {
            "id": first_id + i,
            "email": p.email,
            "name": p.name,
            "created_at": start - timedelta(days=rng.uniform(0, 400)),
        }
        for i, p in enumerate(people)
    ]
    conn.execute(insert(Customer), rows)
    customers = [(r["id"], r["name"], r["email"]) for r in rows]
    rng.shuffle(customers)  # who writes most is not who was created first
    return Refs(
        agent_ids, {agents[n]: n for n, _ in AGENTS}, queue_ids, channel_refs, customers, outgoing
    )


def batches(
    writer: Writer, counts: Sequence[int], start: datetime, end: datetime
) -> Iterator[Batch]:
    span = end - start
    n = len(counts)
    batch = Batch()
    for i, count in enumerate(counts):
        created = start + span * ((i + writer.rng.random()) / n)
        writer.ticket(batch, created, end, count)
        if len(batch.tickets) == BATCH_TICKETS:
            yield batch
            batch = Batch()
    if batch.tickets:
        yield batch


# -- full-text structures -------------------------------------------------------


def _sqlite_triggers(conn: Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            " AND tbl_name IN ('messages', 'tickets') AND name LIKE '%fts%' ORDER BY name"
        )
    )
    return [(name, sql) for name, sql in rows]


def _pg_search_indexes(conn: Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname IN ('ix_messages_search', 'ix_tickets_title_search')"
            " ORDER BY indexname"
        )
    )
    return [(name, sql) for name, sql in rows]


def timed(label: str, timings: dict[str, float], fn: Callable[[], None]) -> None:
    started = time.perf_counter()
    fn()
    timings[label] = time.perf_counter() - started


def load(
    engine: Engine, *, tickets: int, messages: int, seed: int, end: datetime, fts: str, gin: str
) -> dict[str, float]:
    """Write everything; the seconds of each phase."""
    rng = random.Random(seed)
    start = end - timedelta(days=730)
    dialect = engine.dialect.name
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with engine.begin() as conn:
        if conn.scalar(select(func.count()).select_from(Ticket)):
            raise SystemExit("the database has tickets already: gen_data fills a fresh database")
        refs = ensure_refs(conn, rng, start)
        dropped: list[tuple[str, str]] = []
        if dialect == "sqlite" and fts == "rebuild":
            dropped = _sqlite_triggers(conn)
            if len(dropped) != 6:
                raise SystemExit(f"expected the 6 FTS triggers of migration 0005, found {dropped}")
        elif dialect == "postgresql" and gin == "rebuild":
            dropped = _pg_search_indexes(conn)
        for name, _ in dropped:
            conn.exec_driver_sql(
                f"DROP TRIGGER {name}" if dialect == "sqlite" else f"DROP INDEX {name}"
            )
    timings["reference rows"] = time.perf_counter() - started

    counts = message_counts(rng, tickets, messages)
    writer = Writer(rng, refs, ticket_id=1, message_id=1)
    started = time.perf_counter()
    insert_s = 0.0
    conn = engine.connect()
    try:
        trans = conn.begin()
        done = 0
        for batch in batches(writer, counts, start, end):
            t0 = time.perf_counter()
            conn.execute(insert(Ticket), batch.tickets)
            conn.execute(insert(Message), batch.messages)
            if batch.outbox:
                conn.execute(insert(OutboxItem), batch.outbox)
            insert_s += time.perf_counter() - t0
            done += len(batch.tickets)
            if done % TRANSACTION_TICKETS == 0:
                trans.commit()
                trans = conn.begin()
                print(f"  {done:,} tickets ...", file=sys.stderr, flush=True)
        trans.commit()
    finally:
        conn.close()
    total = time.perf_counter() - started
    timings["generate rows (Python)"] = total - insert_s
    timings["insert (executemany)"] = insert_s

    def restore() -> None:
        with engine.begin() as conn:
            for _, sql in dropped:
                conn.exec_driver_sql(sql)
            if dialect == "sqlite" and fts == "rebuild":
                conn.exec_driver_sql("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
                conn.exec_driver_sql("INSERT INTO tickets_fts(tickets_fts) VALUES ('rebuild')")
            if dialect == "postgresql":
                for table in ("tickets", "messages", "customers", "outbox_items"):
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )

    label = {
        "sqlite": "FTS5 rebuild" if fts == "rebuild" else "triggers (nothing to do)",
        "postgresql": "GIN indexes + sequences",
    }.get(dialect, "-")
    timed(label, timings, restore)

    def analyze() -> None:
        if dialect == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    timed("VACUUM ANALYZE" if dialect == "postgresql" else "ANALYZE", timings, analyze)
    return timings


def _sqlite_load_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=OFF")  # a benchmark fixture: a crash means run again
    cur.execute("PRAGMA cache_size=-262144")  # 256 MiB
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def make_load_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        from sqlalchemy import event

        event.listen(engine, "connect", _sqlite_load_pragmas)
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", help="SQLAlchemy URL of a database after `deskctl db upgrade`")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--end",
        default=None,
        help="ISO date the two years end on (default: today, UTC midnight)",
    )
    parser.add_argument("--fts", choices=["rebuild", "triggers"], default="rebuild")
    parser.add_argument("--gin", choices=["rebuild", "keep"], default="rebuild")
    args = parser.parse_args()
    end = (
        datetime.fromisoformat(args.end).replace(tzinfo=UTC)
        if args.end
        else datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    engine = make_load_engine(args.url)
    started = time.perf_counter()
    timings = load(
        engine,
        tickets=args.tickets,
        messages=args.messages,
        seed=args.seed,
        end=end,
        fts=args.fts,
        gin=args.gin,
    )
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        rows = {
            table: conn.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("tickets", "messages", "outbox_items", "customers", "agents", "queues")
        }
    engine.dispose()
    for label, value in timings.items():
        print(f"{label:>26}: {value:8.2f} s")
    print(", ".join(f"{n:,} {t}" for t, n in rows.items() if n is not None))
    print(f"{sum(n or 0 for n in rows.values()):,} rows in {seconds:.1f} s")


if __name__ == "__main__":
    main()
