"""Goal: orders placed at once by agents whose balances run out mid-group never overspend: the
group commit decides each order against the balance the orders before it in the same group left,
every order beyond an agent's means is refused with INSUFFICIENT_BALANCE (and takes no code, no
money), and the ledger, the orders and the stock reconcile afterwards.

Method: 8 agents, each funded for a different number of orders (2..9 of 8 asked: some run out,
some do not), place 8 orders each, all 64 submitted at once on one event loop so that they land
in the same SQL commit groups (``cardsvc.db.batcher``); on SQLite and PostgreSQL (the
``services`` fixture). Then per agent: the fulfilled orders are exactly what its funds buy, the
balance is the funds less what they cost and never negative, and the reconciliation report
(``cardsvc.reports``) finds no difference.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.access.risk import RiskLimits
from cardsvc.agents import pricing
from cardsvc.catalog.batches import BatchMeta, CodeInput
from cardsvc.db import BatchKind
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.money import ledger, settlement
from cardsvc.money.tables import Commission
from cardsvc.reports import reconciliation_report
from cardsvc.runtime import Runtime
from cardsvc.sales import OrderRequest, OrderView
from cardsvc.sales.orders import _Begin, _Finish
from cardsvc.sales.tables import Order
from tests.fixtures.runtime import FUNDS_MINOR, PRICE_MINOR, balances

AGENTS = [f"C{i}" for i in range(8)]
ORDERS_EACH = 8
PRICE = 1_000


def affordable(index: int) -> int:
    """Orders agent ``index`` can pay for: 2, 3, ... 9 (the last two never run out)."""
    return index + 2


def test_64_concurrent_orders_from_8_agents_running_out_never_overspend(
    services: Runtime,
) -> None:
    services.catalog.create_sku("RUN", "run out", actor="test")
    now_ms = services.engine.now_ms()
    for agent_id in AGENTS:
        services.agent_updates.create_agent(agent_id, agent_id, actor="test")
    with services.db.write() as session:
        pricing.set_price(session, sku="RUN", price_minor=PRICE, currency="CNY",
                          grade="standard", actor="test", now_ms=now_ms)
        for index, agent_id in enumerate(AGENTS):
            # a little over what the orders cost: the rest must stay untouched
            settlement.deposit(session, agent_id, affordable(index) * PRICE + PRICE // 2,
                               "CNY", f"seed-{agent_id}", "test", now_ms)
    codes = [CodeInput(f"RUNCODE-{i:04d}-QRST") for i in range(len(AGENTS) * ORDERS_EACH)]
    services.batches.import_codes(BatchMeta("RUN"), codes, actor="test")
    limits = RiskLimits(enabled=False)

    async def place(agent_id: str, n: int) -> OrderView | CardsvcError:
        request = OrderRequest(agent_id, f"{agent_id}-o{n}", "RUN", 1)
        try:
            view, created = await services.orders.place(request, actor="test", limits=limits)
        except CardsvcError as error:
            return error
        assert created
        return view

    async def everyone() -> list[OrderView | CardsvcError]:
        # interleaved, so that every commit group mixes agents and each runs out inside one
        return await asyncio.gather(*(place(agent_id, n) for n in range(ORDERS_EACH)
                                      for agent_id in AGENTS))

    outcomes = asyncio.run(everyone())
    assert len(outcomes) == len(AGENTS) * ORDERS_EACH
    refusals = [o for o in outcomes if isinstance(o, CardsvcError)]
    assert {error.code for error in refusals} <= {ErrorCode.INSUFFICIENT_BALANCE}
    fulfilled = [o for o in outcomes if not isinstance(o, CardsvcError)]
    assert all(view.status == "fulfilled" and len(view.codes) == 1 for view in fulfilled)
    for index, agent_id in enumerate(AGENTS):
        mine = [view for view in fulfilled if view.agent_id == agent_id]
        expected = min(ORDERS_EACH, affordable(index))
        assert len(mine) == expected, (agent_id, len(mine))
        funds = affordable(index) * PRICE + PRICE // 2
        available = balances(services, agent_id)["available"]
        assert available == funds - expected * PRICE >= 0, (agent_id, available)
    assert len(refusals) == sum(max(0, ORDERS_EACH - affordable(i)) for i in range(len(AGENTS)))
    delivered = [code.code for view in fulfilled for code in view.codes]
    assert len(set(delivered)) == len(delivered)  # no code sold twice
    assert services.catalog.stock("RUN")["allocated"] == len(fulfilled)
    report = reconciliation_report(services.store, services.db, services.catalog)
    assert report["ok"], report["differences"]


# ----- the batched commit group against the one-order units ----------------------------------
#
# Method: two mirrored worlds in one runtime, ``A-*`` and ``B-*`` (a top agent over three
# agents, the same prices, funds, suspension and daily quota; SKU ``M`` in stock, SKU ``N``
# missing). Random rounds of order requests (few client order ids, so retries and clashing
# reuses happen inside a group and across groups) run step 1 through the batch kind's
# ``run_batch`` in world A and through ``run_one`` for each order, one savepoint each, in world
# B; the allocated orders then run step 3 the same two ways (one order driven twice). Every
# outcome, every order row and every balance must be the same in both worlds.

WORLD_AGENTS = ("0", "1", "2", "3")
"""Agent 2 has a daily quota of 3; agent 3 is suspended."""


def _world(services: Runtime, world: str, funds: list[int]) -> None:
    services.agent_updates.create_agent(f"{world}-T", "top", actor="test")
    for name in WORLD_AGENTS:
        services.agent_updates.create_agent(f"{world}-{name}", name, actor="test",
                                            parent_id=f"{world}-T")
    now_ms = services.engine.now_ms()
    with services.db.write() as session:
        pricing.set_price(session, sku="M", price_minor=700, currency="CNY",
                          agent_id=f"{world}-T", actor="test", now_ms=now_ms)
        for name, amount in zip(WORLD_AGENTS, funds, strict=True):
            settlement.deposit(session, f"{world}-{name}", amount, "CNY", f"seed-{name}",
                               "test", now_ms)
    services.agent_updates.change(f"{world}-2", {"daily_order_quota": 3}, actor="test",
                                  actor_agent_id=None)
    services.agent_updates.change(f"{world}-3", {"status": "suspended"}, actor="test",
                                  actor_agent_id=None)


def _neutral(world: str, value: object) -> object:
    """``value`` with the world's agent names made world-free (``X-``)."""
    if isinstance(value, str):
        return value.replace(f"{world}-", "X-")
    if isinstance(value, dict):
        return {key: _neutral(world, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_neutral(world, item) for item in value]
    return value


def _described(world: str, outcome: object, order_ids: dict[str, int]) -> object:
    """An outcome without its random ids: an error's code and details, or the order's facts
    with its id replaced by the position of the request that created it."""
    if isinstance(outcome, CardsvcError):
        details = {key: value for key, value in outcome.details.items()
                   if key not in ("order_id", "txn_id", "retry_after_s")}  # ids, wall clock
        return ("error", outcome.code, _neutral(world, details))
    assert isinstance(outcome, tuple)
    row = outcome[0]
    facts = (row.status, row.sku, row.quantity, row.total_minor, row.pools,
             _neutral(world, row.price_chain), row.code_ids is not None)
    return ("order", order_ids.setdefault(row.order_id, len(order_ids)), facts, outcome[1:])


def _world_state(services: Runtime, world: str) -> object:
    with services.db.read() as session:
        money = {name: ledger.agent_balances(session, f"{world}-{name}")
                 for name in (*WORLD_AGENTS, "T")}
        orders = sorted(
            (row.agent_id[len(world):], row.client_order_id, row.status, row.sku, row.quantity,
             row.total_minor, len(row.code_ids or []))
            for row in session.scalars(select(Order).where(Order.agent_id.like(f"{world}-%"))))
        commissions = sorted(
            (row.agent_id[len(world):], row.amount_minor, row.status)
            for row in session.scalars(select(Commission)
                                       .where(Commission.agent_id.like(f"{world}-%"))))
    return money, orders, commissions


def test_batched_groups_equal_the_one_order_units(services: Runtime) -> None:
    services.catalog.create_sku("M", "model", actor="test")
    services.batches.import_codes(
        BatchMeta("M"), [CodeInput(f"MODELCODE-{i:05d}-QRST") for i in range(400)], actor="test")
    now_ms = services.engine.now_ms()
    with services.db.write() as session:
        pricing.set_price(session, sku="M", price_minor=1_000, currency="CNY",
                          grade="standard", actor="test", now_ms=now_ms)
    funds = [9_500, 4_200, 100_000, 100_000]
    for world in ("A", "B"):
        _world(services, world, funds)
    orders = services.orders
    rng = random.Random(12)
    limits = RiskLimits(enabled=True)
    ids: dict[str, dict[str, int]] = {"A": {}, "B": {}}
    refused: set[ErrorCode] = set()
    for _round in range(4):
        plan = [(rng.choice(WORLD_AGENTS), f"c{rng.randrange(14)}", rng.choice("MMMMN"),
                 rng.choice((1, 1, 1, 2))) for _ in range(24)]
        begun: dict[str, list[object]] = {}
        for world in ("A", "B"):
            items = [_Begin(OrderRequest(f"{world}-{agent}", client, sku, qty), "test",
                            services.engine.now_ms(), limits)
                     for agent, client, sku, qty in plan]
            with services.db.write() as session:
                begun[world] = (list(orders.begin_kind.run_batch(session, items))
                                if world == "A" else [_one(session, orders.begin_kind, item)
                                                      for item in items])
        assert ([_described("A", o, ids["A"]) for o in begun["A"]]
                == [_described("B", o, ids["B"]) for o in begun["B"]])
        assert _world_state(services, "A") == _world_state(services, "B")
        refused |= {o.code for o in begun["A"] if isinstance(o, CardsvcError)}
        finished: dict[str, list[object]] = {}
        for world in ("A", "B"):
            rows = [o[0] for o in begun[world]
                    if isinstance(o, tuple) and o[1] and o[0].status == "pending"]
            finishing: list[_Finish] = []
            for row in rows + rows[:1]:  # the first order driven twice
                codes = orders._allocate(row)
                finishing.append(_Finish(row, tuple(codes),
                                         orders._batches_of(codes), "test",
                                         services.engine.now_ms()))
            services.store.wait_last()
            with services.db.write() as session:
                finished[world] = (list(orders.finish_kind.run_batch(session, finishing))
                                   if world == "A" else [_one(session, orders.finish_kind, item)
                                                         for item in finishing])
        assert ([_described("A", (o[0], o[1] is not None) if isinstance(o, tuple) else o,
                            ids["A"]) for o in finished["A"]]
                == [_described("B", (o[0], o[1] is not None) if isinstance(o, tuple) else o,
                               ids["B"]) for o in finished["B"]])
        assert _world_state(services, "A") == _world_state(services, "B")
    assert refused == {ErrorCode.INSUFFICIENT_BALANCE, ErrorCode.RATE_LIMITED,
                       ErrorCode.AGENT_SUSPENDED, ErrorCode.SKU_NOT_FOUND,
                       ErrorCode.IDEMPOTENCY_KEY_REUSED}  # the seed reaches every refusal
    report = reconciliation_report(services.store, services.db, services.catalog)
    assert report["ok"], report["differences"]


def _one(session: Session, kind: BatchKind[Any, Any], item: object) -> object:
    """One item as an ordinary unit of the group commit: its own savepoint."""
    try:
        with session.begin_nested():
            return kind.run_one(session, item)
    except CardsvcError as error:
        return error


def test_a_group_of_orders_refuses_some_and_commits_the_rest(shop: Runtime) -> None:
    # A1 can pay for 10 codes at 1,000; the group asks for 12 with a duplicate client order id,
    # a clashing reuse of one, a missing SKU and an unknown agent among them.
    orders = shop.orders
    limits = RiskLimits(enabled=False)
    requests = [OrderRequest("A1", f"g{i}", "VIP", 1) for i in range(11)]
    requests[3] = OrderRequest("A1", "g2", "VIP", 1)  # the same order again: a retry
    requests[4] = OrderRequest("A1", "g2", "VIP", 2)  # the same id, another order
    requests[5] = OrderRequest("A1", "g5", "NOPE", 1)
    requests[6] = OrderRequest("NOBODY", "g6", "VIP", 1)
    items = [_Begin(request, "test", shop.engine.now_ms(), limits) for request in requests]
    with shop.db.write() as session:
        outcomes = orders.begin_kind.run_batch(session, items)
    codes = [o.code if isinstance(o, CardsvcError) else ("new" if o[1] else "again")
             for o in outcomes]
    assert codes == ["new", "new", "new", "again", ErrorCode.IDEMPOTENCY_KEY_REUSED,
                     ErrorCode.SKU_NOT_FOUND, ErrorCode.AGENT_NOT_FOUND, "new", "new", "new",
                     "new"]
    reused = outcomes[4]
    assert isinstance(reused, CardsvcError) and reused.details["field"] == "quantity"
    again = outcomes[3]
    assert isinstance(again, tuple) and again[0].order_id == outcomes[2][0].order_id  # type: ignore[index]
    assert balances(shop, "A1")["available"] == FUNDS_MINOR - 7 * PRICE_MINOR
    more = [_Begin(OrderRequest("A1", f"h{i}", "VIP", 1), "test", shop.engine.now_ms(), limits)
            for i in range(5)]
    with shop.db.write() as session:
        outcomes = orders.begin_kind.run_batch(session, more)
    assert [o.code if isinstance(o, CardsvcError) else "new" for o in outcomes] == [
        "new", "new", "new", ErrorCode.INSUFFICIENT_BALANCE, ErrorCode.INSUFFICIENT_BALANCE]
    assert balances(shop, "A1") == {"available": 0, "escrow": FUNDS_MINOR, "pending": 0,
                                    "withdrawing": 0}


def test_a_failing_batch_falls_back_to_one_order_units(
    services: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    services.catalog.create_sku("RUN", "run out", actor="test")
    services.agent_updates.create_agent("C0", "c0", actor="test")
    now_ms = services.engine.now_ms()
    with services.db.write() as session:
        pricing.set_price(session, sku="RUN", price_minor=PRICE, currency="CNY",
                          grade="standard", actor="test", now_ms=now_ms)
        settlement.deposit(session, "C0", 3 * PRICE, "CNY", "seed", "test", now_ms)
    services.batches.import_codes(BatchMeta("RUN"), [CodeInput(f"RUNCODE-{i:04d}-QRST")
                                                     for i in range(4)], actor="test")

    def broken(session: Session, items: Sequence[_Begin]) -> list[Any]:
        raise ZeroDivisionError

    monkeypatch.setattr(services.orders, "begin_kind",
                        dataclasses.replace(services.orders.begin_kind, run_batch=broken))

    async def everyone() -> list[OrderView | CardsvcError]:
        async def one(n: int) -> OrderView | CardsvcError:
            try:
                return (await services.orders.place(OrderRequest("C0", f"f{n}", "RUN", 1),
                                                    actor="test",
                                                    limits=RiskLimits(enabled=False)))[0]
            except CardsvcError as error:
                return error
        return await asyncio.gather(*(one(n) for n in range(4)))

    outcomes = asyncio.run(everyone())
    assert sorted(o.code.value if isinstance(o, CardsvcError) else o.status
                  for o in outcomes) == ["INSUFFICIENT_BALANCE", "fulfilled", "fulfilled",
                                         "fulfilled"]
    assert services.batcher.fallbacks >= 1
    report = reconciliation_report(services.store, services.db, services.catalog)
    assert report["ok"], report["differences"]
