"""Goal: the import saga and the order saga finish or undo whatever a crash interrupted: a
batch whose payloads never committed is voided (none of its codes can ever be sold), a batch
whose payloads committed but whose codes never left staging is finished, and a pending order is
driven to fulfilled (with the codes the core already allocated to it, if any) or failed.

Method: ``Runtime`` over a temporary data directory; each test runs a saga's steps by hand up
to a crash point, closes the services (the journal is flushed, as the wait before each SQL step
guarantees), reopens them (which runs the recovery passes), and checks the result.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cardsvc.access.risk import RiskLimits
from cardsvc.agents import pricing
from cardsvc.catalog.batches import STAGING_POOL_BASE, BatchMeta, CodeInput
from cardsvc.catalog.tables import Batch
from cardsvc.engine.store import StoreConfig
from cardsvc.money import ledger, settlement
from cardsvc.reports import reconciliation_report
from cardsvc.runtime import Runtime, ServiceConfig
from cardsvc.sales.orders import OrderRequest


def open_services(data_dir: Path) -> Runtime:
    return Runtime.open(ServiceConfig(store=StoreConfig(data_dir=data_dir), risk=RiskLimits()))


def seeded(data_dir: Path) -> Runtime:
    services = open_services(data_dir)
    services.catalog.create_sku("VIP", "vip", actor="test")
    return services


def crash_after_core_import(services: Runtime, codes: list[str]) -> tuple[int, list[int]]:
    """Saga step 1 and the core half of step 2: the batch row and the codes in staging."""
    batch_id = services.batches.begin(BatchMeta("VIP"), actor="t", submitted=len(codes))
    ids, _ = services.engine.import_codes("VIP", codes, STAGING_POOL_BASE + batch_id,
                                          batch=batch_id)
    services.store.wait_last()
    return batch_id, ids


def test_batch_without_payloads_is_voided_at_restart(tmp_path: Path) -> None:
    services = seeded(tmp_path)
    batch_id, ids = crash_after_core_import(services, ["LOST-0001", "LOST-0002"])
    services.close()
    services = open_services(tmp_path)
    try:
        assert services.recovery["batches"] == {"failed": 1, "finished": 0}
        assert services.batches.get(batch_id)["status"] == "failed"
        assert {services.engine.code_info(i).state for i in ids} == {"void"}
        assert services.catalog.stock("VIP")["available"] == 0
    finally:
        services.close()


def test_batch_with_payloads_but_still_staging_is_finished_at_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = seeded(tmp_path)
    codes = ["KEPT-0001", "KEPT-0002", "KEPT-0003"]
    # Crash before step 4: the batch is ready, its codes still in the staging pool.
    monkeypatch.setattr(services.batches, "_release", lambda *args: 0)
    result = services.batches.import_codes(BatchMeta("VIP"), [CodeInput(c) for c in codes],
                                           actor="t")
    assert services.catalog.stock("VIP")["available"] == 0
    ids = services.engine.batch_code_ids(result.batch_id)
    services.close()
    services = open_services(tmp_path)
    try:
        assert services.recovery["batches"] == {"failed": 0, "finished": 1}
        assert services.catalog.stock("VIP")["available"] == 3
        assert [code for code, _ in services.revealer.reveal(ids)] == codes
    finally:
        services.close()


def pending_order(services: Runtime, quantity: int, ref: str = "o-1") -> str:
    """Saga step 1 of an order, run as the service runs it: the pending row with its price
    chain, and the buyer's debit into escrow."""
    request = OrderRequest("A1", ref, "VIP", quantity)
    now_ms = services.engine.now_ms()
    row, created = services.batcher.submit(
        lambda session: services.orders._begin(session, request, "t", now_ms, RiskLimits()))
    assert created
    return row.order_id


def with_agent_and_stock(tmp_path: Path, count: int) -> Runtime:
    """VIP priced 100 for the standard grade, agent A1 funded with 10,000, ``count`` codes."""
    services = seeded(tmp_path)
    services.agent_updates.create_agent("A1", "a", actor="t")
    now_ms = services.engine.now_ms()
    with services.db.write() as session:
        pricing.set_price(session, sku="VIP", price_minor=100, currency="CNY",
                          grade="standard", actor="t", now_ms=now_ms)
        settlement.deposit(session, "A1", 10_000, "CNY", "seed", "t", now_ms)
    services.batches.import_codes(BatchMeta("VIP"),
                                  [CodeInput(f"STOCK-{i:04d}") for i in range(count)], actor="t")
    return services


def balance(services: Runtime) -> dict[str, int]:
    with services.db.read() as session:
        return {k: v for k, v in ledger.agent_balances(session, "A1").items() if v}


def test_pending_order_allocated_before_the_crash_keeps_its_codes(tmp_path: Path) -> None:
    services = with_agent_and_stock(tmp_path, 5)
    order_id = pending_order(services, 2)
    allocated = services.engine.allocate("VIP", 2, order_id)
    services.store.wait_last()
    services.close()
    services = open_services(tmp_path)
    try:
        assert services.recovery["orders"] == {"fulfilled": 1, "failed": 0, "pending": 0}
        order = asyncio.run(services.orders.find("A1", "o-1"))
        assert order.status == "fulfilled"
        expected = [code for code, _ in services.revealer.reveal(allocated)]
        assert [c.code for c in order.codes] == expected
        assert services.catalog.stock("VIP")["allocated"] == 2
        assert balance(services) == {"available": 9_800}
        assert reconciliation_report(services.store, services.db, services.catalog)["ok"]
    finally:
        services.close()


def test_pending_order_never_allocated_is_fulfilled_or_failed(tmp_path: Path) -> None:
    services = with_agent_and_stock(tmp_path, 3)
    pending_order(services, 2, "fits")
    pending_order(services, 2, "too-many")
    services.close()
    services = open_services(tmp_path)
    try:
        assert services.recovery["orders"] == {"fulfilled": 1, "failed": 1, "pending": 0}
        statuses = {asyncio.run(services.orders.find("A1", ref)).status
                    for ref in ("fits", "too-many")}
        assert statuses == {"fulfilled", "failed"}
        assert services.catalog.stock("VIP")["allocated"] == 2
        assert balance(services) == {"available": 9_800}  # the failed order's debit released
        assert reconciliation_report(services.store, services.db, services.catalog)["ok"]
    finally:
        services.close()


def test_order_retry_after_failure_returns_the_same_failure(tmp_path: Path) -> None:
    services = with_agent_and_stock(tmp_path, 1)
    try:
        request = OrderRequest("A1", "big", "VIP", 2)
        errors = []
        for _ in range(2):
            try:
                asyncio.run(services.orders.place(request, actor="t", limits=RiskLimits()))
            except Exception as error:
                errors.append(error)
        assert [getattr(e, "code", None) for e in errors] == ["OUT_OF_STOCK"] * 2
        with services.db.read() as session:
            assert session.query(Batch).count() == 1
    finally:
        services.close()
