"""Fixtures for the HTTP API tests (STYLE.md, Tests): ``httpx.AsyncClient`` over
``ASGITransport`` against ``create_app(settings)`` with a temporary data directory.

``client`` runs the app's lifespan (opening and, at teardown, closing the store) by entering
``app.router.lifespan_context`` itself, as the ASGI server would; no network is involved.
``raise_app_exceptions=False`` lets a test see the 500 the app renders for an unexpected
exception instead of the exception. Tests may add test-only routes to ``app`` before their first
request; the app the service runs never has them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from cardsvc.agents.credentials import create_key
from cardsvc.runtime import Runtime
from server.app import create_app
from server.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cardsvc.test") as http:
            yield http


# ----- issue 4: callers with API keys, and a small catalog -------------------------------------

CODES = [f"TESTCODE-{i:04d}-ABCD" for i in range(20)]
"""Codes imported by ``catalog``; tests search every response and log line for them."""
PINS = [f"{i:06d}" for i in range(20)]
PRICE_MINOR = 1_000
"""What the standard grade pays for a VIP code (GIFT: half)."""
DEPOSIT_MINOR = 10_000_000
"""Each test agent's balance: enough for every order the tests place."""


class Api:
    """The client with one key per role, and helpers that assert their own success."""

    def __init__(self, http: httpx.AsyncClient, app: FastAPI) -> None:
        self.http = http
        self.app = app
        self.keys: dict[str, str] = {}

    @property
    def runtime(self) -> Runtime:
        return cast(Runtime, self.app.state.runtime)

    def key(self, role: str, **kwargs: Any) -> str:
        _, text = create_key(self.runtime.db, role=role, **kwargs)
        return text

    def auth(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=self.auth(key), **kwargs)

    async def admin(self, method: str, path: str, body: Any = None,
                    expect: int | None = None) -> Any:
        response = await self.call(method, path, self.keys["admin"], json=body)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json()


@pytest.fixture
async def api(client: httpx.AsyncClient, app: FastAPI) -> Api:
    """Keys: admin, terminal, agent A1 (``agent``) and agent A2 (``agent2``)."""
    api = Api(client, app)
    api.keys["admin"] = api.key("admin", name="test admin")
    api.keys["terminal"] = api.key("terminal", name="till 1")
    for agent_id, role_name in (("A1", "agent"), ("A2", "agent2")):
        await api.admin("POST", "/v1/agents", {"agent_id": agent_id, "name": agent_id}, 201)
        api.keys[role_name] = api.key("agent", agent_id=agent_id)
    return api


@pytest.fixture
async def catalog(api: Api) -> Api:
    """SKU ``VIP`` (single use, sold before redeemed) with ``CODES``/``PINS`` in stock, and
    SKU ``GIFT`` (3 uses, redeemable from stock) with 5 generated codes; both priced for the
    standard grade, and agents A1 and A2 funded with DEPOSIT_MINOR."""
    await api.admin("POST", "/v1/skus", {"sku": "VIP", "name": "VIP month"}, 201)
    await api.admin("POST", "/v1/skus", {"sku": "GIFT", "name": "Gift", "uses_per_code": 3,
                                          "redeem_requires_sale": False}, 201)
    pairs = zip(CODES, PINS, strict=True)
    body = {"sku": "VIP", "codes": [{"code": c, "pin": p} for c, p in pairs]}
    result = await api.admin("POST", "/v1/batches", body, 201)
    assert result["imported"] == len(CODES)
    await api.admin("POST", "/v1/batches", {"sku": "GIFT", "generate": {"count": 5}}, 201)
    for sku, price in (("VIP", PRICE_MINOR), ("GIFT", PRICE_MINOR // 2)):
        await api.admin("PUT", "/v1/prices", {"sku": sku, "grade": "standard",
                                              "price_minor": price, "currency": "CNY"}, 200)
    for agent_id in ("A1", "A2"):
        await api.admin("POST", f"/v1/agents/{agent_id}/deposits",
                        {"amount_minor": DEPOSIT_MINOR, "currency": "CNY",
                         "reference": f"seed-{agent_id}"}, 201)
    return api
