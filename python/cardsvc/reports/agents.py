"""Agents as the console and the portal read them: a level of the tree with balances, one
agent's dossier (settings, balances, credit, pool, prices, sub-agents), its price list against
its sub-agents' prices, and its commissions with their status and release date.

Who sees what, checked here for every read: platform callers with ``masked_views`` (or
``ledger``) see every agent; an agent's user sees its own agent and its direct sub-agents
(``agents.may_manage``), nothing else (FORBIDDEN, known agent or not, so nothing can be probed).
Every list is a page (``cardsvc.paging``) over indexed columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.access import Principal
from cardsvc.agents import Agent, Price, agent_dict, may_manage, pricing, require_agent
from cardsvc.catalog import Pool
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.money import Account, Commission, ledger
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of

PRICE_SKUS_MAX = 200
"""SKUs in one price list (a catalog page)."""
PRICE_SUB_AGENTS_MAX = 20
"""Sub-agents whose prices sit beside the agent's own (the rest: their own pages)."""


@dataclass(frozen=True)
class AgentRow:
    agent_id: str
    name: str
    status: str
    grade: str
    currency: str
    credit_limit_minor: int
    available_minor: int
    pending_minor: int
    sub_agents: int


@dataclass(frozen=True)
class PriceLine:
    """One SKU of an agent's price list: its own price (what it pays) and the price each of
    its direct sub-agents pays (None: that sub-agent cannot buy it)."""

    sku: str
    name: str
    currency: str
    own_price_minor: int
    sub_prices: dict[str, int | None]


@dataclass(frozen=True)
class AgentPage:
    """What one agent's page shows: its dossier, its price list beside its sub-agents', and a
    page of its commissions."""

    dossier: dict[str, Any]
    prices: list[PriceLine]
    commissions: Page[dict[str, Any]]


def _is_platform(principal: Principal) -> bool:
    return principal.agent_id is None and principal.role not in ("agent", "terminal")


def _forbidden(agent_id: str) -> CardsvcError:
    return make_error(ErrorCode.FORBIDDEN, "not an agent you may see", {"agent_id": agent_id})


def check_may_see(session: Session, principal: Principal, agent_id: str) -> None:
    """Raises FORBIDDEN unless ``principal`` may read ``agent_id`` (module text)."""
    if _is_platform(principal):
        if "masked_views" not in principal.scopes and "ledger" not in principal.scopes \
                and not principal.is_admin:
            principal.require("masked_views")
        return
    own = principal.agent_id
    if own is None or not (own == agent_id or may_manage(session, own, agent_id)):
        raise _forbidden(agent_id)


class AgentReports:
    """Reads over the tree, the ledger's balances, prices and commissions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def children(self, principal: Principal, parent_id: str | None, *,
                 cursor: str | None = None, limit: int | None = None) -> Page[AgentRow]:
        """The agents directly under ``parent_id`` (None: the top level, platform callers
        only), by id, with their available and pending balances and how many sub-agents each
        has. Raises FORBIDDEN, AGENT_NOT_FOUND, INVALID_ARGUMENT (cursor)."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, (str,))
        with self.db.read() as session:
            if parent_id is None:
                if not _is_platform(principal):
                    raise _forbidden("")
                check_may_see(session, principal, "")
            else:
                require_agent(session, parent_id)
                check_may_see(session, principal, parent_id)
            statement = select(Agent).where(Agent.parent_id.is_(None) if parent_id is None
                                            else Agent.parent_id == parent_id)
            if after is not None:
                statement = statement.where(Agent.agent_id > after[0])
            rows = list(session.scalars(statement.order_by(Agent.agent_id).limit(size + 1)))
            page = page_of(rows, size, key=lambda row: (row.agent_id,))
            return Page(_agent_rows(session, page.items), page.next)

    def dossier(self, principal: Principal, agent_id: str) -> dict[str, Any]:
        """One agent: its settings (``agent``), balances by account, credit limit, pool name,
        parent, price overrides, and how many sub-agents it has. Raises FORBIDDEN,
        AGENT_NOT_FOUND."""
        with self.db.read() as session:
            if not _is_platform(principal):
                check_may_see(session, principal, agent_id)
            row = require_agent(session, agent_id)
            check_may_see(session, principal, agent_id)
            pool = None if row.pool_id is None else session.get(Pool, row.pool_id)
            prices = [pricing.price_dict(price) for price in session.scalars(
                select(Price).where(Price.agent_id == agent_id).order_by(Price.sku)
                .limit(PRICE_SKUS_MAX))]
            subs = int(session.scalar(select(func.count()).select_from(Agent)
                                      .where(Agent.parent_id == agent_id)) or 0)
            return {"agent": agent_dict(row), "balances": ledger.agent_balances(session, agent_id),
                    "pool": None if pool is None else pool.name, "prices": prices,
                    "sub_agents": subs}

    def agent_page(self, principal: Principal, agent_id: str, *, status: str | None = None,
                   cursor: str | None = None) -> AgentPage:
        """:meth:`dossier`, :meth:`price_list` and a page of :meth:`commissions` of one agent
        (``status`` filters the commissions). A suspended agent (or one under a suspended agent)
        can buy nothing, so its price list is empty rather than the page refused: staff open it
        to reactivate the agent. Raises as those."""
        dossier = self.dossier(principal, agent_id)
        try:
            prices = self.price_list(principal, agent_id)
        except CardsvcError as error:
            if error.code != ErrorCode.AGENT_SUSPENDED:
                raise
            prices = []
        return AgentPage(dossier, prices,
                         self.commissions(principal, agent_id, status=status, cursor=cursor))

    def price_list(self, principal: Principal, agent_id: str, *,
                   after_sku: str | None = None) -> list[PriceLine]:
        """What ``agent_id`` pays for each SKU it can buy, beside what each of its direct
        sub-agents (the first PRICE_SUB_AGENTS_MAX) pays. Raises FORBIDDEN, AGENT_NOT_FOUND,
        AGENT_SUSPENDED."""
        with self.db.read() as session:
            require_agent(session, agent_id)
            check_may_see(session, principal, agent_id)
            own = pricing.catalog_view(session, agent_id, after_sku=after_sku,
                                       limit=PRICE_SKUS_MAX)
            subs = list(session.scalars(select(Agent.agent_id)
                                        .where(Agent.parent_id == agent_id)
                                        .order_by(Agent.agent_id).limit(PRICE_SUB_AGENTS_MAX)))
            lines = []
            for item in own:
                sub_prices: dict[str, int | None] = {}
                for sub in subs:
                    try:
                        sub_prices[sub] = pricing.effective_price(session, sub, item["sku"])[0]
                    except CardsvcError:
                        sub_prices[sub] = None
                lines.append(PriceLine(item["sku"], item["name"], item["currency"],
                                       item["price_minor"], sub_prices))
            return lines

    def commissions(self, principal: Principal, agent_id: str, *, status: str | None = None,
                    cursor: str | None = None, limit: int | None = None) -> Page[dict[str, Any]]:
        """Commissions ``agent_id`` earned, newest first: amount, status (``pending`` until
        ``release_at_ms``, then ``released``; ``reversed`` by a refund), the order and its SKU.
        Raises FORBIDDEN, AGENT_NOT_FOUND, INVALID_ARGUMENT."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, (int,))
        with self.db.read() as session:
            require_agent(session, agent_id)
            check_may_see(session, principal, agent_id)
            statement = select(Commission).where(Commission.agent_id == agent_id)
            if status is not None:
                statement = statement.where(Commission.status == status)
            if after is not None:
                statement = statement.where(Commission.commission_id < after[0])
            rows = [{"commission_id": row.commission_id, "order_id": row.order_id,
                     "amount_minor": row.amount_minor, "currency": row.currency,
                     "status": row.status, "release_at_ms": row.release_at_ms}
                    for row in session.scalars(statement.order_by(
                        Commission.commission_id.desc()).limit(size + 1))]
        return page_of(rows, size, key=lambda row: (row["commission_id"],))


def _agent_rows(session: Session, agents: list[Agent]) -> list[AgentRow]:
    ids = [row.agent_id for row in agents]
    if not ids:
        return []
    balances: dict[tuple[str, str], int] = {
        (row.agent_id, row.kind): row.balance_minor for row in session.execute(
            select(Account.agent_id, Account.kind, Account.balance_minor)
            .where(Account.agent_id.in_(ids)))}
    counts = dict(session.execute(select(Agent.parent_id, func.count())
                                  .where(Agent.parent_id.in_(ids))
                                  .group_by(Agent.parent_id)).all())
    return [AgentRow(row.agent_id, row.name, row.status, row.grade, row.currency,
                     row.credit_limit_minor, balances.get((row.agent_id, "available"), 0),
                     balances.get((row.agent_id, "pending"), 0), int(counts.get(row.agent_id, 0)))
            for row in agents]

