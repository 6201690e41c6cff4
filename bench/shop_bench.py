"""The storefront benchmark: sold-out checkouts, checkouts that get a hold and a payment
attempt, and payment notifies driven to delivered, measured in one run beside the FastAPI no-op
baseline of ``bench.http_bench`` (one uvicorn worker, uvloop, httptools; wrk on the same
2-CPU machine).

Targets and what each must prove before it counts:

* ``noop``: ``bench.http_apps``' FastAPI no-op (the reference point; its identity checked);
* ``shop_soldout``: ``POST /v1/shop/checkouts`` for a SKU on sale with no stock: every answer
  is 409 ``OUT_OF_STOCK`` and the ``retail_orders`` table stays empty (rejected demand never
  reaches SQL). Target: at least half the no-op's rate;
* ``shop_checkout``: the same for a SKU with stock, each request a new buyer: every answer is
  201, and the ``retail_orders`` and ``payment_attempts`` tables hold one row per 201 (and at
  most one per request sent). Target: 1,500/s on SQLite;
* ``shop_notify``: signed sandbox notifies (``POST /pay/notify/<token>``), one per attempt the
  checkout run made, written by this benchmark to a file the wrk script reads; each answered
  ``success`` and, once the server settled, every notified order ``delivered`` with one code
  and the reconciliation clean. Target: 1,000/s.

Method: ``cardsvc serve`` on a fresh data directory with the risk limits, the retail limits and
the proof-of-work challenge off (``CARDSVC_RISK_LIMITS=off``, ``CARDSVC_RETAIL_LIMITS=off``,
``CARDSVC_STORE_CHALLENGE=0``: a load generator from one address would otherwise be refused, and
wrk cannot solve challenges; the report says so), a sandbox channel ``bench`` with a known key
created through the admin API, codes generated through it. The three shop targets run one after
the other on the same server (the notify run needs the checkout run's attempts); the no-op runs
before them. One repeat; the figures are rates over ``--duration`` seconds after a warm-up of
the same kind (the checkout warm-up's attempts are notified too, outside the measurement).

Usage::

    python -m bench.shop_bench                 # 10 s per target
    python -m bench.shop_bench --duration 3    # shorter
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from bench.common import machine_description
from bench.http_bench import (
    ENV_RISK_LIMITS,
    Server,
    ServerDatabase,
    Sizes,
    Target,
    WrkRun,
    baseline_server,
    call,
    cardsvc_bin,
    create_key,
    expect,
    find_wrk,
    launch,
    run_wrk,
    stop,
    wait_ready,
)
from bench.run_all import git_commit

KEY = "bench-sandbox-key-0123456789abcdef"
MERCHANT = "bench-shop"
PRICE = 500
NOOP = Target("noop", "FastAPI no-op", "noop", "/noop", "static")
TARGETS = {"shop_soldout": 0.5, "shop_checkout": 1_500, "shop_notify": 1_000}
"""Each target's bar: a ratio to the no-op (sold out) or a rate per second."""


@dataclass
class Figure:
    key: str
    run: WrkRun
    ok: int
    checks: list[str]
    cpu_s_per_request_us: float | None = None


def serve_shop(work_dir: Path) -> Server:
    data_dir = work_dir / "data"
    database = ServerDatabase(data_dir=data_dir)
    admin = create_key(database, "admin", "bench")
    env = dict(os.environ) | {ENV_RISK_LIMITS: "off", "CARDSVC_RETAIL_LIMITS": "off",
                              "CARDSVC_STORE_CHALLENGE": "0"}
    server = launch([str(cardsvc_bin()), "serve", "--data-dir", str(data_dir)], env, work_dir)
    server.admin_headers = {"Authorization": f"Bearer {admin}"}
    server.database = database
    wait_ready(server, "/healthz")
    return server


def seed(server: Server, codes: int) -> str:
    """The bench channel (its notify path), SKU SOLDOUT without stock, SKU SHOP with
    ``codes`` codes."""
    channel = expect(server, "POST", "/v1/payment-channels", {
        "channel_id": "bench", "provider": "sandbox", "display_name": "Bench",
        "merchant_id": MERCHANT, "secrets": {"key": KEY}}, 201)
    for sku in ("SOLDOUT", "SHOP"):
        expect(server, "POST", "/v1/skus", {"sku": sku, "name": sku, "retail_price_minor": PRICE,
                                            "retail_quantity_max": 5}, 201)
    made = 0
    while made < codes:
        count = min(100_000, codes - made)
        expect(server, "POST", "/v1/batches", {"sku": "SHOP", "generate": {"count": count}},
               201)
        made += count
    return "/pay/notify/" + str(channel["notify_url"]).rsplit("/", 1)[1]


def sqlite_rows(server: Server, query: str) -> list[tuple[Any, ...]]:
    assert server.database is not None
    with closing(sqlite3.connect(server.database.data_dir / "cardsvc.db")) as db:
        return list(db.execute(query))


def notify_body(out_trade_no: str, amount: int) -> str:
    fields = {"v": "1", "merchant_id": MERCHANT, "event_id": f"SBX-{out_trade_no}:0:paid",
              "trade_no": f"SBX-{out_trade_no}", "out_trade_no": out_trade_no,
              "amount_minor": str(amount), "currency": "CNY", "status": "paid",
              "ts": str(int(time.time() * 1000))}
    text = "cardsvc-sandbox-v1\n" + "&".join(
        f"{name}={quote(fields[name], safe='')}" for name in sorted(fields))
    fields["sig"] = hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


def write_notifies(server: Server, path: Path) -> int:
    rows = sqlite_rows(server, "SELECT out_trade_no, amount_minor FROM payment_attempts "
                               "WHERE state = 'pending' ORDER BY created_at_ms")
    path.write_text("".join(notify_body(o, a) + "\n" for o, a in rows))
    return len(rows)


def settle(server: Server, expected: int, timeout_s: float = 60) -> int:
    """Waits until ``expected`` retail orders are delivered (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        delivered = sqlite_rows(server, "SELECT count(*) FROM retail_orders WHERE status = "
                                        "'delivered'")[0][0]
        if delivered >= expected or time.monotonic() > deadline:
            return int(delivered)
        time.sleep(0.25)


def measure(wrk: str, sizes: Sizes, server: Server, path: str, script: str,
            args: list[str], seconds: int) -> tuple[WrkRun, float]:
    before = server.cpu_seconds()
    run = run_wrk(wrk, sizes, seconds, server.base_url + path, script, args, {})
    return run, server.cpu_seconds() - before


def run(duration: int, work_dir: Path) -> dict[str, Any]:
    wrk = find_wrk(install=True)
    if wrk is None:
        raise SystemExit("no wrk (scripts/ensure_wrk.sh)")
    sizes = Sizes(duration_s=duration, warmup_s=2, repeats=1, connections=64, threads=2)
    figures: dict[str, Any] = {}
    with baseline_server(NOOP, sizes, work_dir) as noop:
        run_wrk(wrk, sizes, sizes.warmup_s, noop.base_url + NOOP.path, "static", [], {})
        before = noop.cpu_seconds()
        base = run_wrk(wrk, sizes, duration, noop.base_url + NOOP.path, "static", [], {})
        figures["noop"] = {"rps": base.rps, "p50_ms": base.latency_ms.get("p50"),
                           "p99_ms": base.latency_ms.get("p99"), "non_2xx": base.non_2xx,
                           "server_cpu_us": 1e6 * (noop.cpu_seconds() - before) / base.requests}
    server = serve_shop(work_dir)
    try:
        notify_path = seed(server, codes=(duration + sizes.warmup_s) * 4_000 + 10_000)
        # Sold out: every answer 409, nothing in SQL.
        measure(wrk, sizes, server, "/v1/shop/checkouts", "shop_soldout", [], sizes.warmup_s)
        soldout, cpu = measure(wrk, sizes, server, "/v1/shop/checkouts", "shop_soldout", [],
                               duration)
        orders = sqlite_rows(server, "SELECT count(*) FROM retail_orders")[0][0]
        figures["shop_soldout"] = _figure(soldout, cpu, ok=soldout.non_2xx,
                                          checks=[f"retail_orders rows: {orders} (must be 0)"],
                                          passed=orders == 0 and soldout.socket_error_count == 0
                                          and soldout.non_2xx == soldout.requests)
        # Checkouts: every answer 201, one order and one attempt per 201.
        measure(wrk, sizes, server, "/v1/shop/checkouts", "shop_checkout", ["warm"],
                sizes.warmup_s)
        time.sleep(0.5)  # the warm-up's last checkouts commit before the count is taken
        made_before = sqlite_rows(server, "SELECT count(*) FROM retail_orders")[0][0]
        checkout, cpu = measure(wrk, sizes, server, "/v1/shop/checkouts", "shop_checkout",
                                ["run"], duration)
        time.sleep(0.5)
        orders, attempts = (sqlite_rows(server, f"SELECT count(*) FROM {table}")[0][0]
                            for table in ("retail_orders", "payment_attempts"))
        made = orders - made_before
        ok = checkout.created or 0
        figures["shop_checkout"] = _figure(
            checkout, cpu, ok=ok, checks=[f"orders made {made}, 201s {ok}, sent "
                                          f"{checkout.sent}, attempts = orders: "
                                          f"{attempts == orders}"],
            passed=checkout.non_2xx == 0 and ok <= made <= (checkout.sent or made)
            and attempts == orders)
        # Notifies: one per attempt; delivered once each.
        bodies = work_dir / "notifies.txt"
        count = write_notifies(server, bodies)
        notify, cpu = measure(wrk, sizes, server, notify_path, "shop_notify",
                              [str(bodies), str(sizes.threads)], duration)
        reached = min(count, notify.requests)
        delivered = settle(server, min(reached, count))
        report = call("GET", server.base_url + "/v1/reconciliation",
                      headers=server.admin_headers).body
        figures["shop_notify"] = _figure(
            notify, cpu, ok=delivered,
            checks=[f"notify bodies {count}, requests {notify.requests}, delivered "
                    f"{delivered}, reconciliation ok: {report.get('ok')}"],
            passed=notify.non_2xx == 0 and report.get("ok") is True and delivered >= min(
                count, notify.requests - sizes.connections))
        figures["shop_notify"]["rps_delivered"] = min(delivered, count) / notify.duration_s
    finally:
        stop(server)
    return {"machine": machine_description(), "commit": git_commit(), "duration_s": duration,
            "figures": figures, "limits": "risk, retail limits and challenge off"}


def _figure(run: WrkRun, cpu_s: float, *, ok: int, checks: list[str],
            passed: bool) -> dict[str, Any]:
    return {"rps": run.rps, "requests": run.requests, "ok": ok, "non_2xx": run.non_2xx,
            "socket_errors": run.socket_error_count, "p50_ms": run.latency_ms.get("p50"),
            "p99_ms": run.latency_ms.get("p99"), "server_cpu_us": 1e6 * cpu_s / max(run.requests,
                                                                                   1),
            "checks": checks, "checks_passed": passed}


def markdown(result: dict[str, Any]) -> str:
    figures = result["figures"]
    noop = figures["noop"]["rps"]
    rows = ["| target | req/s | p50 | p99 | server CPU / req | bar | result | checks |",
            "|---|--:|--:|--:|--:|--:|---|---|"]
    rows.append(f"| FastAPI no-op | {noop:,.0f} | {figures['noop']['p50_ms']} ms | "
                f"{figures['noop']['p99_ms']} ms | {figures['noop']['server_cpu_us']:.0f} µs "
                "| - | - | - |")
    for key, bar in TARGETS.items():
        fig = figures[key]
        rate = fig.get("rps_delivered", fig["rps"])
        wanted = bar * noop if key == "shop_soldout" else bar
        verdict = "PASS" if rate >= wanted and fig["checks_passed"] else "MISS"
        rows.append(f"| {key} | {rate:,.0f} | {fig['p50_ms']} ms | {fig['p99_ms']} ms | "
                    f"{fig['server_cpu_us']:.0f} µs | >= {wanted:,.0f} | {verdict} | "
                    f"{'; '.join(fig['checks'])} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path("bench/results/shop.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as work:
        result = run(args.duration, Path(work))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    print(markdown(result))
    return 0 if all(result["figures"][k]["checks_passed"] for k in TARGETS) else 1


if __name__ == "__main__":
    sys.exit(main())
