"""Incoming and outgoing channels: where mail comes from and how replies leave."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.errors import NotFound
from deskctl.store.models import IncomingChannel


def get_incoming(session: Session, name: str) -> IncomingChannel:
    channel = session.scalar(select(IncomingChannel).where(IncomingChannel.name == name))
    if channel is None:
        raise NotFound(f"no incoming channel named {name!r} (see `deskctl channel list`)")
    return channel
