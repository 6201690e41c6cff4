"""The Redis + Lua baseline: its scripts are correct, and the redis-benchmark runs really work.

Goal: the baseline the engine is compared with must do the same job: allocation all-or-nothing
and idempotent on the order key, redemption idempotent on the request id and never past zero
uses, verification without side effects. A benchmark of scripts that silently failed would flatter
the baseline, so every run checks Redis's state afterwards.

Method: a private redis-server (``conftest.bench_redis``); the scripts are called once each
through redis-py and their replies and effects checked; then ``LuaBench`` runs redis-benchmark
briefly for each operation (each measurement asserts EVALSHA ran every request without an error
reply, and the orders, redemptions and uses it should have left). Skipped outside CI when
redis-server is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pytest_benchmark.fixture import BenchmarkFixture

from bench.redis_lua import (
    LuaBench,
    RedisServer,
    check_orders,
    load_range,
    load_scripts,
    parse_benchmark_csv,
)
from bench.testing import pedantic

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

REQUESTS = 3_000


def test_lua_scripts_are_idempotent_and_all_or_nothing(bench_redis: RedisServer) -> None:
    client = bench_redis.client()
    client.flushall()
    shas = load_scripts(client)
    load_range(client, shas["load_codes"], 0, 3, "pool:S:0", "S", 1)

    def call(name: str, *keys_and_args: str | int, keys: int = 2) -> Any:
        return client.evalsha(shas[name], keys, *keys_and_args)

    codes = call("allocate", "pool:S:0", "order:o1", 2)
    assert len(set(codes)) == 2 and client.scard("pool:S:0") == 1
    assert call("allocate", "pool:S:0", "order:o1", 2) == codes
    for order, qty, error in [
        ("order:o1", 1, "IDEMPOTENCY_KEY_REUSED"),
        ("order:o2", 2, "OUT_OF_STOCK"),
        ("order:o3", 0, "QUANTITY_MUST_BE_POSITIVE"),
    ]:
        with pytest.raises(redis.ResponseError, match=error):
            call("allocate", "pool:S:0", order, qty)
    assert client.scard("pool:S:0") == 1 and not client.exists("order:o2")
    unsold = f"code:{next(iter(client.smembers('pool:S:0')))!s}"
    assert call("verify", unsold, keys=1) == ["not_sold", 1]
    with pytest.raises(redis.ResponseError, match="NOT_SOLD"):
        call("redeem", unsold, "req:r0", "T")
    key = f"code:{codes[0]}"
    assert call("verify", key, keys=1) == ["valid", 1]
    first = call("redeem", key, "req:r1", "T")
    assert first.startswith(f"{key}|T|0|")
    assert call("redeem", key, "req:r1", "T") == first
    assert call("verify", key, keys=1) == ["redeemed", 0]
    for code_key, request_key, terminal, error in [
        (key, "req:r2", "T", "ALREADY_REDEEMED"),
        (f"code:{codes[1]}", "req:r1", "T", "IDEMPOTENCY_KEY_REUSED"),
        (key, "req:r1", "T2", "IDEMPOTENCY_KEY_REUSED"),
        ("code:nope", "req:r3", "T", "CODE_NOT_FOUND"),
    ]:
        with pytest.raises(redis.ResponseError, match=error):
            call("redeem", code_key, request_key, terminal)
    assert client.get("redemption_seq") == "1"
    assert check_orders(client, shas["check_orders"], "order:*") == [1, 2, 0, 0]


def test_parse_benchmark_csv_reads_rps() -> None:
    text = '"test","rps","avg_latency_ms"\n"EVALSHA abc 1 k","98765.43","1.0"\n'
    assert parse_benchmark_csv(text) == 98765.43


@pytest.mark.parametrize("op", ["verify", "redeem", "allocate"])
def test_lua_baseline_changes_redis_state_then_timed(
    benchmark: BenchmarkFixture, bench_redis: RedisServer, redis_tools: tuple[str, str], op: str
) -> None:
    bench_redis.client().flushall()
    lua = LuaBench.prepare(bench_redis, redis_tools[1], REQUESTS, repeats=3, ncodes=REQUESTS)
    repeats = iter(range(3))
    measure = getattr(lua, f"measure_{op}")
    out = pedantic(benchmark, lambda: measure(next(repeats)), rounds=1)
    assert out["calls"] >= REQUESTS and out["rps"] > 0
    assert lua.server_info()["config"]["appendonly"] == "no"
