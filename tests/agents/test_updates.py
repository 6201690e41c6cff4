"""Goal: creating a pool for an agent assigns it to that agent in the same transaction, by the
rules of ``assign_pool`` (issue 10, item 10), and prices are bounded so that no order of any
allowed size overflows (item 8).

Method: ``AgentUpdates`` and the order saga on a Runtime (tests/fixtures/runtime.py), SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio

import pytest

from cardsvc.access import RiskLimits
from cardsvc.agents import pricing, tree
from cardsvc.checks import PRICE_MINOR_MAX
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.runtime import Runtime
from cardsvc.sales import OrderRequest


def test_a_pool_created_for_an_agent_is_its_pool_and_its_orders_draw_from_it(
    shop: Runtime,
) -> None:
    created = shop.agent_updates.create_pool("a1-pool", agent_id="A1", actor="admin")
    assert created["agent_id"] == "A1"
    assert tree.get_agent(shop.db, "A1")["pool_id"] == created["pool_id"]
    shop.catalog.move_stock("VIP", 2, "shared", "a1-pool", actor="admin")
    shop.agent_updates.change("A1", {"pool_policy": "own_only"}, actor="admin",
                              actor_agent_id=None)
    order, _ = asyncio.run(shop.orders.place(OrderRequest("A1", "o-1", "VIP", 2), actor="t",
                                             limits=RiskLimits(enabled=False)))
    assert {shop.engine.code_info(shop.engine.lookup(c.code)).pool for c in order.codes} == {
        created["pool_id"]}
    second = shop.agent_updates.create_pool("a1-pool-2", agent_id="A1", actor="admin")
    assert tree.get_agent(shop.db, "A1")["pool_id"] == second["pool_id"]  # the old one freed
    with pytest.raises(CardsvcError) as missing:
        shop.agent_updates.create_pool("ghost-pool", agent_id="ghost", actor="admin")
    assert missing.value.code is ErrorCode.AGENT_NOT_FOUND


def test_prices_above_the_per_code_bound_are_refused_so_orders_cannot_overflow(
    shop: Runtime,
) -> None:
    with shop.db.write() as session, pytest.raises(CardsvcError) as refused:
        pricing.set_price(session, sku="VIP", price_minor=PRICE_MINOR_MAX + 1, currency="CNY",
                          agent_id="A1", actor="t", now_ms=shop.engine.now_ms())
    assert refused.value.code is ErrorCode.LIMIT_EXCEEDED
