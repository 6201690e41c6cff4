"""Orders and holds over HTTP, attacked as an outsider (issue 10, items 1, 7 and 8).

Goal: plaintext leaves only to the order's agent and through an audited reveal by an ``export``
key; admins read masked; holds reserve money and cannot outlive what their agent can pay;
admins see and release any hold; another agent's ids, a key without the scope and replays get
refusals that reveal nothing; a money product that would overflow is LIMIT_EXCEEDED, never a
500. Method: httpx over ASGITransport against the real app (tests/fixtures/http.py).
"""

from __future__ import annotations

import pytest

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
