"""Orders and holds over HTTP, attacked as an outsider; finding orders and listing them.

Goal: plaintext leaves only to the order's agent and through an audited reveal by an ``export``
key; admins read masked; holds reserve money and cannot outlive what their agent can pay;
admins see and release any hold; another agent's ids, a key without the scope and replays get
refusals that reveal nothing; a money product that would overflow is LIMIT_EXCEEDED, never a
500. Admins list every agent's orders (by agent, status and creation time) and agents list
their own, a page at a time, newest first, never with codes; list filters beside
``client_order_id``, forged cursors, bad times and statuses are refused and change nothing.

Method: httpx over ASGITransport against the real app (tests/fixtures/http.py) with the
``catalog`` fixture (agents A1 and A2 funded); the engine's clock is moved between orders so
creation times differ.
"""

from __future__ import annotations

import pytest

from cardsvc.paging import encode_cursor
from cardsvc.times import iso
from tests.fixtures.http import CODES, PINS, PRICE_MINOR, Api

pytestmark = pytest.mark.anyio


async def order(api: Api, quantity: int = 2, ref: str = "o-1", key: str = "agent") -> dict:
    response = await api.call("POST", "/v1/orders", api.keys[key],
                              json={"sku": "VIP", "quantity": quantity, "client_order_id": ref})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_admin_reads_of_an_order_are_masked_and_carry_no_pin(catalog: Api) -> None:
    api = catalog
    placed = await order(api)
    for path in (f"/v1/orders/{placed['order_id']}", "/v1/orders?client_order_id=o-1&agent_id=A1"):
        read = await api.call("GET", path, api.keys["admin"])
        assert read.status_code == 200
        body = read.json()
        assert body["codes_masked"] is True
        assert all(c["pin"] is None and c["has_pin"] for c in body["codes"])
        assert [c["code"][-4:] for c in body["codes"]] == [c["code"][-4:]
                                                          for c in placed["codes"]]
        assert not any(code in read.text for code in CODES)
        assert not any(pin in read.text for pin in PINS)
    owner = await api.call("GET", f"/v1/orders/{placed['order_id']}", api.keys["agent"])
    assert owner.json()["codes"] == placed["codes"] and owner.json()["codes_masked"] is False
    audit = await api.admin("GET", "/v1/audit?action=order.redeliver")
    assert [entry["object_id"] for entry in audit["entries"]] == [placed["order_id"]]


async def test_reveal_needs_export_and_is_audited(catalog: Api) -> None:
    api = catalog
    placed = await order(api)
    path = f"/v1/orders/{placed['order_id']}/reveal"
    for key in (api.keys["admin"], api.keys["agent"], api.keys["agent2"], api.keys["terminal"]):
        denied = await api.call("POST", path, key, json={"reason": "ticket"})
        assert denied.status_code == 403, denied.text
        assert not any(code in denied.text for code in CODES)
    support = api.key("admin", scopes=["admin", "export"], name="support")
    shown = await api.call("POST", path, support, json={"reason": "ticket 7"})
    assert shown.status_code == 200 and shown.json()["codes"] == placed["codes"]
    missing = await api.call("POST", "/v1/orders/ord_nope/reveal", support,
                             json={"reason": "probe"})
    assert missing.status_code == 404
    entries = (await api.admin("GET", "/v1/audit?action=order.reveal"))["entries"]
    assert len(entries) == 1 and entries[0]["details"]["codes"] == 2


async def test_another_agents_order_and_hold_do_not_exist_for_it(catalog: Api) -> None:
    api = catalog
    placed = await order(api)
    theirs = await api.call("GET", f"/v1/orders/{placed['order_id']}", api.keys["agent2"])
    assert theirs.status_code == 404
    found = await api.call("GET", "/v1/orders?client_order_id=o-1&agent_id=A1",
                           api.keys["agent2"])
    assert found.status_code == 404  # an agent's agent_id is ignored: it names its own
    hold = await api.call("POST", "/v1/holds", api.keys["agent"],
                          json={"sku": "VIP", "quantity": 1, "ttl_seconds": 60})
    hold_id = hold.json()["hold_id"]
    for method, path in (("GET", f"/v1/holds/{hold_id}"), ("DELETE", f"/v1/holds/{hold_id}"),
                         ("POST", f"/v1/holds/{hold_id}/confirm")):
        body = {"client_order_id": "steal"} if method == "POST" else None
        stolen = await api.call(method, path, api.keys["agent2"], json=body)
        assert stolen.status_code == 404, (method, stolen.text)
    for path in ("/v1/holds", "/v1/holds?agent_id=A1"):  # agent_id is an admin's filter only
        listed = await api.call("GET", path, api.keys["agent2"])
        assert listed.json()["items"] == []


async def test_a_hold_is_bounded_by_balance_and_admins_release_any_hold(catalog: Api) -> None:
    api = catalog
    poor = await api.admin("POST", "/v1/agents", {"agent_id": "POOR", "name": "p"}, 201)
    assert poor["agent_id"] == "POOR"
    await api.admin("POST", "/v1/agents/POOR/deposits", {"amount_minor": PRICE_MINOR * 2 - 1,
                    "currency": "CNY", "reference": "small"}, 201)
    key = api.key("agent", agent_id="POOR")
    too_many = await api.call("POST", "/v1/holds", key,
                              json={"sku": "VIP", "quantity": len(CODES), "ttl_seconds": 3600})
    assert too_many.status_code == 409
    assert too_many.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    one = await api.call("POST", "/v1/holds", key,
                         json={"sku": "VIP", "quantity": 1, "ttl_seconds": 3600})
    assert one.status_code == 201 and one.json()["amount_minor"] == PRICE_MINOR
    listed = await api.admin("GET", "/v1/holds?agent_id=POOR&state=open")
    assert [item["hold_id"] for item in listed["items"]] == [one.json()["hold_id"]]
    released = await api.call("DELETE", f"/v1/holds/{one.json()['hold_id']}", api.keys["admin"])
    assert released.status_code == 200 and released.json()["released"] == 1
    balance = await api.admin("GET", "/v1/agents/POOR/balance")
    assert balance["balances"]["available"] == PRICE_MINOR * 2 - 1
    report = await api.admin("GET", "/v1/reconciliation")
    assert report["ok"], report["differences"]


async def test_suspending_an_agent_releases_its_holds(catalog: Api) -> None:
    api = catalog
    hold = await api.call("POST", "/v1/holds", api.keys["agent"],
                          json={"sku": "VIP", "quantity": 3, "ttl_seconds": 3600})
    assert hold.status_code == 201
    await api.admin("PATCH", "/v1/agents/A1", {"status": "suspended"}, 200)
    stock = await api.admin("GET", "/v1/skus/VIP/stock")
    assert stock["held"] == 0
    listed = await api.admin("GET", "/v1/holds?agent_id=A1")
    assert [item["state"] for item in listed["items"]] == ["released"]


async def test_an_order_whose_total_would_overflow_is_refused_not_a_500(catalog: Api) -> None:
    api = catalog
    huge = await api.call("PUT", "/v1/prices", api.keys["admin"],
                          json={"sku": "VIP", "grade": "standard", "price_minor": 10**15,
                                "currency": "CNY"})
    assert huge.status_code == 400 and huge.json()["error"]["code"] == "LIMIT_EXCEEDED"
    response = await api.call("POST", "/v1/orders", api.keys["agent"],
                              json={"sku": "VIP", "quantity": 10_000, "client_order_id": "big"})
    assert response.status_code != 500


async def test_a_retried_order_delivers_again_and_is_audited_as_a_redelivery(
    catalog: Api,
) -> None:
    api = catalog
    placed = await order(api, ref="retry")
    again = await api.call("POST", "/v1/orders", api.keys["agent"],
                           json={"sku": "VIP", "quantity": 2, "client_order_id": "retry"})
    assert again.status_code == 200 and again.json()["codes"] == placed["codes"]
    entries = (await api.admin("GET", "/v1/audit?action=order.redeliver"))["entries"]
    assert [(e["object_id"], e["details"]["codes"]) for e in entries] == [
        (placed["order_id"], 2)]


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
