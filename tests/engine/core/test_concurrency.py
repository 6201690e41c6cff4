"""Threads calling the engine at once never oversell, never redeem twice, and match serial runs.

Goal: prove DESIGN.md's first two invariants under concurrency: a code goes to at most one order
or hold, stock counts always equal the codes in each state, a single-use code is redeemed once and
an N-use code N times however many terminals race, a retried request id redeems once and every
caller sees the same redemption, and threads working on different SKUs end in the same state as a
serial run of the same work.

Method: the engine releases the GIL, so plain threads run its calls in parallel. Each test starts
its threads together on a ``threading.Barrier``, records every result or error code, and then
checks the totals, the disjointness of handed-out ids, ``stock``, and ``check_invariants()``.
Engine calls take microseconds, so a thread that got the GIL back would otherwise run its whole
loop before the others wake; every loop therefore calls :func:`pause` between calls, and the tests
assert that the threads' work really interleaved. Everything is bounded in time (barrier and result
timeouts, and a per-test timeout).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from cardsvc.engine import Engine, Redemption
from cardsvc.errors import CardsvcError

T = TypeVar("T")

LOOKUP_KEY = bytes(range(32))
T0_MS = 1_700_000_000_000
WAIT_S = 8.0

pytestmark = pytest.mark.timeout(10)


def new_engine() -> Engine:
    eng = Engine(LOOKUP_KEY)
    eng.set_clock_ms(T0_MS)
    return eng


def pause() -> None:
    """Hand the GIL to another runnable thread, so that the threads' calls interleave."""
    time.sleep(0)


def race(threads: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` for i in range(threads), all released at once; results in thread order."""
    barrier = threading.Barrier(threads, timeout=WAIT_S)

    def start(index: int) -> T:
        barrier.wait()
        pause()
        return work(index)

    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        futures = [pool.submit(start, i) for i in range(threads)]
        return [f.result(timeout=WAIT_S) for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def try_redeem(eng: Engine, text: str, request_id: str, terminal: str) -> Redemption | str:
    """The redemption, or the error code; then let another thread run."""
    try:
        return eng.redeem(text, request_id, terminal)
    except CardsvcError as err:
        return str(err.code)
    finally:
        pause()


def codes_text(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:05d}CODE" for i in range(n)]


def assert_stock_matches_codes(eng: Engine, sku: str, code_ids: list[int]) -> None:
    """Stock counts equal the codes in each state (expired counts as available here)."""
    states = Counter(eng.code_info(i).state for i in code_ids)
    stock = eng.stock(sku)
    assert stock["available"] + stock["expired"] == states["available"]
    for state in ("held", "allocated", "redeemed", "frozen", "void"):
        assert stock[state] == states[state], state
    assert stock["total"] == len(code_ids)


# -------------------------------------------------------------------------------- redemption


def test_single_use_code_is_redeemed_once_by_16_racing_terminals() -> None:
    eng = new_engine()
    eng.create_sku("A", 1)
    texts = codes_text("ONCE", 20)
    ids, _ = eng.import_codes("A", texts)
    eng.allocate("A", len(ids), "o1")
    for round_, text in enumerate(texts):

        def attempt(i: int, text: str = text, round_: int = round_) -> Redemption | str:
            return try_redeem(eng, text, f"req-{round_}-{i}", f"term-{i}")

        results = race(16, attempt)
        wins = [r for r in results if isinstance(r, Redemption)]
        assert len(wins) == 1, f"round {round_}: {len(wins)} redemptions of a single-use code"
        assert Counter(r for r in results if isinstance(r, str)) == {"ALREADY_REDEEMED": 15}
        info = eng.code_info(ids[round_])
        assert (info.state, info.uses_left, info.redemption_ids) == (
            "redeemed",
            0,
            [wins[0].redemption_id],
        )
    eng.check_invariants()
    assert eng.stock("A")["redeemed"] == 20


def test_n_use_code_is_redeemed_exactly_n_times_under_contention() -> None:
    eng = new_engine()
    eng.create_sku("MULTI", 5)
    texts = codes_text("FIVE", 4)
    ids, _ = eng.import_codes("MULTI", texts)
    eng.allocate("MULTI", len(ids), "o1")
    for text, code_id in zip(texts, ids, strict=True):

        def attempts(i: int, text: str = text) -> list[Redemption | str]:
            return [try_redeem(eng, text, f"{text}-{i}-{n}", f"term-{i}") for n in range(4)]

        results = [r for batch in race(16, attempts) for r in batch]
        wins = [r for r in results if isinstance(r, Redemption)]
        assert len(wins) == 5
        assert sorted(r.uses_left for r in wins) == [0, 1, 2, 3, 4]
        assert len({r.redemption_id for r in wins}) == 5
        assert Counter(r for r in results if isinstance(r, str)) == {"ALREADY_REDEEMED": 59}
        info = eng.code_info(code_id)
        assert (info.state, info.uses_left) == ("redeemed", 0)
        assert sorted(info.redemption_ids) == sorted(r.redemption_id for r in wins)
    eng.check_invariants()


def test_same_request_id_from_many_threads_redeems_once() -> None:
    eng = new_engine()
    eng.create_sku("MULTI", 3)
    texts = codes_text("RETRY", 10)
    ids, _ = eng.import_codes("MULTI", texts)
    eng.allocate("MULTI", len(ids), "o1")
    for text, code_id in zip(texts, ids, strict=True):

        def retry(_: int, text: str = text) -> Redemption | str:
            return try_redeem(eng, text, f"same-{text}", "term")

        results = race(16, retry)
        assert all(isinstance(r, Redemption) for r in results), results
        assert len({r.redemption_id for r in results if isinstance(r, Redemption)}) == 1
        assert {r.uses_left for r in results if isinstance(r, Redemption)} == {2}
        info = eng.code_info(code_id)
        assert (info.uses_left, len(info.redemption_ids)) == (2, 1)
    eng.check_invariants()


def test_redeem_many_and_verify_many_race_with_single_redeems() -> None:
    eng = new_engine()
    eng.create_sku("A", 1)
    texts = codes_text("BATCH", 400)
    ids, _ = eng.import_codes("A", texts)
    eng.allocate("A", len(ids), "o1")

    def work(index: int) -> list[list[str]]:
        if index == 0:
            # Batches of 10 from the front while the single redeems come from the back.
            codes: list[str] = []
            for start in range(0, len(texts), 10):
                chunk = texts[start : start + 10]
                ids = [f"many-{start + n}" for n in range(len(chunk))]
                codes += eng.redeem_many(chunk, ids, "term-b").error_codes()
                pause()
            return [codes]
        if index == 1:
            singles = [try_redeem(eng, t, f"one-{t}", "term-s") for t in texts[::-1]]
            return [["" if isinstance(r, Redemption) else r for r in singles[::-1]]]
        statuses = []
        for _ in range(5):
            statuses.append(eng.verify_many(texts).statuses())
            pause()
        return statuses

    results = race(4, work)
    batch_codes, single_codes = results[0][0], results[1][0]
    # The batch and the single redeems really raced: each won some codes.
    assert "" in batch_codes and "" in single_codes
    assert set(batch_codes) <= {"", "ALREADY_REDEEMED"}
    assert set(single_codes) <= {"", "ALREADY_REDEEMED"}
    for statuses in results[2] + results[3]:
        assert set(statuses) <= {"valid", "redeemed"}
    batch_wins = {i for i, c in enumerate(batch_codes) if c == ""}
    single_wins = {i for i, c in enumerate(single_codes) if c == ""}
    assert batch_wins.isdisjoint(single_wins)
    assert batch_wins | single_wins == set(range(len(texts)))
    for n, code_id in enumerate(ids):
        info = eng.code_info(code_id)
        assert info.state == "redeemed"
        assert len(info.redemption_ids) == 1, f"code {n} redeemed {len(info.redemption_ids)} times"
        winner = eng.get_redemption(info.redemption_ids[0])
        assert winner.terminal == ("term-b" if n in batch_wins else "term-s")
    assert eng.stock("A")["redeemed"] == len(ids)
    eng.check_invariants()


# ----------------------------------------------------------------------------------- selling


@pytest.mark.parametrize("threads", [2, 8])
def test_racing_orders_never_share_a_code_and_sell_exactly_the_stock(threads: int) -> None:
    eng = new_engine()
    eng.create_sku("HOT", 1)
    stock = 600
    ids, _ = eng.import_codes("HOT", codes_text("HOT", stock))

    def buyer(index: int) -> dict[str, list[int]]:
        rng = random.Random(index)
        orders: dict[str, list[int]] = {}
        failures = 0
        while failures < 3:
            ref = f"order-{index}-{len(orders)}-{failures}"
            pause()
            try:
                orders[ref] = eng.allocate("HOT", rng.randint(1, 7), ref)
            except CardsvcError as err:
                assert err.code == "OUT_OF_STOCK", err
                if err.details["available"] == 0:
                    failures += 1
                else:
                    ref = f"order-{index}-{len(orders)}-last-{failures}"
                    try:
                        orders[ref] = eng.allocate("HOT", 1, ref)
                    except CardsvcError as again:
                        assert again.code == "OUT_OF_STOCK"
        return orders

    all_orders: dict[str, list[int]] = {}
    results = race(threads, buyer)
    assert all(results), "some thread sold nothing: the threads did not really race"
    for orders in results:
        all_orders.update(orders)
    sold = [code_id for codes in all_orders.values() for code_id in codes]
    assert len(sold) == len(set(sold)), "a code was sold to two orders"
    assert sorted(sold) == sorted(ids)
    for ref, codes in all_orders.items():
        assert eng.order_codes(ref) == codes
    assert_stock_matches_codes(eng, "HOT", ids)
    assert eng.stock("HOT")["allocated"] == stock
    assert eng.stock("HOT")["available"] == 0
    eng.check_invariants()


def test_holds_confirms_releases_and_expiry_race_with_allocations() -> None:
    eng = new_engine()
    eng.create_sku("FLASH", 1)
    ids, _ = eng.import_codes("FLASH", codes_text("FLASH", 400))
    clock = {"now": T0_MS}
    stop = threading.Event()
    shoppers_left = [5]
    lock = threading.Lock()

    def worker(index: int) -> dict[str, list[int]]:
        """Threads 0-4 shop; thread 5 moves the clock and sweeps expired holds."""
        rng = random.Random(index)
        orders: dict[str, list[int]] = {}
        if index == 5:
            while not stop.wait(0.002):
                clock["now"] += 700
                eng.set_clock_ms(clock["now"])
                eng.expire_holds()
                eng.check_invariants()
            return orders
        for n in range(300):
            ref = f"{index}-{n}"
            action = rng.random()
            pause()
            try:
                if action < 0.3:
                    orders[f"a-{ref}"] = eng.allocate("FLASH", rng.randint(1, 2), f"a-{ref}")
                    continue
                hold = eng.hold_ms("FLASH", rng.randint(1, 3), f"h-{ref}", rng.choice([1, 1_000]))
                pause()
                if action < 0.7:
                    orders[f"c-{ref}"] = eng.confirm_hold(hold.hold_ref, f"c-{ref}")
                    assert orders[f"c-{ref}"] == hold.code_ids
                else:
                    eng.release_hold(hold.hold_ref)
            except CardsvcError as err:
                assert err.code in {"OUT_OF_STOCK", "HOLD_EXPIRED"}, err
        return orders

    def run(index: int) -> dict[str, list[int]]:
        try:
            return worker(index)
        finally:
            if index != 5:
                with lock:
                    shoppers_left[0] -= 1
                    if shoppers_left[0] == 0:
                        stop.set()

    results = race(6, run)
    stop.set()
    assert clock["now"] > T0_MS, "the clock thread never ran while the shoppers did"
    eng.set_clock_ms(clock["now"] + 10_000)
    eng.expire_holds()
    all_orders = {ref: codes for orders in results for ref, codes in orders.items()}
    sold = [code_id for codes in all_orders.values() for code_id in codes]
    assert len(sold) == len(set(sold)), "a code went to two orders"
    for ref, codes in all_orders.items():
        assert eng.order_codes(ref) == codes
        assert all(eng.code_info(i).order_ref == ref for i in codes)
    states = Counter(eng.code_info(i).state for i in ids)
    assert states == Counter({"allocated": len(sold), "available": len(ids) - len(sold)})
    assert_stock_matches_codes(eng, "FLASH", ids)
    eng.check_invariants()


def _sku_script(eng: Engine, sku: str, trace: list[str] | None = None) -> dict[str, int]:
    """A fixed mix of operations on one SKU; returns the size of each order it made.

    ``trace`` receives the SKU name once per step, showing how the threads interleaved.
    """
    eng.create_sku(sku, 2)
    texts = codes_text(sku, 150)
    eng.import_codes(sku, texts[:100])
    sizes: dict[str, int] = {}
    rng = random.Random(sku)
    for n in range(120):
        pause()
        if trace is not None:
            trace.append(sku)
        if n == 60:
            eng.import_codes(sku, texts[100:])
        qty = rng.randint(1, 3)
        try:
            if n % 3 == 0:
                hold = eng.hold_ms(sku, qty, f"{sku}-h{n}", 60_000)
                if n % 2 == 0:
                    sizes[f"{sku}-c{n}"] = len(eng.confirm_hold(hold.hold_ref, f"{sku}-c{n}"))
                else:
                    eng.release_hold(hold.hold_ref)
            else:
                sizes[f"{sku}-o{n}"] = len(eng.allocate(sku, qty, f"{sku}-o{n}"))
        except CardsvcError as err:
            assert err.code == "OUT_OF_STOCK"
    # Redeem the first 40 codes sold (which codes they are depends on FEFO ties; how many not).
    text_of = {eng.lookup(text): text for text in texts}
    sold = [code_id for ref in sizes for code_id in eng.order_codes(ref)]
    for n, code_id in enumerate(sold[:40]):
        redemption = eng.redeem(text_of[code_id], f"{sku}-r{n}", "term")
        if n % 4 == 0:
            eng.rollback(redemption.redemption_id, "test")
    return sizes


def _per_code(eng: Engine, sku: str) -> list[tuple[str, int]]:
    out = []
    for text in codes_text(sku, 150):
        info = eng.code_info(eng.lookup(text))
        out.append((info.state, info.uses_left))
    return out


def test_threads_on_different_skus_end_like_a_serial_run() -> None:
    skus = ["S0", "S1", "S2", "S3"]
    serial = new_engine()
    serial_sizes = [_sku_script(serial, sku) for sku in skus]
    parallel = new_engine()
    trace: list[str] = []
    parallel_sizes = race(len(skus), lambda i: _sku_script(parallel, skus[i], trace))
    switches = sum(1 for a, b in itertools.pairwise(trace) if a != b)
    assert switches > 4 * len(skus), "the SKU threads ran one after another, not together"
    assert parallel_sizes == serial_sizes
    for sku in skus:
        assert parallel.stock(sku) == serial.stock(sku)
        assert parallel.stock_by_pool(sku) == serial.stock_by_pool(sku)
        assert Counter(_per_code(parallel, sku)) == Counter(_per_code(serial, sku))
        for ref, size in serial_sizes[skus.index(sku)].items():
            assert len(parallel.order_codes(ref)) == size
    assert parallel.code_count() == serial.code_count()
    parallel.check_invariants()
    serial.check_invariants()
