"""Fixtures for the pytest-benchmark suites in ``bench/``.

Goal: give each suite what it measures, or a clear skip: the Redis + Lua tests need redis-server
and redis-benchmark, which a developer may not have installed; in CI (``CI=true``) they must run,
so there ``scripts/ensure_redis.sh`` installs them and their absence is a failure.

Method: ``redis_tools`` looks the binaries up once per session; ``bench_redis`` starts a private
server without persistence on a free 127.0.0.1 port per test module and stops it afterwards (the
repo-wide ``redis_server`` fixture runs with ``appendfsync always``, which is not issue 2's
baseline).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.redis_lua import RedisServer, find_redis_benchmark, find_redis_server
from bench.testing import in_ci


@pytest.fixture(scope="session")
def redis_tools() -> tuple[str, str]:
    """(redis-server path, redis-benchmark path); skips outside CI when they are missing."""
    server = find_redis_server(install=in_ci())
    bench = find_redis_benchmark(server) if server else None
    if server is None or bench is None:
        reason = (
            "redis-server/redis-benchmark not installed: run scripts/ensure_redis.sh "
            "(Debian package redis-server) to run the Redis + Lua baseline"
        )
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return server, bench


@pytest.fixture(scope="module")
def bench_redis(redis_tools: tuple[str, str]) -> Iterator[RedisServer]:
    """A private redis-server without persistence, for one test module."""
    with RedisServer(redis_tools[0], "none") as server:
        yield server
