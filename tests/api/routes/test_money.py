"""Over HTTP: the agent tree buying through the order saga, with every posting checked.

Goal: prove the money rules end to end: a three-level chain buying one SKU posts exactly the
worked example's amounts (commissions up the chain, platform revenue and cost of goods); many
concurrent orders from one agent with money for only some succeed exactly as far as the money
goes; withdrawals never let money leave twice; a refund reverses everything; statements add up;
bad input changes nothing; and the reconciliation report agrees after all of it.

Method: httpx over ASGITransport against the real app (SQLite); balances through
``GET /v1/agents/{id}/balance``, postings through the ledger, checks through
``GET /v1/reconciliation``.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest
from sqlalchemy import select

from cardsvc.money.tables import LedgerTransaction, Posting
from tests.fixtures.http import Api

pytestmark = pytest.mark.anyio


async def tree(api: Api) -> dict[str, str]:
    """platform -> TOP (price 80) -> MID (price 90) -> LEAF (price 100); SKU NF cost 50 with
    20 codes; LEAF funded with 1,000. Returns each agent's key."""
    admin = api.keys["admin"]
    await api.admin("POST", "/v1/skus", {"sku": "NF", "name": "Netflix", "cost_minor": 50}, 201)
    await api.admin("POST", "/v1/batches", {"sku": "NF", "generate": {"count": 20},
                                            "unit_cost_minor": 50, "currency": "CNY"}, 201)
    await api.admin("POST", "/v1/agents", {"agent_id": "TOP", "name": "top"}, 201)
    await api.admin("PUT", "/v1/prices", {"sku": "NF", "agent_id": "TOP", "price_minor": 80,
                                          "currency": "CNY"}, 200)
    keys = {"TOP": api.key("agent", agent_id="TOP")}
    mid = await api.call("POST", "/v1/agents", keys["TOP"], json={"agent_id": "MID",
                                                                  "name": "mid"})
    assert mid.status_code == 201, mid.text
    keys["MID"] = api.key("agent", agent_id="MID")
    price = await api.call("PUT", "/v1/prices", keys["TOP"], json={
        "sku": "NF", "agent_id": "MID", "price_minor": 90, "currency": "CNY"})
    assert price.status_code == 200, price.text
    await api.call("POST", "/v1/agents", keys["MID"], json={"agent_id": "LEAF", "name": "leaf"})
    keys["LEAF"] = api.key("agent", agent_id="LEAF")
    await api.call("PUT", "/v1/prices", keys["MID"], json={
        "sku": "NF", "agent_id": "LEAF", "price_minor": 100, "currency": "CNY"})
    await api.admin("POST", "/v1/agents/LEAF/deposits", {"amount_minor": 1000, "currency": "CNY",
                                                          "reference": "wire-1"}, 201)
    del admin
    return keys


async def balances(api: Api, agent_id: str) -> dict[str, int]:
    body = await api.admin("GET", f"/v1/agents/{agent_id}/balance")
    return {k: v for k, v in body["balances"].items() if v}


def postings(api: Api, reference: str) -> dict[str, int]:
    with api.runtime.db.read() as session:
        rows = session.execute(select(Posting.account_id, Posting.amount_minor)
                               .join(LedgerTransaction,
                                     LedgerTransaction.txn_id == Posting.txn_id)
                               .where(LedgerTransaction.reference == reference)).all()
    return {account: amount for account, amount in rows}


async def test_three_level_chain_posts_the_worked_example(api: Api) -> None:
    keys = await tree(api)
    order = await api.call("POST", "/v1/orders", keys["LEAF"],
                           json={"sku": "NF", "quantity": 2, "client_order_id": "o-1"})
    assert order.status_code == 201, order.text
    body = order.json()
    assert (body["unit_price_minor"], body["total_minor"], len(body["codes"])) == (100, 200, 2)
    order_id = body["order_id"]
    assert postings(api, f"order:{order_id}:debit") == {
        "agent:LEAF:available": -200, "agent:LEAF:escrow": 200}
    assert postings(api, f"order:{order_id}:settle") == {
        "agent:LEAF:escrow": -200,
        "agent:MID:pending": 20,   # (100 - 90) x 2
        "agent:TOP:pending": 20,   # (90 - 80) x 2
        "platform:revenue:CNY": 60,   # (80 - 50) x 2
        "platform:cost_of_goods:CNY": 100,   # 50 x 2
    }
    assert await balances(api, "LEAF") == {"available": 800}
    assert await balances(api, "MID") == {"pending": 20}
    report = await api.admin("GET", "/v1/reconciliation")
    assert report["ok"], report["differences"]


async def test_concurrent_orders_spend_exactly_the_money_there_is(api: Api) -> None:
    keys = await tree(api)  # LEAF has 1,000 at 100 a code: exactly 10 orders of one code

    async def place(i: int) -> tuple[int, str]:
        response = await api.call("POST", "/v1/orders", keys["LEAF"], json={
            "sku": "NF", "quantity": 1, "client_order_id": f"c-{i}"})
        code = (response.json().get("error") or {}).get("code", "")
        return response.status_code, code

    results = await asyncio.gather(*(place(i) for i in range(16)))
    assert sum(status == 201 for status, _ in results) == 10
    assert [code for status, code in results if status != 201] == ["INSUFFICIENT_BALANCE"] * 6
    assert await balances(api, "LEAF") == {}
    stock = await api.admin("GET", "/v1/skus/NF/stock")
    assert (stock["allocated"], stock["available"]) == (10, 10)
    assert (await api.admin("GET", "/v1/reconciliation"))["ok"]


async def test_sub_agent_price_below_parent_is_refused(api: Api) -> None:
    keys = await tree(api)
    below = await api.call("PUT", "/v1/prices", keys["MID"], json={
        "sku": "NF", "agent_id": "LEAF", "price_minor": 85, "currency": "CNY"})
    assert below.status_code == 409
    assert below.json()["error"]["code"] == "PRICE_BELOW_PARENT"
    assert below.json()["error"]["details"]["parent_price_minor"] == 90
    foreign = await api.call("PUT", "/v1/prices", keys["TOP"], json={
        "sku": "NF", "agent_id": "LEAF", "price_minor": 120, "currency": "CNY"})
    assert foreign.status_code == 403  # LEAF is MID's sub-agent, not TOP's


async def test_agent_without_price_cannot_order(api: Api) -> None:
    keys = await tree(api)
    await api.admin("POST", "/v1/skus", {"sku": "UNPRICED", "name": "x"}, 201)
    response = await api.call("POST", "/v1/orders", keys["LEAF"], json={
        "sku": "UNPRICED", "quantity": 1, "client_order_id": "u"})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "NOT_FOR_SALE")
    assert await balances(api, "LEAF") == {"available": 1000}


async def test_catalog_shows_the_callers_price_and_stock(api: Api) -> None:
    keys = await tree(api)
    response = await api.call("GET", "/v1/catalog", keys["LEAF"])
    [item] = response.json()["items"]
    assert (item["sku"], item["price_minor"], item["available"]) == ("NF", 100, 20)


async def test_suspended_parent_blocks_its_subtree(api: Api) -> None:
    keys = await tree(api)
    await api.admin("PATCH", "/v1/agents/MID", {"status": "suspended"}, 200)
    response = await api.call("POST", "/v1/orders", keys["LEAF"], json={
        "sku": "NF", "quantity": 1, "client_order_id": "s"})
    assert response.json()["error"]["code"] == "AGENT_SUSPENDED"


async def test_cycle_in_the_tree_is_refused(api: Api) -> None:
    await tree(api)
    response = await api.call("PATCH", "/v1/agents/TOP", api.keys["admin"],
                              json={"parent_id": "LEAF"})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "AGENT_CYCLE")


@pytest.mark.parametrize("body", [
    {"amount_minor": 0, "currency": "CNY", "reference": "r"},
    {"amount_minor": -5, "currency": "CNY", "reference": "r"},
    {"amount_minor": 10, "currency": "cny", "reference": "r"},
    {"amount_minor": 1.5, "currency": "CNY", "reference": "r"},
    {"amount_minor": 10, "currency": "CNY"},
])
async def test_bad_deposits_change_nothing(api: Api, body: dict[str, Any]) -> None:
    await tree(api)
    response = await api.call("POST", "/v1/agents/LEAF/deposits", api.keys["admin"], json=body)
    assert response.status_code in (400, 422)
    assert await balances(api, "LEAF") == {"available": 1000}


async def test_deposit_retry_is_idempotent_and_reuse_names_the_field(api: Api) -> None:
    await tree(api)
    again = await api.call("POST", "/v1/agents/LEAF/deposits", api.keys["admin"], json={
        "amount_minor": 1000, "currency": "CNY", "reference": "wire-1"})
    assert again.status_code == 200
    other = await api.call("POST", "/v1/agents/LEAF/deposits", api.keys["admin"], json={
        "amount_minor": 999, "currency": "CNY", "reference": "wire-1"})
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert other.json()["error"]["details"]["field"] == "amount_minor"
    unknown = await api.call("POST", "/v1/agents/NOBODY/deposits", api.keys["admin"], json={
        "amount_minor": 1, "currency": "CNY", "reference": "x"})
    assert unknown.status_code == 404
    assert await balances(api, "LEAF") == {"available": 1000}


async def test_withdrawal_leaves_available_once_and_follows_its_states(api: Api) -> None:
    keys = await tree(api)
    over = await api.call("POST", "/v1/withdrawals", keys["LEAF"], json={
        "amount_minor": 1001, "currency": "CNY", "reference": "w-0"})
    assert over.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    made = await api.call("POST", "/v1/withdrawals", keys["LEAF"], json={
        "amount_minor": 600, "currency": "CNY", "reference": "w-1"})
    assert made.status_code == 201
    withdrawal_id = made.json()["withdrawal_id"]
    assert await balances(api, "LEAF") == {"available": 400, "withdrawing": 600}
    second = await api.call("POST", "/v1/withdrawals", keys["LEAF"], json={
        "amount_minor": 600, "currency": "CNY", "reference": "w-2"})
    assert second.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    early = await api.call("POST", f"/v1/withdrawals/{withdrawal_id}/paid",
                           api.keys["admin"], json={})
    assert early.json()["error"]["code"] == "WITHDRAWAL_NOT_PENDING"
    await api.admin("POST", f"/v1/withdrawals/{withdrawal_id}/approve", {}, 200)
    paid = await api.admin("POST", f"/v1/withdrawals/{withdrawal_id}/paid", {}, 200)
    assert paid["status"] == "paid"
    assert await balances(api, "LEAF") == {"available": 400}
    twice = await api.call("POST", f"/v1/withdrawals/{withdrawal_id}/reject",
                           api.keys["admin"], json={})
    assert twice.status_code == 409
    assert (await api.admin("GET", "/v1/reconciliation"))["ok"]


async def test_refund_reverses_the_order_and_voids_its_codes(api: Api) -> None:
    keys = await tree(api)
    order = (await api.call("POST", "/v1/orders", keys["LEAF"], json={
        "sku": "NF", "quantity": 2, "client_order_id": "r-1"})).json()
    refunded = await api.admin("POST", f"/v1/orders/{order['order_id']}/refund",
                               {"reason": "customer changed mind"}, 200)
    assert refunded["status"] == "refunded"
    assert await balances(api, "LEAF") == {"available": 1000}
    assert await balances(api, "MID") == {}
    stock = await api.admin("GET", "/v1/skus/NF/stock")
    assert stock["void"] == 2
    again = await api.admin("POST", f"/v1/orders/{order['order_id']}/refund",
                            {"reason": "twice"}, 200)
    assert again["status"] == "refunded"
    assert (await api.admin("GET", "/v1/reconciliation"))["ok"]


async def test_statement_opens_lists_and_closes(api: Api) -> None:
    keys = await tree(api)
    await api.call("POST", "/v1/orders", keys["LEAF"], json={
        "sku": "NF", "quantity": 1, "client_order_id": "st-1"})
    now = api.runtime.engine.now_ms()
    statement = await api.call("GET", "/v1/agents/LEAF/statement", keys["LEAF"],
                               params={"since_ms": 0, "until_ms": now + 1})
    body = statement.json()
    assert (body["opening_minor"], body["closing_minor"]) == (0, 900)
    assert [e["amount_minor"] for e in body["items"]] == [1000, -100]
    as_csv = await api.call("GET", "/v1/agents/LEAF/statement", keys["LEAF"],
                            params={"since_ms": 0, "until_ms": now + 1, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(as_csv.text)))
    other = await api.call("GET", "/v1/agents/MID/statement", keys["LEAF"],
                           params={"since_ms": 0, "until_ms": now + 1})
    assert other.status_code == 403


async def test_statements_default_to_this_month_take_iso_dates_and_come_in_pages(
        api: Api) -> None:
    keys = await tree(api)
    for i in range(3):
        await api.call("POST", "/v1/orders", keys["LEAF"], json={
            "sku": "NF", "quantity": 1, "client_order_id": f"pg-{i}"})
    now = api.runtime.engine.now_ms()
    plain = await api.call("GET", "/v1/agents/LEAF/statement", keys["LEAF"])
    assert plain.status_code == 200, plain.text  # no bounds: the current UTC month
    body = plain.json()
    assert body["since_ms"] <= now < body["until_ms"]
    assert body["since"].endswith("-01T00:00:00.000Z")
    assert [e["amount_minor"] for e in body["items"]] == [1000, -100, -100, -100]
    today = body["since"][:10]
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"since": today, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await api.call("GET", "/v1/agents/LEAF/statement", keys["LEAF"],
                               params=params)).json()
        pages.append([e["balance_after_minor"] for e in page["items"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == [[1000, 900, 800], [700]]
    assert page["closing_minor"] == 700 and page["opening_minor"] == 0
    as_csv = await api.call("GET", "/v1/agents/LEAF/statement", keys["LEAF"],
                            params={"format": "csv"})
    assert len(list(csv.reader(io.StringIO(as_csv.text)))) == 1 + 1 + 4 + 1
    for params in ({"since": "2026-13-01"}, {"since": "yesterday-ish"},
                   {"since": today, "since_ms": 0}, {"since": "2030-01-01", "until": today},
                   {"cursor": "bm9wZQ"}):
        bad = await api.call("GET", "/v1/agents/LEAF/statement", keys["LEAF"], params=params)
        assert bad.status_code in (400, 422), params
    other = await api.call("GET", "/v1/agents/MID/statement", keys["LEAF"])
    assert other.status_code == 403


async def test_withdrawals_are_listed_by_status_and_agents_see_only_their_own(
        api: Api) -> None:
    keys = await tree(api)
    await api.admin("POST", "/v1/agents/MID/deposits",
                    {"amount_minor": 500, "currency": "CNY", "reference": "mid-1"}, 201)
    ids = []
    for agent, reference in (("LEAF", "w-a"), ("MID", "w-b"), ("LEAF", "w-c")):
        made = await api.call("POST", "/v1/withdrawals", keys[agent], json={
            "amount_minor": 100, "currency": "CNY", "reference": reference})
        assert made.status_code == 201
        ids.append(made.json()["withdrawal_id"])
    replay = await api.call("POST", "/v1/withdrawals", keys["LEAF"], json={
        "amount_minor": 100, "currency": "CNY", "reference": "w-a"})
    assert (replay.status_code, replay.json()["withdrawal_id"]) == (200, ids[0])
    await api.admin("POST", f"/v1/withdrawals/{ids[0]}/approve", {}, 200)
    queue = await api.admin("GET", "/v1/withdrawals?status=requested", expect=200)
    assert [w["withdrawal_id"] for w in queue["items"]] == [ids[2], ids[1]]
    first = await api.admin("GET", "/v1/withdrawals?limit=2", expect=200)
    rest = await api.admin("GET", f"/v1/withdrawals?limit=2&cursor={first['next']}", expect=200)
    assert [w["withdrawal_id"] for w in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next"] is None
    own = (await api.call("GET", "/v1/withdrawals", keys["LEAF"])).json()
    assert [w["withdrawal_id"] for w in own["items"]] == [ids[2], ids[0]]
    spying = (await api.call("GET", "/v1/withdrawals?agent_id=MID", keys["LEAF"])).json()
    assert spying == {"items": [], "next": None}
    foreign = await api.call("GET", f"/v1/withdrawals/{ids[1]}", keys["LEAF"])
    assert foreign.json()["error"]["code"] == "WITHDRAWAL_NOT_FOUND"
    terminal = await api.call("GET", "/v1/withdrawals", api.keys["terminal"])
    assert terminal.status_code == 403
    bad = await api.call("GET", "/v1/withdrawals?status=lost", api.keys["admin"])
    assert bad.status_code == 422


async def test_orders_draw_from_the_agents_own_pool_first(api: Api) -> None:
    keys = await tree(api)
    await api.admin("POST", "/v1/pools", {"pool": "leaf-pool", "agent_id": "LEAF"}, 201)
    await api.admin("PATCH", "/v1/agents/LEAF", {"pool": "leaf-pool"}, 200)
    moved = await api.admin("POST", "/v1/pools/leaf-pool/stock", {"sku": "NF", "quantity": 3},
                            200)
    assert moved["moved"] == 3
    await api.call("POST", "/v1/orders", keys["LEAF"], json={
        "sku": "NF", "quantity": 2, "client_order_id": "p-1"})
    stock = await api.admin("GET", "/v1/skus/NF/stock")
    assert stock["by_pool"]["leaf-pool"]["allocated"] == 2
    assert stock["by_pool"]["shared"]["allocated"] == 0


async def test_daily_order_quota_of_the_agent_is_enforced(api: Api) -> None:
    keys = await tree(api)
    await api.admin("PATCH", "/v1/agents/LEAF", {"daily_order_quota": 2}, 200)
    statuses = []
    for i in range(3):
        response = await api.call("POST", "/v1/orders", keys["LEAF"], json={
            "sku": "NF", "quantity": 1, "client_order_id": f"q-{i}"})
        statuses.append(response.status_code)
    assert statuses == [201, 201, 429]
    assert response.json()["error"]["details"]["limit"] == "orders_per_agent_per_day_max"
    retry = await api.call("POST", "/v1/orders", keys["LEAF"], json={
        "sku": "NF", "quantity": 1, "client_order_id": "q-0"})
    assert retry.status_code == 200  # a retry is not a new order


# ----- commissions visible and released; currencies ---------------------------------


async def test_commissions_are_listed_with_their_release_date_and_released_when_due(
    api: Api,
) -> None:
    keys = await tree(api)
    placed = await api.call("POST", "/v1/orders", keys["LEAF"],
                            json={"sku": "NF", "quantity": 2, "client_order_id": "c-1"})
    assert placed.status_code == 201
    mine = await api.call("GET", "/v1/commissions", keys["MID"])
    [item] = mine.json()["items"]
    assert (item["agent_id"], item["amount_minor"], item["status"]) == ("MID", 20, "pending")
    assert item["release_at"] and mine.json()["next"] is None
    peek = await api.call("GET", "/v1/commissions?agent_id=TOP", keys["MID"])
    assert peek.status_code == 403
    every = await api.admin("GET", "/v1/commissions?limit=1")
    assert len(every["items"]) == 1 and every["next"] is not None
    rest = await api.admin("GET", f"/v1/commissions?limit=1&cursor={every['next']}")
    assert len(rest["items"]) == 1 and rest["next"] is None
    denied = await api.call("POST", "/v1/commissions/release-due", keys["TOP"])
    assert denied.status_code == 403
    assert (await api.admin("POST", "/v1/commissions/release-due", None, 200))["released"] == 0
    api.runtime.engine.set_clock_ms(item["release_at_ms"] + 1)
    try:
        assert (await api.admin("POST", "/v1/commissions/release-due", None,
                                200))["released"] == 2
    finally:
        api.runtime.engine.set_clock_ms(None)
    released = await api.admin("GET", "/v1/commissions?agent_id=MID&status=released")
    assert [c["commission_id"] for c in released["items"]] == [item["commission_id"]]
    assert (await balances(api, "MID"))["available"] == 20


async def test_a_deposit_in_another_currency_names_the_agents_currency(api: Api) -> None:
    await api.admin("POST", "/v1/agents", {"agent_id": "CN", "name": "cn"}, 201)
    response = await api.call("POST", "/v1/agents/CN/deposits", api.keys["admin"], json={
        "amount_minor": 100, "currency": "USD", "reference": "usd-1"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "CURRENCY_MISMATCH" and error["details"]["account_currency"] == "CNY"
    fake = await api.call("POST", "/v1/agents/CN/deposits", api.keys["admin"], json={
        "amount_minor": 100, "currency": "XXX", "reference": "xxx-1"})
    assert fake.status_code == 400 and fake.json()["error"]["code"] == "INVALID_ARGUMENT"
