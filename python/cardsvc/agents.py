"""Agents (resellers): the tree of who sells for whom.

This module holds what the HTTP API of issue 4 needs: creating an agent under an optional parent
and reading it. Grades, price lists, credit, quotas and the ledger arrive with issue 6.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.db import Database
from cardsvc.db.models import Agent
from cardsvc.errors import ErrorCode, make_error

AGENT_STATUSES = ("active", "suspended")


def require_agent(session: Session, agent_id: str) -> Agent:
    """The agent row. Raises AGENT_NOT_FOUND."""
    row = session.get(Agent, agent_id)
    if row is None:
        raise make_error(ErrorCode.AGENT_NOT_FOUND, "no such agent", {"agent_id": agent_id})
    return row


def create_agent(
    db: Database, agent_id: str, name: str, *, parent_id: str | None, actor: str, now_ms: int
) -> dict[str, Any]:
    """A new active agent under ``parent_id`` (None: directly under the platform). A new leaf
    cannot close a cycle. Effects: the row and an audit entry ``agent.create``. Raises
    AGENT_EXISTS, AGENT_NOT_FOUND (the parent)."""
    with db.write() as session:
        if session.get(Agent, agent_id) is not None:
            raise make_error(ErrorCode.AGENT_EXISTS, "the agent exists", {"agent_id": agent_id})
        if parent_id is not None:
            require_agent(session, parent_id)
        row = Agent(agent_id=agent_id, name=name, parent_id=parent_id, status="active",
                    created_at_ms=now_ms)
        session.add(row)
        audit.append(session, actor=actor, action="agent.create", object_type="agent",
                     object_id=agent_id, details={"name": name, "parent_id": parent_id},
                     at_ms=now_ms)
        return agent_dict(row)


def get_agent(db: Database, agent_id: str) -> dict[str, Any]:
    """Raises AGENT_NOT_FOUND."""
    with db.read() as session:
        return agent_dict(require_agent(session, agent_id))


def list_agents(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        return [agent_dict(row) for row in session.scalars(select(Agent).order_by(Agent.agent_id))]


def agent_dict(row: Agent) -> dict[str, Any]:
    return {
        "agent_id": row.agent_id,
        "name": row.name,
        "parent_id": row.parent_id,
        "status": row.status,
        "created_at_ms": row.created_at_ms,
    }
