"""Which ticket mail joins: every token weighed, only our tag's tokens, out-of-office filed away."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, text

from conftest import Run, ingested
from deskctl.store.models import UTCDateTime
from mailfactory import make_mail

ADA = "Ada <ada@example.org>"
BOB = "Bob <bob@example.org>"
OOO = {"Auto-Submitted": "auto-replied"}


@pytest.fixture
def support(desk: Run) -> Run:
    """A pipe inbox; replies queue on the default local channel (nothing is sent here)."""
    added = desk("channel", "add", "support", "--kind", "pipe", "--address", "help@example.test")
    assert added.exit_code == 0, added.stderr
    return desk


def ingest(desk: Run, **mail: Any) -> dict[str, Any]:
    mail.setdefault("message_id", f"<{uuid.uuid4().hex}@example.org>")
    return ingested(desk, make_mail(**mail), "--channel", "support")


def reply(desk: Run, number: int) -> str:
    """An agent answers ticket ``number``; returns the subject our mail carries."""
    desk("ticket", "show", str(number))
    queued = desk("--json", "ticket", "reply", str(number), "--body", "On it.")
    assert queued.exit_code == 0, queued.stderr
    raw = desk("ticket", "show", str(number), "--raw", str(queued.json()["message"])).stdout
    (subject,) = [line for line in raw.splitlines() if line.startswith("Subject: ")]
    return subject.removeprefix("Subject: ")


def listed(desk: Run, *args: str) -> list[int]:
    return [t["number"] for t in desk("--json", "ticket", "list", *args).json()["tickets"]]


def test_of_several_tokens_the_one_whose_ticket_the_sender_is_on_wins(support: Run) -> None:
    printer = ingest(support, subject="Printer on fire", sender=ADA)["ticket"]
    # Bob, on no ticket, forwards Ada's thread: the token is not his, so a new ticket.
    forwarded = ingest(support, subject=f"Fwd: Re: Printer on fire [#{printer}]", sender=BOB)
    assert forwarded["created"] is True and forwarded["rule"] == "token-untrusted"
    assert forwarded["title"] == "Printer on fire"
    assert reply(support, forwarded["ticket"]) == f"Re: Printer on fire [#{forwarded['ticket']}]"

    # Subjects as deskctl used to send them, with both tokens, and no References.
    both = f"Re: Fwd: Printer on fire [#{printer}] [#{forwarded['ticket']}]"
    from_bob = ingest(support, subject=both, sender=BOB)
    assert from_bob["ticket"] == forwarded["ticket"] and from_bob["rule"] == "token"
    from_ada = ingest(support, subject=both, sender=ADA)
    assert from_ada["ticket"] == printer and from_ada["rule"] == "token"


def test_the_token_tag_is_set_once_and_every_token_carries_it(support: Run) -> None:
    tagged = support("--json", "db", "upgrade", "--token-tag", "ACME")
    assert tagged.exit_code == 0, tagged.stderr
    assert tagged.json()["token_tag"] == "ACME"
    assert "[ACME #12]" in support("db", "upgrade").stdout
    assert support("db", "upgrade", "--token-tag", "ACME").exit_code == 0
    again = support("db", "upgrade", "--token-tag", "BETA")
    assert again.exit_code == 4 and "already 'ACME'" in again.stderr
    assert support("db", "upgrade", "--token-tag", "AC ME").exit_code == 2

    number = ingest(support, subject="AW: Rechnung fehlt", sender=ADA)["ticket"]
    assert reply(support, number) == f"Re: Rechnung fehlt [ACME #{number}]"
    answer = ingest(support, subject=f"AW: Re: Rechnung fehlt [ACME #{number}]", sender=ADA)
    assert answer["ticket"] == number and answer["rule"] == "token"
    shouted = ingest(support, subject=f"RE: [acme #{number}]", sender=ADA)
    assert shouted["ticket"] == number


def test_plain_tokens_sent_before_the_tag_still_thread_and_newer_ones_do_not(
    support: Run,
) -> None:
    old = ingest(support, subject="VPN drops", sender=ADA)["ticket"]
    assert reply(support, old) == f"Re: VPN drops [#{old}]"
    assert support("db", "upgrade", "--token-tag", "ACME").exit_code == 0
    new = ingest(support, subject="Toner empty", sender=BOB)["ticket"]
    assert reply(support, new) == f"Re: Toner empty [ACME #{new}]"

    assert ingest(support, subject=f"Re: VPN drops [#{old}]", sender=ADA)["ticket"] == old
    # A plain [#N] above the old numbers is not a token this desk ever sent.
    stray = ingest(support, subject=f"Re: Toner empty [#{new}]", sender=BOB)
    assert stray["created"] is True and stray["rule"] == "new"


def test_two_help_desks_that_mail_each_other_keep_their_tokens_apart(support: Run) -> None:
    """We are ACME; the supplier's help desk is another deskctl with plain tokens."""
    assert support("db", "upgrade", "--token-tag", "ACME").exit_code == 0
    supplier = "Supplier Desk <desk@supplier.example>"
    ours = ingest(support, subject="Delivery 7 is late", sender=supplier)["ticket"]
    assert reply(support, ours) == f"Re: Delivery 7 is late [ACME #{ours}]"

    # Their own ticket number happens to be ours too; their desk writes with its token.
    theirs = ingest(support, subject=f"Your order 12 has shipped [#{ours}]", sender=supplier)
    assert theirs["created"] is True and theirs["ticket"] != ours
    assert theirs["title"] == "Your order 12 has shipped"
    answer = ingest(support, subject=f"Re: Delivery 7 is late [ACME #{ours}]", sender=supplier)
    assert answer["ticket"] == ours and answer["rule"] == "token"


def test_an_out_of_office_to_our_reply_without_references_joins_that_ticket(
    support: Run,
) -> None:
    number = ingest(support, subject="Printer on fire", sender=ADA)["ticket"]
    reply(support, number)
    away = ingest(support, subject="Automatic reply: away until Monday", sender=ADA, headers=OOO)
    assert away["ticket"] == number and away["rule"] == "auto-reply"
    shown = support("--json", "ticket", "show", str(number)).json()
    assert shown["status"] == "pending"  # automatic mail never reopens a ticket
    assert listed(support) == [number]
    assert listed(support, "--flag", "auto_reply") == [number]


def test_an_out_of_office_from_someone_we_never_wrote_to_is_filed_away(
    support: Run, tmp_path: Any
) -> None:
    work = ingest(support, subject="Printer on fire", sender=ADA)["ticket"]
    away = ingest(
        support, subject="Out of office: Re: newsletter", sender=BOB, headers={"X-Autoreply": "yes"}
    )
    assert away["created"] is True and away["rule"] == "auto-reply-filed"
    assert away["title"] == "Out of office: Re: newsletter"
    shown = support("--json", "ticket", "show", str(away["ticket"])).json()
    assert shown["status"] == "closed"
    assert "auto_reply" in shown["messages"][0]["flags"]

    assert listed(support) == [work]
    assert listed(support, "--flag", "auto_reply") == [away["ticket"]]
    assert listed(support, "--status", "closed") == [away["ticket"]]
    assert listed(support, "--flag", "bounce") == []

    path = tmp_path / "ooo.eml"
    path.write_bytes(make_mail(subject="Abwesenheitsnotiz", sender=BOB, headers=OOO))
    explained = support("explain", "--channel", "support", str(path)).stdout
    assert "filed as closed" in explained


def test_an_out_of_office_joins_only_within_the_window_after_we_wrote(
    support: Run, db_url: str
) -> None:
    number = ingest(support, subject="Printer on fire", sender=ADA)["ticket"]
    reply(support, number)

    def age_our_mail(days: int) -> None:
        with create_engine(db_url).begin() as conn:
            update = text(
                "UPDATE messages SET created_at = :at WHERE direction = 'out'"
                " AND ticket_id = (SELECT id FROM tickets WHERE number = :number)"
            ).bindparams(bindparam("at", type_=UTCDateTime))
            conn.execute(update, {"at": datetime.now(UTC) - timedelta(days=days), "number": number})

    age_our_mail(13)
    assert ingest(support, subject="Vacation", sender=ADA, headers=OOO)["ticket"] == number
    age_our_mail(15)
    late = ingest(support, subject="Vacation", sender=ADA, headers=OOO)
    assert late["created"] is True and late["rule"] == "auto-reply-filed"
    assert listed(support) == [number]


def test_an_outlook_mail_with_an_empty_subject_is_titled_by_its_thread_topic(
    support: Run,
) -> None:
    doc = ingest(support, subject="AW: ", sender=ADA, headers={"Thread-Topic": "Toner leer"})
    assert doc["title"] == "Toner leer"
    assert ingest(support, subject="", sender=BOB)["title"] == "(no subject)"


def test_an_answer_naming_more_ids_than_a_query_may_hold_still_joins_its_ticket(
    support: Run,
) -> None:
    """A References list of 300,000 ids (3 MB, well under the size limit) is more
    than one SQL statement may carry (SQLite 250,000 parameters, PostgreSQL 65,535):
    the answer still finds its ticket instead of failing ingest on every delivery."""
    first = ingest(support, subject="Printer on fire", sender=ADA, message_id="<root@example.org>")
    refs = " ".join(f"<{i}@x.example>" for i in range(300_000))
    raw = (
        f"From: {ADA}\r\nTo: help@example.test\r\nSubject: Re: Printer on fire\r\n"
        "Message-ID: <many-refs@example.org>\r\nIn-Reply-To: <root@example.org>\r\n"
        f"References: <root@example.org> {refs}\r\n\r\nStill burning.\r\n"
    ).encode()
    result = support("--json", "ingest", "--channel", "support", stdin=raw)
    assert result.exit_code == 0, result.stderr
    assert result.json()["ticket"] == first["ticket"] and result.json()["rule"] == "references"


def test_a_subject_of_a_hundred_thousand_tokens_is_weighed_in_seconds(support: Run) -> None:
    """Each token cost a query: one 1 MB subject of ``[#N]`` held ingest (and every
    fetch behind it) for minutes. A subject's last tokens are weighed, where mail
    programs and our own reply put them; the rest are not anyone's evidence."""
    import time

    first = ingest(support, subject="Printer on fire", sender=ADA)["ticket"]
    flood = " ".join(f"[#{n}]" for n in range(first + 1, first + 100_001))
    raw = (
        f"From: {BOB}\r\nTo: help@example.test\r\nMessage-ID: <flood@example.org>\r\n"
        f"Subject: Re: Printer on fire [#{first}] {flood}\r\n\r\nStill burning.\r\n"
    ).encode()
    started = time.monotonic()
    opened = support("--json", "ingest", "--channel", "support", stdin=raw)
    assert time.monotonic() - started < 10, "ingest took too long"
    assert opened.json()["created"] is True and opened.json()["title"] == "Printer on fire"
