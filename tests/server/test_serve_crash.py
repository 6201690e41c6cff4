"""Goal: no effect acknowledged over HTTP is lost when the server is killed with SIGKILL, nothing
is sold twice across the crash, and the order saga leaves money and stock reconciled: every
order answered 201/200 comes back after a restart with the same codes, every redemption
answered 200 is still there (a retry of its request id returns it, a new request id is
ALREADY_REDEEMED), no code is in two orders, the stock counts equal what the acknowledged
effects imply (plus effects that were made but whose answer was lost, which the checks allow
for explicitly), and the reconciliation report finds no difference between the ledger, the
orders and the core.

Method: a real ``cardsvc serve`` process on a free loopback port; a few threads place orders and
redeem the codes they got, recording each effect only after its 2xx arrived; the server is
killed with SIGKILL at a random moment (bounded: ROUNDS kills), restarted on the same data
directory, and every recorded effect is checked through the API. Runs with the risk limits
off, since the test hammers from one IP.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.fixtures.serving import create_cli_key as _key
from tests.fixtures.serving import free_loopback_port as _free_loopback_port
from tests.fixtures.serving import start_server as _start

ROUNDS = 3
CODES = 400
WORKERS = 4


class Ledger:
    """What the clients were told, recorded only after a 2xx arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.orders: dict[str, list[str]] = {}  # client_order_id -> codes
        self.redemptions: dict[str, tuple[str, int]] = {}  # request_id -> (code, redemption id)


def _client(url: str, agent: str, terminal: str, ledger: Ledger, stop: threading.Event,
            worker: int) -> None:
    rng = random.Random(worker)
    with httpx.Client(base_url=url, timeout=5.0) as http:
        n = 0
        while not stop.is_set():
            n += 1
            ref = f"w{worker}-{n}"
            try:
                response = http.post("/v1/orders", headers={"authorization": f"Bearer {agent}"},
                                     json={"sku": "VIP", "quantity": rng.randint(1, 3),
                                           "client_order_id": ref})
                if response.status_code not in (200, 201):
                    continue
                codes = [c["code"] for c in response.json()["codes"]]
                with ledger.lock:
                    ledger.orders[ref] = codes
                code = codes[0]
                request_id = f"r-{ref}"
                redeemed = http.post("/v1/redeem",
                                     headers={"authorization": f"Bearer {terminal}"},
                                     json={"code": code, "request_id": request_id})
                if redeemed.status_code == 200:
                    with ledger.lock:
                        ledger.redemptions[request_id] = (code, redeemed.json()["redemption_id"])
            except httpx.TransportError:
                time.sleep(0.01)  # the server is down; retry until the test stops us


def _check(url: str, admin: str, agent: str, terminal: str, ledger: Ledger) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as http:
        seen: dict[str, str] = {}
        for ref, codes in ledger.orders.items():
            got = http.get("/v1/orders", params={"client_order_id": ref},
                           headers={"authorization": f"Bearer {agent}"})
            assert got.status_code == 200, (ref, got.text)
            assert [c["code"] for c in got.json()["codes"]] == codes, ref
            for code in codes:
                assert seen.setdefault(code, ref) == ref, f"{code[-4:]} in two orders"
        for request_id, (code, redemption_id) in ledger.redemptions.items():
            replay = http.post("/v1/redeem", headers={"authorization": f"Bearer {terminal}"},
                               json={"code": code, "request_id": request_id})
            assert replay.status_code == 200, replay.text
            assert replay.json()["redemption_id"] == redemption_id
            other = http.post("/v1/redeem", headers={"authorization": f"Bearer {terminal}"},
                              json={"code": code, "request_id": f"{request_id}-again"})
            assert other.json()["error"]["code"] == "ALREADY_REDEEMED"
        stock = http.get("/v1/skus/VIP/stock", headers={"authorization": f"Bearer {admin}"})
        counts = stock.json()
        assert sum(counts[s] for s in ("available", "held", "allocated", "redeemed")) == CODES
        # Acknowledged effects are a lower bound: an effect whose answer was lost in the kill
        # may also have been made (and is then kept, durably, which is allowed).
        assert counts["allocated"] + counts["redeemed"] >= len(seen)
        assert counts["redeemed"] >= len(ledger.redemptions)
        # Money and stock agree after the crash: every order is fulfilled (with its
        # settlement) or failed (its debit released); escrow holds exactly the pending orders.
        http.post("/v1/orders", headers={"authorization": f"Bearer {agent}"},
                  json={"sku": "VIP", "quantity": 1, "client_order_id": "after-restart"})
        report = http.get("/v1/reconciliation",
                          headers={"authorization": f"Bearer {admin}"}).json()
        assert report.get("ok"), report


def test_kill_9_loses_no_acknowledged_order_or_redemption(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    admin = _key(data_dir, "--role", "admin")
    terminal = _key(data_dir, "--role", "terminal")
    process = _start(data_dir, port, log)
    try:
        auth = {"authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=url, timeout=10.0) as http:
            assert http.post("/v1/agents", headers=auth,
                             json={"agent_id": "A1", "name": "a"}).status_code == 201
            assert http.post("/v1/skus", headers=auth,
                             json={"sku": "VIP", "name": "vip"}).status_code == 201
            made = http.post("/v1/batches", headers=auth,
                             json={"sku": "VIP", "generate": {"count": CODES}})
            assert made.json()["imported"] == CODES
            assert http.put("/v1/prices", headers=auth, json={
                "sku": "VIP", "grade": "standard", "price_minor": 100,
                "currency": "CNY"}).status_code == 200
            assert http.post("/v1/agents/A1/deposits", headers=auth, json={
                "amount_minor": 10**9, "currency": "CNY",
                "reference": "seed"}).status_code == 201
        agent = _key(data_dir, "--role", "agent", "--agent", "A1")
        ledger = Ledger()
        rng = random.Random(7)
        for _ in range(ROUNDS):
            stop = threading.Event()
            workers = [threading.Thread(target=_client, args=(url, agent, terminal, ledger,
                                                              stop, i)) for i in range(WORKERS)]
            for worker in workers:
                worker.start()
            time.sleep(rng.uniform(0.5, 1.5))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            stop.set()
            for worker in workers:
                worker.join(10)
            process = _start(data_dir, port, log)
            _check(url, admin, agent, terminal, ledger)
        assert ledger.orders, "no order was acknowledged: the test proved nothing"
        assert ledger.redemptions, "no redemption was acknowledged"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
