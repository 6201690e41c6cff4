"""Issue 14's page-time benchmark: every console page answers in under 200 ms with 1,000,000
orders and 10,000,000 codes loaded.

Method: a fresh service (``server.app.create_app``: SQLite with WAL, the file journal) in a
temporary data directory. Codes are generated into the core and sealed into SQL through the
real batch saga (``Batches.generate``, in batches of ``--batch-codes``), so stock, code search
and traces read real rows. Orders, ledger-free order rows only, are written directly in SQL in
bulk (one ``INSERT ... SELECT`` over a recursive CTE per chunk, spread over 200 agents and 90
days); the roll-ups the dashboard reads are filled the same way (90 days x 200 channels x 5
SKUs). Then the owner logs in through the login form (password and TOTP, as a browser does)
and each console page is fetched ``--repeat`` times through the ASGI app in process (httpx's
``ASGITransport``: no network, the whole web stack); the median and the worst are reported.
Each page must answer 200 with its own marker before it is timed. Figures go to
``bench/results/console.json`` and the console.

Run: ``python -m bench.console_bench`` (the defaults: 1M orders, 10M codes) or smaller, e.g.
``--orders 100000 --codes 1000000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from cardsvc.access import Argon2Params, create_owner, totp_code
from cardsvc.catalog import BatchMeta, CodeFormat
from server.app import Composed, create_app
from server.settings import Settings

ORIGIN = "https://testserver"
PASSWORD = "correct staple battery horse"
AGENTS = 200
SKUS = ("VIP", "GAME", "MUSIC", "VIDEO", "BOOK")
DAYS = 90
DAY_MS = 86_400_000
ORDER_CHUNK = 200_000
TARGET_MS = 200.0
PAGES: tuple[tuple[str, str], ...] = (
    ("/console", 'id="money-title"'),
    ("/console?range=30d", 'id="money-title"'),
    ("/console/orders", "/console/orders/"),
    ("/console/orders?status=fulfilled", "/console/orders/"),
    ("/console/orders?agent_id=A0007", "/console/orders/"),
    ("/console/orders/ord-0000000001", 'data-order="ord-0000000001"'),
    ("/console/agents", "/console/agents/A0001"),
    ("/console/agents/A0007", "A0007"),
    ("/console/holds", "<table"),
    ("/console/withdrawals", "<table"),
    ("/console/skus", "/console/skus/VIP"),
    ("/console/skus/VIP", "VIP"),
    ("/console/batches/1", "VIP"),
    ("/console/codes?batch_id=1", "code-masked"),
    ("/console/approvals", "<table"),
    ("/console/audit", "<table"),
    ("/console/money", "data-reconciled"),
    ("/console/alerts", "<table"),
    ("/console/keys", "<table"),
    ("/console/risk", "<table"),
)
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, argon2=Argon2Params(time_cost=1, memory_kib=8,
                                                           parallelism=1))


def load_codes(runtime: Any, codes: int, batch_codes: int, actor: str) -> float:
    """Generates ``codes`` codes of SKU VIP through the batch saga; returns the seconds."""
    started = time.perf_counter()
    left = codes
    fmt = CodeFormat(length=16, group=4)
    while left > 0:
        count = min(batch_codes, left)
        runtime.batches.generate(BatchMeta(sku="VIP", supplier="Bench Cards",
                                           unit_cost_minor=500, currency="CNY"),
                                 fmt, count, actor=actor)
        left -= count
    return time.perf_counter() - started


def load_orders(runtime: Any, orders: int, now_ms: int) -> float:
    """Writes ``orders`` fulfilled orders (no codes, no postings) and the roll-ups directly in
    SQL, in chunks; returns the seconds."""
    started = time.perf_counter()
    for first in range(0, orders, ORDER_CHUNK):
        with runtime.db.write() as connection:
            count = min(ORDER_CHUNK, orders - first)
            connection.execute(text(
                "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n "
                "WHERE i < :last) "
                "INSERT INTO orders (order_id, agent_id, client_order_id, sku, quantity, "
                "pool_id, status, created_at_ms, updated_at_ms, unit_price_minor, "
                "total_minor, currency) "
                "SELECT printf('ord-%010d', i), printf('A%04d', i % :agents + 1), "
                "printf('c-%010d', i), 'VIP', 1, 0, "
                "CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'fulfilled' END, "
                ":now - (i * 7919) % (:days * :day), :now - (i * 7919) % (:days * :day), "
                "1000, 1000, 'CNY' FROM n"),
                {"first": first + 1, "last": first + count, "agents": AGENTS, "now": now_ms,
                 "days": DAYS, "day": DAY_MS})
    with runtime.db.write() as connection:
        connection.execute(text(
            "WITH RECURSIVE d(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM d WHERE k < :days), "
            "a(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM a WHERE j < :agents) "
            "INSERT INTO sales_daily (day, channel, sku, pool_id, currency, orders, refunds, "
            "quantity, gmv_minor, commission_minor, cost_minor, profit_minor) "
            "SELECT date(:now / 1000 - k * 86400, 'unixepoch'), printf('A%04d', j), 'VIP', 0, "
            "'CNY', 50, 0, 50, 50000, 5000, 25000, 20000 FROM d, a"),
            {"days": DAYS - 1, "agents": AGENTS, "now": now_ms})
    return time.perf_counter() - started


def make_shop(runtime: Any) -> tuple[str, str]:
    """The owner (login, TOTP secret) and the catalog and agents the pages show."""
    created = create_owner(runtime.db, runtime.keyring, runtime.logins.passwords,
                           login="owner", password=PASSWORD, display_name="Bench Owner",
                           now_ms=int(time.time() * 1000))
    actor = "user:" + created.user["user_id"]
    for sku in SKUS:
        runtime.catalog.create_sku(sku, f"{sku} card", actor=actor, cost_minor=500,
                                   low_stock_threshold=10)
    runtime.price_lists.set_price(sku="VIP", price_minor=1000, currency="CNY",
                                  grade="standard", agent_id=None, visible=True, actor=actor,
                                  actor_agent_id=None)
    for index in range(1, AGENTS + 1):
        runtime.agent_updates.create(f"A{index:04d}", f"Agent {index}", {}, actor=actor,
                                     actor_agent_id=None)
    return "owner", created.totp.secret_base32


async def log_in(client: httpx.AsyncClient, login: str, secret: str) -> None:
    page = await client.get("/auth/login")
    token = _TOKEN.search(page.text)
    assert token is not None, page.text[:300]
    step = int(time.time()) // 30
    answer = await client.post("/auth/login", data={
        "csrf_token": token.group(1), "login": login, "password": PASSWORD,
        "code": totp_code(secret, step)})
    assert answer.status_code == 303 and answer.headers["location"] == "/console", answer.text


async def time_pages(asgi: Any, login: str, secret: str, repeat: int) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN,
                                 headers={"origin": ORIGIN}) as client:
        await log_in(client, login, secret)
        results = []
        for path, marker in PAGES:
            first = await client.get(path)
            assert first.status_code == 200 and marker in first.text, (path, first.status_code)
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = await client.get(path)
                samples.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
            results.append({"path": path, "median_ms": round(statistics.median(samples), 1),
                            "max_ms": round(max(samples), 1), "repeat": repeat})
    return results


def run(orders: int, codes: int, batch_codes: int, repeat: int, data_dir: Path) -> dict[str, Any]:
    app = create_app(_settings(data_dir))

    async def body() -> dict[str, Any]:
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime
            login, secret = make_shop(runtime)
            actor = "bench"
            code_s = load_codes(runtime, codes, batch_codes, actor)
            # A stored reconciliation for the money page, and the readers' first round (its
            # hourly roll-up check) before the bulk rows, which have no ledger behind them.
            await asyncio.to_thread(runtime.reconciliations.run, actor=actor)
            await asyncio.to_thread(runtime.reports_round)
            order_s = load_orders(runtime, orders, runtime.engine.now_ms())
            pages = await time_pages(Composed(app, app.state.web), login, secret, repeat)
            return {"orders": orders, "codes": codes, "load_codes_s": round(code_s, 1),
                    "load_orders_s": round(order_s, 1), "pages": pages,
                    "slowest_median_ms": max(page["median_ms"] for page in pages),
                    "target_ms": TARGET_MS}

    return asyncio.run(body())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--codes", type=int, default=10_000_000)
    parser.add_argument("--batch-codes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/console.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        summary = run(args.orders, args.codes, args.batch_codes, args.repeat, Path(tmp) / "data")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    for page in summary["pages"]:
        print(f"{page['path']:<40} median {page['median_ms']:>7.1f} ms  max "
              f"{page['max_ms']:>7.1f} ms")
    print(f"orders {summary['orders']:,}, codes {summary['codes']:,}: slowest median "
          f"{summary['slowest_median_ms']} ms (target < {TARGET_MS} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
