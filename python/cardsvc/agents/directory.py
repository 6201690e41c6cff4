"""Reading the agent tree for a caller: who sees which agents, and what an agent can buy.

Admins (``actor_agent_id`` None) see every agent; an agent sees itself and its direct
sub-agents (``tree.may_manage``), and lists only its sub-agents. The catalog of an agent is what
it can buy now with its price and the stock it can draw from (its own pool, then shared, as its
policy says), the core's counts net of expired codes.
"""

from __future__ import annotations

from typing import Any

from cardsvc.agents import pricing, tree
from cardsvc.db import Database
from cardsvc.engine import Engine
from cardsvc.errors import ErrorCode, make_error


class AgentDirectory:
    """Read-only use cases over the tree and the price lists, one transaction each."""

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db = db
        self.engine = engine

    def list_for(self, actor_agent_id: str | None) -> list[dict[str, Any]]:
        """Admins: every agent, by id; an agent: its direct sub-agents. Raises
        AGENT_NOT_FOUND (an agent caller that does not exist)."""
        if actor_agent_id is None:
            return tree.list_agents(self.db)
        with self.db.read() as session:
            return [tree.agent_dict(row) for row in tree.sub_agents(session, actor_agent_id)]

    def get_for(self, agent_id: str, actor_agent_id: str | None) -> dict[str, Any]:
        """The agent, for an admin, the agent itself or its parent. Raises AGENT_NOT_FOUND,
        FORBIDDEN (another agent's agent)."""
        with self.db.read() as session:
            if actor_agent_id is not None and actor_agent_id != agent_id \
                    and not tree.may_manage(session, actor_agent_id, agent_id):
                raise make_error(ErrorCode.FORBIDDEN, "not your agent", {"agent_id": agent_id})
            return tree.agent_dict(tree.require_agent(session, agent_id))

    def catalog(self, agent_id: str, *, after_sku: str | None,
                limit: int) -> dict[str, Any]:
        """A page of what ``agent_id`` can buy (``pricing.catalog_view``), each SKU with
        ``available``: sellable codes over the agent's pools; ``next_after_sku`` continues.
        Raises as ``catalog_view``."""
        with self.db.read() as session:
            items = pricing.catalog_view(session, agent_id, after_sku=after_sku, limit=limit)
            pools = pricing.order_pools(session, agent_id)
        for item in items:
            counts = [self.engine.stock(item["sku"], pool) for pool in pools]
            item["available"] = sum(c.get("available", 0) - c.get("expired", 0) for c in counts)
        return {"items": items,
                "next_after_sku": items[-1]["sku"] if len(items) == limit else None}
