"""A ``Runtime`` over a temporary data directory with one SKU (VIP, priced 100 for the standard
grade, 3 codes from supplier ACME at cost 40), agent A1 funded with 10,000 and one order of one
code: what both reports read. The domain only: no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.access import Principal
from cardsvc.access.risk import RiskLimits
from cardsvc.agents import pricing
from cardsvc.catalog.batches import BatchMeta, CodeInput
from cardsvc.engine.store import StoreConfig
from cardsvc.money import settlement
from cardsvc.runtime import Runtime, ServiceConfig
from cardsvc.sales import OrderRequest, OrderView

CODES = ["TRACE-0001-AAAA", "TRACE-0002-BBBB", "TRACE-0003-CCCC"]
TERMINAL = Principal(key_id="till-1", role="terminal", agent_id=None,
                     scopes=frozenset({"verify", "redeem", "rollback"}), skus=None, limits={})


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=tmp_path / "data"),
                                         risk=RiskLimits()))
    try:
        runtime.catalog.create_sku("VIP", "vip", actor="test", cost_minor=40)
        runtime.agent_updates.create_agent("A1", "a", actor="test")
        now_ms = runtime.engine.now_ms()
        with runtime.db.write() as session:
            pricing.set_price(session, sku="VIP", price_minor=100, currency="CNY",
                              grade="standard", actor="test", now_ms=now_ms)
            settlement.deposit(session, "A1", 10_000, "CNY", "seed", "test", now_ms)
        runtime.batches.import_codes(BatchMeta("VIP", supplier="ACME", unit_cost_minor=40,
                                               currency="CNY"),
                                     [CodeInput(code) for code in CODES], actor="test")
        yield runtime
    finally:
        runtime.close()


def order_one(services: Runtime, client_order_id: str = "o-1") -> OrderView:
    order, _ = asyncio.run(services.orders.place(OrderRequest("A1", client_order_id, "VIP", 1),
                                                 actor="test", limits=RiskLimits()))
    return order
