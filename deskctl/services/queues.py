"""Queues: every ticket is in exactly one."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deskctl.errors import Conflict, NotFound, UsageError
from deskctl.store.models import Queue, Ticket

COLORS = (
    "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
    "bright_black", "bright_red", "bright_green", "bright_yellow", "bright_blue",
    "bright_magenta", "bright_cyan", "bright_white",
)  # fmt: skip


def check_color(color: str) -> str:
    """Accept a named terminal colour or ``#rrggbb``, the two forms rich renders."""
    value = color.strip().lower()
    if value in COLORS:
        return value
    if len(value) == 7 and value.startswith("#"):
        try:
            int(value[1:], 16)
        except ValueError:
            pass
        else:
            return value
    raise UsageError(f"unknown colour {color!r}: use one of {', '.join(COLORS)} or #rrggbb")


def add_queue(
    session: Session, name: str, *, color: str = "white", description: str | None = None
) -> Queue:
    name = name.strip()
    if not name:
        raise UsageError("a queue needs a name")
    if session.scalar(select(Queue).where(Queue.name == name)) is not None:
        raise Conflict(f"queue {name!r} exists already")
    queue = Queue(name=name, color=check_color(color), description=description)
    session.add(queue)
    session.flush()
    return queue


def get_queue(session: Session, name: str) -> Queue:
    queue = session.scalar(select(Queue).where(Queue.name == name))
    if queue is None:
        raise NotFound(f"no queue named {name!r} (see `deskctl queue list`)")
    return queue


def ensure_queue(session: Session, name: str) -> Queue:
    """The named queue, created with default colour when it does not exist yet."""
    queue = session.scalar(select(Queue).where(Queue.name == name))
    return queue if queue is not None else add_queue(session, name)


def default_queue(session: Session) -> Queue:
    queue = session.scalar(select(Queue).where(Queue.is_default.is_(True)).order_by(Queue.id))
    if queue is None:
        raise NotFound("no default queue: run `deskctl db upgrade`")
    return queue


def list_queues(session: Session) -> list[tuple[Queue, int]]:
    """Every queue with the number of tickets not yet closed."""
    counts = (
        select(Ticket.queue_id, func.count().label("n"))
        .where(Ticket.status != "closed")
        .group_by(Ticket.queue_id)
        .subquery()
    )
    rows = session.execute(
        select(Queue, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.queue_id == Queue.id)
        .order_by(Queue.name)
    ).all()
    return [(q, int(n)) for q, n in rows]


def queue_to_dict(queue: Queue, open_tickets: int | None = None) -> dict[str, object]:
    data: dict[str, object] = {
        "id": queue.id,
        "name": queue.name,
        "color": queue.color,
        "description": queue.description,
        "default": queue.is_default,
        "acknowledgement": queue.ack_template is not None,
        "ack_limit": queue.ack_limit,
    }
    if open_tickets is not None:
        data["open_tickets"] = open_tickets
    return data


def set_queue(
    session: Session,
    name: str,
    *,
    color: str | None = None,
    description: str | None = None,
    ack_template: str | None = None,
    clear_ack: bool = False,
    ack_limit: int | None = None,
) -> Queue:
    """Change a queue; only what is given changes."""
    queue = get_queue(session, name)
    if color is not None:
        queue.color = check_color(color)
    if description is not None:
        queue.description = description
    if ack_template is not None:
        if not ack_template.strip():
            raise UsageError("the acknowledgement template is empty")
        queue.ack_template = ack_template
    if clear_ack:
        queue.ack_template = None
    if ack_limit is not None:
        if ack_limit < 0:
            raise UsageError("--ack-limit cannot be negative")
        queue.ack_limit = ack_limit
    return queue
