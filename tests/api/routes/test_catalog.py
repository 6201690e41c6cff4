"""The catalog over HTTP (issue 10, items 4, 10 and 11): a pool created for an agent is that
agent's pool; a batch's unit-cost currency is a real ISO 4217 code equal to its SKU's; stock
counts show withdrawn codes. Method: httpx over ASGITransport against the real app."""

from __future__ import annotations

import pytest

from tests.fixtures.http import CODES, Api

pytestmark = pytest.mark.anyio


async def test_a_pool_created_with_agent_id_is_assigned_to_the_agent(catalog: Api) -> None:
    api = catalog
    created = await api.admin("POST", "/v1/pools", {"pool": "a1", "agent_id": "A1"}, 201)
    agent = await api.admin("GET", "/v1/agents/A1")
    assert agent["pool_id"] == created["pool_id"]
    await api.admin("POST", "/v1/pools/a1/stock", {"sku": "VIP", "quantity": 2}, 200)
    await api.admin("PATCH", "/v1/agents/A1", {"pool_policy": "own_only"}, 200)
    ordered = await api.call("POST", "/v1/orders", api.keys["agent"], json={
        "sku": "VIP", "quantity": 3, "client_order_id": "pool-1"})
    assert ordered.status_code == 409  # only its own pool's 2 codes, not the shared stock
    assert ordered.json()["error"]["details"]["available"] == 2
    ghost = await api.call("POST", "/v1/pools", api.keys["admin"],
                           json={"pool": "g", "agent_id": "ghost"})
    assert ghost.status_code == 404


async def test_a_batch_cost_currency_must_be_real_and_the_skus(catalog: Api) -> None:
    api = catalog
    for currency, code in (("XYZ", "INVALID_ARGUMENT"), ("USD", "CURRENCY_MISMATCH")):
        refused = await api.call("POST", "/v1/batches", api.keys["admin"], json={
            "sku": "VIP", "unit_cost_minor": 5, "currency": currency,
            "codes": [{"code": "COST-CODE-0001"}]})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == code
    fine = await api.admin("POST", "/v1/batches", {"sku": "VIP", "unit_cost_minor": 5,
                                                   "codes": [{"code": "COST-CODE-0002"}]}, 201)
    assert (await api.admin("GET", f"/v1/batches/{fine['batch_id']}"))["currency"] == "CNY"


async def test_stock_shows_codes_withdrawn_by_an_export(catalog: Api) -> None:
    api = catalog
    exporter = api.key("admin", scopes=["admin", "export"])
    response = await api.call("POST", "/v1/exports", exporter, json={"batch_id": 1})
    assert response.headers["x-export-withdrawn"] == str(len(CODES))
    stock = await api.admin("GET", "/v1/skus/VIP/stock")
    assert stock["withdrawn"] == len(CODES) and stock["available"] == 0
    restored = await api.call("POST", f"/v1/exports/{response.headers['x-export-id']}/restore",
                              api.keys["admin"])
    assert restored.json()["restored"] == len(CODES)
    plain = await api.call("POST", "/v1/exports/exp_missing/restore", api.keys["admin"])
    assert plain.status_code == 404 and plain.json()["error"]["code"] == "EXPORT_NOT_FOUND"
    agent = await api.call("POST", f"/v1/exports/{response.headers['x-export-id']}/restore",
                           api.keys["agent"])
    assert agent.status_code == 403
