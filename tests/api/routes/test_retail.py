"""Goal: admins configure payment channels over the API with their secrets sealed (never in a
response or the audit log; each channel's notify URL given), sandbox channels are refused while
the production settings are on, and retail orders are listed, read, re-addressed (audited) and
refunded (money reversed) through the same use cases as the shop.

Method: the app in process (``tests/fixtures/http.py``) with an admin key; a shop product and a
sandbox checkout paid through the simulator."""

from __future__ import annotations

import httpx
import pytest

from cardsvc import audit
from cardsvc.payments import PaymentChannel
from cardsvc.runtime import Runtime
from tests.fixtures.http import Api
from tests.fixtures.shop import stock_shop

pytestmark = pytest.mark.anyio


async def _admin(api: Api, method: str, path: str, body: object = None) -> httpx.Response:
    return await api.call(method, path, api.keys["admin"], json=body)
SECRET = "epay-merchant-secret-never-shown"


async def test_channel_secrets_are_sealed_and_never_shown(api: Api) -> None:
    created = await _admin(api, "POST", "/v1/payment-channels", {
        "channel_id": "ep1", "provider": "epay", "display_name": "EPay",
        "merchant_id": "1001", "secrets": {"key": SECRET},
        "options": {"gateway": "https://pay.example.com/"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["notify_url"].startswith("http") and "/pay/notify/" in body["notify_url"]
    assert body["secret_names"] == ["key"] and SECRET not in created.text
    listed = await _admin(api, "GET", "/v1/payment-channels")
    assert SECRET not in listed.text and {c["channel_id"] for c in listed.json()} >= {"ep1"}
    bad = await _admin(api, "POST", "/v1/payment-channels", {
        "channel_id": "ep2", "provider": "epay", "display_name": "x", "merchant_id": "1",
        "secrets": {}, "options": {}})
    assert bad.json()["error"]["code"] == "PAYMENT_CONFIG_INVALID"
    updated = await _admin(api, "PATCH", "/v1/payment-channels/ep1",
                              {"secrets": {"key": "rotated-" + SECRET}})
    assert updated.json()["secret_version"] == 2 and SECRET not in updated.text
    entries = audit.list_entries(api.runtime.db)
    assert all(SECRET not in str(entry.details) for entry in entries)
    with api.runtime.db.read() as session:
        sealed = session.get(PaymentChannel, "ep1")
        assert sealed is not None and SECRET.encode() not in bytes(sealed.secrets_sealed)


async def test_retail_orders_are_listed_readdressed_and_refunded(api: Api) -> None:
    runtime: Runtime = api.runtime
    stock_shop(runtime)
    runtime.challenges.enabled = False
    checkout = await api.http.post("/v1/shop/checkouts", json={
        "sku": "GAME100", "quantity": 1, "email": "buyer@example.com", "channel_id": "sandbox"})
    assert checkout.status_code == 201, checkout.text
    order_id = checkout.json()["order"]["order_id"]
    attempt = (await runtime.checkout.admin_order(order_id)).attempt_id
    await runtime.checkout.simulate_sandbox(attempt, scenario="paid")
    page = (await _admin(api, "GET", "/v1/retail-orders?limit=1")).json()
    assert page["items"][0]["order_id"] == order_id and page["items"][0]["status"] == "delivered"
    moved = await _admin(api, "POST", f"/v1/retail-orders/{order_id}/email",
                            {"email": "new@example.com"})
    assert moved.json()["email"] == "new@example.com"
    refunded = await _admin(api, "POST", f"/v1/retail-orders/{order_id}/refund",
                               {"reason": "customer asked"})
    assert refunded.json()["status"] == "refunded", refunded.text
    report = (await _admin(api, "GET", "/v1/reconciliation")).json()
    assert report["ok"], report["differences"]
    again = await _admin(api, "POST", f"/v1/retail-orders/{order_id}/refund", {"reason": "x"})
    assert again.json()["status"] == "refunded"
