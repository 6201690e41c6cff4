"""Roll-ups folded from the ledger, and the dashboards read from them.

Goal: the dashboard's money reconciles to the cent with the ledger (gmv = commission + cost +
profit for every day, channel and SKU; the sums of profit and cost equal the platform's revenue
and cost-of-goods postings), refunds subtract on their own day, a fold page boundary inside a
transaction counts nothing twice, and a rebuild gives the same rows. Method: a three-level
agent tree buying through the real order saga (the HTTP app's runtime), folded with page sizes
down to one posting.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from cardsvc.money.tables import Account, Posting
from cardsvc.reports import Rollups
from cardsvc.reports.tables import RollupState, SalesDaily, SalesHourly
from cardsvc.runtime import Runtime
from tests.fixtures.http import Api

pytestmark = pytest.mark.anyio


async def shop(api: Api) -> Runtime:
    """TOP (80) > MID (90) > LEAF (100), SKU NF costing 50; LEAF buys 2 + 3 codes, the first
    order is refunded; A1 (standard grade) buys one VIP."""
    await api.admin("POST", "/v1/skus", {"sku": "NF", "name": "Netflix", "cost_minor": 50}, 201)
    await api.admin("POST", "/v1/batches", {"sku": "NF", "generate": {"count": 10},
                                            "unit_cost_minor": 50, "currency": "CNY"}, 201)
    await api.admin("POST", "/v1/agents", {"agent_id": "TOP", "name": "Top"}, 201)
    await api.admin("POST", "/v1/agents", {"agent_id": "MID", "name": "Mid",
                                           "parent_id": "TOP"}, 201)
    await api.admin("POST", "/v1/agents", {"agent_id": "LEAF", "name": "Leaf",
                                           "parent_id": "MID"}, 201)
    for agent_id, price in (("TOP", 80), ("MID", 90), ("LEAF", 100)):
        await api.admin("PUT", "/v1/prices", {"sku": "NF", "agent_id": agent_id,
                                              "price_minor": price, "currency": "CNY"}, 200)
    await api.admin("POST", "/v1/agents/LEAF/deposits", {"amount_minor": 10_000,
                                                          "currency": "CNY",
                                                          "reference": "w"}, 201)
    leaf = api.key("agent", agent_id="LEAF")
    first = await api.call("POST", "/v1/orders", leaf, json={"sku": "NF", "quantity": 2,
                                                             "client_order_id": "o1"})
    await api.call("POST", "/v1/orders", leaf, json={"sku": "NF", "quantity": 3,
                                                     "client_order_id": "o2"})
    await api.admin("POST", f"/v1/orders/{first.json()['order_id']}/refund",
                    {"reason": "test"}, 200)
    await api.call("POST", "/v1/orders", api.keys["agent"], json={
        "sku": "VIP", "quantity": 1, "client_order_id": "v1"})
    return api.runtime


def folder(runtime: Runtime) -> Rollups:
    return Rollups(runtime.db, runtime.engine.now_ms, "Asia/Shanghai", lag_ms=0)


def ledger_total(runtime: Runtime, kind: str) -> int:
    with runtime.db.read() as session:
        return int(session.scalar(select(func.sum(Posting.amount_minor))
                                  .join(Account, Account.account_id == Posting.account_id)
                                  .where(Account.kind == kind)) or 0)


def daily_rows(runtime: Runtime) -> list[tuple[object, ...]]:
    with runtime.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(SalesDaily.channel, SalesDaily.sku, SalesDaily.orders, SalesDaily.refunds,
                   SalesDaily.quantity, SalesDaily.gmv_minor, SalesDaily.commission_minor,
                   SalesDaily.cost_minor, SalesDaily.profit_minor)
            .order_by(SalesDaily.channel, SalesDaily.sku))]


async def test_the_fold_reconciles_with_the_ledger_to_the_cent(catalog: Api) -> None:
    runtime = await shop(catalog)
    rollups = folder(runtime)
    rollups.catch_up()
    assert rollups.check() == []
    rows = daily_rows(runtime)
    # LEAF's 5 codes at 100, minus the refunded 2: GMV 300, commissions (10+10) x 3, cost 150,
    # profit (80-50) x 3. A1's VIP at 10.00, no cost known: all profit.
    assert ("TOP", "NF", 2, 1, 3, 300, 60, 150, 90) in rows
    assert ("A1", "VIP", 1, 0, 1, 1000, 0, 0, 1000) in rows
    for _, _, _, _, _, gmv, commission, cost, profit in rows:
        assert gmv == commission + cost + profit
    assert sum(row[8] for row in rows) == ledger_total(runtime, "revenue")
    assert sum(row[7] for row in rows) == ledger_total(runtime, "cost_of_goods")
    with runtime.db.read() as session:
        hourly = session.execute(select(func.sum(SalesHourly.gmv_minor),
                                        func.sum(SalesHourly.quantity))).one()
    assert tuple(hourly) == (1300, 4)


async def test_any_page_size_folds_each_posting_once(catalog: Api) -> None:
    runtime = await shop(catalog)
    whole = folder(runtime)
    whole.catch_up()
    expected = daily_rows(runtime)
    one_at_a_time = folder(runtime)
    with runtime.db.write() as session:
        session.query(SalesDaily).delete()
        session.query(SalesHourly).delete()
    with runtime.db.write() as session:
        session.query(RollupState).delete()
    while one_at_a_time.refresh(postings_max=1):
        pass
    assert daily_rows(runtime) == expected
    assert one_at_a_time.rebuild() > 0
    assert daily_rows(runtime) == expected


async def test_the_dashboard_reads_the_rollups_by_channel_sku_and_hour(catalog: Api) -> None:
    runtime = await shop(catalog)
    runtime.rollups = folder(runtime)
    runtime.dashboards.rollups = runtime.rollups
    runtime.rollups.catch_up()
    admin = runtime.keys.authenticate(catalog.keys["admin"])
    today = runtime.dashboards.today()
    overview = runtime.dashboards.overview(admin, today, today)
    (total,) = overview.totals
    assert (total.gmv_minor, total.orders, total.refunds) == (1300, 3, 1)
    assert total.gmv_minor == total.commission_minor + total.cost_minor + total.profit_minor
    assert {s.key for s in overview.by_channel} == {"TOP", "A1"}
    assert {s.name for s in overview.by_sku} == {"Netflix", "VIP month"}
    now = runtime.engine.now_ms()
    hours = runtime.dashboards.per_hour(admin, now - 3 * 3_600_000, now + 1)
    assert sum(point.orders for point in hours) == 3
    stock = {(row.sku, row.pool): row for row in runtime.dashboards.stock(admin)}
    assert stock[("NF", "shared")].available == 5  # refunded codes are void, not back
    assert stock[("NF", "shared")].sold_7d == 3
    assert stock[("NF", "shared")].days_of_cover is not None
    with pytest.raises(Exception) as refused:
        runtime.dashboards.overview(admin, date(2020, 1, 1), date(2022, 1, 1))
    assert getattr(refused.value, "code", None) == "LIMIT_EXCEEDED"
