"""Agents: who replied, noted, assigned or changed a status."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from deskctl.errors import Conflict, NotFound, UsageError
from deskctl.services.seen import acting_agent_id
from deskctl.store.dbapi import from_session
from deskctl.store.models import Agent


def acting_agent(session: Session, name: str) -> Agent:
    """The agent acting now, recorded on first use (see :func:`seen.acting_agent_id`)."""
    return session.get_one(Agent, acting_agent_id(from_session(session), name))


def get_agent(session: Session, name: str) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.name == name))
    if agent is None:
        raise NotFound(f"no agent named {name!r} (see `deskctl agent list`)")
    return agent


def add_agent(session: Session, name: str, *, email: str | None, signature: str | None) -> Agent:
    name = name.strip()
    if not name:
        raise UsageError("an agent needs a name")
    agent = session.scalar(select(Agent).where(Agent.name == name))
    if agent is not None and agent.email:
        raise Conflict(f"agent {name!r} exists already")
    if agent is None:
        agent = Agent(name=name)
        session.add(agent)
    agent.email = email.strip().lower() if email else None
    agent.signature = signature
    session.flush()
    return agent


def list_agents(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent).order_by(Agent.name)))


def agent_to_dict(agent: Agent) -> dict[str, object]:
    return {"name": agent.name, "email": agent.email, "signature": bool(agent.signature)}
