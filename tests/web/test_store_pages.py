"""Goal: the store's pages and its JSON twin resist an outsider: every store form refuses a
forged post (CSRF), product names and emails are shown inert, another buyer's order (by its id
or with a wrong token) is the same "not found" as one that does not exist, lookups answer
uniformly and are throttled, a claim link's GET reveals nothing, callbacks sent to another
channel's URL or with a huge body change nothing, and a flood of checkouts from one address
meets the caps.

Method: the whole service (``server.app.create_asgi``) in process over ``httpx``'s ASGI
transport on https://testserver (real ``__Host-`` cookies), lifespan run as a server would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from cardsvc.payments import SandboxScenario, sandbox_script
from cardsvc.runtime import Runtime
from server.app import create_asgi
from server.settings import Settings
from tests.fixtures.shop import SKU, stock_shop
from tests.web.conftest import error_code

pytestmark = pytest.mark.anyio
ORIGIN = {"origin": "https://testserver"}
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Shop:
    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app: ASGIApp = app
        self.runtime = runtime

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="https://testserver",
                                 follow_redirects=False)


@pytest.fixture
async def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Shop]:
    monkeypatch.setenv("CARDSVC_STORE_CHALLENGE", "0")
    app = create_asgi(Settings.from_env(data_dir=tmp_path / "data",
                                        public_url="https://testserver"))
    async with app.api.router.lifespan_context(app.api):
        runtime = app.api.state.runtime
        stock_shop(runtime)
        stock_shop(runtime, sku="XSS", name="<script>alert(1)</script>", price=100,
                   codes=["XSS-0001-AAAA"], pins=["1"],
                   description='<img src=x onerror="alert(2)">')
        yield Shop(app, runtime)


async def token_of(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    found = _TOKEN.search(page.text)
    assert found, path
    return found.group(1)


async def buy(client: httpx.AsyncClient, *, email: str = "a@example.com",
              password: str = "") -> str:
    token = await token_of(client, f"/p/{SKU}")
    answer = await client.post("/checkout", headers=ORIGIN, data={
        "csrf_token": token, "sku": SKU, "quantity": "1", "email": email,
        "password": password, "channel_id": "sandbox"})
    assert answer.status_code == 303, answer.text[:500]
    return str(answer.headers["location"]).rsplit("/", 1)[1]


async def pay(shop: Shop, order_id: str) -> None:
    attempt = (await shop.runtime.checkout.admin_order(order_id)).attempt_id
    await shop.runtime.checkout.simulate_sandbox(attempt, scenario="paid")


async def test_every_store_form_refuses_a_forged_post(shop: Shop) -> None:
    async with shop.client() as buyer:
        order_id = await buy(buyer)
        await pay(shop, order_id)
        for path in ("/checkout", f"/orders/{order_id}/reveal", f"/orders/{order_id}/resend",
                     "/lookup", "/claim/abcdefabcdefabcdefabcd", "/store/sandbox/pay"):
            forged = await buyer.post(path, data={"sku": SKU},
                                      headers={"origin": "https://evil.example"})
            assert (forged.status_code, error_code(forged.text)[0]) == (403, "FORBIDDEN"), path
            no_token = await buyer.post(path, data={"sku": SKU}, headers=ORIGIN)
            assert no_token.status_code == 403, path


async def test_names_descriptions_and_emails_are_inert(shop: Shop) -> None:
    async with shop.client() as buyer:
        home = (await buyer.get("/")).text
        product = (await buyer.get("/p/XSS")).text
        assert "<script>alert(1)</script>" not in home + product
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in home
        assert '<img src=x' not in product and "&lt;img src=x" in product
        refused = await buyer.post("/checkout", headers=ORIGIN, data={
            "csrf_token": await token_of(buyer, f"/p/{SKU}"), "sku": SKU, "quantity": "1",
            "email": '"><svg/onload=alert(3)>@example.com', "channel_id": "sandbox"})
        assert refused.status_code == 400 and "<svg/onload" not in refused.text


async def test_another_buyers_order_is_not_found(shop: Shop) -> None:
    async with shop.client() as alice, shop.client() as mallory:
        order_id = await buy(alice)
        await pay(shop, order_id)
        mine = await alice.get(f"/orders/{order_id}")
        assert mine.status_code == 200 and "SHOP-" in mine.text
        for path in (f"/orders/{order_id}", f"/orders/{order_id}/state", f"/pay/{order_id}",
                     "/orders/ro_00000000000000000000"):
            theirs = await mallory.get(path)
            assert (theirs.status_code, error_code(theirs.text)[0]) == (404, "ORDER_NOT_FOUND")
        for token in ("wrong-token-wrong-token", None):
            api = await mallory.get(f"/v1/shop/orders/{order_id}",
                                    headers={"x-order-token": token} if token else {})
            assert (api.status_code, api.json()["error"]["code"]) == (404, "ORDER_NOT_FOUND")
        assert "SHOP-" not in (await mallory.get(f"/orders/{order_id}?t=guessed")).text


async def test_lookups_answer_uniformly_and_are_throttled(shop: Shop) -> None:
    async with shop.client() as buyer:
        await buy(buyer, email="known@example.com", password="a long order password")
        answers = []
        for email, password in (("known@example.com", "wrong password here"),
                                ("nobody@example.com", "a long order password"),
                                ("not an email", "x")):
            token = await token_of(buyer, "/lookup")
            answer = await buyer.post("/lookup", headers=ORIGIN, data={
                "csrf_token": token, "email": email, "password": password})
            answers.append((answer.status_code, error_code(answer.text)[0]))
        assert answers == [(404, "ORDER_NOT_FOUND")] * 3
        api = [await buyer.post("/v1/shop/lookup", json={"email": "nobody@example.com",
                                                         "password": "whatever-it-is"})
               for _ in range(40)]
        codes = [a.json()["error"]["code"] for a in api]
        assert set(codes) == {"ORDER_NOT_FOUND", "RATE_LIMITED"}
        assert codes.index("RATE_LIMITED") > 20
        found = await shop.runtime.checkout.lookup("known@example.com", "a long order password",
                                                   ip="203.0.113.9")
        assert len(found) == 1


async def test_claim_link_get_reveals_nothing(shop: Shop) -> None:
    async with shop.client() as buyer, shop.client() as scanner:
        order_id = await buy(buyer)
        await pay(shop, order_id)
        url = shop.runtime.checkout.claim_url(order_id).replace("https://testserver", "")
        for _ in range(3):
            page = await scanner.get(url)
            assert page.status_code == 200 and "SHOP-" not in page.text
            assert 'data-claimed="no"' in page.text
        bad = await scanner.get("/claim/AAAAAAAAAAAAAAAAAAAAAA")
        assert (bad.status_code, error_code(bad.text)[0]) == (404, "ORDER_NOT_FOUND")


async def test_callbacks_to_another_channel_or_too_large_change_nothing(shop: Shop) -> None:
    runtime = shop.runtime
    other = runtime.channels.create("sandbox2", "sandbox", display_name="Second",
                                    merchant_id="sandbox-shop", secrets_={"key": "k" * 32},
                                    actor="test")
    async with shop.client() as buyer:
        order_id = await buy(buyer)
        view = await runtime.checkout.admin_order(order_id)
        live = runtime.channels.live("sandbox")
        delivery = sandbox_script(live.config, SandboxScenario(("paid",)),
                                  out_trade_no=view.attempt_id, amount_minor=view.total_minor,
                                  currency="CNY", start_ms=runtime.engine.now_ms())[0]
        wrong = await buyer.post(other.notify_url.replace("https://testserver", ""),
                                 content=delivery.body, headers=dict(delivery.headers))
        assert (wrong.status_code, wrong.content) == (400, b"fail")
        second = runtime.channels.live("sandbox2")
        signed = sandbox_script(second.config, SandboxScenario(("paid",)),
                                out_trade_no=view.attempt_id, amount_minor=view.total_minor,
                                currency="CNY", start_ms=runtime.engine.now_ms())[0]
        unknown = await buyer.post(other.notify_url.replace("https://testserver", ""),
                                   content=signed.body, headers=dict(signed.headers))
        assert unknown.content == b"success"
        huge = await buyer.post(live.view.notify_url.replace("https://testserver", ""),
                                content=b"a=" + b"x" * 300_000,
                                headers={"content-type": "application/x-www-form-urlencoded"})
        assert huge.status_code in (400, 413)
        nowhere = await buyer.post("/pay/notify/nothing-here", content=delivery.body)
        assert nowhere.status_code == 404
        assert (await runtime.checkout.admin_order(order_id)).status == "pending"


async def test_a_flood_of_checkouts_meets_the_caps(shop: Shop) -> None:
    async with shop.client() as bot:
        statuses = []
        for n in range(12):
            token = await token_of(bot, f"/p/{SKU}")
            answer = await bot.post("/checkout", headers=ORIGIN, data={
                "csrf_token": token, "sku": SKU, "quantity": "1",
                "email": f"bot{n}@example.com", "channel_id": "sandbox"})
            statuses.append((answer.status_code, error_code(answer.text)[0]))
        # One IP may hold at most 20 units; the twelve codes in stock run out first here, and
        # the sold-out answers come with no order.
        assert statuses[:12].count((303, None)) >= 10
        api = [await bot.post("/v1/shop/checkouts", json={
            "sku": SKU, "quantity": 1, "email": "same@example.com", "channel_id": "sandbox"})
            for _ in range(30)]
        codes = {a.json()["error"]["code"] for a in api if a.status_code >= 400}
        assert codes <= {"RATE_LIMITED", "OUT_OF_STOCK"} and codes
