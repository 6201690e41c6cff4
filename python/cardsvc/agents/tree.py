"""Agents (resellers): the tree of who sells for whom, and each agent's settings.

The tree: an agent with ``parent_id`` None sits directly under the platform (a *top agent*); any
agent may have sub-agents, to any depth up to ``AGENT_DEPTH_MAX``. Every agent has a grade (its
default price list, ``cardsvc.agents.pricing``), one currency (its parent's: prices, balances and
commissions along a chain are all in it), a status (``active`` or ``suspended``), a credit limit,
an optional daily order quota, an optional channel pool and a pool policy (``order_pools`` in
``cardsvc.agents.pricing`` turns the last two into the pools an order draws from).

Who may change what: admins everything; an agent only its *direct* sub-agents, and only by
creating them (``create_sub_agent``), pricing them (``cardsvc.agents.pricing.set_price``) and
suspending or reactivating them (``set_status``). Grade, credit limit, quota, pool, pool policy
and moves are admin-only. ``may_manage`` is the one place that answers "may this agent act on
that one" (docs/agents.md says why direct sub-agents only).

Suspension: an agent whose status, or any ancestor's, is ``suspended`` cannot buy
(``cardsvc.agents.pricing.effective_price`` raises AGENT_SUSPENDED) and cannot manage its
sub-agents; the subtree's rows are not touched, so reactivating the agent restores its subtree at
once.

Transactions: every function takes a SQLAlchemy ``Session`` and works in the caller's
transaction (``Database.write()`` for changes, ``read()`` for queries), so a caller can combine
a change with its own (the ledger floor beside ``set_credit_limit``) atomically. Each change
appends its audit entry last (``cardsvc.audit``): call it after any other row locks of the
transaction. ``create_agent``, ``get_agent`` and ``list_agents`` also accept a ``Database`` (they
then run their own transaction), as the first callers used them. Changes to the tree take turns
(``lock_tree``), so two transactions cannot each pass a check ("no cycle") against the other's
old state. A refused change raises before it writes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CTE, Integer, Select, bindparam, func, literal_column, select, text
from sqlalchemy.orm import Session, aliased

from cardsvc import audit
from cardsvc.agents.tables import Agent, Grade
from cardsvc.audit.tables import AuditEntry
from cardsvc.catalog.tables import Pool
from cardsvc.checks import MONEY_MINOR_MAX, check_currency, check_id, check_int, check_name
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, invalid, make_error

AGENT_STATUSES = ("active", "suspended")
POOL_POLICIES = ("own_then_shared", "own_only", "shared_only")
DEFAULT_GRADE = "standard"
"""The grade the initial migration creates; new agents get it unless told otherwise."""
DEFAULT_CURRENCY = "CNY"
"""A top agent's currency unless told otherwise (sub-agents always take their parent's)."""
SHARED_POOL_ID = 0
"""The core's pool 0: stock every agent may draw from unless its policy says otherwise."""
AGENT_DEPTH_MAX = 64
"""Agents on the path from a top agent (depth 1) down to any agent. Bounds every walk up the
tree (a price chain holds at most this many entries) and makes the recursive queries stop even
on corrupt data; real trees are a handful of levels deep."""
DESCENDANTS_MAX = 10_000
"""Agents ``descendants`` returns at most (LIMIT_EXCEEDED beyond): ~1 KB each as ORM rows."""
DAILY_ORDER_QUOTA_MAX = (1 << 31) - 1
"""The ``daily_order_quota`` column is a 32-bit integer."""
TREE_LOCK_KEY = 0x63617264_73766302
"""PostgreSQL ``pg_advisory_xact_lock`` key ("cardsvc" + 2) that tree and price changes take
first; SQLite's single writer already serialises them."""


def lock_tree(session: Session) -> None:
    """Makes tree and price changes take turns until the transaction ends: on PostgreSQL a
    transaction-scoped advisory lock (waits for another holder); on SQLite nothing, as
    ``Database.write()`` already holds the one write lock. Take it before reading what a check
    depends on."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TREE_LOCK_KEY})


# ----- reading the tree ----------------------------------------------------------------------


def require_agent(session: Session, agent_id: str) -> Agent:
    """The agent row. Raises AGENT_NOT_FOUND."""
    row = session.get(Agent, agent_id)
    if row is None:
        raise make_error(ErrorCode.AGENT_NOT_FOUND, "no such agent", {"agent_id": agent_id})
    return row


def _chain_statement() -> Select[Agent]:
    """The agent ``:agent_id`` and its ancestors, nearest first: a recursive CTE cut at
    AGENT_DEPTH_MAX + 1 rows so it ends even on corrupt data (a cycle). Built once: building
    the statement costs more than running it."""
    up = aliased(Agent)
    chain = (
        select(Agent.agent_id, Agent.parent_id, literal_column("0", Integer).label("depth"))
        .where(Agent.agent_id == bindparam("agent_id"))
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(up.agent_id, up.parent_id, chain.c.depth + 1)
        .where(up.agent_id == chain.c.parent_id, chain.c.depth < AGENT_DEPTH_MAX)
    )
    return select(Agent).join(chain, Agent.agent_id == chain.c.agent_id).order_by(chain.c.depth)


_CHAIN = _chain_statement()


def ancestors(session: Session, agent_id: str) -> list[Agent]:
    """The agent itself, its parent, ..., up to its top agent (one recursive query).

    Raises AGENT_NOT_FOUND, LIMIT_EXCEEDED when the path is longer than AGENT_DEPTH_MAX (which
    the functions here never let happen).
    """
    rows = list(session.scalars(_CHAIN, {"agent_id": agent_id}))
    if not rows:
        raise make_error(ErrorCode.AGENT_NOT_FOUND, "no such agent", {"agent_id": agent_id})
    if len(rows) > AGENT_DEPTH_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "the agent tree is too deep",
                         {"agent_id": agent_id, "max": AGENT_DEPTH_MAX})
    return rows


def _subtree_cte() -> CTE:
    """Recursive CTE (agent_id, depth) of the subtree below ``:agent_id`` (depth 1: its
    children), cut at AGENT_DEPTH_MAX levels so it ends even on corrupt data."""
    down = aliased(Agent)
    tree = (
        select(Agent.agent_id, literal_column("1", Integer).label("depth"))
        .where(Agent.parent_id == bindparam("agent_id"))
        .cte("subtree", recursive=True)
    )
    return tree.union_all(
        select(down.agent_id, tree.c.depth + 1)
        .where(down.parent_id == tree.c.agent_id, tree.c.depth < AGENT_DEPTH_MAX)
    )


_SUBTREE = _subtree_cte()
_DESCENDANTS = (
    select(Agent).join(_SUBTREE, Agent.agent_id == _SUBTREE.c.agent_id)
    .order_by(_SUBTREE.c.depth, Agent.agent_id).limit(DESCENDANTS_MAX + 1)
)
_HEIGHT = select(func.coalesce(func.max(_SUBTREE.c.depth), 0))


def descendants(session: Session, agent_id: str) -> list[Agent]:
    """Every agent below ``agent_id`` (not itself), nearest first, then by id.

    Raises AGENT_NOT_FOUND, LIMIT_EXCEEDED above DESCENDANTS_MAX agents.
    """
    require_agent(session, agent_id)
    rows = list(session.scalars(_DESCENDANTS, {"agent_id": agent_id}))
    if len(rows) > DESCENDANTS_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "the subtree has too many agents to list",
                         {"agent_id": agent_id, "max": DESCENDANTS_MAX})
    return rows


def subtree_height(session: Session, agent_id: str) -> int:
    """Levels below ``agent_id``: 0 for a leaf, 1 when it has children only, ..."""
    return int(session.scalar(_HEIGHT, {"agent_id": agent_id}) or 0)


def is_descendant(session: Session, agent_id: str, ancestor_id: str) -> bool:
    """Whether ``ancestor_id`` is above ``agent_id`` in the tree (an agent is not its own
    descendant). Raises AGENT_NOT_FOUND (``agent_id``), LIMIT_EXCEEDED."""
    return any(row.agent_id == ancestor_id for row in ancestors(session, agent_id)[1:])


def sub_agents(session: Session, agent_id: str) -> list[Agent]:
    """The direct sub-agents of ``agent_id``, by id. Raises AGENT_NOT_FOUND."""
    require_agent(session, agent_id)
    return list(session.scalars(
        select(Agent).where(Agent.parent_id == agent_id).order_by(Agent.agent_id)
    ))


def first_suspended(chain: list[Agent]) -> Agent | None:
    """The first suspended agent of a chain from ``ancestors``, or None. Pure."""
    return next((row for row in chain if row.status != "active"), None)


def require_active(session: Session, agent_id: str) -> list[Agent]:
    """The agent's chain (``ancestors``) when neither it nor any ancestor is suspended.
    Raises AGENT_NOT_FOUND, LIMIT_EXCEEDED, AGENT_SUSPENDED (details: ``agent_id`` and
    ``suspended_agent_id``, the agent whose status blocks it)."""
    chain = ancestors(session, agent_id)
    blocked = first_suspended(chain)
    if blocked is not None:
        raise make_error(ErrorCode.AGENT_SUSPENDED, "the agent or an agent above it is suspended",
                         {"agent_id": agent_id, "suspended_agent_id": blocked.agent_id})
    return chain


def may_manage(session: Session, actor_agent_id: str, target_agent_id: str) -> bool:
    """Whether the agent ``actor_agent_id`` may act on ``target_agent_id``: only when the target
    is its direct sub-agent (never itself, a grandchild, or an agent elsewhere). Reads only;
    an unknown target is False."""
    target = session.get(Agent, target_agent_id)
    return target is not None and target.parent_id == actor_agent_id


def require_manages(session: Session, actor_agent_id: str, target_agent_id: str) -> Agent:
    """The target row when ``may_manage``; else FORBIDDEN (also for an unknown target, so an
    agent cannot probe for ids outside its own sub-agents)."""
    if not may_manage(session, actor_agent_id, target_agent_id):
        raise make_error(ErrorCode.FORBIDDEN, "an agent may act only on its own sub-agents",
                         {"agent_id": target_agent_id})
    return require_agent(session, target_agent_id)


# ----- creating agents -----------------------------------------------------------------------


@contextmanager
def _session_of(target: Database | Session, *, write: bool) -> Iterator[Session]:
    """``target`` itself, or a new transaction of the Database ``target``."""
    if isinstance(target, Session):
        yield target
        return
    with target.write() if write else target.read() as session:
        yield session


def create_agent(
    target: Database | Session,
    agent_id: str,
    name: str,
    *,
    parent_id: str | None = None,
    actor: str,
    now_ms: int,
    grade: str = DEFAULT_GRADE,
    currency: str | None = None,
    credit_limit_minor: int = 0,
    daily_order_quota: int | None = None,
    pool_policy: str = "own_then_shared",
) -> dict[str, Any]:
    """A new active agent under ``parent_id`` (None: a top agent), created by an admin.
    ``currency`` None means the parent's (``DEFAULT_CURRENCY`` for a top agent). A new leaf
    cannot close a cycle. A new agent whose price list is below its parent's for a SKU cannot
    buy that SKU until someone prices it (cardsvc.agents.pricing; creation is never refused for it).

    Effects: the row and an audit entry ``agent.create``. Errors, in this order:
    INVALID_ARGUMENT / LIMIT_EXCEEDED (an argument), AGENT_EXISTS, GRADE_NOT_FOUND,
    AGENT_NOT_FOUND (the parent), AGENT_SUSPENDED (the parent or an agent above it),
    LIMIT_EXCEEDED (deeper than AGENT_DEPTH_MAX), CURRENCY_MISMATCH (not the parent's).
    """
    settings = _check_settings(agent_id, name, grade, currency, credit_limit_minor,
                               daily_order_quota, pool_policy)
    with _session_of(target, write=True) as session:
        return _insert_agent(session, settings, parent_id, actor=actor, now_ms=now_ms,
                             by_agent=None)


def create_sub_agent(
    session: Session,
    parent_agent_id: str,
    agent_id: str,
    name: str,
    *,
    actor: str,
    now_ms: int,
    daily_order_quota: int | None = None,
) -> dict[str, Any]:
    """A new active sub-agent of the calling agent ``parent_agent_id``. It takes the parent's
    grade and currency, no credit (only admins extend credit: it is the platform's risk), no
    pool and the default pool policy; an admin may change those later.

    Effects and errors as ``create_agent`` (AGENT_NOT_FOUND and AGENT_SUSPENDED about the
    calling agent); the audit entry records ``by_agent``.
    """
    parent = require_agent(session, parent_agent_id)
    settings = _check_settings(agent_id, name, parent.grade, parent.currency, 0,
                               daily_order_quota, "own_then_shared")
    return _insert_agent(session, settings, parent_agent_id, actor=actor, now_ms=now_ms,
                         by_agent=parent_agent_id)


def _check_settings(agent_id: str, name: str, grade: str, currency: str | None,
                    credit_limit_minor: int, daily_order_quota: int | None,
                    pool_policy: str) -> dict[str, Any]:
    """The new agent's checked column values. Raises INVALID_ARGUMENT, LIMIT_EXCEEDED."""
    check_id("agent_id", agent_id)
    check_name(name)
    check_id("grade", grade)
    if currency is not None:
        check_currency("currency", currency)
    check_int("credit_limit_minor", credit_limit_minor, 0, MONEY_MINOR_MAX)
    if daily_order_quota is not None:
        check_int("daily_order_quota", daily_order_quota, 0, DAILY_ORDER_QUOTA_MAX)
    _check_policy(pool_policy)
    return {"agent_id": agent_id, "name": name, "grade": grade, "currency": currency,
            "credit_limit_minor": credit_limit_minor, "daily_order_quota": daily_order_quota,
            "pool_policy": pool_policy}


def _check_policy(pool_policy: object) -> None:
    if pool_policy not in POOL_POLICIES:
        raise invalid("pool_policy", f"pool_policy must be one of {', '.join(POOL_POLICIES)}")


def _insert_agent(session: Session, settings: dict[str, Any], parent_id: str | None, *,
                  actor: str, now_ms: int, by_agent: str | None) -> dict[str, Any]:
    lock_tree(session)
    agent_id = settings["agent_id"]
    if session.get(Agent, agent_id) is not None:
        raise make_error(ErrorCode.AGENT_EXISTS, "the agent exists", {"agent_id": agent_id})
    require_grade(session, settings["grade"])
    currency = settings["currency"]
    if parent_id is not None:
        chain = require_active(session, parent_id)
        check_depth(len(chain) + 1, agent_id)
        currency = same_currency(chain[0], currency)
    row = Agent(parent_id=parent_id, status="active", created_at_ms=now_ms, pool_id=None,
                **{**settings, "currency": currency or DEFAULT_CURRENCY})
    session.add(row)
    details = {key: value for key, value in agent_dict(row).items()
               if key not in ("agent_id", "created_at_ms", "status", "pool_id")}
    audit_change(session, actor, "agent.create", agent_id, details, now_ms, by_agent)
    return agent_dict(row)


def require_grade(session: Session, grade: str) -> Grade:
    """The grade row. Raises GRADE_NOT_FOUND."""
    row = session.get(Grade, grade)
    if row is None:
        raise make_error(ErrorCode.GRADE_NOT_FOUND, "no such grade", {"grade": grade})
    return row


def check_depth(depth: int, agent_id: str) -> None:
    if depth > AGENT_DEPTH_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED,
                         f"the agent tree may be at most {AGENT_DEPTH_MAX} levels deep",
                         {"agent_id": agent_id, "max": AGENT_DEPTH_MAX})


def same_currency(parent: Agent, currency: str | None) -> str:
    """The parent's currency, when ``currency`` is None or equal. Raises CURRENCY_MISMATCH."""
    if currency is not None and currency != parent.currency:
        raise make_error(ErrorCode.CURRENCY_MISMATCH,
                         "an agent's currency must be its parent's",
                         {"currency": currency, "parent_currency": parent.currency,
                          "parent_id": parent.agent_id})
    return parent.currency


def audit_change(session: Session, actor: str, action: str, agent_id: str,
                 details: dict[str, Any], now_ms: int, by_agent: str | None) -> None:
    """The change's audit entry (last in the transaction); ``by_agent``: the acting agent."""
    if by_agent is not None:
        details = {**details, "by_agent": by_agent}
    audit.append(session, actor=actor, action=action, object_type="agent", object_id=agent_id,
                 details=details, at_ms=now_ms)


# ----- changing agents -----------------------------------------------------------------------


def set_status(session: Session, agent_id: str, status: str, *, actor: str, now_ms: int,
               actor_agent_id: str | None = None) -> dict[str, Any]:
    """Suspends (``suspended``) or reactivates (``active``) an agent; its whole subtree is
    blocked while it is suspended (see the module doc). Setting the current status changes
    nothing and writes no entry.

    With ``actor_agent_id`` the caller is that agent: it must manage the target (FORBIDDEN),
    be active itself (AGENT_SUSPENDED), and may reactivate only a sub-agent that it suspended
    itself, never one an admin suspended (FORBIDDEN, details ``reason``:
    ``suspended_by_admin``). Effects: the status and an audit entry ``agent.status``
    (``status``, ``before``, ``by_agent``). Errors: INVALID_ARGUMENT (status), AGENT_NOT_FOUND.
    """
    if status not in AGENT_STATUSES:
        raise invalid("status", f"status must be one of {', '.join(AGENT_STATUSES)}")
    if actor_agent_id is not None:
        require_active(session, actor_agent_id)
        row = require_manages(session, actor_agent_id, agent_id)
    else:
        row = require_agent(session, agent_id)
    if row.status == status:
        return agent_dict(row)
    if actor_agent_id is not None and status == "active" and _suspended_by_admin(session, row):
        raise make_error(ErrorCode.FORBIDDEN, "an admin suspended this agent",
                         {"agent_id": agent_id, "reason": "suspended_by_admin"})
    before, row.status = row.status, status
    audit_change(session, actor, "agent.status", agent_id, {"status": status, "before": before},
                 now_ms, actor_agent_id)
    return agent_dict(row)


def _suspended_by_admin(session: Session, row: Agent) -> bool:
    """Whether the latest status change of ``row`` was made by an admin (or is unknown)."""
    details = session.scalar(
        select(AuditEntry.details)
        .where(AuditEntry.object_type == "agent", AuditEntry.object_id == row.agent_id,
               AuditEntry.action == "agent.status")
        .order_by(AuditEntry.seq.desc()).limit(1)
    )
    return details is None or details.get("by_agent") is None


def set_credit_limit(session: Session, agent_id: str, credit_limit_minor: int, *, actor: str,
                     now_ms: int,
                     apply: Callable[[Session, str, int], None] | None = None) -> dict[str, Any]:
    """Sets how far the agent's available balance may go below zero. Admins only. By default
    only the Agent column changes; pass ``apply=cardsvc.money.ledger.set_credit_limit`` to make the
    change through the ledger instead (the column and the account floor together), which then
    runs before the audit entry: account locks before the audit head, the order every money
    transaction takes them in. The current value again changes nothing.

    Effects: the column (through ``apply`` if given) and an audit entry ``agent.credit_limit``.
    Errors: INVALID_ARGUMENT (0..10^15), AGENT_NOT_FOUND, and whatever ``apply`` raises.
    """
    check_int("credit_limit_minor", credit_limit_minor, 0, MONEY_MINOR_MAX)
    if apply is None:
        return _set_column(session, agent_id, "credit_limit_minor", credit_limit_minor,
                           actor=actor, now_ms=now_ms, action="agent.credit_limit")
    row = require_agent(session, agent_id)
    before = row.credit_limit_minor
    if before != credit_limit_minor:
        apply(session, agent_id, credit_limit_minor)
        audit_change(session, actor, "agent.credit_limit", agent_id,
                     {"credit_limit_minor": credit_limit_minor, "before": before}, now_ms, None)
    return agent_dict(row)


def set_daily_quota(session: Session, agent_id: str, daily_order_quota: int | None, *,
                    actor: str, now_ms: int) -> dict[str, Any]:
    """Sets the agent's orders per UTC day (None: the risk default, cardsvc.access.risk). Admins
    only. Effects: the column and an audit entry ``agent.daily_quota``. Errors: INVALID_ARGUMENT
    (0..2^31-1), AGENT_NOT_FOUND."""
    if daily_order_quota is not None:
        check_int("daily_order_quota", daily_order_quota, 0, DAILY_ORDER_QUOTA_MAX)
    return _set_column(session, agent_id, "daily_order_quota", daily_order_quota,
                       actor=actor, now_ms=now_ms, action="agent.daily_quota")


def set_pool_policy(session: Session, agent_id: str, pool_policy: str, *, actor: str,
                    now_ms: int) -> dict[str, Any]:
    """Sets where the agent's orders draw from (POOL_POLICIES; cardsvc.agents.pricing.order_pools).
    Admins only. Effects: the column and an audit entry ``agent.pool_policy``. Errors:
    INVALID_ARGUMENT, AGENT_NOT_FOUND."""
    _check_policy(pool_policy)
    return _set_column(session, agent_id, "pool_policy", pool_policy, actor=actor,
                       now_ms=now_ms, action="agent.pool_policy")


def _set_column(session: Session, agent_id: str, column: str, value: object, *, actor: str,
                now_ms: int, action: str) -> dict[str, Any]:
    """Sets one checked column, auditing before and after; the same value changes nothing."""
    row = require_agent(session, agent_id)
    before = getattr(row, column)
    if before != value:
        setattr(row, column, value)
        audit_change(session, actor, action, agent_id, {column: value, "before": before}, now_ms,
                     None)
    return agent_dict(row)


def assign_pool(session: Session, agent_id: str, pool_id: int | None, *, actor: str,
                now_ms: int) -> dict[str, Any]:
    """Makes ``pool_id`` the agent's channel pool (None: it has none; its orders then draw from
    shared stock). Admins only. An agent has at most one pool and a pool at most one agent: the
    agent's previous pool is released (its ``agent_id`` cleared; move its stock back first).

    Effects: ``Agent.pool_id``, ``Pool.agent_id`` and an audit entry ``agent.pool``. Errors:
    INVALID_ARGUMENT (pool 0, the shared pool; a pool that another agent owns: ``reason``
    ``owned_by_another_agent``), AGENT_NOT_FOUND, POOL_NOT_FOUND.
    """
    lock_tree(session)
    row = require_agent(session, agent_id)
    pool = None if pool_id is None else _assignable_pool(session, pool_id, agent_id)
    before = row.pool_id
    if before == pool_id:
        return agent_dict(row)
    if before is not None:
        old = session.get(Pool, before)
        if old is not None and old.agent_id == agent_id:
            old.agent_id = None
    if pool is not None:
        pool.agent_id = agent_id
    row.pool_id = pool_id
    audit_change(session, actor, "agent.pool", agent_id, {"pool_id": pool_id, "before": before},
                 now_ms, None)
    return agent_dict(row)


def _assignable_pool(session: Session, pool_id: int, agent_id: str) -> Pool:
    if isinstance(pool_id, bool) or not isinstance(pool_id, int) or pool_id == SHARED_POOL_ID:
        raise invalid("pool_id", "pool_id must name a channel pool, not the shared pool")
    pool = session.get(Pool, pool_id)
    if pool is None:
        raise make_error(ErrorCode.POOL_NOT_FOUND, "no such pool", {"pool_id": pool_id})
    if pool.agent_id is not None and pool.agent_id != agent_id:
        raise invalid("pool_id", "another agent owns this pool",
                      reason="owned_by_another_agent", owner_agent_id=pool.agent_id)
    return pool


# ----- reading agents ------------------------------------------------------------------------


def get_agent(target: Database | Session, agent_id: str) -> dict[str, Any]:
    """The agent as a dict (``agent_dict``). Raises AGENT_NOT_FOUND."""
    with _session_of(target, write=False) as session:
        return agent_dict(require_agent(session, agent_id))


def list_agents(target: Database | Session) -> list[dict[str, Any]]:
    """Every agent, by id."""
    with _session_of(target, write=False) as session:
        return [agent_dict(row) for row in session.scalars(select(Agent).order_by(Agent.agent_id))]


def agent_dict(row: Agent) -> dict[str, Any]:
    return {
        "agent_id": row.agent_id,
        "name": row.name,
        "parent_id": row.parent_id,
        "status": row.status,
        "created_at_ms": row.created_at_ms,
        "grade": row.grade,
        "currency": row.currency,
        "credit_limit_minor": row.credit_limit_minor,
        "daily_order_quota": row.daily_order_quota,
        "pool_id": row.pool_id,
        "pool_policy": row.pool_policy,
    }
