"""Orders over HTTP: finding one by its client_order_id and listing them.

Goal: admins list every agent's orders (by agent, status and creation time) and agents list
their own, a page at a time, newest first, never with codes; another agent's ids give nothing;
``GET /v1/orders?client_order_id=`` keeps answering one order with its codes; list filters
beside it, forged cursors, bad times and statuses are refused and change nothing.

Method: httpx over ASGITransport against the real app with the ``catalog`` fixture (agents A1
and A2 funded); the engine's clock is moved between orders so creation times differ.
"""

from __future__ import annotations

import pytest

from cardsvc.paging import encode_cursor
from cardsvc.times import iso
from tests.fixtures.http import CODES, Api

pytestmark = pytest.mark.anyio


async def place(api: Api, role: str, client_order_id: str, sku: str = "VIP") -> dict[str, str]:
    response = await api.call("POST", "/v1/orders", api.keys[role], json={
        "sku": sku, "quantity": 1, "client_order_id": client_order_id})
    assert response.status_code in (201, 404, 409), response.text
    return dict(response.json())


async def test_orders_are_listed_newest_first_filtered_and_without_codes(catalog: Api) -> None:
    api = catalog
    engine = api.runtime.engine
    t0 = engine.now_ms()
    placed = []
    for i, role in enumerate(("agent", "agent2", "agent", "agent")):
        engine.set_clock_ms(t0 + i * 60_000)
        placed.append(await place(api, role, f"list-{i}"))
    engine.set_clock_ms(t0 + 10 * 60_000)
    failed = await place(api, "agent", "list-none", sku="NO-SUCH")  # refused before step 1
    assert failed["error"]["code"] == "SKU_NOT_FOUND"
    everything = await api.admin("GET", "/v1/orders", expect=200)
    assert [o["order_id"] for o in everything["items"]] == [p["order_id"] for p in placed][::-1]
    assert everything["next"] is None
    assert all("codes" not in o for o in everything["items"])
    assert not any(code in str(everything) for code in CODES)
    first = await api.admin("GET", "/v1/orders?agent_id=A1&limit=2", expect=200)
    rest = await api.admin("GET", f"/v1/orders?agent_id=A1&limit=2&cursor={first['next']}",
                           expect=200)
    assert [o["client_order_id"] for o in first["items"] + rest["items"]] == [
        "list-3", "list-2", "list-0"]
    window = await api.call("GET", "/v1/orders", api.keys["admin"],
                            params={"since": iso(t0 + 60_000), "until": iso(t0 + 3 * 60_000)})
    assert [o["client_order_id"] for o in window.json()["items"]] == ["list-2", "list-1"]
    fulfilled = await api.admin("GET", "/v1/orders?status=fulfilled", expect=200)
    assert len(fulfilled["items"]) == 4
    assert (await api.admin("GET", "/v1/orders?status=failed", expect=200))["items"] == []


async def test_agents_list_only_their_own_orders(catalog: Api) -> None:
    api = catalog
    mine = await place(api, "agent", "own-1")
    theirs = await place(api, "agent2", "own-2")
    listed = (await api.call("GET", "/v1/orders", api.keys["agent"])).json()
    assert [o["order_id"] for o in listed["items"]] == [mine["order_id"]]
    spying = (await api.call("GET", "/v1/orders?agent_id=A2", api.keys["agent"])).json()
    assert spying == {"items": [], "next": None}
    foreign = await api.call("GET", f"/v1/orders/{theirs['order_id']}", api.keys["agent"])
    assert foreign.json()["error"]["code"] == "ORDER_NOT_FOUND"
    by_ref = await api.call("GET", "/v1/orders?client_order_id=own-2", api.keys["agent"])
    assert by_ref.json()["error"]["code"] == "ORDER_NOT_FOUND"  # A1 has no order own-2
    assert (await api.call("GET", "/v1/orders", api.keys["terminal"])).status_code == 403


async def test_finding_by_client_order_id_keeps_working(catalog: Api) -> None:
    api = catalog
    placed = await place(api, "agent", "find-1")
    found = (await api.call("GET", "/v1/orders?client_order_id=find-1", api.keys["agent"])).json()
    assert found["order_id"] == placed["order_id"] and len(found["codes"]) == 1
    admin = await api.admin("GET", "/v1/orders?client_order_id=find-1&agent_id=A1", expect=200)
    assert admin["order_id"] == placed["order_id"]
    mixed = await api.call("GET", "/v1/orders?client_order_id=find-1&status=fulfilled",
                           api.keys["agent"])
    assert (mixed.status_code, mixed.json()["error"]["details"]["field"]) == (400, "status")


@pytest.mark.parametrize("query", ["cursor=bm90LWEtY3Vyc29y", "cursor=WzEsMl0", "status=lost",
                                   "since=2026-02-30", "since=now", "limit=0", "limit=201",
                                   "since=2030-01-01&until=2029-01-01"])
async def test_bad_list_queries_are_refused(catalog: Api, query: str) -> None:
    response = await catalog.call("GET", f"/v1/orders?{query}", catalog.keys["admin"])
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("INVALID_ARGUMENT", "VALIDATION_ERROR")


async def test_confirming_a_hold_that_is_not_open_writes_no_order(catalog: Api) -> None:
    api = catalog
    agent = api.keys["agent"]

    async def hold() -> str:
        made = await api.call("POST", "/v1/holds", agent, json={
            "sku": "VIP", "quantity": 1, "ttl_seconds": 60})
        assert made.status_code == 201, made.text
        return str(made.json()["hold_id"])

    async def confirm(hold_id: str, client_order_id: str) -> tuple[int, dict[str, object]]:
        response = await api.call("POST", f"/v1/holds/{hold_id}/confirm", agent,
                                  json={"client_order_id": client_order_id})
        return response.status_code, response.json()

    confirmed = await hold()
    status, first = await confirm(confirmed, "c-1")
    assert status == 201
    assert await confirm(confirmed, "c-1") == (200, first)  # a replay: the first result
    balance = await api.admin("GET", "/v1/agents/A1/balance")
    status, again = await confirm(confirmed, "c-2")
    assert (status, again["error"]["code"]) == (409, "HOLD_ALREADY_CONFIRMED")  # type: ignore[index]
    released = await hold()
    await api.call("DELETE", f"/v1/holds/{released}", agent)
    status, late = await confirm(released, "c-3")
    assert (status, late["error"]["code"]) == (409, "HOLD_RELEASED")  # type: ignore[index]
    for client_order_id in ("c-2", "c-3"):
        found = await api.call("GET", f"/v1/orders?client_order_id={client_order_id}", agent)
        assert found.json()["error"]["code"] == "ORDER_NOT_FOUND"
    listed = (await api.call("GET", "/v1/orders", agent)).json()
    assert [o["client_order_id"] for o in listed["items"]] == ["c-1"]
    assert await api.admin("GET", "/v1/agents/A1/balance") == balance
    assert (await api.admin("GET", "/v1/reconciliation"))["ok"]


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/batches", "/v1/pools", "/v1/withdrawals",
                                  "/v1/redemptions", "/v1/lockouts",
                                  "/v1/agents/A1/statement"])
@pytest.mark.parametrize("key", [(10**30, 1), (-(10**30), "x"), (2**63, 2**63)])
async def test_forged_cursors_of_every_list_are_refused_not_crashed(
        catalog: Api, path: str, key: tuple[int, int | str]) -> None:
    response = await catalog.call("GET", f"{path}?cursor={encode_cursor(key)}",
                                  catalog.keys["admin"])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["field"] == "cursor"
