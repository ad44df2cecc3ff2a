"""Who a reply goes to, decided in one place for ``ticket reply`` and ``ticket show``.

A reply goes to the ticket's customer and keeps the other people the
answered mail was sent to as Cc, so a conversation with a customer's
colleagues stays one conversation. Mail decides that list, so it is bounded:
a message sent to a whole company (or forged to be) must not turn one
agent's answer, or an acknowledgement nobody reviewed, into mail to
thousands. Past the bound the reply goes to the customer alone and says so.

Plain values and plain SQL only: ``ticket show`` runs on the driver alone
(see :mod:`deskctl.store.dbapi`), and it must show the same list the reply
will use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from deskctl.mail.addresses import address_key, matching_pattern, recipient_problem
from deskctl.mail.parsed import Address
from deskctl.store.dbapi import Database

AUTOMATIC = ("auto_reply", "bounce")


@dataclass(frozen=True, slots=True)
class Recipients:
    """The reply's To and Cc, and why anyone the mail named is not among them."""

    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    notes: tuple[str, ...] = ()
    cc_limited: bool = False  # the answered mail named more people than the bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "to": [{"name": a.name, "email": a.email} for a in self.to],
            "cc": [{"name": a.name, "email": a.email} for a in self.cc],
            "notes": list(self.notes),
        }


def answered_index(messages: Sequence[tuple[str, Sequence[str]]]) -> int | None:
    """Which of ``(direction, flags)`` a reply answers: the newest human mail, else the newest."""
    incoming = [i for i, (direction, _) in enumerate(messages) if direction == "in"]
    human = [i for i in incoming if not set(AUTOMATIC).intersection(messages[i][1] or ())]
    candidates = human or incoming
    return candidates[-1] if candidates else None


def plan_recipients(
    customer: Address,
    conversation: Iterable[Address],
    *,
    own: Iterable[str],
    patterns: list[str],
    max_cc: int,
    extra: Iterable[Address] = (),
) -> Recipients:
    """The reply's recipients: the customer, the conversation up to ``max_cc``, then ``extra``.

    ``extra`` is what the agent added with ``--cc`` (already checked): a
    choice, not mail's, so the bound does not drop it. Our own addresses,
    filtered ones and addresses that cannot receive mail are left out with
    a note; so is the whole conversation when it is longer than the bound.
    """
    seen = {address_key(customer.email), *(address_key(a) for a in own if a)}
    kept: list[Address] = []
    notes: list[str] = []

    def take(addr: Address, into: list[Address]) -> None:
        key = address_key(addr.email)
        if not addr.email or key in seen:
            return
        seen.add(key)
        problem = recipient_problem(addr.email)
        pattern = None if problem else matching_pattern(addr.email, patterns)
        if problem:
            notes.append(f"left out {addr.email!r}: {problem}")
        elif pattern:
            notes.append(f"left out {addr.email}: on the outgoing filter ({pattern})")
        else:
            into.append(addr)

    for addr in conversation:
        take(addr, kept)
    limited = len(kept) > max_cc
    if limited:
        notes.append(
            f"the answered mail named {len(kept)} other recipients, more than the "
            f"{max_cc} kept as Cc (reply_max_cc): the reply goes to the customer alone"
        )
        kept = []
    for addr in extra:
        take(addr, kept)
    return Recipients((customer,), tuple(kept), tuple(notes), limited)


def customer_problem(email: str | None) -> str:
    """Why the customer cannot get mail, or "" when they can."""
    if not email:
        return "the ticket has no customer address"
    problem = recipient_problem(email)
    return f"the customer address {email!r} cannot receive mail: {problem}" if problem else ""


_FROM = """
SELECT COALESCE(o.from_address, '') AS from_address, COALESCE(ch.address, '') AS channel_address
FROM tickets t
LEFT JOIN incoming_channels ch ON ch.id = t.channel_id
LEFT JOIN outgoing_channels o ON o.id = COALESCE(
    ch.reply_via_id,
    (SELECT id FROM outgoing_channels WHERE is_default = :yes ORDER BY id LIMIT 1))
WHERE t.id = :ticket_id
"""


def shown_recipients(db: Database, detail: dict[str, Any], max_cc: int) -> dict[str, Any]:
    """Who a reply to the ticket of ``ticket show`` would go to, as ``ticket show`` prints it."""
    customer = detail["customer"]
    problem = customer_problem(customer["email"])
    if problem:
        return {"to": [], "cc": [], "notes": [problem]}
    messages = detail["messages"]
    index = answered_index([(m["direction"], m["flags"]) for m in messages])
    conversation = [*messages[index]["to"], *messages[index]["cc"]] if index is not None else []
    row = db.rows(_FROM, ticket_id=detail["id"], yes=True)[0]
    patterns = sorted({r["pattern"] for r in db.rows("SELECT pattern FROM outgoing_filters")})
    plan = plan_recipients(
        Address(customer["name"] or "", customer["email"]),
        (Address(a.get("name") or "", a.get("email") or "") for a in conversation),
        own=(row["from_address"], row["channel_address"]),
        patterns=patterns,
        max_cc=max_cc,
    )
    return plan.to_dict()
