"""Goal: a retail order paid just before a crash is delivered exactly once after the restart,
wherever the crash cuts the fulfilment: after the payment committed (the order ``paid``), after
the core confirmed the hold, after the delivery committed.

Method: a real ``cardsvc serve`` with ``CARDSVC_CRASH_AT=<point>`` (``RETAIL_CRASH_POINTS``)
kills itself with SIGKILL inside the first callback; the provider sees its connection drop. The
server is restarted without the fault (start-up recovery drives paid orders), then: the order is
delivered with one code, the stock shows exactly one code allocated, the provider's retry of the
same callback is a duplicate (acknowledged, nothing changes), and the reconciliation is clean.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from cardsvc.payments import ChannelConfig
from cardsvc.payments.providers.sandbox import SandboxEvent, sign_sandbox_notify
from cardsvc.sales import RETAIL_CRASH_POINTS
from tests.fixtures.serving import create_cli_key, free_loopback_port, start_server, stop

KEY = "crash-test-key-0123456789abcdef"


def _seed(http: httpx.Client, admin: str) -> str:
    auth = {"authorization": f"Bearer {admin}"}
    for path, body in (
        ("/v1/skus", {"sku": "GIFT", "name": "Gift card", "retail_price_minor": 500}),
        ("/v1/batches", {"sku": "GIFT", "generate": {"count": 5}}),
        ("/v1/payment-channels", {"channel_id": "crashbox", "provider": "sandbox",
                                  "display_name": "Crash box", "merchant_id": "m1",
                                  "secrets": {"key": KEY}}),
    ):
        answer = http.post(path, headers=auth, json=body)
        assert answer.status_code == 201, answer.text
        if path == "/v1/payment-channels":
            return str(answer.json()["notify_url"])
    raise AssertionError("unreachable")


@pytest.mark.parametrize("point", RETAIL_CRASH_POINTS)
def test_paid_order_is_delivered_once_after_a_crash(tmp_path: Path, point: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDSVC_STORE_CHALLENGE", "0")
    data_dir = tmp_path / "data"
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    admin = create_cli_key(data_dir, "--role", "admin")
    process = start_server(data_dir, port, log, crash_at=point)
    try:
        with httpx.Client(base_url=url, timeout=10.0) as http:
            notify_url = _seed(http, admin)
            checkout = http.post("/v1/shop/checkouts", json={
                "sku": "GIFT", "quantity": 1, "email": "c@example.com",
                "channel_id": "crashbox"}).json()
            order_id, token = checkout["order"]["order_id"], checkout["token"]
            out_trade_no = checkout["payment"]["url"].split("out_trade_no=")[1].split("&")[0]
            config = ChannelConfig(provider="sandbox", channel_id="crashbox", merchant_id="m1",
                                   notify_url=notify_url, return_url=url,
                                   secrets={"key": KEY.encode()})
            event = SandboxEvent("SBX-1:0:paid", "SBX-1", out_trade_no, 500, "CNY", "paid")
            delivery = sign_sandbox_notify(config, event, int(time.time() * 1000))
            path = notify_url.replace(url, "")
            with pytest.raises(httpx.TransportError):
                http.post(path, content=delivery.body, headers=dict(delivery.headers))
        assert process.wait(10) == -signal.SIGKILL
        process = start_server(data_dir, port, log)
        with httpx.Client(base_url=url, timeout=10.0) as http:
            order = http.get(f"/v1/shop/orders/{order_id}",
                             headers={"x-order-token": token}).json()
            assert order["status"] == "delivered"
            again = http.post(path, content=sign_sandbox_notify(
                config, event, int(time.time() * 1000)).body, headers=dict(delivery.headers))
            assert again.content == b"success"
            auth = {"authorization": f"Bearer {admin}"}
            stock = http.get("/v1/skus/GIFT/stock", headers=auth).json()
            assert stock["allocated"] == 1 and stock["held"] == 0
            report = http.get("/v1/reconciliation", headers=auth).json()
            assert report["ok"], report["differences"]
            codes = http.post(f"/v1/shop/orders/{order_id}/reveal", json={},
                              headers={"x-order-token": token}).json()
            assert len(codes["codes"]) == 1 and not codes["codes"][0]["masked"]
    finally:
        stop(process)
