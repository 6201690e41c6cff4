"""Grades and price lists, and what an agent pays: its price and the price chain above it.

What an agent pays for one code of a SKU (its *own price*) comes from one price row, the
*applicable row*: the agent's override (``Price.agent_id``) if there is one, else its grade's
row (``Price.grade``). There is no price, and the agent cannot buy, when there is no applicable
row, when the row is hidden (``visible`` False: an override can hide a SKU that the grade shows,
or show one that the grade hides), or when a grade row is in another currency than the agent's
(one currency per agent; a grade's row applies only to agents of its currency).

An agent can buy a SKU (``effective_price``) when the SKU is on sale, neither the agent nor any
agent above it is suspended, every agent on its chain up to the top has an own price (no price
above means no basis for the commissions), and prices never fall going down the chain. The
*price chain* ``[(buyer, price), (parent, price), ..., (top agent, price)]`` is what settlement
splits: each ancestor's commission is its child's price minus its own, never negative.

Who may set which price (``set_price``, ``remove_price``): admins set grade rows and overrides
for any agent; an agent sets overrides for its direct sub-agents only (``tree.may_manage``),
for SKUs it can buy itself. For every setter the same rule holds: no change may leave an agent
with an own price below its parent's (PRICE_BELOW_PARENT): neither a price set too low, nor a
parent's price raised above a sub-agent's, nor a grade row changed under agents whose parents
or sub-agents would then invert. Grade and parent changes (``updates.set_grade``,
``updates.move_agent``) are checked the same way (``check_agent_change``); only a newly created
agent may start below its parent, and then it cannot buy that SKU until it is priced.

Speed: outcomes are cached per (agent, SKU) for the runtime's database
(``cardsvc.agents.price_cache``, which says how the cache stays right). docs/agents.md has
worked examples.

Transactions: as ``cardsvc.agents``, functions take the caller's ``Session``; changes take the
tree lock first and append their audit entry last.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Executable, bindparam, or_, select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.agents import tree
from cardsvc.agents.price_cache import cached, mark_changing
from cardsvc.agents.tables import Agent, Grade, Price
from cardsvc.catalog.tables import Sku
from cardsvc.checks import (
    MONEY_MINOR_MAX,
    check_currency,
    check_id,
    check_int,
    check_name,
    check_price,
)
from cardsvc.errors import ErrorCode, invalid, make_error

LIST_LIMIT_MAX = 1000
"""Entries one ``catalog_view`` or ``list_prices`` page holds at most."""
IN_CHUNK = 500
"""Ids per ``IN (...)`` when checking many agents at once (far below SQLite's 32,766)."""


# ----- the pure core: views of rows and the rules over them ----------------------------------


class AgentView(NamedTuple):
    agent_id: str
    parent_id: str | None
    status: str
    grade: str
    currency: str


class PriceView(NamedTuple):
    price_minor: int
    currency: str
    visible: bool


@dataclass
class PriceRows:
    """Price rows by (sku, agent_id) for overrides and by (sku, grade) for grade rows."""

    overrides: dict[tuple[str, str], PriceView]
    grades: dict[tuple[str, str], PriceView]

    def skus(self) -> set[str]:
        return {key[0] for key in itertools.chain(self.overrides, self.grades)}


class Refusal(NamedTuple):
    """A cached refusal: re-raised as a fresh error each time."""

    code: ErrorCode
    message: str
    details: dict[str, Any]


Chain = tuple[tuple[tuple[str, int], ...], str]
"""``(((buyer, price), (parent, price), ..., (top, price)), currency)``."""
Outcome = Chain | Refusal


def own_price(agent: AgentView, sku: str, rows: PriceRows) -> tuple[int | None, str]:
    """The agent's own price from its applicable row, or (None, why): ``no_price``,
    ``currency`` (a grade row in another currency) or ``hidden``. Pure."""
    row = rows.overrides.get((sku, agent.agent_id))
    if row is None:
        row = rows.grades.get((sku, agent.grade))
    if row is None:
        return None, "no_price"
    if row.currency != agent.currency:
        return None, "currency"
    if not row.visible:
        return None, "hidden"
    return row.price_minor, ""


def resolve(chain: Sequence[AgentView], sku: str, on_sale: bool | None,
            rows: PriceRows) -> Outcome:
    """The price chain of ``chain[0]`` for ``sku`` or the refusal, in this order:
    SKU_NOT_FOUND (``on_sale`` None), AGENT_SUSPENDED, NOT_FOR_SALE (off sale, or an agent of
    the chain without own price: details ``at_agent_id`` and ``reason``), PRICE_BELOW_PARENT.
    Pure."""
    buyer = chain[0].agent_id
    if on_sale is None:
        return Refusal(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": sku})
    blocked = next((agent for agent in chain if agent.status != "active"), None)
    if blocked is not None:
        return Refusal(ErrorCode.AGENT_SUSPENDED, "the agent or an agent above it is suspended",
                       {"agent_id": buyer, "suspended_agent_id": blocked.agent_id})
    if not on_sale:
        return _not_for_sale(buyer, sku, buyer, "off_sale")
    prices: list[tuple[str, int]] = []
    for agent in chain:
        price, why = own_price(agent, sku, rows)
        if price is None:
            return _not_for_sale(buyer, sku, agent.agent_id, why)
        prices.append((agent.agent_id, price))
    for (child, child_price), (parent, parent_price) in itertools.pairwise(prices):
        if child_price < parent_price:
            return Refusal(ErrorCode.PRICE_BELOW_PARENT, "a price on the chain is below its "
                           "parent's; the chain cannot be settled",
                           _inversion(sku, child, child_price, parent, parent_price))
    return tuple(prices), chain[0].currency


def _not_for_sale(buyer: str, sku: str, at_agent_id: str, reason: str) -> Refusal:
    return Refusal(ErrorCode.NOT_FOR_SALE, "the SKU is not for sale to this agent",
                   {"agent_id": buyer, "sku": sku, "at_agent_id": at_agent_id,
                    "reason": reason})


def _inversion(sku: str, agent_id: str, price_minor: int, parent_id: str,
               parent_price_minor: int) -> dict[str, Any]:
    return {"sku": sku, "agent_id": agent_id, "price_minor": price_minor,
            "parent_id": parent_id, "parent_price_minor": parent_price_minor}


def first_inversion(nodes: Mapping[str, AgentView], changed: Iterable[str],
                    skus: Iterable[str], rows: PriceRows) -> dict[str, Any] | None:
    """The first edge (changed agent and its parent, or changed agent and one of its children
    in ``nodes``) where both have an own price and the child's is below the parent's, as
    PRICE_BELOW_PARENT details; None when there is none. Pure."""
    children: dict[str, list[AgentView]] = {}
    for node in nodes.values():
        if node.parent_id is not None:
            children.setdefault(node.parent_id, []).append(node)
    sku_list = sorted(skus)
    for agent_id in sorted(changed):
        node = nodes[agent_id]
        parent = nodes.get(node.parent_id) if node.parent_id is not None else None
        for sku in sku_list:
            price = own_price(node, sku, rows)[0]
            if price is None:
                continue
            above = None if parent is None else own_price(parent, sku, rows)[0]
            if parent is not None and above is not None and price < above:
                return _inversion(sku, agent_id, price, parent.agent_id, above)
            for child in children.get(agent_id, ()):
                below = own_price(child, sku, rows)[0]
                if below is not None and below < price:
                    return _inversion(sku, child.agent_id, below, agent_id, price)
    return None


# ----- what an agent pays --------------------------------------------------------------------


def effective_price(session: Session, agent_id: str, sku: str) -> tuple[int, str]:
    """(price_minor, currency) the agent pays for one code of ``sku`` (module doc).

    Reads only (through the cache). Errors, in this order: AGENT_NOT_FOUND, LIMIT_EXCEEDED,
    SKU_NOT_FOUND, AGENT_SUSPENDED (details ``suspended_agent_id``), NOT_FOR_SALE (details
    ``reason``: ``off_sale``, ``no_price``, ``hidden`` or ``currency``; ``at_agent_id``: the
    buyer or the ancestor without a price), PRICE_BELOW_PARENT (an inverted chain that the
    checks here never let arise).
    """
    prices, currency = _chain(session, agent_id, sku)
    return prices[0][1], currency


def price_chain(session: Session, agent_id: str, sku: str) -> list[tuple[str, int]]:
    """``[(buyer, its price), (parent, its price), ..., (top agent, its price)]``, prices
    non-decreasing towards the buyer, all in the buyer's currency (``effective_price``); each
    ancestor's commission is its child's price minus its own. Reads only; errors as
    ``effective_price``. A cache hit costs a few microseconds."""
    return list(_chain(session, agent_id, sku)[0])


def _chain(session: Session, agent_id: str, sku: str) -> Chain:
    outcome = _outcome(session, agent_id, sku)
    if isinstance(outcome, Refusal):
        raise make_error(outcome.code, outcome.message, dict(outcome.details))
    return outcome


def _outcome(session: Session, agent_id: str, sku: str) -> Outcome:
    return cached(session, (agent_id, sku), lambda: _compute(session, agent_id, sku))


_CHAIN_PRICES = select(
    Price.sku, Price.grade, Price.agent_id, Price.price_minor, Price.currency, Price.visible
).where(
    Price.sku == bindparam("sku"),
    or_(Price.agent_id.in_(bindparam("agent_ids", expanding=True)),
        Price.grade.in_(bindparam("grades", expanding=True))),
)
_ON_SALE = select(Sku.on_sale).where(Sku.sku == bindparam("sku"))
"""The statements of a cache miss, built once (building costs more than running them)."""


def _compute(session: Session, agent_id: str, sku: str) -> Outcome:
    """Three queries: the chain (recursive), the SKU's sale flag, the chain's price rows."""
    chain = [agent_view(row) for row in tree.ancestors(session, agent_id)]
    on_sale = session.scalar(_ON_SALE, {"sku": sku})
    rows = PriceRows({}, {})
    _put_rows(rows, session.execute(_CHAIN_PRICES, {
        "sku": sku, "agent_ids": [agent.agent_id for agent in chain],
        "grades": sorted({agent.grade for agent in chain})}))
    return resolve(chain, sku, on_sale, rows)


def agent_view(row: Agent) -> AgentView:
    return AgentView(row.agent_id, row.parent_id, row.status, row.grade, row.currency)


def _add_rows(rows: PriceRows, session: Session, where: Any, sku: str | None) -> None:
    """Adds the price rows matching ``where`` (and ``sku`` unless None) to ``rows``."""
    statement = select(Price.sku, Price.grade, Price.agent_id, Price.price_minor,
                       Price.currency, Price.visible).where(where)
    if sku is not None:
        statement = statement.where(Price.sku == sku)
    _put_rows(rows, session.execute(statement))


def _put_rows(rows: PriceRows, result: Iterable[Any]) -> None:
    for row in result:
        view = PriceView(row.price_minor, row.currency, row.visible)
        if row.agent_id is not None:
            rows.overrides[(row.sku, row.agent_id)] = view
        elif row.grade is not None:
            rows.grades[(row.sku, row.grade)] = view


# ----- catalog and pools ---------------------------------------------------------------------


def catalog_view(session: Session, agent_id: str, *, after_sku: str | None = None,
                 limit: int = LIST_LIMIT_MAX) -> list[dict[str, Any]]:
    """The SKUs the agent can buy now (``effective_price`` succeeds), by SKU id, after
    ``after_sku`` (pass the last of a page for the next), at most ``limit``: ``sku``,
    ``name``, ``kind``, ``price_minor`` and ``currency`` (what the agent pays), and the face
    value in the SKU's own currency (``face_value_minor``, ``face_currency``). Stock is the
    caller's (the core, over ``order_pools``). Reads only, without the cache.

    Errors: INVALID_ARGUMENT (limit < 1), LIMIT_EXCEEDED (limit > 1000), AGENT_NOT_FOUND,
    AGENT_SUSPENDED (a suspended agent or subtree sees nothing to buy).
    """
    _check_limit(limit)
    chain = [agent_view(row) for row in tree.require_active(session, agent_id)]
    rows = PriceRows({}, {})
    _add_rows(rows, session, or_(Price.agent_id.in_([agent.agent_id for agent in chain]),
                                 Price.grade.in_({agent.grade for agent in chain})), None)
    candidates = sorted(sku for sku in rows.skus() if after_sku is None or sku > after_sku)
    page: list[dict[str, Any]] = []
    for chunk in _chunks(candidates):
        skus = {row.sku: row for row in session.scalars(select(Sku).where(Sku.sku.in_(chunk)))}
        for sku in chunk:
            row = skus.get(sku)
            if row is None:
                continue
            outcome = resolve(chain, sku, row.on_sale, rows)
            if isinstance(outcome, Refusal):
                continue
            page.append({"sku": sku, "name": row.name, "kind": row.kind,
                         "price_minor": outcome[0][0][1], "currency": outcome[1],
                         "face_value_minor": row.face_value_minor, "face_currency": row.currency})
            if len(page) == limit:
                return page
    return page


def order_pools(session: Session, agent_id: str) -> list[int]:
    """The core pools an order of the agent draws from, in order: ``own_then_shared`` ->
    [own, 0], ``own_only`` -> [own], ``shared_only`` -> [0]; an agent without a pool -> [0].
    Reads only. Raises AGENT_NOT_FOUND."""
    row = tree.require_agent(session, agent_id)
    return pools_of(row.pool_id, row.pool_policy)


def pools_of(pool_id: int | None, pool_policy: str) -> list[int]:
    """:func:`order_pools` from the agent's pool and policy. Pure."""
    if pool_id is None or pool_policy == "shared_only":
        return [tree.SHARED_POOL_ID]
    if pool_policy == "own_only":
        return [pool_id]
    return [pool_id, tree.SHARED_POOL_ID]


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise invalid("limit", "limit must be at least 1")
    if limit > LIST_LIMIT_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"limit may be at most {LIST_LIMIT_MAX}",
                         {"field": "limit", "max": LIST_LIMIT_MAX})


def _chunks(items: Collection[str]) -> Iterator[list[str]]:
    ordered = sorted(items)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start:start + IN_CHUNK]


# ----- grades --------------------------------------------------------------------------------


def create_grade(session: Session, grade: str, name: str, *, actor: str,
                 now_ms: int) -> dict[str, Any]:
    """A new, empty price list. Admins only. Effects: the row and an audit entry
    ``grade.create``. Errors: INVALID_ARGUMENT, LIMIT_EXCEEDED, GRADE_EXISTS."""
    check_id("grade", grade)
    check_name(name)
    tree.lock_tree(session)
    if session.get(Grade, grade) is not None:
        raise make_error(ErrorCode.GRADE_EXISTS, "the grade exists", {"grade": grade})
    row = Grade(grade=grade, name=name, created_at_ms=now_ms)
    session.add(row)
    audit.append(session, actor=actor, action="grade.create", object_type="grade",
                 object_id=grade, details={"name": name}, at_ms=now_ms)
    return grade_dict(row)


def list_grades(session: Session) -> list[dict[str, Any]]:
    """Every grade, by id."""
    return [grade_dict(row) for row in session.scalars(select(Grade).order_by(Grade.grade))]


def grade_dict(row: Grade) -> dict[str, Any]:
    return {"grade": row.grade, "name": row.name, "created_at_ms": row.created_at_ms}


# ----- setting prices ------------------------------------------------------------------------


def set_price(session: Session, *, sku: str, price_minor: int, currency: str,
              grade: str | None = None, agent_id: str | None = None, visible: bool = True,
              actor: str, actor_agent_id: str | None = None, now_ms: int) -> dict[str, Any]:
    """Sets the grade row (``grade``) or the override (``agent_id``) of ``sku``: exactly one.
    An override is in the agent's currency; a grade row in any currency applies to the grade's
    agents of that currency. ``visible`` False hides the SKU (the price is kept, unused). With
    ``actor_agent_id`` the caller is that agent (module doc: its direct sub-agents' overrides
    only, for SKUs it can buy). The same values again change nothing and write no entry.

    Effects: the row and an audit entry ``price.set`` (``before``/``after``). Errors, in this
    order: INVALID_ARGUMENT, LIMIT_EXCEEDED; for an agent caller FORBIDDEN (a grade row, or not
    its sub-agent), then its own ``effective_price`` errors (AGENT_SUSPENDED, NOT_FOR_SALE, ...);
    SKU_NOT_FOUND, GRADE_NOT_FOUND / AGENT_NOT_FOUND, CURRENCY_MISMATCH (an override not in the
    agent's currency), PRICE_BELOW_PARENT (details ``sku``, ``agent_id``, ``price_minor``,
    ``parent_id``, ``parent_price_minor``: the edge that would invert).
    """
    owner = _check_price_args(sku, grade, agent_id)
    check_int("price_minor", price_minor, 0, MONEY_MINOR_MAX)
    check_price("price_minor", price_minor)
    check_currency("currency", currency)
    if not isinstance(visible, bool):
        raise invalid("visible", "visible must be true or false")
    _begin_change(session, sku, agent_id, actor_agent_id)
    by_agent = agent_id is not None
    _require_owner(session, owner, by_agent=by_agent, currency=currency)
    row = _price_row(session, sku, owner, by_agent=by_agent)
    new = PriceView(price_minor, currency, visible)
    if row is not None and _price_view(row) == new:
        return price_dict(row)
    _refuse_inversion(session, sku, owner, by_agent=by_agent, new=new)
    before = None if row is None else price_dict(row)
    if row is None:
        row = Price(sku=sku, grade=grade, agent_id=agent_id)
        session.add(row)
    row.price_minor, row.currency, row.visible = price_minor, currency, visible
    row.set_by, row.updated_at_ms = actor, now_ms
    _audit_price(session, "price.set", sku, actor, now_ms, actor_agent_id,
                 {"before": before, "after": price_dict(row)})
    return price_dict(row)


def remove_price(session: Session, *, sku: str, grade: str | None = None,
                 agent_id: str | None = None, actor: str, actor_agent_id: str | None = None,
                 now_ms: int) -> bool:
    """Removes the grade row or the override of ``sku`` (an agent's price then comes from its
    grade again); False when there was none. Who may, and the checks, as ``set_price``.
    Effects: the row deleted and an audit entry ``price.remove``. Errors: as ``set_price``
    (no CURRENCY_MISMATCH)."""
    owner = _check_price_args(sku, grade, agent_id)
    _begin_change(session, sku, agent_id, actor_agent_id)
    by_agent = agent_id is not None
    _require_owner(session, owner, by_agent=by_agent, currency=None)
    row = _price_row(session, sku, owner, by_agent=by_agent)
    if row is None:
        return False
    _refuse_inversion(session, sku, owner, by_agent=by_agent, new=None)
    before = price_dict(row)
    session.delete(row)
    _audit_price(session, "price.remove", sku, actor, now_ms, actor_agent_id,
                 {"before": before})
    return True


def _check_price_args(sku: str, grade: str | None, agent_id: str | None) -> str:
    """The row's owner (grade or agent id). Raises INVALID_ARGUMENT unless exactly one of
    ``grade`` and ``agent_id`` is given, LIMIT_EXCEEDED for an over-long id."""
    check_id("sku", sku)
    if grade is not None and agent_id is None:
        return check_id("grade", grade)
    if agent_id is not None and grade is None:
        return check_id("agent_id", agent_id)
    raise invalid("grade", "give exactly one of grade and agent_id")


def _begin_change(session: Session, sku: str, agent_id: str | None,
                  actor_agent_id: str | None) -> None:
    """Takes the tree lock, marks the session, and checks an agent caller's rights."""
    tree.lock_tree(session)
    mark_changing(session)
    if actor_agent_id is not None:
        if agent_id is None:
            raise make_error(ErrorCode.FORBIDDEN, "only admins set grade prices",
                             {"agent_id": actor_agent_id})
        tree.require_manages(session, actor_agent_id, agent_id)
        effective_price(session, actor_agent_id, sku)
    if session.get(Sku, sku) is None:
        raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": sku})


def _require_owner(session: Session, owner: str, *, by_agent: bool,
                   currency: str | None) -> None:
    """Raises GRADE_NOT_FOUND, AGENT_NOT_FOUND, CURRENCY_MISMATCH (an override's currency not
    the agent's; ``currency`` None skips that check)."""
    if not by_agent:
        tree.require_grade(session, owner)
        return
    agent = tree.require_agent(session, owner)
    if currency is not None and currency != agent.currency:
        raise make_error(ErrorCode.CURRENCY_MISMATCH, "an agent's prices are in its currency",
                         {"currency": currency, "agent_currency": agent.currency,
                          "agent_id": owner})


def _price_row(session: Session, sku: str, owner: str, *, by_agent: bool) -> Price | None:
    column = Price.agent_id if by_agent else Price.grade
    return session.scalar(select(Price).where(Price.sku == sku, column == owner))


def _price_view(row: Price) -> PriceView:
    return PriceView(row.price_minor, row.currency, row.visible)


def _refuse_inversion(session: Session, sku: str, owner: str, *, by_agent: bool,
                      new: PriceView | None) -> None:
    """Raises PRICE_BELOW_PARENT when replacing (``new``) or removing (None) the row of
    ``owner`` would leave an agent whose price changes below its parent or above a sub-agent."""
    if by_agent:
        changed = [owner]
    else:
        changed = list(session.scalars(select(Agent.agent_id).where(Agent.grade == owner)))
    nodes = neighbourhood(session, changed)
    rows = load_rows(session, nodes.values(), sku)
    target = rows.overrides if by_agent else rows.grades
    if new is None:
        target.pop((sku, owner), None)
    else:
        target[(sku, owner)] = new
    _raise_inversion(first_inversion(nodes, changed, [sku], rows))


def check_agent_change(session: Session, agent: Agent, *, grade: str,
                       parent_id: str | None) -> None:
    """Raises PRICE_BELOW_PARENT when giving ``agent`` this grade and parent would leave its
    price below its (new) parent's, or a sub-agent's below its own, for some SKU. Reads only
    (``updates.set_grade`` and ``updates.move_agent`` call it before they change anything)."""
    changed = agent_view(agent)._replace(grade=grade, parent_id=parent_id)
    nodes = neighbourhood(session, [agent.agent_id], [] if parent_id is None else [parent_id])
    nodes[agent.agent_id] = changed
    rows = load_rows(session, nodes.values(), None)
    _raise_inversion(first_inversion(nodes, [agent.agent_id], rows.skus(), rows))


def _raise_inversion(inversion: dict[str, Any] | None) -> None:
    if inversion is not None:
        raise make_error(ErrorCode.PRICE_BELOW_PARENT,
                         "an agent's price may not be below its parent's", inversion)


def neighbourhood(session: Session, changed: Collection[str],
                  extra: Collection[str] = ()) -> dict[str, AgentView]:
    """Views of the ``changed`` agents, their parents and direct sub-agents, and ``extra``."""
    columns = select(Agent.agent_id, Agent.parent_id, Agent.status, Agent.grade, Agent.currency)
    nodes: dict[str, AgentView] = {}

    def add(statement: Executable) -> None:
        for row in session.execute(statement):
            nodes[row.agent_id] = AgentView(*row)

    for chunk in _chunks({*changed, *extra}):
        add(columns.where(Agent.agent_id.in_(chunk)))
    for chunk in _chunks(changed):
        add(columns.where(Agent.parent_id.in_(chunk)))
    parents = {nodes[a].parent_id for a in changed if a in nodes} - nodes.keys() - {None}
    for chunk in _chunks({parent for parent in parents if parent is not None}):
        add(columns.where(Agent.agent_id.in_(chunk)))
    return nodes


def load_rows(session: Session, nodes: Iterable[AgentView], sku: str | None) -> PriceRows:
    """The overrides of ``nodes`` and the grade rows of their grades (of ``sku``, or all)."""
    node_list = list(nodes)
    rows = PriceRows({}, {})
    for chunk in _chunks({node.agent_id for node in node_list}):
        _add_rows(rows, session, Price.agent_id.in_(chunk), sku)
    for chunk in _chunks({node.grade for node in node_list}):
        _add_rows(rows, session, Price.grade.in_(chunk), sku)
    return rows


def _audit_price(session: Session, action: str, sku: str, actor: str, now_ms: int,
                 actor_agent_id: str | None, details: dict[str, Any]) -> None:
    if actor_agent_id is not None:
        details = {**details, "by_agent": actor_agent_id}
    audit.append(session, actor=actor, action=action, object_type="price", object_id=sku,
                 details=details, at_ms=now_ms)


def list_prices(session: Session, *, sku: str | None = None, grade: str | None = None,
                agent_id: str | None = None, after_price_id: int | None = None,
                limit: int = LIST_LIMIT_MAX) -> list[dict[str, Any]]:
    """Price rows matching every given filter, by ``price_id`` after ``after_price_id``, at most
    ``limit``. Reads only. Errors: INVALID_ARGUMENT, LIMIT_EXCEEDED (limit)."""
    _check_limit(limit)
    statement = select(Price).order_by(Price.price_id).limit(limit)
    for column, value in ((Price.sku, sku), (Price.grade, grade), (Price.agent_id, agent_id)):
        if value is not None:
            statement = statement.where(column == value)
    if after_price_id is not None:
        statement = statement.where(Price.price_id > after_price_id)
    return [price_dict(row) for row in session.scalars(statement)]


def price_dict(row: Price) -> dict[str, Any]:
    return {"price_id": row.price_id, "sku": row.sku, "grade": row.grade,
            "agent_id": row.agent_id, "price_minor": row.price_minor, "currency": row.currency,
            "visible": row.visible, "set_by": row.set_by, "updated_at_ms": row.updated_at_ms}
