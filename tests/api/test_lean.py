"""The lean path of the hot routes (``api.lean``) answers exactly as FastAPI's handlers do.

Every request here goes to two apps over one runtime: the service's app (the lean middleware in
front) and the same app built with ``lean_routes=False`` (FastAPI's handlers only). Their status,
content type and body bytes must be equal, for successes, replays and every kind of refusal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter

from api.lean import LEAN_ROUTES, BatchBody, BatchItem, LeanRoutes
from api.routes.redemption import RedeemBatchRequest, RedeemRequest
from server.app import create_app
from server.settings import Settings
from tests.fixtures.http import CODES, PINS, Api
from tests.fixtures.shop import SKU, stock_shop

pytestmark = pytest.mark.anyio


@pytest.fixture
async def classic(api: Api, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same service without the lean middleware."""
    app = create_app(Settings(data_dir=settings.data_dir, lean_routes=False))
    app.state.runtime = api.runtime
    assert not any(m.cls is LeanRoutes for m in app.user_middleware)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://cardsvc.test") as http:
        yield http


async def both(api: Api, classic: httpx.AsyncClient, path: str, key: str | None,
               content: bytes, content_type: str | None = "application/json",
               ) -> tuple[httpx.Response, httpx.Response]:
    """The lean answer, then the classic answer, to the same bytes; asserts they are equal."""
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    if content_type is not None:
        headers["content-type"] = content_type
    lean = await api.http.post(path, content=content, headers=headers)
    plain = await classic.post(path, content=content, headers=headers)
    assert (lean.status_code, lean.headers.get("content-type"), lean.content) == (
        plain.status_code, plain.headers.get("content-type"), plain.content)
    return lean, plain


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_lean_paths_are_post_routes(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for path in LEAN_ROUTES:
        assert "post" in paths[path], path
    assert any(m.cls is LeanRoutes for m in app.user_middleware)


def test_batch_shapes_have_the_models_rules() -> None:
    words = ("title", "default", "description")

    def rules(schema: Any) -> Any:
        if isinstance(schema, dict):
            return {k: rules(v) for k, v in schema.items() if k not in words}
        if isinstance(schema, list):
            return [rules(v) for v in schema]
        return schema

    item = rules(TypeAdapter(BatchItem).json_schema())
    model = rules(RedeemRequest.model_json_schema())
    assert item == model
    batch = rules(TypeAdapter(BatchBody).json_schema())
    expected = rules(RedeemBatchRequest.model_json_schema())
    assert batch["properties"]["items"]["minItems"] == expected["properties"]["items"]["minItems"]
    assert batch["properties"]["items"]["maxItems"] == expected["properties"]["items"]["maxItems"]
    assert batch["additionalProperties"] is False


async def test_verify_and_redeem_answer_as_fastapi(catalog: Api,
                                                   classic: httpx.AsyncClient) -> None:
    api = catalog
    terminal, agent = api.keys["terminal"], api.keys["agent"]
    order = await api.call("POST", "/v1/orders", agent,
                           json={"sku": "VIP", "quantity": 2, "client_order_id": "lean-1"})
    assert order.status_code == 201, order.text
    sold = [c["code"] for c in order.json()["codes"]]
    pins = {code: PINS[CODES.index(code)] for code in sold}
    code = sold[0]
    await both(api, classic, "/v1/verify", terminal, body({"code": code, "pin": pins[code]}))
    lean, _ = await both(api, classic, "/v1/redeem", terminal,
                         body({"code": code, "pin": pins[code], "request_id": "r-1"}))
    assert lean.status_code == 200 and lean.json()["uses_left"] == 0
    # refusals: state, PIN, unknown code, auth, scope, validation, not JSON
    json_type = "application/json"
    cases: list[tuple[str | None, bytes, str | None]] = [
        (terminal, body({"code": code, "pin": pins[code], "request_id": "r-2"}), json_type),
        (terminal, body({"code": sold[1], "pin": "000000x", "request_id": "r-3"}), json_type),
        (terminal, body({"code": "NO-SUCH-CODE-1", "request_id": "r-4"}), json_type),
        (None, body({"code": code, "request_id": "r-5"}), json_type),
        ("ck_bogus.key", body({"code": code, "request_id": "r-5"}), json_type),
        (agent, body({"code": code, "request_id": "r-6"}), json_type),
        (terminal, body({"code": code, "request_id": 7}), json_type),
        (terminal, body({"code": code, "request_id": "r-8", "pinn": "1"}), json_type),
        (None, body({"code": code}), json_type),
        (terminal, b'{"code": "A", ', json_type),
        (terminal, b"", json_type),
        (terminal, body({"code": code, "request_id": "r-9"}), None),
        (terminal, body({"code": code, "request_id": "r-9"}), "text/plain"),
        (terminal, body({"code": code, "request_id": "r-9"}), "application/json; charset=utf-8"),
    ]
    for key, content, content_type in cases:
        await both(api, classic, "/v1/redeem", key, content, content_type)
        await both(api, classic, "/v1/verify", key, content, content_type)


async def test_batch_and_holds_answer_as_fastapi(catalog: Api,
                                                 classic: httpx.AsyncClient) -> None:
    api = catalog
    terminal, agent = api.keys["terminal"], api.keys["agent"]
    order = await api.call("POST", "/v1/orders", agent,
                           json={"sku": "VIP", "quantity": 3, "client_order_id": "lean-2"})
    sold = [(c["code"], PINS[CODES.index(c["code"])]) for c in order.json()["codes"]]
    unsold = next(i for i, code in enumerate(CODES) if code not in dict(sold))
    items = [{"code": sold[0][0], "pin": sold[0][1], "request_id": "b-1"},
             {"code": sold[1][0], "pin": sold[1][1], "request_id": "b-2"},
             {"code": sold[0][0], "pin": sold[0][1], "request_id": "b-3"},  # ALREADY_REDEEMED
             {"code": CODES[unsold], "pin": PINS[unsold], "request_id": "b-4"},  # NOT_SOLD
             {"code": "NO-SUCH-CODE-2", "request_id": "b-5"},
             {"code": sold[2][0], "pin": "999999", "request_id": "b-6"}]
    lean, _ = await both(api, classic, "/v1/redeem/batch", terminal, body({"items": items}))
    assert (lean.json()["redeemed"], lean.json()["failed"]) == (2, 4)
    for bad in ({"items": []}, {"items": [{"code": "A"}]}, {"items": items, "x": 1}, [items]):
        await both(api, classic, "/v1/redeem/batch", terminal, body(bad))
    await both(api, classic, "/v1/redeem/batch", agent, body({"items": items}))
    hold = {"sku": "VIP", "quantity": 1, "ttl_seconds": 60, "client_hold_id": "h-lean"}
    # Two new holds (a retry answers from the core alone, on either path): the same bytes but
    # for the hold's id and times.
    lean = await api.call("POST", "/v1/holds", agent, json=hold)
    plain = await classic.post("/v1/holds", headers=api.auth(agent),
                               json={**hold, "client_hold_id": "h-classic"})
    assert (lean.status_code, plain.status_code) == (201, 201)
    moving = ("hold_id", "expires_at", "created_at")
    assert list(lean.json()) == list(plain.json())
    assert {k: v for k, v in lean.json().items() if k not in moving} == {
        k: v for k, v in plain.json().items() if k not in moving}
    assert lean.json()["state"] == "open" and lean.json()["amount_minor"]
    # a retry: 200 with the hold as first made, on both paths
    retry, _ = await both(api, classic, "/v1/holds", agent, body(hold))
    assert retry.status_code == 200 and retry.json() == lean.json()
    for key, bad in ((terminal, hold), (agent, {**hold, "quantity": 0}),
                     (agent, {**hold, "quantity": "1"}), (agent, {**hold, "sku": "NOPE"}),
                     (None, hold)):
        await both(api, classic, "/v1/holds", key, body(bad))


async def test_orders_answer_as_fastapi(catalog: Api, classic: httpx.AsyncClient) -> None:
    api = catalog
    terminal, agent = api.keys["terminal"], api.keys["agent"]
    order = {"sku": "VIP", "quantity": 2, "client_order_id": "o-lean"}
    # Two new orders: the same bytes but for the order's id, time and codes.
    lean = await api.call("POST", "/v1/orders", agent, json=order)
    plain = await classic.post("/v1/orders", headers=api.auth(agent),
                               json={**order, "client_order_id": "o-classic"})
    assert (lean.status_code, plain.status_code) == (201, 201)
    assert lean.headers["content-type"] == plain.headers["content-type"]
    assert list(lean.json()) == list(plain.json())
    moving = ("order_id", "client_order_id", "created_at", "codes")
    assert {k: v for k, v in lean.json().items() if k not in moving} == {
        k: v for k, v in plain.json().items() if k not in moving}
    assert [list(c) for c in lean.json()["codes"]] == [list(c) for c in plain.json()["codes"]]
    assert len(lean.json()["codes"]) == 2
    # a retry: 200 with the order as first made (its codes again), on both paths
    retry, _ = await both(api, classic, "/v1/orders", agent, body(order))
    assert retry.status_code == 200 and retry.json() == lean.json()
    for key, bad in ((terminal, order), (agent, {**order, "quantity": 0}),
                     (agent, {**order, "quantity": "1"}), (agent, {**order, "sku": "NOPE",
                                                                   "client_order_id": "o-x"}),
                     (agent, {**order, "quantity": 1}), (agent, {**order, "extra": 1}),
                     (None, order)):
        await both(api, classic, "/v1/orders", key, body(bad))
    await both(api, classic, "/v1/orders", agent, b"{not json")


async def test_shop_checkouts_answer_as_fastapi(api: Api, classic: httpx.AsyncClient) -> None:
    """The public checkout: no key, the buyer's token header read as FastAPI reads it, new
    checkouts alike but for their ids, times and tokens, and every refusal byte for byte."""
    runtime = api.runtime
    stock_shop(runtime)
    runtime.catalog.create_sku("GONE", "Sold out", actor="test", retail_price_minor=100)
    runtime.challenges.enabled = False
    buy = {"sku": SKU, "quantity": 1, "email": "lean@example.com", "channel_id": "sandbox"}
    lean = await api.http.post("/v1/shop/checkouts", json=buy)
    plain = await classic.post("/v1/shop/checkouts", json={**buy, "email": "plain@example.com"})
    assert (lean.status_code, plain.status_code) == (201, 201), lean.text
    assert lean.headers["content-type"] == plain.headers["content-type"]

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return [(k, shape(v)) for k, v in value.items()]
        return type(value).__name__

    assert shape(lean.json()) == shape(plain.json())
    moving = ("order_id", "email", "created_at", "expires_at")
    assert {k: v for k, v in lean.json()["order"].items() if k not in moving} == {
        k: v for k, v in plain.json()["order"].items() if k not in moving}
    token = lean.json()["token"]
    for bad in ({**buy, "sku": "GONE"}, {**buy, "sku": "NOPE"}, {**buy, "quantity": 0},
                {**buy, "quantity": "1"}, {**buy, "email": "not an address"},
                {**buy, "channel_id": "nope"}, {**buy, "locale": "fr"}, {**buy, "extra": 1},
                {**buy, "password": "short"}):
        refused, _ = await both(api, classic, "/v1/shop/checkouts", None, body(bad))
        assert refused.status_code >= 400
        if bad["sku"] == "GONE":
            assert refused.json()["error"]["code"] == "OUT_OF_STOCK"
    for headers in ({"x-order-token": token}, {"x-order-token": "forged"}):
        lean = await api.http.post("/v1/shop/checkouts", json={**buy, "sku": "GONE"},
                                   headers=headers)
        plain = await classic.post("/v1/shop/checkouts", json={**buy, "sku": "GONE"},
                                   headers=headers)
        assert (lean.status_code, lean.content) == (plain.status_code, plain.content)
    await both(api, classic, "/v1/shop/checkouts", None, b"{not json")
    await both(api, classic, "/v1/shop/checkouts", None, body(buy), content_type="text/plain")
