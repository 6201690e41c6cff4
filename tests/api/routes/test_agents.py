"""Agents over HTTP: orders (the saga), holds, and what one agent may see of another's.

Goal: an order delivers the plaintext codes exactly once per ``client_order_id`` (a retry gets
the same codes), never sells a code twice under concurrency, refuses a reused key with the field
that differs, and a hold reserves stock that only its agent can confirm or release. Method: httpx
over ASGITransport against the real app; stock is checked through the API after each story.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.http import CODES, PINS, Api

pytestmark = pytest.mark.anyio


async def order(api: Api, quantity: int, ref: str, key: str = "agent",
                sku: str = "VIP") -> tuple[int, dict[str, object]]:
    response = await api.call("POST", "/v1/orders", api.keys[key],
                              json={"sku": sku, "quantity": quantity, "client_order_id": ref})
    return response.status_code, response.json()


async def test_order_delivers_imported_codes_and_retry_returns_the_same(catalog: Api) -> None:
    status, first = await order(catalog, 3, "o-1")
    assert status == 201
    assert first["status"] == "fulfilled"
    codes = first["codes"]
    assert isinstance(codes, list) and len(codes) == 3
    pairs = dict(zip(CODES, PINS, strict=True))
    assert all(pairs[c["code"]] == c["pin"] for c in codes)
    status, again = await order(catalog, 3, "o-1")
    assert status == 200
    assert again == first
    stock = await catalog.admin("GET", "/v1/skus/VIP/stock")
    assert (stock["allocated"], stock["available"]) == (3, len(CODES) - 3)


@pytest.mark.parametrize(("sku", "quantity", "field"), [("VIP", 4, "quantity"),
                                                        ("GIFT", 3, "sku")])
async def test_client_order_id_reused_with_other_body_names_the_field(
    catalog: Api, sku: str, quantity: int, field: str
) -> None:
    await order(catalog, 3, "o-1")
    status, body = await order(catalog, quantity, "o-1", sku=sku)
    assert status == 409
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert error["details"]["field"] == field


async def test_out_of_stock_reports_available_and_retry_gets_same_error(catalog: Api) -> None:
    status, body = await order(catalog, len(CODES) + 1, "big")
    assert status == 409
    assert body["error"]["code"] == "OUT_OF_STOCK"  # type: ignore[index]
    assert body["error"]["details"]["available"] == len(CODES)  # type: ignore[index]
    status, again = await order(catalog, len(CODES) + 1, "big")
    assert (status, again["error"]["code"]) == (409, "OUT_OF_STOCK")  # type: ignore[index]
    found = await catalog.call("GET", "/v1/orders", catalog.keys["agent"],
                               params={"client_order_id": "big"})
    assert found.json()["status"] == "failed"


async def test_concurrent_orders_never_share_a_code_or_oversell(catalog: Api) -> None:
    results = await asyncio.gather(*(order(catalog, 3, f"c-{i}") for i in range(10)))
    fulfilled = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status == 409]
    assert len(fulfilled) == len(CODES) // 3
    assert len(refused) == 10 - len(fulfilled)
    sold = [c["code"] for body in fulfilled for c in body["codes"]]  # type: ignore[attr-defined]
    assert len(sold) == len(set(sold))
    stock = await catalog.admin("GET", "/v1/skus/VIP/stock")
    assert stock["allocated"] == len(sold)
    assert stock["available"] == len(CODES) - len(sold)


async def test_agent_finds_own_order_by_client_order_id_but_not_anothers(catalog: Api) -> None:
    _, placed = await order(catalog, 1, "mine")
    mine = await catalog.call("GET", "/v1/orders", catalog.keys["agent"],
                              params={"client_order_id": "mine"})
    assert mine.json()["order_id"] == placed["order_id"]
    by_id = await catalog.call("GET", f"/v1/orders/{placed['order_id']}", catalog.keys["agent"])
    assert by_id.json() == placed
    theirs = await catalog.call("GET", f"/v1/orders/{placed['order_id']}",
                                catalog.keys["agent2"])
    assert theirs.status_code == 404
    none = await catalog.call("GET", "/v1/orders", catalog.keys["agent2"],
                              params={"client_order_id": "mine"})
    assert none.json()["error"]["code"] == "ORDER_NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "VIP", "quantity": -1, "client_order_id": "x"},
        {"sku": "VIP", "quantity": 0, "client_order_id": "x"},
        {"sku": "VIP", "quantity": "2", "client_order_id": "x"},
        {"sku": "VIP", "quantity": 1},
        {"sku": "VIP", "quantity": 1, "client_order_id": "x" * 129},
        {"sku": "VIP", "quantity": 10_001, "client_order_id": "x"},
    ],
)
async def test_bad_orders_are_refused_and_change_nothing(catalog: Api, body: object) -> None:
    before = await catalog.admin("GET", "/v1/skus/VIP/stock")
    response = await catalog.call("POST", "/v1/orders", catalog.keys["agent"], json=body)
    assert response.status_code == 422
    assert await catalog.admin("GET", "/v1/skus/VIP/stock") == before


async def test_unknown_sku_order_is_not_found(catalog: Api) -> None:
    status, body = await order(catalog, 1, "x", sku="NOPE")
    assert (status, body["error"]["code"]) == (404, "SKU_NOT_FOUND")  # type: ignore[index]


async def test_hold_then_confirm_delivers_the_held_codes(catalog: Api) -> None:
    api = catalog
    held = await api.call("POST", "/v1/holds", api.keys["agent"],
                          json={"sku": "VIP", "quantity": 2, "ttl_seconds": 60})
    assert held.status_code == 201, held.text
    hold_id = held.json()["hold_id"]
    stock = await api.admin("GET", "/v1/skus/VIP/stock")
    assert stock["held"] == 2
    confirmed = await api.call("POST", f"/v1/holds/{hold_id}/confirm", api.keys["agent"],
                               json={"client_order_id": "from-hold"})
    assert confirmed.status_code == 201, confirmed.text
    assert len(confirmed.json()["codes"]) == 2
    again = await api.call("POST", f"/v1/holds/{hold_id}/confirm", api.keys["agent"],
                           json={"client_order_id": "from-hold"})
    assert again.status_code == 200
    assert again.json()["codes"] == confirmed.json()["codes"]
    stock = await api.admin("GET", "/v1/skus/VIP/stock")
    assert (stock["held"], stock["allocated"]) == (0, 2)


async def test_expired_hold_returns_stock_and_cannot_be_confirmed(catalog: Api) -> None:
    api = catalog
    engine = api.runtime.engine
    engine.set_clock_ms(engine.now_ms())
    held = await api.call("POST", "/v1/holds", api.keys["agent"],
                          json={"sku": "VIP", "quantity": 2, "ttl_seconds": 5})
    engine.set_clock_ms(engine.now_ms() + 6_000)
    confirmed = await api.call("POST", f"/v1/holds/{held.json()['hold_id']}/confirm",
                               api.keys["agent"], json={"client_order_id": "late"})
    assert confirmed.status_code == 409
    assert confirmed.json()["error"]["code"] == "HOLD_EXPIRED"
    stock = await api.admin("GET", "/v1/skus/VIP/stock")
    assert (stock["held"], stock["available"]) == (0, len(CODES))


async def test_another_agents_hold_does_not_exist_for_it(catalog: Api) -> None:
    api = catalog
    held = await api.call("POST", "/v1/holds", api.keys["agent"],
                          json={"sku": "VIP", "quantity": 1, "ttl_seconds": 60})
    hold_id = held.json()["hold_id"]
    for method, path, body in (("GET", f"/v1/holds/{hold_id}", None),
                               ("DELETE", f"/v1/holds/{hold_id}", None),
                               ("POST", f"/v1/holds/{hold_id}/confirm",
                                {"client_order_id": "steal"})):
        response = await api.call(method, path, api.keys["agent2"], json=body)
        assert response.status_code == 404, (method, path)
    released = await api.call("DELETE", f"/v1/holds/{hold_id}", api.keys["agent"])
    assert released.json()["released"] == 1


async def test_buyer_cap_stops_one_buyer_locking_up_stock(catalog: Api) -> None:
    api = catalog
    capped = api.key("agent", agent_id="A1", limits={"open_hold_units_per_buyer_max": 3,
                                                      "open_hold_units_per_agent_max": 5})
    body = {"sku": "VIP", "quantity": 3, "ttl_seconds": 60, "buyer_id": "b1"}
    first = await api.call("POST", "/v1/holds", capped, json=body)
    assert first.status_code == 201
    more = await api.call("POST", "/v1/holds", capped, json={**body, "quantity": 1})
    # A cap is LIMIT_EXCEEDED (400, no Retry-After: waiting alone never lifts it),
    # not RATE_LIMITED with a retry-after that cannot help.
    assert more.status_code == 400
    assert more.json()["error"]["code"] == "LIMIT_EXCEEDED"
    assert more.json()["error"]["details"]["limit"] == "open_hold_units_per_buyer_max"
    assert "retry-after" not in more.headers
    other_buyer = await api.call("POST", "/v1/holds", capped,
                                 json={**body, "quantity": 2, "buyer_id": "b2"})
    assert other_buyer.status_code == 201
    agent_cap = await api.call("POST", "/v1/holds", capped,
                               json={**body, "quantity": 1, "buyer_id": "b3"})
    assert agent_cap.json()["error"]["details"]["limit"] == "open_hold_units_per_agent_max"
    assert (await api.admin("GET", "/v1/skus/VIP/stock"))["held"] == 5
    await api.call("DELETE", f"/v1/holds/{first.json()['hold_id']}", capped)
    again = await api.call("POST", "/v1/holds", capped, json={**body, "quantity": 1})
    assert again.status_code == 201


async def test_retried_hold_with_client_hold_id_is_the_same_hold(catalog: Api) -> None:
    api = catalog
    body = {"sku": "VIP", "quantity": 2, "ttl_seconds": 60, "client_hold_id": "h-1"}
    first = await api.call("POST", "/v1/holds", api.keys["agent"], json=body)
    again = await api.call("POST", "/v1/holds", api.keys["agent"], json=body)
    assert (first.status_code, again.status_code) == (201, 200)  # a retry creates nothing
    assert first.json() == again.json()
    assert (await api.admin("GET", "/v1/skus/VIP/stock"))["held"] == 2
    await api.call("DELETE", f"/v1/holds/{first.json()['hold_id']}", api.keys["agent"])
    ended = await api.call("POST", "/v1/holds", api.keys["agent"], json=body)
    assert ended.status_code == 200 and ended.json()["state"] == "released"


async def test_terminal_and_admin_keys_cannot_place_orders(catalog: Api) -> None:
    for key in ("terminal", "admin"):
        status, _ = await order(catalog, 1, f"k-{key}", key=key)
        assert status == 403, key
