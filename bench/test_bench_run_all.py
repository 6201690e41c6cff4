"""The side-by-side runner (``python -m bench.run_all --quick``) produces every figure.

Goal: the issue 2 comparison must keep working as the engine changes: every implementation runs,
every figure and target is reported, and the JSON results name which implementations ran.

Method: run ``bench.run_all.main`` with ``--quick`` (small sizes, one repeat) into a temporary
JSON file and check its contents. PASS/MISS is not asserted here: quick sizes on a shared machine
say nothing about speed. Without redis-server outside CI the Redis + Lua part is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run_all
from bench.redis_lua import find_redis_benchmark, find_redis_server
from bench.testing import in_ci

pytestmark = pytest.mark.timeout(180)


def test_quick_run_reports_every_figure_and_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = find_redis_server(install=in_ci())
    with_redis = server is not None and find_redis_benchmark(server) is not None
    assert with_redis or not in_ci(), "redis-server must be available in CI"
    out = tmp_path / "latest.json"
    args = ["--quick", "--out", str(out)] + ([] if with_redis else ["--no-redis"])
    assert run_all.main(args) == 0
    report = json.loads(out.read_text())
    impls = {(m["name"], m["impl"]) for m in report["measurements"]}
    for op in ("verify", "redeem", "allocate"):
        assert {(op, "engine"), (op, "dict")} <= impls
        assert (op, "redis_lua") in impls or not with_redis
    for name in (
        "verify_many",
        "redeem_many",
        "redeem_batch",
        "import_codes",
        "redeem 2 threads / 1 thread",
        "allocate 2 threads / 1 thread",
        "core bytes/code",
        "RSS bytes/code",
    ):
        assert (name, "engine") in impls, name
    assert len(report["targets"]) == (14 if with_redis else 11)
    assert report["implementations"]["engine"]["module"].endswith(".so")
    assert report["memory"]["codes"] == run_all.QUICK.memory_codes
    assert "| target |" in capsys.readouterr().out
