"""Issue 14's page-time benchmark: every console page answers in under 200 ms with 1,000,000
orders and 10,000,000 codes loaded.

Method: a fresh service (``server.app.create_app``: SQLite with WAL, the file journal) in a
temporary data directory. Codes are generated into the core and sealed into SQL through the
real batch saga (``Batches.generate``, in batches of ``--batch-codes``), so stock, code search
and traces read real rows. Orders, ledger-free order rows only, are written directly in SQL in
bulk (one ``INSERT ... SELECT`` over a recursive CTE per chunk, spread over 200 agents and 90
days); the roll-ups the dashboard reads are filled the same way (90 days x 200 channels x 5
SKUs). The pages added last get their rows the same way: ``--retail-orders`` storefront orders
(default 1,000,000, spread over 90 days and every state, each with its payment attempt, a few
dozen of them stuck so the alerts have stuck payments to find), ALERT_EVENTS alert notices with
their mail counts, and STAFF_USERS staff and AGENT_USERS agents' users. One readers' round
(``Runtime.reports_round``: roll-ups, alerts with their indexed stuck-payment reads and their
mail) is timed over all of it too. Then the owner logs in through the login form (password and
TOTP, as a browser does) and each console page is fetched ``--repeat`` times through the ASGI
app in process (httpx's ``ASGITransport``: no network, the whole web stack); the median and the
worst are reported.
Each page must answer 200 with its own marker before it is timed. Figures go to
``bench/results/console.json`` and the console.

Run: ``python -m bench.console_bench`` (the defaults: 1M orders, 1M retail orders, 10M codes)
or smaller, e.g. ``--orders 100000 --retail-orders 100000 --codes 1000000``.
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

from cardsvc.access import Argon2Params, Principal, create_owner, totp_code
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
ALERT_EVENTS = 100_000
"""Alert notices seeded (about 1,100 a day over 90 days: a very noisy shop)."""
STAFF_USERS = 30
AGENT_USERS = 400
STUCK_PAYMENTS = 40
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
    ("/console/alerts", "data-mails-queued="),
    ("/console/keys", "<table"),
    ("/console/risk", "<table"),
    ("/console/batches", 'href="/console/batches/1"'),
    ("/console/batches?status=ready", 'href="/console/batches/1"'),
    ("/console/users", "staff-0001"),
    ("/console/channels", 'data-channel="sandbox"'),
    ("/console/retail-orders", "<code>ret-"),
    ("/console/retail-orders?status=delivered", "<code>ret-"),
    ("/console/retail-orders?status=paid_unfulfillable", "<code>ret-"),
    ("/console/retail-orders?status=pending", "<code>ret-"),
)
STAFF = Principal("bench", "owner", None, frozenset({"admin"}), None, {})
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


RETAIL_STATUS = ("CASE WHEN i % 10000 = 0 THEN 'paid_unfulfillable' "
                 "WHEN i % 200 = 1 THEN 'refunded' WHEN i % 100 = 2 THEN 'pending' "
                 "WHEN i % 50 = 3 THEN 'failed' WHEN i % 50 = 4 THEN 'expired' "
                 "ELSE 'delivered' END")
"""About 94 % delivered; 2 % failed, 2 % expired, 1 % pending, 0.5 % refunded, 0.01 % paid
but unfulfillable (each of those a stuck payment for the alerts)."""


def load_retail(runtime: Any, orders: int, now_ms: int) -> float:
    """Writes ``orders`` retail orders and their payment attempts (no holds, no postings)
    directly in SQL in chunks, spread over 90 days; the pending ones' attempts are pending
    with a deadline to come, but STUCK_PAYMENTS of them are past it (the alerts' stuck
    payments). Returns the seconds."""
    started = time.perf_counter()
    span = DAYS * DAY_MS
    for first in range(0, orders, ORDER_CHUNK):
        count = min(ORDER_CHUNK, orders - first)
        values = {"first": first + 1, "last": first + count, "now": now_ms, "span": span,
                  "stuck": STUCK_PAYMENTS}
        with runtime.db.write() as connection:
            connection.execute(text(
                "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n "
                "WHERE i < :last) "
                "INSERT INTO retail_orders (order_id, status, sku, product_name, quantity, "
                "pool_id, unit_price_minor, total_minor, unit_cost_minor, currency, email, "
                "password_hash, locale, channel_id, attempt_id, hold_ref, hold_expires_at_ms, "
                "code_ids, late, error_code, created_at_ms, updated_at_ms) "
                f"SELECT printf('ret-%010d', i), {RETAIL_STATUS}, 'VIP', 'VIP card', 1, 0, "
                "1500, 1500, 500, 'CNY', printf('buyer%d@example.com', i % 50000), NULL, "
                "'zh_CN', 'sandbox', printf('t-%010d', i), printf('retail/ret-%010d', i), "
                ":now + 600000, NULL, 0, NULL, :now - (i * 7919) % :span, "
                ":now - (i * 7919) % :span FROM n"), values)
            connection.execute(text(
                "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n "
                "WHERE i < :last) "
                "INSERT INTO payment_attempts (out_trade_no, order_id, channel_id, provider, "
                "amount_minor, currency, state, expires_at_ms, secret_version, queries, "
                "created_at_ms, updated_at_ms) "
                "SELECT printf('t-%010d', i), printf('ret-%010d', i), 'sandbox', 'sandbox', "
                f"1500, 'CNY', CASE {RETAIL_STATUS} WHEN 'pending' THEN 'pending' "
                "WHEN 'failed' THEN 'failed' WHEN 'expired' THEN 'expired' ELSE 'paid' END, "
                "CASE WHEN i % 100 = 2 AND i / 100 < :stuck THEN :now - 86400000 "
                "ELSE :now + 600000 END, 1, 0, :now - (i * 7919) % :span, "
                ":now - (i * 7919) % :span FROM n"), values)
    return time.perf_counter() - started


def expected_stuck(orders: int, stuck_ms: int) -> int:
    """The stuck payments :func:`load_retail` writes: the pending attempts past their deadline
    and the unfulfillable orders older than the stuck-payment delay."""
    waiting = sum(1 for i in range(2, min(orders, 100 * STUCK_PAYMENTS) + 1, 100))
    unfulfillable = sum(1 for i in range(10_000, orders + 1, 10_000)
                        if (i * 7919) % (DAYS * DAY_MS) > stuck_ms + 60_000)
    return waiting + unfulfillable


def load_people_and_alerts(runtime: Any, now_ms: int) -> None:
    """STAFF_USERS staff (every other one with an alert address), AGENT_USERS agents' users, and
    ALERT_EVENTS alert notices over 90 days (most of them mailed), in bulk SQL."""
    roles = "CASE i % 3 WHEN 0 THEN 'operator' WHEN 1 THEN 'finance' ELSE 'support' END"
    with runtime.db.write() as connection:
        connection.execute(text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
            "INSERT INTO users (user_id, login, display_name, role, agent_id, status, email, "
            "email_locale, failed_logins, lockouts, created_at_ms, updated_at_ms) "
            f"SELECT printf('s%015d', i), printf('staff-%04d', i), printf('Staff %d', i), "
            f"{roles}, NULL, 'active', CASE WHEN i % 2 = 0 THEN printf('s%d@example.com', i) "
            "END, 'en', 0, 0, :now - i, :now - i FROM n"),
            {"count": STAFF_USERS, "now": now_ms})
        connection.execute(text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
            "INSERT INTO users (user_id, login, display_name, role, agent_id, status, email, "
            "email_locale, failed_logins, lockouts, created_at_ms, updated_at_ms) "
            "SELECT printf('a%015d', i), printf('agent-user-%04d', i), printf('Agent user %d', "
            "i), 'agent', printf('A%04d', (i - 1) % :agents + 1), 'active', "
            "printf('a%d@example.com', i), 'zh_CN', 0, 0, :now - i, :now - i FROM n"),
            {"count": AGENT_USERS, "agents": AGENTS, "now": now_ms})
        connection.execute(text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
            "INSERT INTO alert_events (key, kind, agent_id, notice, at_ms, details, mailed, "
            "mails_queued) "
            "SELECT printf('withdrawal:w-%d', i / 2), 'withdrawal', "
            "printf('A%04d', i % :agents + 1), CASE i % 2 WHEN 0 THEN 'fired' "
            "ELSE 'resolved' END, :now - (i * 7919) % :span, "
            "'{\"withdrawal_id\": \"w\", \"amount_minor\": 1000}', "
            "CASE WHEN i % 10 = 0 THEN 0 ELSE 2 END, 2 FROM n"),
            {"count": ALERT_EVENTS, "agents": AGENTS, "now": now_ms, "span": DAYS * DAY_MS})


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


def time_round(runtime: Any, expected_stuck: int) -> dict[str, Any]:
    """One readers' round over the seeded rows (roll-ups, alerts with their stuck-payment reads,
    their mail), timed twice: the first fires what the seed holds, the second finds the same
    conditions and writes nothing new."""
    times, counts = [], []
    for _ in range(2):
        started = time.perf_counter()
        counts.append(runtime.reports_round())
        times.append(round((time.perf_counter() - started) * 1000, 1))
    firing = runtime.alerts.firing(STAFF)
    stuck = sum(1 for row in firing if row["kind"] == "stuck_payment")
    assert stuck == expected_stuck, (stuck, expected_stuck, counts)
    return {"first_ms": times[0], "second_ms": times[1],
            "first_alerts": {k: v for k, v in counts[0].items() if k.startswith("alerts_")},
            "second_alerts": {k: v for k, v in counts[1].items() if k.startswith("alerts_")},
            "stuck_payments_firing": stuck}


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


def run(orders: int, codes: int, batch_codes: int, repeat: int, data_dir: Path,
        retail_orders: int = 0) -> dict[str, Any]:
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
            retail_s = load_retail(runtime, retail_orders, runtime.engine.now_ms())
            load_people_and_alerts(runtime, runtime.engine.now_ms())
            stuck = expected_stuck(retail_orders, runtime.alerts.stuck_payment_ms)
            readers = await asyncio.to_thread(time_round, runtime, stuck)
            pages = await time_pages(Composed(app, app.state.web), login, secret, repeat)
            return {"orders": orders, "codes": codes, "retail_orders": retail_orders,
                    "load_codes_s": round(code_s, 1), "load_orders_s": round(order_s, 1),
                    "load_retail_s": round(retail_s, 1), "readers_round": readers,
                    "pages": pages,
                    "slowest_median_ms": max(page["median_ms"] for page in pages),
                    "target_ms": TARGET_MS}

    return asyncio.run(body())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--retail-orders", type=int, default=1_000_000)
    parser.add_argument("--codes", type=int, default=10_000_000)
    parser.add_argument("--batch-codes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/console.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        summary = run(args.orders, args.codes, args.batch_codes, args.repeat, Path(tmp) / "data",
                      retail_orders=args.retail_orders)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    for page in summary["pages"]:
        print(f"{page['path']:<40} median {page['median_ms']:>7.1f} ms  max "
              f"{page['max_ms']:>7.1f} ms")
    print(f"readers' round: {summary['readers_round']}")
    print(f"orders {summary['orders']:,}, retail orders {summary['retail_orders']:,}, codes "
          f"{summary['codes']:,}: slowest median "
          f"{summary['slowest_median_ms']} ms (target < {TARGET_MS} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
