"""Credentials bound to agents: API keys (and, with the console, users) that act for an agent.

The key store is ``cardsvc.access``, a floor below the agent tree; issuing a key that names an
agent needs the agent to exist, so the one way to create a key runs here and checks it in the
same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from cardsvc.access import Principal, check_key_request, issue_key
from cardsvc.agents.tree import require_agent
from cardsvc.db import Database


def create_key(
    db: Database,
    *,
    role: str,
    agent_id: str | None = None,
    name: str = "",
    scopes: Sequence[str] | None = None,
    skus: Sequence[str] | None = None,
    limits: dict[str, Any] | None = None,
    created_by: str | None = None,
    now_ms: int | None = None,
) -> tuple[Principal, str]:
    """Creates a key and returns it with its text, which is shown once and never stored.

    Effects: one ``api_keys`` row and one audit entry (``key.create``), in one transaction.
    Raises INVALID_ARGUMENT (``cardsvc.access.check_key_request``), then AGENT_NOT_FOUND when
    ``agent_id`` names no agent.
    """
    check_key_request(role, agent_id, scopes, skus)
    at_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with db.write() as session:
        if agent_id is not None:
            require_agent(session, agent_id)
        return issue_key(session, role=role, agent_id=agent_id, name=name, scopes=scopes,
                         skus=skus, limits=limits, created_by=created_by, now_ms=at_ms)
