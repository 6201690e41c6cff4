"""Goal: DESIGN.md invariant 5 over HTTP: no full code or PIN appears in any log line, any error
body, or any response other than the delivery of an order to its owner.

Method: one story that reaches every endpoint and most error paths (imports with duplicates and
an invalid code, orders, holds, verify and redeem successes and failures, batch redeem, rollback,
lockout, freezes, validation errors that echo nothing), with every log record of every logger
captured at DEBUG and every response kept. Then each log line, each error body, and each
response that is not an order delivery is searched for every code and PIN the story used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from cardsvc.access.risk import RiskLimits
from tests.fixtures.http import CODES, PINS, Api

pytestmark = pytest.mark.anyio

SECRETS = [*CODES, *(pin for pin in PINS if len(pin) > 4), "LEAKY-CODE-0001", "bad\x01code-7777"]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")):
            return  # the test's own client logs the URLs it requests; the server is under test
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def story(api: Api) -> list[tuple[str, httpx.Response]]:
    api.runtime.risk.limits = RiskLimits(failures_max_per_key=3)
    seen: list[tuple[str, httpx.Response]] = []

    async def call(method: str, path: str, role: str, body: object = None) -> httpx.Response:
        response = await api.call(method, path, api.keys[role], json=body)
        seen.append((path, response))
        return response

    await call("POST", "/v1/batches", "admin", {"sku": "VIP", "codes": [
        {"code": CODES[0], "pin": PINS[0]}, {"code": "LEAKY-CODE-0001", "pin": "12345678"}]})
    await call("POST", "/v1/batches", "admin", {"sku": "VIP", "codes": [
        {"code": "bad\x01code-7777"}]})
    order = await call("POST", "/v1/orders", "agent",
                       {"sku": "VIP", "quantity": 3, "client_order_id": "leak-1"})
    sold = order.json()["codes"]
    await call("GET", f"/v1/orders/{order.json()['order_id']}", "agent")
    await call("POST", "/v1/verify", "terminal", {"code": sold[0]["code"]})  # PIN missing
    await call("POST", "/v1/verify", "terminal", {"code": sold[0]["code"], "pin": "000000"})
    await call("POST", "/v1/redeem", "terminal",
               {"code": sold[1]["code"], "pin": sold[1]["pin"], "request_id": "a"})
    redeemed = await call("POST", "/v1/redeem", "terminal",
                          {"code": sold[1]["code"], "pin": sold[1]["pin"], "request_id": "b"})
    assert redeemed.status_code == 409
    await call("POST", "/v1/redeem/batch", "terminal", {"items": [
        {"code": sold[2]["code"], "pin": "999999", "request_id": "c"},
        {"code": CODES[5], "pin": PINS[5], "request_id": "d"}]})
    await call("POST", "/v1/redeem", "terminal", {"code": CODES[6], "pin": 5, "request_id": "e"})
    for i in range(5):  # into the lockout
        await call("POST", "/v1/verify", "terminal", {"code": f"{CODES[7]}{i}"})
    await call("POST", "/v1/codes/freeze", "admin", {"code": CODES[8]})
    await call("POST", "/v1/codes/freeze", "admin", {"code": "LEAKY-CODE-0001X"})
    await call("POST", "/v1/holds", "agent", {"sku": "VIP", "quantity": 2, "ttl_seconds": 30})
    await call("GET", "/v1/skus/VIP/stock", "admin")
    seen.append(("raw", await api.http.post(f"/v1/{CODES[9]}", headers=api.auth(
        api.keys["admin"]))))
    return seen


async def test_no_code_or_pin_in_logs_errors_or_non_delivery_responses(
    captured: Capture, catalog: Api
) -> None:
    # ``captured`` comes first so that start-up (recovery, migrations) is captured as well.
    responses = await story(catalog)
    assert any(r.status_code == 429 for _, r in responses), "the story never reached a lockout"
    assert captured.lines, "nothing was logged: the capture is broken"
    for line in captured.lines:
        for secret in SECRETS:
            assert secret not in line, f"a secret ending {secret[-4:]} is in a log line"
    for path, response in responses:
        delivery = path.startswith("/v1/orders") and response.status_code in (200, 201)
        if delivery:
            continue
        for secret in SECRETS:
            assert secret not in response.text, f"{path} answered a secret ending {secret[-4:]}"
