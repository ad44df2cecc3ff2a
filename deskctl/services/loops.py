"""Recognising our own mail and our bounced replies, so nothing can loop (promise 5).

Own mail is a message this installation sent (its Message-ID, its loop header)
or one claiming to come from one of our channel addresses. It is recorded on the
ticket it belongs to, and never opens a ticket of its own.
"""

from __future__ import annotations

import secrets

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from deskctl.mail.addresses import address_key
from deskctl.mail.compose import LOOP_HEADER, loop_instance
from deskctl.mail.parsed import ParsedMail
from deskctl.store.dbapi import from_session
from deskctl.store.models import IncomingChannel, Message, OutboxItem, OutgoingChannel, Setting


class OwnMailReturned(Exception):
    """Our own mail came back and belongs to no ticket: it must not open one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def own_addresses(session: Session) -> dict[str, str]:
    """Every address deskctl reads or sends as (by :func:`address_key`), and its channel."""
    found = {
        address_key(address): f"incoming channel {name}"
        for name, address in session.execute(select(IncomingChannel.name, IncomingChannel.address))
    }
    for name, address in session.execute(
        select(OutgoingChannel.name, OutgoingChannel.from_address)
    ):
        if address:
            found.setdefault(address_key(address), f"outgoing channel {name}")
    return found


def instance_id(session: Session) -> str:
    """This installation's id (made by ``db upgrade``), named in the loop header it sends."""
    setting = session.get(Setting, "instance_id")
    if setting is None:  # only a hand-edited database lacks it; mail must keep flowing
        from_session(session).execute(
            "INSERT INTO settings (key, value) VALUES ('instance_id', :value)"
            " ON CONFLICT (key) DO NOTHING",
            value=secrets.token_hex(8),
        )
        setting = session.get_one(Setting, "instance_id")
    return setting.value


def own_mail_reason(
    session: Session, mail: ParsedMail, ours: dict[str, str], instance: str
) -> str | None:
    """Why ``mail`` is our own, or None; ``ours`` is :func:`own_addresses`.

    A loop header naming another installation is not ours: see
    :func:`other_desk_reason`.
    """
    if mail.loop_token and loop_instance(mail.loop_token) in (None, instance):
        return f"own mail: carries our {LOOP_HEADER} header ({mail.loop_token})"
    if mail.message_id and session.scalar(
        select(Message.id).where(Message.direction == "out", Message.message_id == mail.message_id)
    ):
        return "own mail: a Message-ID deskctl generated"
    sender = mail.sender.email if mail.sender else ""
    channel = ours.get(address_key(sender)) if sender else None
    if channel:
        return f"own mail: From {sender} is the address of {channel}"
    return None


def other_desk_reason(mail: ParsedMail, instance: str) -> str | None:
    """Why ``mail`` comes from another deskctl installation, or None.

    Another company's help desk writing to ours is a customer: its mail opens
    a ticket. It is never answered automatically, though, so two help desks
    cannot acknowledge each other even where a relay strips Auto-Submitted.
    """
    sender = loop_instance(mail.loop_token) if mail.loop_token else None
    if sender is None or sender == instance:
        return None
    return f"another help desk: its {LOOP_HEADER} header names deskctl installation {sender}"


def bounced_reply(session: Session, mail: ParsedMail) -> OutboxItem | None:
    """The outbox item of our reply that this bounce reports, if any."""
    if "bounce" not in mail.flags or not mail.bounced_message_ids:
        return None
    return session.scalar(
        select(OutboxItem)
        .join(Message, OutboxItem.message_id == Message.id)
        .where(
            Message.direction == "out",
            or_(*(Message.message_id == mid for mid in mail.bounced_message_ids)),
        )
        .order_by(OutboxItem.id.desc())
        .limit(1)
    )
