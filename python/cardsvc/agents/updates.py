"""Changes to the agent tree that prices depend on, and the use cases that change agents.

``set_grade`` and ``move_agent`` are checked against the price lists
(``pricing.check_agent_change``: no change may leave an agent's price below its parent's), so they
live above both the tree and pricing. :class:`AgentUpdates` holds the use cases the HTTP layer and
the console call: each opens its own transaction, takes the time, and applies the rule of who may
change what (admins anything; an agent only creates plain sub-agents of its own and suspends or
reactivates them). Opening and changing an agent's ledger accounts belongs to the money package,
one floor up: it reaches these use cases through the :class:`AgentAccounts` port.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session

from cardsvc.agents import pricing, tree
from cardsvc.agents.tree import (
    agent_dict,
    ancestors,
    audit_change,
    check_depth,
    lock_tree,
    require_active,
    require_agent,
    require_grade,
    same_currency,
    subtree_height,
)
from cardsvc.catalog.skus import Catalog, check_pool_free, insert_pool
from cardsvc.checks import check_id
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, make_error

SUB_AGENT_FIELDS = frozenset({"daily_order_quota"})
"""What an agent may set on a sub-agent it creates (the rest is the parent's or the platform's)."""
STATUS_ONLY = frozenset({"status"})
"""What an agent may change on its direct sub-agents."""


class AgentAccounts(Protocol):
    """The ledger's side of an agent (``cardsvc.money.ledger`` implements it): its accounts are
    opened with the agent, and its credit limit is the floor of its available account."""

    def open_agent_accounts(self, session: Session, agent_id: str, currency: str,
                            credit_limit_minor: int, now_ms: int) -> object: ...

    def set_credit_limit(self, session: Session, agent_id: str,
                         credit_limit_minor: int) -> None: ...


def set_grade(session: Session, agent_id: str, grade: str, *, actor: str,
              now_ms: int) -> dict[str, Any]:
    """Gives the agent another grade (its default price list). Admins only.

    Refused when it would leave, for some SKU, the agent's price below its parent's or a
    sub-agent's price below the agent's (set overrides first, cardsvc.agents.pricing). Effects: the
    column and an audit entry ``agent.grade``. Errors: INVALID_ARGUMENT, AGENT_NOT_FOUND,
    GRADE_NOT_FOUND, PRICE_BELOW_PARENT (details: ``sku``, ``agent_id``, ``price_minor``,
    ``parent_id``, ``parent_price_minor``).
    """
    check_id("grade", grade)
    lock_tree(session)
    row = require_agent(session, agent_id)
    require_grade(session, grade)
    if row.grade == grade:
        return agent_dict(row)
    pricing.check_agent_change(session, row, grade=grade, parent_id=row.parent_id)
    before, row.grade = row.grade, grade
    audit_change(session, actor, "agent.grade", agent_id, {"grade": grade, "before": before},
                 now_ms, None)
    return agent_dict(row)


def move_agent(session: Session, agent_id: str, new_parent_id: str | None, *, actor: str,
               now_ms: int) -> dict[str, Any]:
    """Moves the agent, with its whole subtree, under ``new_parent_id`` (None: to the top).
    Admins only. Prices set for the agent stay (its new parent may now change them).

    Errors, in this order: AGENT_NOT_FOUND (either), AGENT_CYCLE (the new parent is the agent
    itself or below it, at any depth), AGENT_SUSPENDED (the new parent's chain),
    LIMIT_EXCEEDED (the subtree would reach deeper than AGENT_DEPTH_MAX), CURRENCY_MISMATCH
    (the new parent's currency differs), PRICE_BELOW_PARENT (the agent's price for a SKU would
    be below its new parent's; details as ``set_grade``). Effects: ``parent_id`` and an audit
    entry ``agent.move`` (``parent_id``, ``before``).
    """
    lock_tree(session)
    row = require_agent(session, agent_id)
    if new_parent_id is not None:
        parent_chain = ancestors(session, new_parent_id)
        if any(agent.agent_id == agent_id for agent in parent_chain):
            raise make_error(ErrorCode.AGENT_CYCLE,
                             "an agent cannot move under itself or its own sub-agents",
                             {"agent_id": agent_id, "parent_id": new_parent_id})
        require_active(session, new_parent_id)
        check_depth(len(parent_chain) + 1 + subtree_height(session, agent_id), agent_id)
        same_currency(parent_chain[0], row.currency)
    if row.parent_id == new_parent_id:
        return agent_dict(row)
    pricing.check_agent_change(session, row, grade=row.grade, parent_id=new_parent_id)
    before, row.parent_id = row.parent_id, new_parent_id
    audit_change(session, actor, "agent.move", agent_id, {"parent_id": new_parent_id,
                 "before": before}, now_ms, None)
    return agent_dict(row)


class AgentUpdates:
    """The use cases that create and change agents: each opens one transaction, takes the time
    from ``clock`` (Unix ms) and applies who may do what. ``actor`` is the caller's key or user;
    ``actor_agent_id`` the agent it acts for (None: an admin)."""

    def __init__(self, db: Database, catalog: Catalog, accounts: AgentAccounts,
                 clock: Callable[[], int],
                 on_suspended: Callable[[list[str], str], object] | None = None) -> None:
        self.db = db
        self.catalog = catalog
        self.accounts = accounts
        self.clock = clock
        self.on_suspended = on_suspended
        """Called after a suspension commits with the suspended agent and its whole subtree
        (and the actor): the sales package releases their open holds (``Holds.release_agents``,
        wired by the runtime), since a suspended agent may neither buy nor keep stock away."""

    def create(self, agent_id: str, name: str, fields: dict[str, Any], *, actor: str,
               actor_agent_id: str | None) -> dict[str, Any]:
        """A new agent with its ledger accounts. Admins create any agent (``fields``: any of
        ``tree.create_agent``'s settings); an agent creates only a plain direct sub-agent of its
        own (``fields`` within SUB_AGENT_FIELDS, ``parent_id`` absent or its own; the rest is
        inherited). Errors as ``tree.create_agent``, and FORBIDDEN (details ``fields``)."""
        if actor_agent_id is None:
            return self.create_agent(agent_id, name, actor=actor, **fields)
        extra = set(fields) - SUB_AGENT_FIELDS - {"parent_id"}
        if extra or fields.get("parent_id", actor_agent_id) != actor_agent_id:
            raise make_error(ErrorCode.FORBIDDEN,
                             "an agent creates only plain sub-agents of its own",
                             {"fields": sorted(set(fields) - SUB_AGENT_FIELDS)})
        allowed = {key: value for key, value in fields.items() if key in SUB_AGENT_FIELDS}
        return self.create_sub_agent(actor_agent_id, agent_id, name, actor=actor, **allowed)

    def create_agent(self, agent_id: str, name: str, *, actor: str,
                     **fields: Any) -> dict[str, Any]:
        """A new agent (``tree.create_agent``) with its ledger accounts, in one transaction."""
        now_ms = self.clock()
        with self.db.write() as session:
            created = tree.create_agent(session, agent_id, name, actor=actor, now_ms=now_ms,
                                        **fields)
            self.accounts.open_agent_accounts(session, agent_id, created["currency"],
                                              created["credit_limit_minor"], now_ms)
        return created

    def create_sub_agent(self, parent_agent_id: str, agent_id: str, name: str, *,
                         actor: str, **fields: Any) -> dict[str, Any]:
        """A new sub-agent of ``parent_agent_id`` (``tree.create_sub_agent``) with its ledger
        accounts, in one transaction."""
        now_ms = self.clock()
        with self.db.write() as session:
            created = tree.create_sub_agent(session, parent_agent_id, agent_id, name,
                                            actor=actor, now_ms=now_ms, **fields)
            self.accounts.open_agent_accounts(session, agent_id, created["currency"],
                                              created["credit_limit_minor"], now_ms)
        return created

    def change(self, agent_id: str, changes: dict[str, Any], *, actor: str,
               actor_agent_id: str | None) -> dict[str, Any]:
        """Applies ``changes`` (``status``, ``grade``, ``credit_limit_minor``,
        ``daily_order_quota``, ``pool_policy``, ``pool`` by name, ``parent_id``/``to_top``) in
        one transaction, in that order. An agent changes only ``status`` of its direct
        sub-agents (FORBIDDEN otherwise). Errors: AGENT_NOT_FOUND, AGENT_CYCLE,
        PRICE_BELOW_PARENT, GRADE_NOT_FOUND, POOL_NOT_FOUND, FORBIDDEN."""
        now_ms = self.clock()
        if actor_agent_id is not None:
            if set(changes) - STATUS_ONLY:
                raise make_error(ErrorCode.FORBIDDEN,
                                 "an agent changes only its sub-agents' status",
                                 {"fields": sorted(set(changes) - STATUS_ONLY)})
            with self.db.write() as session:
                result = tree.set_status(session, agent_id, changes["status"], actor=actor,
                                         now_ms=now_ms, actor_agent_id=actor_agent_id)
        else:
            pool_id = None
            if changes.get("pool") is not None:
                pool_id = self.catalog.pool_id(changes["pool"])
            with self.db.write() as session:
                result = self._apply(session, agent_id, changes, pool_id, actor, now_ms)
        if changes.get("status") == "suspended":
            self._suspended(agent_id, actor)
        return result

    def _suspended(self, agent_id: str, actor: str) -> None:
        """After a suspension: the hook gets the agent and every agent below it."""
        if self.on_suspended is None:
            return
        with self.db.read() as session:
            subtree = [agent_id, *(row.agent_id for row in tree.descendants(session, agent_id))]
        self.on_suspended(subtree, actor)

    def _apply(self, session: Session, agent_id: str, changes: dict[str, Any],
               pool_id: int | None, actor: str, now_ms: int) -> dict[str, Any]:
        result = tree.get_agent(session, agent_id)
        if "status" in changes:
            result = tree.set_status(session, agent_id, changes["status"], actor=actor,
                                     now_ms=now_ms)
        if "grade" in changes:
            result = set_grade(session, agent_id, changes["grade"], actor=actor, now_ms=now_ms)
        if "credit_limit_minor" in changes:
            result = tree.set_credit_limit(session, agent_id, changes["credit_limit_minor"],
                                           actor=actor, now_ms=now_ms,
                                           apply=self.accounts.set_credit_limit)
        if "daily_order_quota" in changes:
            result = tree.set_daily_quota(session, agent_id, changes["daily_order_quota"],
                                          actor=actor, now_ms=now_ms)
        if "pool_policy" in changes:
            result = tree.set_pool_policy(session, agent_id, changes["pool_policy"],
                                          actor=actor, now_ms=now_ms)
        if "pool" in changes:
            result = tree.assign_pool(session, agent_id, pool_id, actor=actor, now_ms=now_ms)
        if "parent_id" in changes or changes.get("to_top"):
            result = move_agent(session, agent_id, changes.get("parent_id"), actor=actor,
                                now_ms=now_ms)
        return result

    def create_pool(self, name: str, *, agent_id: str | None, actor: str) -> dict[str, Any]:
        """A new named stock pool (``shared`` always exists); with ``agent_id``, assigned to
        that agent as its channel pool in the same transaction, by the rules of
        ``tree.assign_pool`` (the agent's previous pool is released; its orders then draw from
        this pool as its pool policy says). Audited ``pool.create`` and ``agent.pool``. Errors:
        POOL_EXISTS, AGENT_NOT_FOUND."""
        now_ms = self.clock()
        with self.db.write() as session:
            check_pool_free(session, name)
            if agent_id is not None:
                require_agent(session, agent_id)
            created = insert_pool(session, name, None, actor=actor, now_ms=now_ms)
            if agent_id is not None:
                session.flush()
                tree.assign_pool(session, agent_id, created["pool_id"], actor=actor,
                                 now_ms=now_ms)
                created["agent_id"] = agent_id
            return created
