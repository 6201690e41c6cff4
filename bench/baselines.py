"""The plain-dict baseline: a single-thread Python allocator, redeemer and verifier.

Goal: the lower bound the engine must beat through its Python API (issue 2): what the plainest
correct in-process implementation achieves, with no keyed hashing, no locks, no journal, no
normalisation and no validity windows.

Method: a ``dict`` from code text to a mutable ``[state, uses_left]`` record, a ``list`` pool per
SKU (allocation pops from its end), a ``dict`` order ref -> (sku, qty, codes) for allocation
idempotency and a ``dict`` request id -> result tuple for redemption idempotency. The measure
functions drive it with the same tight loop (bound method, list comprehension over pre-generated
inputs) that ``bench.engine_bench`` uses for the engine, and check the result afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import code_texts, rate, ref_texts, timed

AVAILABLE = 0
ALLOCATED = 1
REDEEMED = 2

STATUS_NAMES = {AVAILABLE: "not_sold", ALLOCATED: "valid", REDEEMED: "redeemed"}

RedeemResult = tuple[str, str, int, int]  # code, terminal, uses_left, redemption_id


class BaselineError(Exception):
    """A refused operation; ``code`` is the engine's error code for the same case."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class DictCodeTable:
    """Codes, pools, orders and redemptions in plain dicts and lists; not thread-safe."""

    def __init__(self) -> None:
        self.codes: dict[str, list[int]] = {}
        self.pools: dict[str, list[str]] = {}
        self.orders: dict[str, tuple[str, int, list[str]]] = {}
        self.requests: dict[str, RedeemResult] = {}
        self.redemption_count = 0

    def import_codes(self, sku: str, codes: list[str], uses: int = 1) -> int:
        """Add ``codes`` to ``sku``'s pool as available; returns how many were new."""
        pool = self.pools.setdefault(sku, [])
        added = 0
        for code in codes:
            if code not in self.codes:
                self.codes[code] = [AVAILABLE, uses]
                pool.append(code)
                added += 1
        return added

    def allocate(self, sku: str, qty: int, order_ref: str) -> list[str]:
        """Take ``qty`` codes from ``sku``'s pool for ``order_ref``; a retry returns the same."""
        prev = self.orders.get(order_ref)
        if prev is not None:
            if prev[0] != sku or prev[1] != qty:
                raise BaselineError("IDEMPOTENCY_KEY_REUSED")
            return prev[2]
        if qty < 1:
            raise BaselineError("QUANTITY_MUST_BE_POSITIVE")
        pool = self.pools.get(sku)
        if pool is None:
            raise BaselineError("SKU_NOT_FOUND")
        if len(pool) < qty:
            raise BaselineError("OUT_OF_STOCK")
        taken = pool[-qty:]
        del pool[-qty:]
        codes = self.codes
        for code in taken:
            codes[code][0] = ALLOCATED
        self.orders[order_ref] = (sku, qty, taken)
        return taken

    def verify(self, code: str) -> tuple[str, int]:
        """The code's status name and uses left; consumes nothing."""
        record = self.codes.get(code)
        if record is None:
            raise BaselineError("CODE_NOT_FOUND")
        return STATUS_NAMES[record[0]], record[1]

    def redeem(self, code: str, request_id: str, terminal: str) -> RedeemResult:
        """Take one use of ``code``; a retried ``request_id`` returns the first result."""
        prev = self.requests.get(request_id)
        if prev is not None:
            if prev[0] != code or prev[1] != terminal:
                raise BaselineError("IDEMPOTENCY_KEY_REUSED")
            return prev
        record = self.codes.get(code)
        if record is None:
            raise BaselineError("CODE_NOT_FOUND")
        state = record[0]
        if state != ALLOCATED:
            raise BaselineError("ALREADY_REDEEMED" if state == REDEEMED else "NOT_SOLD")
        uses_left = record[1] - 1
        record[1] = uses_left
        if uses_left == 0:
            record[0] = REDEEMED
        self.redemption_count += 1
        result = (code, terminal, uses_left, self.redemption_count)
        self.requests[request_id] = result
        return result


@dataclass
class DictBench:
    """The baseline loaded for ``repeats`` measurements of ``ops`` operations each."""

    ops: int
    repeats: int
    table: DictCodeTable

    @classmethod
    def prepare(cls, ops: int, repeats: int) -> DictBench:
        """Import the codes every measurement needs; sold codes are allocated up front."""
        table = DictCodeTable()
        table.import_codes("VERIFY", code_texts("DV", 0, ops))
        table.import_codes("REDEEM", code_texts("DR", 0, ops * repeats))
        table.import_codes("ALLOC", code_texts("DA", 0, ops * repeats))
        for sku in ("VERIFY", "REDEEM"):
            table.allocate(sku, len(table.pools[sku]), f"prep-{sku}")
        return cls(ops, repeats, table)

    def measure_redeem(self, repeat: int) -> float:
        """Redeem ``ops`` distinct sold single-use codes once each; returns ops/s."""
        codes = code_texts("DR", repeat * self.ops, self.ops)
        request_ids = ref_texts(f"dr{repeat}", 0, self.ops)
        redeem = self.table.redeem
        before = self.table.redemption_count
        results, seconds = timed(
            lambda: [redeem(c, r, "T1") for c, r in zip(codes, request_ids, strict=True)]
        )
        assert self.table.redemption_count - before == self.ops
        assert all(result[2] == 0 for result in results)
        assert self.table.verify(codes[-1]) == ("redeemed", 0)
        assert redeem(codes[0], request_ids[0], "T1") is results[0]
        return rate(self.ops, seconds)

    def measure_verify(self, repeat: int) -> float:
        """Verify ``ops`` distinct sold codes; returns ops/s."""
        codes = code_texts("DV", 0, self.ops)
        verify = self.table.verify
        results, seconds = timed(lambda: [verify(c) for c in codes])
        assert all(result == ("valid", 1) for result in results)
        return rate(self.ops, seconds)

    def measure_allocate(self, repeat: int) -> float:
        """Allocate ``ops`` orders of one code each; returns ops/s."""
        refs = ref_texts(f"da{repeat}", 0, self.ops)
        allocate = self.table.allocate
        pool_before = len(self.table.pools["ALLOC"])
        results, seconds = timed(lambda: [allocate("ALLOC", 1, r) for r in refs])
        assert len(self.table.pools["ALLOC"]) == pool_before - self.ops
        assert len({codes[0] for codes in results}) == self.ops
        assert allocate("ALLOC", 1, refs[0]) is results[0]
        return rate(self.ops, seconds)
