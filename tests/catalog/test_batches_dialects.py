"""Goal: the import saga and delivery work the same on SQLite and PostgreSQL: payloads written
with the driver's own bulk insert open to the codes imported, duplicates are reported, and an
order delivers them.

Method: ``Runtime`` over a temporary data directory with the SQL store on each dialect
(``database_url`` fixture: a real throwaway PostgreSQL server).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cardsvc.access.risk import RiskLimits
from cardsvc.agents import pricing
from cardsvc.catalog.batches import BatchMeta, CodeInput
from cardsvc.engine.store import StoreConfig
from cardsvc.money import settlement
from cardsvc.runtime import Runtime, ServiceConfig
from cardsvc.sales.orders import OrderRequest


def test_import_reveal_and_deliver_on_each_dialect(tmp_path: Path, database_url: str) -> None:
    services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=tmp_path / "data"),
                                           database_url=database_url))
    try:
        services.catalog.create_sku("VIP", "vip", actor="t")
        codes = [CodeInput(f"DIALECT-{i:05d}", f"{i:04d}") for i in range(3000)]
        result = services.batches.import_codes(BatchMeta("VIP"), [*codes, codes[0]], actor="t")
        assert (result.imported, [d["index"] for d in result.duplicates]) == (3000, [3000])
        ids = services.engine.batch_code_ids(result.batch_id)
        opened = services.revealer.reveal(ids)
        assert sorted(opened) == sorted((c.code, c.pin) for c in codes)
        services.agent_updates.create_agent("A1", "a", actor="t")
        with services.db.write() as session:
            pricing.set_price(session, sku="VIP", price_minor=100, currency="CNY",
                              grade="standard", actor="t", now_ms=0)
            settlement.deposit(session, "A1", 10_000, "CNY", "seed", "t", 0)
        order, created = asyncio.run(services.orders.place(
            OrderRequest("A1", "o-1", "VIP", 5), actor="t", limits=RiskLimits()))
        assert created and len(order.codes) == 5
    finally:
        services.close()
