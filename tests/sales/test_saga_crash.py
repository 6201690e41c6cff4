"""Goal: the order saga ends every order fulfilled (or failed and refunded) with the ledger and
the stock consistent, wherever a crash cuts it: after the debit (step 1), after the allocation
but before it is durable, after it is durable but before the settlement (step 3), and after the
settlement but before the answer.

Method: a real ``cardsvc serve`` started with ``CARDSVC_CRASH_AT=<point>`` (the saga's fault
injection, ``cardsvc.orders.CRASH_POINTS``) kills itself with SIGKILL at that point of the first
order; the client sees its connection drop. The server is restarted without it (start-up
recovery re-drives pending orders), and then: the agent finds its order by ``client_order_id``,
fulfilled with its codes; a retry returns the same codes; the balance was debited exactly once;
the stock shows exactly those codes allocated; and the reconciliation report is clean.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from cardsvc.sales.orders import CRASH_POINTS
from tests.fixtures.serving import create_cli_key as _key
from tests.fixtures.serving import free_loopback_port as _free_loopback_port
from tests.fixtures.serving import start_server as _start

QUANTITY = 3
PRICE = 100
DEPOSIT = 10_000


def _seed(url: str, admin: str) -> None:
    auth = {"authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for method, path, body in (
            ("POST", "/v1/agents", {"agent_id": "A1", "name": "a"}),
            ("POST", "/v1/skus", {"sku": "VIP", "name": "vip"}),
            ("POST", "/v1/batches", {"sku": "VIP", "generate": {"count": 20}}),
            ("PUT", "/v1/prices", {"sku": "VIP", "grade": "standard", "price_minor": PRICE,
                                   "currency": "CNY"}),
            ("POST", "/v1/agents/A1/deposits", {"amount_minor": DEPOSIT, "currency": "CNY",
                                                "reference": "seed"}),
        ):
            response = http.request(method, path, headers=auth, json=body)
            assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_order_saga_survives_a_crash_at_each_step(tmp_path: Path, point: str) -> None:
    data_dir = tmp_path / "data"
    port = _free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    admin = _key(data_dir, "--role", "admin")
    process = _start(data_dir, port, log, crash_at=point)
    try:
        _seed(url, admin)
        agent = _key(data_dir, "--role", "agent", "--agent", "A1")
        body = {"sku": "VIP", "quantity": QUANTITY, "client_order_id": "crash-1"}
        agent_auth = {"authorization": f"Bearer {agent}"}
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{url}/v1/orders", headers=agent_auth, json=body, timeout=10.0)
        assert process.wait(10) == -signal.SIGKILL
        process = _start(data_dir, port, log)
        with httpx.Client(base_url=url, timeout=10.0) as http:
            found = http.get("/v1/orders", params={"client_order_id": "crash-1"},
                             headers=agent_auth)
            # Step 1 committed before every crash point, so the order exists; recovery at
            # start-up drove it to its end.
            assert found.status_code == 200, found.text
            order = found.json()
            assert order["status"] == "fulfilled", order
            assert len(order["codes"]) == QUANTITY
            retry = http.post("/v1/orders", headers=agent_auth, json=body)
            assert retry.status_code == 200
            assert retry.json()["codes"] == order["codes"]
            admin_auth = {"authorization": f"Bearer {admin}"}
            balance = http.get("/v1/agents/A1/balance", headers=admin_auth).json()["balances"]
            assert balance["available"] == DEPOSIT - QUANTITY * PRICE
            assert balance["escrow"] == 0
            stock = http.get("/v1/skus/VIP/stock", headers=admin_auth).json()
            assert stock["allocated"] == QUANTITY
            report = http.get("/v1/reconciliation", headers=admin_auth).json()
            assert report["ok"], report["differences"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
