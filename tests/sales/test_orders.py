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

from cardsvc.access.risk import RiskLimits
from cardsvc.agents import pricing
from cardsvc.catalog.batches import BatchMeta, CodeInput
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.money import settlement
from cardsvc.reports import reconciliation_report
from cardsvc.runtime import Runtime
from cardsvc.sales import OrderRequest, OrderView
from tests.fixtures.runtime import balances

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
