"""The engine measured through its Python API (``cardsvc.engine.Engine``), in one process.

Goal: issue 2's engine figures: single-thread redeem, verify and allocate(qty=1) ops/s; batch
``verify_many``/``redeem_many``/``redeem_batch`` codes/s; two threads on different SKUs against
one thread; bulk import codes/s. Memory per code is measured by ``bench.memory`` in a subprocess.

Method: one engine is loaded up front with a SKU per figure (codes to redeem and verify are sold
first, in ``ORDER_QTY_MAX`` orders), so no measurement sees codes another one consumed. Inputs are
pre-generated fresh strings; the timed region is the same list-comprehension loop over a bound
method that ``bench.baselines`` uses, with the collector off. Each measurement checks its result
(uses left, statuses, distinct codes, stock counts, the journal grew) before returning its rate;
the journal is drained between measurements, outside the clock, as the service's flusher would.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import code_texts, rate, ref_texts, timed
from cardsvc.engine import Engine
from cardsvc.errors import CardsvcError

IMPORT_CHUNK = 1_000_000
TERMINAL = "T1"


def core_module() -> ModuleType:
    """The compiled module behind ``Engine``, found through its base class.

    Only ``cardsvc.engine`` may import ``cardsvc._core`` (STYLE.md); the benchmark needs the module
    only to prove which build ran and to read ``ORDER_QTY_MAX``.
    """
    base = next(cls for cls in Engine.__mro__ if cls.__name__ == "CoreEngine")
    assert base.__module__ == "cardsvc._core", base.__module__
    return sys.modules[base.__module__]


def engine_identity() -> dict[str, Any]:
    """Which engine build runs: the compiled extension's path, size and modification time."""
    path = Path(core_module().__file__ or "")
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert path.name.endswith(suffixes), f"cardsvc._core is not a compiled extension: {path}"
    stat = path.stat()
    return {
        "module": str(path),
        "size_bytes": stat.st_size,
        "modified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
    }


def new_engine() -> Engine:
    """An empty engine with a random lookup key, checked to be the Rust class."""
    eng = Engine(os.urandom(32))
    core_class: type[object] = core_module().CoreEngine
    assert isinstance(eng, core_class)
    return eng


def import_all(eng: Engine, sku: str, prefix: str, count: int) -> None:
    """Import ``count`` codes ``prefix + number`` into ``sku`` in chunks; all must be new."""
    for start in range(0, count, IMPORT_CHUNK):
        n = min(IMPORT_CHUNK, count - start)
        ids, duplicates = eng.import_codes(sku, code_texts(prefix, start, n))
        assert len(ids) == n and not duplicates, (sku, len(ids), len(duplicates))


def sell_all(eng: Engine, sku: str) -> None:
    """Allocate every available code of ``sku`` in orders of ``ORDER_QTY_MAX`` codes."""
    left = eng.stock(sku)["available"]
    qty_max = int(core_module().ORDER_QTY_MAX)
    requests: list[tuple[str, int, str, int]] = []
    while left > 0:
        qty = min(qty_max, left)
        requests.append((sku, qty, f"prep-{sku}-{len(requests)}", 0))
        left -= qty
    for result in eng.allocate_many(requests):
        assert not isinstance(result, CardsvcError), result
    assert eng.stock(sku)["available"] == 0


def run_threads(work: Sequence[Callable[[], object]]) -> float:
    """Run each callable in its own thread, released together; returns the wall seconds."""
    barrier = threading.Barrier(len(work) + 1)
    errors: list[BaseException] = []

    def body(fn: Callable[[], object]) -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:  # Re-raised in the caller's thread.
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(fn,)) for fn in work]
    for thread in threads:
        thread.start()

    def release_and_join() -> None:
        barrier.wait()
        for thread in threads:
            thread.join()

    _, seconds = timed(release_and_join)
    if errors:
        raise errors[0]
    return seconds


def load_engine(plan: list[tuple[str, str, int, bool]]) -> Engine:
    """A new engine with, per (sku, prefix, count, sold) item, ``count`` codes, sold or not."""
    eng = new_engine()
    for sku, prefix, count, sold in plan:
        eng.create_sku(sku, 1, True, None)
        import_all(eng, sku, prefix, count)
        if sold:
            sell_all(eng, sku)
    eng.drain_journal()
    return eng


@dataclass
class EngineBench:
    """Engines loaded for ``repeats`` runs of every measurement.

    ``ops`` operations per single-call measurement, ``batch_items`` codes per batch measurement
    in calls of ``batch`` codes, ``import_items`` codes per bulk import. The single calls run on
    ``eng``, which holds exactly the codes the dict baseline holds (``DictBench``), so table size
    does not favour either; the batch forms and the thread pairs have engines of their own.
    """

    eng: Engine
    batch_eng: Engine
    threads_eng: Engine
    ops: int
    batch: int
    batch_items: int
    import_items: int
    repeats: int
    journal: dict[str, float] = field(default_factory=lambda: {"bytes": 0.0, "seconds": 0.0})

    @classmethod
    def prepare(
        cls, ops: int, batch: int, batch_items: int, import_items: int, repeats: int
    ) -> EngineBench:
        half = ops // 2
        eng = load_engine(
            [
                ("VERIFY", "EV", ops, True),
                ("REDEEM", "ER", ops * repeats, True),
                ("ALLOC", "EA", ops * repeats, False),
            ]
        )
        batch_eng = load_engine(
            [
                ("BVERIFY", "EBV", batch_items, True),
                ("BREDEEM", "EB", batch_items * repeats, True),
                ("BBATCH", "EBB", batch_items * repeats, True),
            ]
        )
        threads_eng = load_engine(
            [
                ("TR0", "ETR0", 2 * half * repeats, True),
                ("TR1", "ETR1", 2 * half * repeats, True),
                ("TA0", "ETA0", 2 * half * repeats, False),
                ("TA1", "ETA1", 2 * half * repeats, False),
                ("TB0", "ETB0", 2 * half * repeats, True),
                ("TB1", "ETB1", 2 * half * repeats, True),
                ("TV0", "ETV0", half, True),
                ("TV1", "ETV1", half, True),
            ]
        )
        return cls(eng, batch_eng, threads_eng, ops, batch, batch_items, import_items, repeats)

    def drain(self, eng: Engine) -> None:
        """Take the pending journal records, as the service's flusher would (not timed)."""
        start = time.perf_counter()
        data = eng.drain_journal()
        self.journal["seconds"] += time.perf_counter() - start
        self.journal["bytes"] += len(data)

    def _journaled(self, eng: Engine, fn: Callable[[], float]) -> float:
        assert eng.journal_len() == 0
        out = fn()
        assert eng.journal_len() > 0, "a mutation wrote no journal record"
        self.drain(eng)
        return out

    # --- single calls ---------------------------------------------------------------------

    def measure_verify(self, repeat: int) -> float:
        """Verify ``ops`` distinct sold codes one call each; returns ops/s."""
        codes = code_texts("EV", 0, self.ops)
        verify = self.eng.verify
        results, seconds = timed(lambda: [verify(c) for c in codes])
        assert all(r.status == "valid" and r.uses_left == 1 for r in results)
        return rate(self.ops, seconds)

    def measure_redeem(self, repeat: int) -> float:
        """Redeem ``ops`` distinct sold single-use codes once each; returns ops/s."""
        return self._journaled(self.eng, lambda: self._redeem(repeat))

    def _redeem(self, repeat: int) -> float:
        codes = code_texts("ER", repeat * self.ops, self.ops)
        request_ids = ref_texts(f"er{repeat}", 0, self.ops)
        redeem = self.eng.redeem
        results, seconds = timed(
            lambda: [redeem(c, r, TERMINAL) for c, r in zip(codes, request_ids, strict=True)]
        )
        assert all(r.uses_left == 0 for r in results)
        assert len({r.redemption_id for r in results}) == self.ops
        assert self.eng.verify(codes[-1]).status == "redeemed"
        replay = redeem(codes[0], request_ids[0], TERMINAL)
        assert replay.redemption_id == results[0].redemption_id
        expect_error(lambda: redeem(codes[0], f"er{repeat}-again", TERMINAL), "ALREADY_REDEEMED")
        return rate(self.ops, seconds)

    def measure_allocate(self, repeat: int) -> float:
        """Allocate ``ops`` orders of one code each; returns ops/s."""
        return self._journaled(self.eng, lambda: self._allocate(repeat))

    def _allocate(self, repeat: int) -> float:
        refs = ref_texts(f"ea{repeat}", 0, self.ops)
        allocate = self.eng.allocate
        allocated_before = self.eng.stock("ALLOC")["allocated"]
        results, seconds = timed(lambda: [allocate("ALLOC", 1, r) for r in refs])
        assert self.eng.stock("ALLOC")["allocated"] == allocated_before + self.ops
        assert len({ids[0] for ids in results if len(ids) == 1}) == self.ops
        assert allocate("ALLOC", 1, refs[0]) == results[0]
        return rate(self.ops, seconds)

    # --- batches --------------------------------------------------------------------------

    def measure_verify_many(self, repeat: int) -> float:
        """Verify ``batch_items`` sold codes in calls of ``batch``; returns codes/s."""
        batches = chunked(code_texts("EBV", 0, self.batch_items), self.batch)
        verify_many = self.batch_eng.verify_many
        results, seconds = timed(lambda: [verify_many(b) for b in batches])
        assert all(r.ok_count == len(b) for r, b in zip(results, batches, strict=True))
        assert set(results[-1].statuses()) == {"valid"}
        return rate(self.batch_items, seconds)

    def measure_redeem_many(self, repeat: int) -> float:
        """Redeem ``batch_items`` sold codes in calls of ``batch``; returns codes/s."""
        return self._journaled(self.batch_eng, lambda: self._redeem_many(repeat))

    def _redeem_many(self, repeat: int) -> float:
        n = self.batch_items
        codes = chunked(code_texts("EB", repeat * n, n), self.batch)
        request_ids = chunked(ref_texts(f"eb{repeat}", 0, n), self.batch)
        redeem_many = self.batch_eng.redeem_many
        results, seconds = timed(
            lambda: [redeem_many(c, r, TERMINAL) for c, r in zip(codes, request_ids, strict=True)]
        )
        assert all(r.ok_count == len(c) for r, c in zip(results, codes, strict=True))
        assert set(results[-1].uses_left()) == {0}
        assert set(self.batch_eng.verify_many(codes[-1]).statuses()) == {"redeemed"}
        return rate(n, seconds)

    def measure_redeem_batch(self, repeat: int) -> float:
        """Redeem ``batch_items`` sold codes in ``redeem_batch`` calls of ``batch`` codes, one key
        per call; returns codes/s. Checks every item, a retry of the last batch (the same
        redemptions, no new record) and the journal's compactness (records per batch)."""
        return self._journaled(self.batch_eng, lambda: self._redeem_batch(repeat))

    def _redeem_batch(self, repeat: int) -> float:
        n = self.batch_items
        codes = chunked(code_texts("EBB", repeat * n, n), self.batch)
        keys = ref_texts(f"ebb{repeat}", 0, len(codes))
        redeem_batch = self.batch_eng.redeem_batch
        journal_before = self.batch_eng.journal_len()
        results, seconds = timed(
            lambda: [redeem_batch(k, c, TERMINAL) for k, c in zip(keys, codes, strict=True)]
        )
        assert all(r.ok_count == len(c) for r, c in zip(results, codes, strict=True))
        assert set(results[-1].uses_left()) == {0}
        assert set(self.batch_eng.verify_many(codes[-1]).statuses()) == {"redeemed"}
        records = self.batch_eng.journal_len() - journal_before
        blocks = sum(-(-len(c) // 1024) for c in codes)
        assert records == len(codes) + blocks, (records, len(codes), blocks)
        again = redeem_batch(keys[-1], codes[-1], TERMINAL)
        assert again.redemption_ids() == results[-1].redemption_ids()
        assert self.batch_eng.journal_len() - journal_before == records
        return rate(n, seconds)

    # --- two threads on different SKUs ------------------------------------------------------

    def measure_threads_redeem(self, repeat: int) -> dict[str, float]:
        """Redeem ``ops`` codes split over SKUs TR0/TR1, by one thread and by two threads."""
        half = self.ops // 2

        def work(sku_index: int, phase: int) -> Callable[[], object]:
            start = (2 * repeat + phase) * half
            codes = code_texts(f"ETR{sku_index}", start, half)
            rids = ref_texts(f"etr{sku_index}-{repeat}-{phase}", 0, half)
            redeem = self.threads_eng.redeem

            def run() -> list[Any]:
                out = [redeem(c, r, TERMINAL) for c, r in zip(codes, rids, strict=True)]
                assert all(x.uses_left == 0 for x in out)
                return out

            return run

        return self._journaled_pair(repeat, work, half)

    def measure_threads_allocate(self, repeat: int) -> dict[str, float]:
        """Allocate ``ops`` single-code orders split over SKUs TA0/TA1, one vs two threads."""
        half = self.ops // 2

        def work(sku_index: int, phase: int) -> Callable[[], object]:
            sku = f"TA{sku_index}"
            refs = ref_texts(f"eta{sku_index}-{repeat}-{phase}", 0, half)
            allocate = self.threads_eng.allocate

            def run() -> list[list[int]]:
                out = [allocate(sku, 1, r) for r in refs]
                assert all(len(ids) == 1 for ids in out)
                return out

            return run

        before = (
            self.threads_eng.stock("TA0")["allocated"] + self.threads_eng.stock("TA1")["allocated"]
        )
        out = self._journaled_pair(repeat, work, half)
        after = (
            self.threads_eng.stock("TA0")["allocated"] + self.threads_eng.stock("TA1")["allocated"]
        )
        assert after - before == 4 * half
        return out

    def measure_threads_redeem_many(self, repeat: int) -> dict[str, float]:
        """redeem_many over ``ops`` codes split over SKUs TB0/TB1, one vs two threads."""
        half = self.ops // 2

        def work(sku_index: int, phase: int) -> Callable[[], object]:
            start = (2 * repeat + phase) * half
            codes = chunked(code_texts(f"ETB{sku_index}", start, half), self.batch)
            rids = chunked(ref_texts(f"etb{sku_index}-{repeat}-{phase}", 0, half), self.batch)
            redeem_many = self.threads_eng.redeem_many

            def run() -> list[Any]:
                out = [redeem_many(c, r, TERMINAL) for c, r in zip(codes, rids, strict=True)]
                assert sum(x.ok_count for x in out) == half
                return out

            return run

        return self._journaled_pair(repeat, work, half)

    def measure_threads_verify(self, repeat: int) -> dict[str, float]:
        """Verify ``ops`` codes split over SKUs TV0/TV1, one vs two threads (read-only)."""
        half = self.ops // 2

        def work(sku_index: int, phase: int) -> Callable[[], object]:
            codes = code_texts(f"ETV{sku_index}", 0, half)
            verify = self.threads_eng.verify

            def run() -> list[Any]:
                out = [verify(c) for c in codes]
                assert all(x.status == "valid" for x in out)
                return out

            return run

        return self._pair(repeat, work, half)

    def _journaled_pair(
        self, repeat: int, work: Callable[[int, int], Callable[[], object]], half: int
    ) -> dict[str, float]:
        assert self.threads_eng.journal_len() == 0
        out = self._pair(repeat, work, half)
        assert self.threads_eng.journal_len() > 0
        self.drain(self.threads_eng)
        return out

    def _pair(
        self, repeat: int, work: Callable[[int, int], Callable[[], object]], half: int
    ) -> dict[str, float]:
        """Phase one thread (both SKUs in turn) and phase two threads (one SKU each).

        The phases alternate in order across repeats so that drift in machine load does not
        favour either. Returns the two rates and their ratio.
        """
        one_work = [work(0, 0), work(1, 0)]
        two_work = [work(0, 1), work(1, 1)]

        def one_thread() -> float:
            return run_threads([lambda: [fn() for fn in one_work]])

        def two_threads() -> float:
            return run_threads(two_work)

        if repeat % 2 == 0:
            one_s, two_s = one_thread(), two_threads()
        else:
            two_s, one_s = two_threads(), one_thread()
        one_rate, two_rate = rate(2 * half, one_s), rate(2 * half, two_s)
        return {"one_thread": one_rate, "two_threads": two_rate, "ratio": two_rate / one_rate}

    # --- bulk import ----------------------------------------------------------------------

    def measure_import(self, repeat: int) -> float:
        """Import ``import_items`` new codes in one call into a fresh engine; returns codes/s."""
        codes = code_texts(f"EI{repeat}", 0, self.import_items)
        eng = new_engine()
        eng.create_sku("IMPORT", 1, True, None)
        (ids, duplicates), seconds = timed(lambda: eng.import_codes("IMPORT", codes))
        assert len(ids) == self.import_items and not duplicates
        assert eng.code_count() == self.import_items
        assert eng.stock("IMPORT")["available"] == self.import_items
        return rate(self.import_items, seconds)


def chunked(items: list[str], size: int) -> list[list[str]]:
    """``items`` cut into consecutive lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def expect_error(fn: Callable[[], object], code: str) -> None:
    """Assert that ``fn`` raises a ``CardsvcError`` with ``code``."""
    try:
        fn()
    except CardsvcError as exc:
        assert exc.code == code, (exc.code, code)
        return
    raise AssertionError(f"expected {code}")
