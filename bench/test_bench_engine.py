"""Benchmarks of the engine's hot paths through the Python API.

Goal: time redeem, verify, allocate(qty=1), verify_many, redeem_many and redeem_batch as a caller
sees them, and
prove each one did its job, so that a fast wrong engine cannot pass.

Method: each test loads a small engine, checks the operation's semantics on a first item (results,
replay, ALREADY_REDEEMED), then pytest-benchmark times rounds of ``CHUNK`` calls on fresh codes
(one round when run with ``--benchmark-disable``), and the test checks the state of every code a
round touched. The side-by-side with the baselines is ``python -m bench.run_all``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.common import code_texts, ref_texts
from bench.engine_bench import (
    TERMINAL,
    EngineBench,
    expect_error,
    import_all,
    new_engine,
    sell_all,
)
from bench.testing import pedantic
from cardsvc.engine import Engine

pytestmark = pytest.mark.timeout(120)

CHUNK = 1_000
ROUNDS = 20
CODES = CHUNK * (ROUNDS + 1)


def loaded_engine(sold: bool) -> Engine:
    eng = new_engine()
    eng.create_sku("B", 1, True, None)
    import_all(eng, "B", "TB", CODES)
    if sold:
        sell_all(eng, "B")
    return eng


def feeder(*columns: list[str]) -> Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]:
    """A pytest-benchmark ``setup`` handing out successive ``CHUNK`` slices of ``columns``."""
    starts: Iterator[int] = iter(range(CHUNK, len(columns[0]), CHUNK))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        start = next(starts)
        return tuple(column[start : start + CHUNK] for column in columns), {}

    return setup


def test_redeem_takes_the_last_use_then_is_timed(benchmark: BenchmarkFixture) -> None:
    eng = loaded_engine(sold=True)
    codes, rids = code_texts("TB", 0, CODES), ref_texts("rq", 0, CODES)
    first = eng.redeem(codes[0], rids[0], TERMINAL)
    assert first.uses_left == 0
    assert eng.redeem(codes[0], rids[0], TERMINAL).redemption_id == first.redemption_id
    expect_error(lambda: eng.redeem(codes[0], "rq-other", TERMINAL), "ALREADY_REDEEMED")
    redeem = eng.redeem

    def run(chunk: list[str], chunk_rids: list[str]) -> list[Any]:
        return [redeem(c, r, TERMINAL) for c, r in zip(chunk, chunk_rids, strict=True)]

    results = pedantic(benchmark, run, setup=feeder(codes, rids), rounds=ROUNDS)
    assert [r.uses_left for r in results] == [0] * CHUNK
    statuses = eng.verify_many(codes[: CHUNK * 2]).statuses()
    assert statuses.count("redeemed") == CHUNK + 1  # the first code and at least one round


def test_verify_reports_sold_codes_valid_then_is_timed(benchmark: BenchmarkFixture) -> None:
    eng = loaded_engine(sold=True)
    codes = code_texts("TB", 0, CODES)
    assert eng.verify(codes[0]).status == "valid"
    verify = eng.verify

    def run(chunk: list[str]) -> list[Any]:
        return [verify(c) for c in chunk]

    results = pedantic(benchmark, run, setup=feeder(codes), rounds=ROUNDS)
    assert {(r.status, r.uses_left) for r in results} == {("valid", 1)}


def test_allocate_one_gives_distinct_codes_then_is_timed(benchmark: BenchmarkFixture) -> None:
    eng = loaded_engine(sold=False)
    refs = ref_texts("or", 0, CODES)
    first = eng.allocate("B", 1, refs[0])
    assert eng.allocate("B", 1, refs[0]) == first
    allocate = eng.allocate

    def run(chunk_refs: list[str]) -> list[list[int]]:
        return [allocate("B", 1, r) for r in chunk_refs]

    results = pedantic(benchmark, run, setup=feeder(refs), rounds=ROUNDS)
    ids = [i for r in results for i in r]
    assert len(set(ids)) == CHUNK and first[0] not in ids
    stock = eng.stock("B")
    assert stock["allocated"] + stock["available"] == CODES
    assert stock["allocated"] % CHUNK == 1


def test_verify_many_reports_every_code_then_is_timed(benchmark: BenchmarkFixture) -> None:
    eng = loaded_engine(sold=True)
    codes = code_texts("TB", 0, CODES)
    verify_many = eng.verify_many
    result = pedantic(benchmark, verify_many, setup=feeder(codes), rounds=ROUNDS)
    assert result.ok_count == CHUNK
    assert set(result.statuses()) == {"valid"}


def test_redeem_many_redeems_every_code_then_is_timed(benchmark: BenchmarkFixture) -> None:
    eng = loaded_engine(sold=True)
    codes, rids = code_texts("TB", 0, CODES), ref_texts("rq", 0, CODES)
    redeem_many = eng.redeem_many

    def run(chunk: list[str], chunk_rids: list[str]) -> Any:
        return redeem_many(chunk, chunk_rids, TERMINAL)

    result = pedantic(benchmark, run, setup=feeder(codes, rids), rounds=ROUNDS)
    assert result.ok_count == CHUNK
    assert set(result.uses_left()) == {0}
    assert eng.verify_many(codes[CHUNK : 2 * CHUNK]).statuses() == ["redeemed"] * CHUNK


def test_redeem_batch_redeems_every_code_then_is_timed(benchmark: BenchmarkFixture) -> None:
    eng = loaded_engine(sold=True)
    codes = code_texts("TB", 0, CODES)
    keys = iter(ref_texts("batch", 0, ROUNDS + 2))
    redeem_batch = eng.redeem_batch
    first = redeem_batch("batch-first", codes[:CHUNK], TERMINAL)
    assert first.ok_count == CHUNK
    again = redeem_batch("batch-first", codes[:CHUNK], TERMINAL)
    assert again.redemption_ids() == first.redemption_ids(), "a retry returns the first results"

    def run(chunk: list[str]) -> Any:
        return redeem_batch(next(keys), chunk, TERMINAL)

    result = pedantic(benchmark, run, setup=feeder(codes), rounds=ROUNDS)
    assert result.ok_count == CHUNK
    assert set(result.uses_left()) == {0}
    assert eng.verify_many(codes[CHUNK : 2 * CHUNK]).statuses() == ["redeemed"] * CHUNK


def test_engine_bench_measurements_check_their_results() -> None:
    """The run_all measurements themselves, at toy sizes (each asserts its own result)."""
    bench = EngineBench.prepare(
        ops=2_000, batch=500, batch_items=2_000, import_items=5_000, repeats=2
    )
    for repeat in range(2):
        for measure in (
            bench.measure_verify,
            bench.measure_redeem,
            bench.measure_allocate,
            bench.measure_verify_many,
            bench.measure_redeem_many,
            bench.measure_redeem_batch,
            bench.measure_import,
        ):
            assert measure(repeat) > 0
        for pair in (
            bench.measure_threads_redeem,
            bench.measure_threads_allocate,
            bench.measure_threads_verify,
        ):
            assert pair(repeat)["ratio"] > 0
    assert bench.journal["bytes"] > 0
