"""The HTTP benchmark (issues 4 and 6) measures the apps it names and counts only what was
checked.

Goal: ``bench.http_bench``'s figures must come from the right app doing correct work: the
baseline apps behave as their contract says (the dict redeem is single use and idempotent on the
request id), wrk's report is read correctly (rates, latency units, error counts, the orders
created, and a failed wrk is an error, not a zero), the redemption and order checks refuse counts
that do not add up and a reconciliation that does not pass, the order targets seed enough codes,
and an end to end run serves, loads, checks and reports, for orders on SQLite and on PostgreSQL.

Method: the apps through ``httpx.ASGITransport`` (no server, no network); the parser on wrk
reports captured on this machine (a clean redeem run, a run of 409s, a run against a server
that drops connections, a refused connection, an order run); the count checks and the seed sizes
on made-up numbers; then ``main --quick`` (one second of warm-up and one of measurement) against
the raw ASGI app and the dict redeem, and against our API's orders of 10 codes with 8
connections (few in flight, so that a loaded machine still completes requests within the
second), when wrk is installed (``scripts/ensure_wrk.sh``; outside CI it is skipped when
missing, in CI it is installed); the PostgreSQL order target the same way, on a private cluster,
when PostgreSQL's server programs are there (``scripts/ensure_postgres.sh`` in CI). Rates are
not asserted: one second on a shared machine says nothing about speed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from bench import http_bench as hb
from bench import pg_server, profile_http
from bench.http_apps import (
    RAW_APP_HEADER,
    TITLE_NOOP,
    bench_code,
    create_noop_app,
    create_redeem_app,
    raw_app,
)
from bench.testing import in_ci

pytestmark = pytest.mark.timeout(60)

WRK_REDEEM_OK = """\
Running 2s test @ http://127.0.0.1:18732/v1/redeem
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.69ms   10.42ms 154.94ms   95.93%
    Req/Sec     4.49k     1.00k    7.24k    77.50%
  Latency Distribution
     50%    6.09ms
     75%    8.60ms
     90%    8.97ms
     99%   62.79ms
  17887 requests in 2.00s, 3.84MB read
Requests/sec:   8931.16
Transfer/sec:      1.91MB
http_bench: threads=2 sent=17950 sent_max=9339 completed=17887 status_errors=0 p50_us=6094 \
p99_us=62788
"""
WRK_REDEEM_409 = """\
Running 2s test @ http://127.0.0.1:18732/v1/redeem
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.34ms   15.46ms 212.60ms   97.10%
    Req/Sec     5.18k   597.28     5.94k    61.90%
  Latency Distribution
     50%    5.58ms
     75%    6.47ms
     90%    8.76ms
     99%   99.98ms
  21656 requests in 2.10s, 4.24MB read
  Non-2xx or 3xx responses: 17949
Requests/sec:  10311.33
Transfer/sec:      2.02MB
http_bench: threads=2 sent=21719 sent_max=10947 completed=21656 status_errors=17949 p50_us=5579 \
p99_us=99979
"""
WRK_DROPPED_CONNECTIONS = """\
Running 5s test @ http://127.0.0.1:18733/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.94us  248.96us 770.00us   51.61%
    Req/Sec   155.00     21.21   170.00    100.00%
  Latency Distribution
     50%  668.00us
     75%  768.00us
     90%  768.00us
     99%  770.00us
  31 requests in 5.01s, 1.21KB read
  Socket errors: connect 0, read 15, write 0, timeout 0
Requests/sec:      6.19
Transfer/sec:     247.58B
"""
WRK_REFUSED = "unable to connect to 127.0.0.1:18799 Connection refused\n"
WRK_ORDER = """\
Running 8s test @ http://127.0.0.1:45555/v1/orders
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   436.35ms  112.99ms   1.20s    72.61%
    Req/Sec    66.49     47.26   232.00     68.46%
  Latency Distribution
     50%  419.03ms
     75%  489.90ms
     90%  568.70ms
     99%  878.72ms
  1439 requests in 8.03s, 626.54KB read
Requests/sec:    179.14
Transfer/sec:     78.00KB
http_bench: threads=2 sent=1503 sent_max=752 completed=1439 status_errors=0 p50_us=419032 \
p99_us=878720 created=1439
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redeem_http() -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_redeem_app(codes=10)) as http:
        yield http


def client_of(
    app: FastAPI | Callable[[Scope, Receive, Send], Awaitable[None]],
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bench.test")


@pytest.mark.anyio
async def test_raw_app_answers_ok_to_any_request() -> None:
    async with client_of(raw_app) as http:
        for method, path in (("POST", "/"), ("GET", "/anything"), ("POST", "/v1/redeem")):
            reply = await http.request(method, path, json={"code": bench_code(0)})
            assert reply.status_code == 200 and reply.json() == {"ok": True}
            assert reply.headers[RAW_APP_HEADER[0].decode()] == RAW_APP_HEADER[1].decode()


@pytest.mark.anyio
async def test_noop_app_answers_ok_and_names_itself() -> None:
    async with client_of(create_noop_app()) as http:
        reply = await http.post("/noop", json={"code": bench_code(0)})
        assert reply.status_code == 200 and reply.json() == {"ok": True}
        title = (await http.get("/openapi.json")).json()["info"]["title"]
        assert title == TITLE_NOOP


@pytest.mark.anyio
async def test_dict_redeem_is_single_use_and_idempotent_on_request_id(
    redeem_http: httpx.AsyncClient,
) -> None:
    body = {"code": bench_code(3), "request_id": "rq-1"}
    first = await redeem_http.post("/v1/redeem", json=body)
    assert first.status_code == 200
    assert first.json()["sku"] == "BENCH" and first.json()["uses_left"] == 0
    again = await redeem_http.post("/v1/redeem", json=body)
    assert again.status_code == 200 and again.json() == first.json()
    other_request = await redeem_http.post("/v1/redeem", json=body | {"request_id": "rq-2"})
    assert other_request.status_code == 409
    assert other_request.json()["error"]["code"] == "ALREADY_REDEEMED"
    other_code = await redeem_http.post("/v1/redeem", json=body | {"code": bench_code(4)})
    assert other_code.status_code == 409
    assert other_code.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    unknown = await redeem_http.post("/v1/redeem", json={"code": "NOPE", "request_id": "rq-3"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "CODE_NOT_FOUND"
    invalid = await redeem_http.post("/v1/redeem", json={"code": bench_code(5)})
    assert invalid.status_code == 422
    stats = (await redeem_http.get("/bench/stats")).json()
    assert stats == {
        "codes": 10,
        "redeemed": 1,
        "replayed": 1,
        "refused": {"ALREADY_REDEEMED": 1, "IDEMPOTENCY_KEY_REUSED": 1, "CODE_NOT_FOUND": 1},
    }


def test_parse_wrk_reads_rate_latency_and_the_requests_built() -> None:
    run = hb.parse_wrk(WRK_REDEEM_OK)
    assert (run.requests, run.duration_s, run.rps) == (17887, 2.0, 8931.16)
    assert run.latency_ms == {"p50": 6.09, "p75": 8.6, "p90": 8.97, "p99": 62.79}
    assert run.non_2xx == 0 and run.socket_error_count == 0 and run.ok_responses == 17887
    assert (run.threads, run.sent, run.sent_max) == (2, 17950, 9339)
    assert not hb.response_checks(run, "run")


def test_parse_wrk_counts_error_statuses_and_socket_errors() -> None:
    conflicts = hb.parse_wrk(WRK_REDEEM_409)
    assert conflicts.non_2xx == 17949 and conflicts.ok_responses == 21656 - 17949
    assert hb.response_checks(conflicts, "run") == ["run: 17949 non-2xx responses"]
    dropped = hb.parse_wrk(WRK_DROPPED_CONNECTIONS)
    assert dropped.latency_ms["p50"] == pytest.approx(0.668)
    assert dropped.socket_errors == {"connect": 0, "read": 15, "write": 0, "timeout": 0}
    assert dropped.sent is None  # no http_bench line: wrk without our scripts
    assert hb.response_checks(dropped, "run") == [
        "run: socket errors " + str(dropped.socket_errors)
    ]


def test_parse_wrk_refuses_a_failed_or_inconsistent_report() -> None:
    with pytest.raises(ValueError):
        hb.parse_wrk(WRK_REFUSED)
    with pytest.raises(ValueError):  # the Lua summary must agree with wrk's own counts
        hb.parse_wrk(WRK_REDEEM_OK.replace("status_errors=0", "status_errors=3"))


def test_parse_wrk_reads_the_orders_created() -> None:
    run = hb.parse_wrk(WRK_ORDER)
    assert (run.requests, run.rps, run.created) == (1439, 179.14, 1439)
    assert run.latency_ms["p99"] == pytest.approx(878.72)
    assert hb.parse_wrk(WRK_REDEEM_OK).created is None  # redeem.lua counts no creations


def test_issue_12_targets_exist_with_their_sizes() -> None:
    targets = {t.key: t for t in hb.TARGETS}
    assert targets["cardsvc_batch_100"].items == 100
    assert targets["cardsvc_batch_1000"].per_request == 1000
    assert targets["cardsvc_batch_1000"].sized(hb.FULL).connections == hb.BATCH_CONNECTIONS
    assert targets["cardsvc_holds"].script == "hold"
    assert {key.removesuffix("_classic") for key, t in targets.items() if t.classic} == {
        "cardsvc_verify", "cardsvc_redeem", "cardsvc_holds", "cardsvc_batch_100",
        "cardsvc_batch_1000", "cardsvc_order_1"}
    risky = {key for key, t in targets.items() if t.risk}
    assert risky == {"cardsvc_verify_risk", "cardsvc_redeem_risk", "cardsvc_holds_risk",
                     "cardsvc_batch_1000_risk", "cardsvc_order_1_risk", "cardsvc_order_1_pg_risk"}
    assert {key for key, t in targets.items() if t.unbatched} == {
        "cardsvc_order_1_unbatched", "cardsvc_order_1_pg_unbatched", "cardsvc_holds_unbatched"}
    line = next(x for x in WRK_REDEEM_OK.splitlines() if x.startswith("http_bench:"))
    failing = hb.parse_wrk(WRK_REDEEM_OK.replace(line, line + " failed=3"))
    assert failing.failed == 3 and hb.parse_wrk(WRK_REDEEM_OK).failed is None


def test_order_targets_cover_both_quantities_on_both_databases() -> None:
    orders = {t.key: (t.quantity, t.database) for t in hb.TARGETS if t.script == "order"}
    assert orders == {
        "cardsvc_order_1": (1, "sqlite"),
        "cardsvc_order_10": (10, "sqlite"),
        "cardsvc_order_1_pg": (1, "postgresql"),
        "cardsvc_order_10_pg": (10, "postgresql"),
        "cardsvc_order_1_risk": (1, "sqlite"),
        "cardsvc_order_1_classic": (1, "sqlite"),
        "cardsvc_order_1_unbatched": (1, "sqlite"),
        "cardsvc_order_1_pg_unbatched": (1, "postgresql"),
        "cardsvc_order_1_pg_risk": (1, "postgresql"),
    }
    assert hb.parse_args([]).targets is None  # the default: every target (see main)
    assert hb.parse_args(["--targets", "cardsvc_order_10,raw"]).targets == [
        "raw",
        "cardsvc_order_10",
    ]
    with pytest.raises(SystemExit):
        hb.parse_args(["--targets", "cardsvc_order_3"])


def test_postgresql_targets_are_not_measured_without_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_server, "find_bindir", lambda install=False: None)
    targets = [t for t in hb.TARGETS if t.key in ("raw", "cardsvc_order_1", "cardsvc_order_1_pg")]
    not_measured: dict[str, str] = {}
    with hb.postgres_for(targets, False, not_measured) as cluster:
        assert cluster is None
    assert list(not_measured) == ["cardsvc_order_1_pg"]
    assert "ensure_postgres.sh" in not_measured["cardsvc_order_1_pg"]
    with hb.postgres_for(targets[:2], False, not_measured) as cluster:  # no PostgreSQL target
        assert cluster is None


def test_order_codes_cover_the_rate_the_quantity_and_the_orders_in_flight() -> None:
    sizes = hb.FULL  # 64 connections
    assert hb.order_codes_needed(3_000, 10, 10, sizes) == (30_000 + 64) * 10
    assert hb.order_codes_needed(0.5, 1, 1, sizes) == 1 + 64
    order_10 = next(t for t in hb.TARGETS if t.key == "cardsvc_order_10")
    assert hb.script_args(order_10, 0, sizes, "r0") == [hb.ORDER_SKU, "10", "r0"]


def test_order_count_check_refuses_counts_that_do_not_add_up() -> None:
    good: dict[str, Any] = {
        "allocated": 1000, "available": 500, "fulfilled": 100, "ok": 90, "created": 90,
        "sent": 110, "quantity": 10,
    }  # fmt: skip
    assert not hb.order_count_reasons(**good)
    assert not hb.order_count_reasons(**good | {"created": None})  # a script without the count
    refused = [
        {"created": 89},  # a 2xx that was a retry (200), not a new order
        {"allocated": 1001},  # codes allocated by no fulfilled order
        {"fulfilled": 89, "allocated": 890},  # fewer fulfilled orders than 2xx answers
        {"fulfilled": 111, "allocated": 1110},  # more than the requests built
        {"available": 9},  # the stock ran out
    ]
    for change in refused:
        assert hb.order_count_reasons(**good | change), change


def test_reconciliation_check_requires_ok_and_only_fulfilled_orders() -> None:
    report: dict[str, Any] = {
        "ok": True, "differences": [], "difference_count": 0, "orders_checked": 3,
        "sales": {"fulfilled": {"CNY": 3 * 10 * hb.UNIT_PRICE_MINOR}},
        "stock": {hb.ORDER_SKU: {"allocated": 30}},
    }  # fmt: skip
    assert not hb.reconciliation_reasons(report, 30)
    assert hb.sales_orders(report, "fulfilled", 10) == 3
    assert hb.sales_orders(report, "pending", 10) == 0
    with pytest.raises(ValueError):  # 3,000 minor units are not whole orders of 7 codes
        hb.sales_orders(report, "fulfilled", 7)
    difference = {"kind": "escrow_mismatch", "subject": "BENCH", "details": {}}
    failing = report | {"ok": False, "differences": [difference], "difference_count": 1}
    assert hb.reconciliation_reasons(failing, 30)
    failed_order = report | {"sales": report["sales"] | {"failed": {"CNY": 1000}}}
    assert hb.reconciliation_reasons(failed_order, 30)
    assert hb.reconciliation_reasons(report, 40)  # the stock endpoint disagrees


def test_redeem_count_check_refuses_counts_that_do_not_add_up() -> None:
    assert not hb.redeem_count_reasons(redeemed=100, ok=90, sent=100, reached=120, seeded=200)
    assert hb.redeem_count_reasons(redeemed=89, ok=90, sent=100, reached=120, seeded=200)
    assert hb.redeem_count_reasons(redeemed=101, ok=90, sent=100, reached=120, seeded=200)
    assert hb.redeem_count_reasons(redeemed=100, ok=90, sent=100, reached=201, seeded=200)


def test_quick_run_serves_loads_checks_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrk = wrk_or_skip()
    out = tmp_path / "http.json"
    args = [
        "--quick", "--targets", "raw,dict_redeem", "--duration", "1", "--warmup", "1",
        "--wrk", wrk, "--out", str(out),
    ]  # fmt: skip
    assert hb.main(args) == 0
    report = json.loads(out.read_text())
    assert [s["target"] for s in report["samples"]] == ["raw", "dict_redeem"]
    assert all(s["ok"] and s["run"]["requests"] > 0 for s in report["samples"])
    checks = report["samples"][1]["checks"]
    assert checks["ok_responses"] <= checks["redeemed"] <= checks["requests_built"]
    assert report["ratios_median"]["dict_redeem"]["raw"] > 0
    assert report["versions"]["wrk"].startswith("wrk ")
    table = capsys.readouterr().out
    assert "| raw ASGI |" in table and "| FastAPI redeem (dict, pydantic) |" in table


def wrk_or_skip() -> str:
    wrk = hb.find_wrk(install=in_ci())
    if wrk is None:
        reason = "wrk not installed: run scripts/ensure_wrk.sh (Debian package wrk)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return wrk


def run_order_target(key: str, wrk: str, out: Path) -> dict[str, Any]:
    """``main --quick`` on one order target with 8 connections; its one sample's JSON."""
    args = [
        "--quick", "--targets", key, "--connections", "8", "--wrk", wrk, "--out", str(out),
    ]  # fmt: skip
    assert hb.main(args) == 0
    report = json.loads(out.read_text())
    assert [s["target"] for s in report["samples"]] == [key] and not report["not_measured"]
    sample: dict[str, Any] = report["samples"][0]
    assert sample["ok"] and sample["run"]["requests"] > 0, sample["reasons"]
    checks = sample["checks"]
    assert checks["created_responses"] == checks["ok_responses"] > 0
    assert checks["ok_responses"] <= checks["fulfilled_orders"] <= checks["requests_built"]
    assert checks["reconciliation_ok"] is True and checks["reconciliation_differences"] == 0
    assert checks["fulfilled_in_database"] == checks["fulfilled_orders"]
    return sample


def test_quick_order_run_checks_stock_and_reconciliation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = run_order_target("cardsvc_order_10", wrk_or_skip(), tmp_path / "orders.json")
    checks = sample["checks"]
    assert checks["allocated"] == 10 * checks["fulfilled_orders"]
    assert checks["database"] == "the data directory's SQLite cardsvc.db"
    assert sample["database_cpu_us_per_request"] is None  # SQLite runs inside the server
    table = capsys.readouterr().out
    assert "| cardsvc POST /v1/orders qty 10 (SQLite) |" in table and "codes/s" in table


def test_quick_order_run_on_postgresql(tmp_path: Path) -> None:
    wrk = wrk_or_skip()
    if pg_server.find_bindir(install=in_ci()) is None:
        reason = "PostgreSQL not installed: run scripts/ensure_postgres.sh"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    before = set(Path(tempfile.gettempdir()).glob("cardsvc-bench-pg-*"))
    sample = run_order_target("cardsvc_order_1_pg", wrk, tmp_path / "orders_pg.json")
    checks = sample["checks"]
    assert checks["allocated"] == checks["fulfilled_orders"]
    assert checks["database"] == "PostgreSQL database bench_cardsvc_order_1_pg_r0"
    assert sample["database_cpu_us_per_request"] > 0
    assert set(Path(tempfile.gettempdir()).glob("cardsvc-bench-pg-*")) <= before  # removed


def test_profile_summary_counts_inclusive_and_self_per_function() -> None:
    raw = ("main (a.py:1);work (/x/site-packages/lib.py:5);leaf (b.py:9) 3\n"
           "main (a.py:1);work (/x/site-packages/lib.py:7) 1\n")
    found = profile_http.summarise(raw)
    assert found.total == 4
    assert found.inclusive["main (a.py)"] == 4 and found.inclusive["work (lib.py)"] == 4
    assert found.own == {"leaf (b.py)": 3, "work (lib.py)": 1}
    assert "75.0% leaf (b.py)" in found.table(5)
