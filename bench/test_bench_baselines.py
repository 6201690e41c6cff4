"""Benchmarks of the plain-dict baseline (``bench.baselines.DictCodeTable``).

Goal: keep the baseline that the engine must beat honest: it must be a correct allocator,
redeemer and verifier (idempotent, no double sale, no double redemption), timed the same way as
the engine.

Method: check the semantics on a small table first (replay, ALREADY_REDEEMED, OUT_OF_STOCK,
IDEMPOTENCY_KEY_REUSED), then time the measurement functions ``bench.run_all`` uses, which assert
their own results.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.baselines import BaselineError, DictBench, DictCodeTable
from bench.testing import pedantic

pytestmark = pytest.mark.timeout(60)

OPS = 2_000


def raises_code(code: str, fn: object, *args: object) -> None:
    with pytest.raises(BaselineError) as caught:
        fn(*args)  # type: ignore[operator]
    assert caught.value.code == code


def test_dict_baseline_is_idempotent_and_never_sells_or_redeems_twice() -> None:
    table = DictCodeTable()
    assert table.import_codes("S", ["A", "B", "A"]) == 2
    raises_code("NOT_SOLD", table.redeem, "A", "r0", "T")
    codes = table.allocate("S", 2, "o1")
    assert sorted(codes) == ["A", "B"] and table.allocate("S", 2, "o1") is codes
    raises_code("IDEMPOTENCY_KEY_REUSED", table.allocate, "S", 1, "o1")
    raises_code("OUT_OF_STOCK", table.allocate, "S", 1, "o2")
    first = table.redeem("A", "r1", "T")
    assert first[2] == 0 and table.redeem("A", "r1", "T") is first
    raises_code("ALREADY_REDEEMED", table.redeem, "A", "r2", "T")
    raises_code("IDEMPOTENCY_KEY_REUSED", table.redeem, "B", "r1", "T")
    assert table.verify("A") == ("redeemed", 0) and table.verify("B") == ("valid", 1)


@pytest.mark.parametrize("op", ["redeem", "verify", "allocate"])
def test_dict_baseline_op_is_correct_then_timed(benchmark: BenchmarkFixture, op: str) -> None:
    bench = DictBench.prepare(OPS, repeats=5)
    repeats = iter(range(5))
    measure = getattr(bench, f"measure_{op}")
    ops_per_s = pedantic(benchmark, lambda: measure(next(repeats)), rounds=3)
    assert ops_per_s > 0
