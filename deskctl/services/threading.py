"""Which ticket an incoming message belongs to, and which token our mail carries.

Order (DESIGN.md): a Message-ID we stored or sent named in In-Reply-To or
References; else a ticket token in the subject. A token alone is weak
evidence anyone can type, so it is trusted only from the ticket's customer or
someone already on the conversation; anyone else opens a new ticket instead
of writing into a stranger's ticket. A subject may carry several tokens (a
forwarded ticket's, another help desk's, ours): each of ours is considered,
the last first because that is where our reply puts it, and the first whose
ticket the sender took part in wins.

The token tag (``[ACME #12]``; plain ``[#12]`` by default) is set once per
installation, so two deskctl desks that mail each other do not take each
other's tokens for their own. An installation that set its tag after it had
tickets still honours the plain tokens it sent before: ``[#N]`` up to the
highest ticket number it had then, and never for a ticket made since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deskctl.errors import Conflict, UsageError
from deskctl.mail.addresses import address_key
from deskctl.mail.parsed import ParsedMail
from deskctl.mail.subjects import PLAIN_TAG, check_tag, find_tokens, format_token
from deskctl.store.models import Message, Setting, Ticket

#: The flag of a message stored although another mail held its Message-ID first.
REUSED_FLAG = "message_id_reused"
TAG_KEY = "token_tag"
PLAIN_UNTIL_KEY = "token_plain_until"

#: How long after we last wrote to someone their automatic reply is taken as an
#: answer to that mail (README: longer than the days mail servers keep retrying
#: a delayed message, so a late out-of-office still finds its ticket).
AUTO_REPLY_WINDOW = timedelta(days=14)
#: The most of a subject's tokens weighed, last first: a real subject carries a
#: few, and each costs queries, so a subject of 100,000 tokens must not hold ingest.
MAX_TOKENS = 20
#: Message-IDs looked up per statement, well inside every database's parameter limit.
_IDS_PER_QUERY = 10_000


@dataclass(frozen=True, slots=True)
class TokenScheme:
    """This installation's token tag, and up to which ticket plain ``[#N]`` is still ours."""

    tag: str = PLAIN_TAG
    plain_until: int | None = None  # None: every plain token is ours (the tag is plain)

    def token(self, number: int) -> str:
        return format_token(number, self.tag)

    def numbers(self, subject: str) -> list[int]:
        """Our ticket numbers in ``subject``, last token first, each once."""
        found: dict[int, None] = {}
        for tok in reversed(find_tokens(subject)):
            if tok.tag is None:
                ours = self.tag == PLAIN_TAG or tok.number <= (self.plain_until or 0)
            else:
                ours = self.tag != PLAIN_TAG and tok.tag.casefold() == self.tag.casefold()
            if ours:
                found.setdefault(tok.number, None)
        return list(found)


def token_scheme(session: Session) -> TokenScheme:
    tag = session.get(Setting, TAG_KEY)
    if tag is None or tag.value == PLAIN_TAG:
        return TokenScheme()
    until = session.get(Setting, PLAIN_UNTIL_KEY)
    return TokenScheme(tag.value, int(until.value) if until is not None else 0)


def set_token_tag(session: Session, tag: str) -> TokenScheme:
    """Give the installation its token tag, once; the same tag again changes nothing.

    A second, different tag is refused: the mail already out there carries the
    first one, and customers' answers to it would stop threading.
    """
    try:
        tag = check_tag(tag)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    current = token_scheme(session)
    if tag.casefold() == current.tag.casefold():
        return current
    if current.tag != PLAIN_TAG:
        raise Conflict(
            f"this installation's token tag is already {current.tag!r} "
            f"(tokens like {current.token(12)}); it is set once, because customers' "
            "answers to mail already sent carry it"
        )
    highest = session.scalar(select(func.max(Ticket.number))) or 0
    session.merge(Setting(key=TAG_KEY, value=tag))
    session.merge(Setting(key=PLAIN_UNTIL_KEY, value=str(highest)))
    session.flush()
    return TokenScheme(tag, highest)


@dataclass(frozen=True, slots=True)
class ThreadMatch:
    ticket: Ticket | None
    rule: str  # "references", "token", "token-untrusted", "new", "auto-reply", "bounce"


def participants(session: Session, ticket: Ticket) -> set[str]:
    """Every address that took part in the ticket's conversation, by :func:`address_key`."""
    found: set[str] = set()
    if ticket.customer is not None:
        found.add(ticket.customer.email)
    rows = session.execute(
        select(Message.from_email, Message.to, Message.cc).where(Message.ticket_id == ticket.id)
    ).all()
    for from_email, to, cc in rows:
        if from_email:
            found.add(from_email)
        for addr in (*(to or []), *(cc or [])):
            if addr.get("email"):
                found.add(addr["email"])
    return {address_key(a) for a in found}


def referenced_ticket(session: Session, mail: ParsedMail) -> int | None:
    """The ticket of the newest stored message that ``mail``'s In-Reply-To or References name.

    A mail's own Message-ID never counts (mail that reuses a stored id must not
    join that mail's ticket by it), and a message stored with a reused id is
    never a target: an answer naming that id belongs with the mail that had it first.
    """
    ids = [
        ident
        for ident in dict.fromkeys([*mail.in_reply_to, *reversed(mail.references)])
        if ident != mail.message_id
    ]
    # In slices: a hostile References list can name more ids than one statement
    # may carry (SQLite 250,000 parameters, PostgreSQL 65,535).
    newest: tuple[int, int] | None = None  # (message id, ticket id)
    for start in range(0, len(ids), _IDS_PER_QUERY):
        rows = session.execute(
            select(Message.id, Message.ticket_id, Message.flags)
            .where(Message.message_id.in_(ids[start : start + _IDS_PER_QUERY]))
            .order_by(Message.id.desc())
        )
        found = next((row for row in rows if REUSED_FLAG not in (row.flags or ())), None)
        if found is not None and (newest is None or found.id > newest[0]):
            newest = (found.id, found.ticket_id)
    return newest[1] if newest is not None else None


def find_thread(session: Session, mail: ParsedMail) -> ThreadMatch:
    ticket_id = referenced_ticket(session, mail)
    if ticket_id is not None:
        return ThreadMatch(session.get(Ticket, ticket_id), "references")
    if not find_tokens(mail.subject):
        return ThreadMatch(None, "new")
    sender = address_key(mail.sender.email) if mail.sender and mail.sender.email else ""
    untrusted = False
    for number in token_scheme(session).numbers(mail.subject)[:MAX_TOKENS]:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        if ticket is None:
            continue
        if sender and sender in participants(session, ticket):
            return ThreadMatch(ticket, "token")
        untrusted = True
    return ThreadMatch(None, "token-untrusted" if untrusted else "new")


def recently_written_ticket(session: Session, customer_id: int, now: datetime) -> Ticket | None:
    """The customer's ticket we last wrote to them on, within :data:`AUTO_REPLY_WINDOW`.

    An out-of-office that names none of our mail (no reference, no token) is
    still, almost always, the answer to the last mail we sent that person.
    """
    ticket_id = session.scalar(
        select(Message.ticket_id)
        .join(Ticket, Message.ticket_id == Ticket.id)
        .where(
            Ticket.customer_id == customer_id,
            Message.direction == "out",
            Message.created_at >= now - AUTO_REPLY_WINDOW,
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    return session.get(Ticket, ticket_id) if ticket_id is not None else None
