"""A plain-Python reference model of the engine, written from docs/engine.md alone.

Goal: give the state-machine test (``test_engine_model.py``) an independent statement of what
every engine operation must return, raise and change, so that any disagreement with the Rust core
is a bug in one of the two (or an ambiguity in the contract, to be settled in the doc).

Method: the model keeps codes, pools (implicitly: a code is in its pool while ``available``),
holds, orders and redemptions in dictionaries and applies each operation literally, checking
errors in the documented order of precedence and raising :class:`ModelError` with the expected
``code`` (and, where the contract fixes them, ``details``). Choices the contract leaves open are
not over-specified: when several codes tie on ``valid_until`` the caller passes the engine's pick
(``chosen``), the model checks it against the FEFO rule (:func:`fefo_violation`) and adopts it;
code ids and redemption ids are adopted from the engine the same way (after checking they are
fresh).
Cases the contract does not decide at all raise :class:`Unspecified`, and the state machine does
not generate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

CODE_LEN_MAX = 128
PIN_LEN_MAX = 32
REF_LEN_MAX = 128
ORDER_QTY_MAX = 10_000
HOLD_TTL_MS_MAX = 86_400_000
USES_PER_CODE_MAX = 65_535
SECONDS_PER_DAY = 86_400

# ASCII whitespace and '-' are removed by normalisation. Form feed and vertical tab are left out
# on purpose: whether they count as "ASCII whitespace" is not settled by the contract, so the
# state machine never generates them.
SEPARATORS = frozenset(" \t\r\n-")

STATES = ("available", "held", "allocated", "redeemed", "frozen", "void", "withdrawn")
STOCK_KEYS = (
    "available", "expired", "held", "allocated", "redeemed", "frozen", "void", "withdrawn", "total"
)  # fmt: skip


class ModelError(Exception):
    """The error the contract requires: ``code`` and the ``details`` it fixes.

    ``field_in`` is set for IDEMPOTENCY_KEY_REUSED: the set of acceptable ``details["field"]``
    values (several parameters may differ at once, and the contract does not rank them).
    """

    def __init__(
        self,
        code: str,
        details: dict[str, Any] | None = None,
        field_in: frozenset[str] | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.details: dict[str, Any] = details if details is not None else {}
        self.field_in = field_in


class Unspecified(Exception):
    """The contract does not decide this case; the caller must not generate it."""


class ModelViolation(AssertionError):
    """The engine made a choice the contract forbids (e.g. a pick that breaks FEFO)."""


def normalise(text: str) -> str | None:
    """The normalised code text, or None when the contract makes it INVALID_CODE."""
    out = "".join(c for c in text if c not in SEPARATORS)
    if not out or len(out) > CODE_LEN_MAX:
        return None
    if not all(0x21 <= ord(c) <= 0x7E for c in out):
        return None
    return out.upper()


def pin_is_valid(pin: str) -> bool:
    """1..=PIN_LEN_MAX printable ASCII characters."""
    return 1 <= len(pin) <= PIN_LEN_MAX and all(0x21 <= ord(c) <= 0x7E for c in pin)


def _field_names(differing: Sequence[str]) -> frozenset[str]:
    """Acceptable ``details["field"]`` values: the contract does not say how ``qty`` is spelt."""
    names = set(differing)
    if "qty" in names:
        names.add("quantity")
    return frozenset(names)


def _fefo_key(valid_until: int | None) -> float:
    return float("inf") if valid_until is None else float(valid_until)


def fefo_violation(
    candidates: dict[int, int | None], chosen: Sequence[int], qty: int
) -> str | None:
    """Why ``chosen`` is not a legal FEFO pick of ``qty`` from ``candidates`` (id -> valid_until).

    Legal: exactly ``qty`` distinct ids, all candidates, and no unpicked candidate has a strictly
    earlier ``valid_until`` than any picked one (``None`` sorts last). Ties may go either way.
    """
    if len(chosen) != qty:
        return f"picked {len(chosen)} codes, wanted {qty}"
    if len(set(chosen)) != len(chosen):
        return f"picked a code twice: {list(chosen)}"
    foreign = [i for i in chosen if i not in candidates]
    if foreign:
        return f"picked codes that are not sellable in that pool: {foreign}"
    unpicked = [candidates[i] for i in candidates if i not in set(chosen)]
    if not unpicked or not chosen:
        return None
    latest_picked = max(_fefo_key(candidates[i]) for i in chosen)
    earliest_left = min(_fefo_key(v) for v in unpicked)
    if earliest_left < latest_picked:
        return f"left a code expiring at {earliest_left} while picking one at {latest_picked}"
    return None


@dataclass
class SkuM:
    name: str
    uses_per_code: int
    redeem_requires_sale: bool
    validity_days_after_sale: int | None


@dataclass
class CodeM:
    code_id: int
    key: str
    sku: str
    pool: int
    batch: int
    pin: str | None
    state: str
    uses_left: int
    valid_from: int | None
    valid_until: int | None
    frozen_from: str | None = None
    order_ref: str | None = None
    hold_ref: str | None = None
    redemption_ids: list[int] = field(default_factory=list)
    # Withdrawn (exported) and not restored: a redeemed or frozen code remembers it.
    was_withdrawn: bool = False
    # PIN lockout accounting: failures since the last lockout or right PIN, lockouts since the
    # last right PIN, and the end of the last lockout.
    pin_failures: int = 0
    lockouts: int = 0
    locked_until_ms: int | None = None


@dataclass
class PinPolicyM:
    failures_max: int = 10
    lockout_ms: int = 900_000
    lockout_max_ms: int = 86_400_000


@dataclass
class BatchM:
    """A batch under one key: its terminal, item prints and each item's outcome (a redemption
    id or an error code)."""

    terminal: str
    prints: list[tuple[str, str | None]]
    outcomes: list[int | str]


@dataclass
class OrderM:
    order_ref: str
    sku: str
    qty: int
    pool: int
    code_ids: list[int]


@dataclass
class HoldM:
    hold_ref: str
    sku: str
    qty: int
    pool: int
    code_ids: list[int]
    expires_at_ms: int
    state: str = "open"
    order_ref: str | None = None


@dataclass
class RedemptionM:
    redemption_id: int
    request_id: str
    code_id: int
    sku: str
    terminal: str
    uses_left: int
    redeemed_at_ms: int
    rolled_back_at_ms: int | None = None
    rollback_reason: str | None = None


@dataclass
class VerificationM:
    code_id: int
    status: str
    sku: str
    uses_left: int
    valid_from: int | None
    valid_until: int | None


class ReferenceEngine:
    """The engine's contract as a dictionary-based model. Methods mirror ``CoreEngine``."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.skus: dict[str, SkuM] = {}
        self.codes: dict[int, CodeM] = {}
        self.by_key: dict[str, int] = {}
        self.orders: dict[str, OrderM] = {}
        self.holds: dict[str, HoldM] = {}
        self.redemptions: dict[int, RedemptionM] = {}
        self.by_request_id: dict[str, int] = {}
        self.batches: dict[str, BatchM] = {}
        self.pin_policy = PinPolicyM()

    # ----------------------------------------------------------------------------------- clock

    def set_clock_ms(self, now_ms: int) -> None:
        self.now_ms = now_ms

    @property
    def now_s(self) -> int:
        """The time validity windows are compared with: whole Unix seconds."""
        return self.now_ms // 1000

    def is_expired(self, code: CodeM) -> bool:
        return code.valid_until is not None and code.valid_until < self.now_s

    def sellable(self, sku: str, pool: int) -> dict[int, int | None]:
        """Sellable codes of (sku, pool): id -> valid_until."""
        return {
            c.code_id: c.valid_until
            for c in self.codes.values()
            if c.sku == sku and c.pool == pool and c.state == "available" and not self.is_expired(c)
        }

    def _pick(self, sku: str, pool: int, qty: int, chosen: Sequence[int] | None) -> list[int]:
        candidates = self.sellable(sku, pool)
        if len(candidates) < qty:
            raise ModelError("OUT_OF_STOCK", {"available": len(candidates)})
        if chosen is None:
            order = sorted(candidates, key=lambda i: (_fefo_key(candidates[i]), i))
            return order[:qty]
        problem = fefo_violation(candidates, chosen, qty)
        if problem is not None:
            raise ModelViolation(f"engine broke FEFO/all-or-nothing: {problem}")
        return list(chosen)

    # --------------------------------------------------------------------------------- catalog

    def create_sku(
        self,
        sku: str,
        uses_per_code: int = 1,
        redeem_requires_sale: bool = True,
        validity_days_after_sale: int | None = None,
    ) -> None:
        if not sku or len(sku) > REF_LEN_MAX or not 1 <= uses_per_code <= USES_PER_CODE_MAX:
            raise ModelError("INVALID_ARGUMENT")
        if sku in self.skus:
            raise ModelError("SKU_EXISTS")
        self.skus[sku] = SkuM(sku, uses_per_code, redeem_requires_sale, validity_days_after_sale)

    def import_codes(
        self,
        sku: str,
        codes: Sequence[str],
        pool: int = 0,
        pins: Sequence[str | None] | None = None,
        valid_from: int | None = None,
        valid_until: int | None = None,
        batch: int = 0,
        chosen_ids: Sequence[int] | None = None,
    ) -> tuple[list[int], list[int]]:
        if sku not in self.skus:
            raise ModelError("SKU_NOT_FOUND")
        keys: list[str] = []
        for index, text in enumerate(codes):
            key = normalise(text)
            if key is None:
                raise ModelError("INVALID_CODE", {"index": index})
            keys.append(key)
            pin = pins[index] if pins is not None and index < len(pins) else None
            if pin is not None and not pin_is_valid(pin):
                raise ModelError("INVALID_PIN", {"index": index})
        if pins is not None and len(pins) != len(codes):
            raise ModelError("INVALID_ARGUMENT")
        if valid_from is not None and valid_until is not None and valid_from > valid_until:
            raise ModelError("INVALID_ARGUMENT")
        fresh: list[int] = []
        duplicates: list[int] = []
        seen: set[str] = set()
        for index, key in enumerate(keys):
            if key in self.by_key or key in seen:
                duplicates.append(index)
            else:
                seen.add(key)
                fresh.append(index)
        ids = self._new_code_ids(len(fresh), chosen_ids)
        entry = self.skus[sku]
        for code_id, index in zip(ids, fresh, strict=True):
            self.codes[code_id] = CodeM(
                code_id=code_id,
                key=keys[index],
                sku=sku,
                pool=pool,
                batch=batch,
                pin=pins[index] if pins is not None else None,
                state="available",
                uses_left=entry.uses_per_code,
                valid_from=valid_from,
                valid_until=valid_until,
            )
            self.by_key[keys[index]] = code_id
        return ids, duplicates

    def _new_code_ids(self, count: int, chosen: Sequence[int] | None) -> list[int]:
        """Fresh ids, one per new code. The engine's ids are adopted after checking that they were
        never used before and are distinct. "Dense" is not checked: the engine hands out ids in
        per-SKU blocks, so consecutive imports into different SKUs are not consecutive.
        """
        if chosen is None:
            start = max(self.codes, default=-1) + 1
            return list(range(start, start + count))
        ids = list(chosen)
        if len(ids) != count or len(set(ids)) != count:
            raise ModelViolation(f"engine gave ids {ids} for {count} new codes")
        reused = [i for i in ids if i in self.codes]
        if reused:
            raise ModelViolation(f"engine reused code ids {reused}")
        return ids

    # --------------------------------------------------------------------------------- selling

    def sweep(self, sku: str) -> int:
        """Expire the due holds of ``sku`` (what allocation, hold and stock calls do first)."""
        due = [
            h
            for h in self.holds.values()
            if h.sku == sku and h.state == "open" and h.expires_at_ms <= self.now_ms
        ]
        for hold in due:
            self._end_hold(hold, "expired")
        return len(due)

    def _end_hold(self, hold: HoldM, state: str) -> int:
        hold.state = state
        for code_id in hold.code_ids:
            code = self.codes[code_id]
            if code.state != "held":
                raise ModelViolation(f"model bug: code {code_id} of open hold is {code.state}")
            code.state = "available"
            code.hold_ref = None
        return len(hold.code_ids)

    def _check_qty(self, qty: int) -> None:
        if qty <= 0:
            raise ModelError("QUANTITY_MUST_BE_POSITIVE")
        if qty > ORDER_QTY_MAX:
            raise ModelError("LIMIT_EXCEEDED")

    def _sell(self, sku: str, code_ids: Iterable[int], order_ref: str) -> None:
        days = self.skus[sku].validity_days_after_sale
        for code_id in code_ids:
            code = self.codes[code_id]
            code.state = "allocated"
            code.order_ref = order_ref
            code.hold_ref = None
            if days is not None:
                limit = self.now_s + days * SECONDS_PER_DAY
                code.valid_until = (
                    limit if code.valid_until is None else min(code.valid_until, limit)
                )

    def allocate(
        self,
        sku: str,
        qty: int,
        order_ref: str,
        pool: int = 0,
        chosen: Sequence[int] | None = None,
    ) -> list[int]:
        if not order_ref:
            raise ModelError("INVALID_ARGUMENT")
        self._check_qty(qty)
        if sku not in self.skus:
            raise ModelError("SKU_NOT_FOUND")
        self.sweep(sku)
        existing = self.orders.get(order_ref)
        if existing is not None:
            differing = [
                name
                for name, old, new in (
                    ("sku", existing.sku, sku),
                    ("qty", existing.qty, qty),
                    ("pool", existing.pool, pool),
                )
                if old != new
            ]
            if differing:
                raise ModelError("IDEMPOTENCY_KEY_REUSED", field_in=_field_names(differing))
            return list(existing.code_ids)
        ids = self._pick(sku, pool, qty, chosen)
        self._sell(sku, ids, order_ref)
        self.orders[order_ref] = OrderM(order_ref, sku, qty, pool, list(ids))
        return list(ids)

    def order_codes(self, order_ref: str) -> list[int]:
        if order_ref not in self.orders:
            raise ModelError("ORDER_NOT_FOUND")
        return list(self.orders[order_ref].code_ids)

    def hold_ms(
        self,
        sku: str,
        qty: int,
        hold_ref: str,
        ttl_ms: int,
        pool: int = 0,
        chosen: Sequence[int] | None = None,
    ) -> HoldM:
        if not hold_ref:
            raise ModelError("INVALID_ARGUMENT")
        self._check_qty(qty)
        # The contract does not place the TTL check; the engine checks it after the quantity.
        if not 1 <= ttl_ms <= HOLD_TTL_MS_MAX:
            raise ModelError("INVALID_ARGUMENT")
        if sku not in self.skus:
            raise ModelError("SKU_NOT_FOUND")
        self.sweep(sku)
        existing = self.holds.get(hold_ref)
        if existing is not None:
            if existing.state != "open":
                raise Unspecified("hold ref of an ended hold reused")
            differing = [
                name
                for name, old, new in (
                    ("sku", existing.sku, sku),
                    ("qty", existing.qty, qty),
                    ("pool", existing.pool, pool),
                )
                if old != new
            ]
            if differing:
                raise ModelError("IDEMPOTENCY_KEY_REUSED", field_in=_field_names(differing))
            return existing
        ids = self._pick(sku, pool, qty, chosen)
        for code_id in ids:
            self.codes[code_id].state = "held"
            self.codes[code_id].hold_ref = hold_ref
        hold = HoldM(hold_ref, sku, qty, pool, list(ids), self.now_ms + ttl_ms)
        self.holds[hold_ref] = hold
        return hold

    def get_hold(self, hold_ref: str) -> HoldM:
        if hold_ref not in self.holds:
            raise ModelError("HOLD_NOT_FOUND")
        return self.holds[hold_ref]

    def confirm_hold(self, hold_ref: str, order_ref: str) -> list[int]:
        hold = self.holds.get(hold_ref)
        if hold is None:
            raise ModelError("HOLD_NOT_FOUND")
        if hold.state == "released":
            raise ModelError("HOLD_RELEASED")
        if hold.state == "open" and hold.expires_at_ms <= self.now_ms:
            self._end_hold(hold, "expired")
        if hold.state == "expired":
            raise ModelError("HOLD_EXPIRED")
        if hold.state == "confirmed":
            if hold.order_ref == order_ref:
                return list(hold.code_ids)
            raise ModelError("HOLD_ALREADY_CONFIRMED")
        if order_ref in self.orders:
            raise ModelError("IDEMPOTENCY_KEY_REUSED")
        hold.state = "confirmed"
        hold.order_ref = order_ref
        self._sell(hold.sku, hold.code_ids, order_ref)
        self.orders[order_ref] = OrderM(
            order_ref, hold.sku, len(hold.code_ids), hold.pool, list(hold.code_ids)
        )
        return list(hold.code_ids)

    def release_hold(self, hold_ref: str, engine_result: int | None = None) -> int:
        """``engine_result`` settles the one open case: releasing a due hold not yet swept."""
        hold = self.holds.get(hold_ref)
        if hold is None:
            raise ModelError("HOLD_NOT_FOUND")
        if hold.state == "confirmed":
            raise ModelError("HOLD_ALREADY_CONFIRMED")
        if hold.state in ("released", "expired"):
            return 0
        if hold.expires_at_ms <= self.now_ms and engine_result == 0:
            self._end_hold(hold, "expired")
            return 0
        return self._end_hold(hold, "released")

    def expire_holds(self) -> int:
        return sum(self.sweep(sku) for sku in list(self.skus))

    def move_stock(
        self,
        sku: str,
        qty: int,
        from_pool: int,
        to_pool: int,
        chosen: Sequence[int] | None = None,
    ) -> list[int]:
        if qty <= 0:
            raise ModelError("QUANTITY_MUST_BE_POSITIVE")
        if from_pool == to_pool:
            raise ModelError("INVALID_ARGUMENT")
        if sku not in self.skus:
            raise ModelError("SKU_NOT_FOUND")
        self.sweep(sku)
        ids = self._pick(sku, from_pool, qty, chosen)
        for code_id in ids:
            self.codes[code_id].pool = to_pool
        return ids

    # ------------------------------------------------------------------------------- terminals

    def _find(self, text: str, pin: str | None) -> CodeM:
        """INVALID_CODE, CODE_NOT_FOUND and PIN_MISMATCH, in that order (minus the arguments)."""
        key = normalise(text)
        if key is None:
            raise ModelError("INVALID_CODE")
        return self._find_key(key, pin)

    def _find_key(self, key: str, pin: str | None) -> CodeM:
        if key not in self.by_key:
            raise ModelError("CODE_NOT_FOUND")
        code = self.codes[self.by_key[key]]
        self._check_pin(code, pin)
        return code

    def _check_pin(self, code: CodeM, pin: str | None) -> None:
        """CODE_LOCKED during a lockout; a wrong or absent PIN counts a failure (the Nth starts
        a lockout, CODE_LOCKED with ``locked: true``); a right one clears the count."""
        if code.pin is None:
            return
        if code.locked_until_ms is not None and code.locked_until_ms > self.now_ms:
            until = code.locked_until_ms
            raise ModelError("CODE_LOCKED", self._lock_details(until, locked=False))
        if pin == code.pin:
            code.pin_failures, code.lockouts, code.locked_until_ms = 0, 0, None
            return
        policy = self.pin_policy
        if code.pin_failures + 1 < policy.failures_max:
            code.pin_failures += 1
            raise ModelError("PIN_MISMATCH")
        length = min(
            policy.lockout_ms * 2 ** min(code.lockouts, 40),
            max(policy.lockout_max_ms, policy.lockout_ms),
        )
        code.pin_failures, code.lockouts = 0, code.lockouts + 1
        code.locked_until_ms = self.now_ms + length
        raise ModelError("CODE_LOCKED", self._lock_details(code.locked_until_ms, locked=True))

    def _lock_details(self, until: int, *, locked: bool) -> dict[str, Any]:
        retry = -(-(until - self.now_ms) // 1000)
        return {"retry_after_s": retry, "locked_until_ms": until, "locked": locked}

    def status(self, code: CodeM) -> str:
        """The verification status, in the contract's order of precedence."""
        if code.state == "void":
            return "void"
        if code.state == "frozen":
            return "frozen"
        if code.state == "redeemed":
            return "redeemed"
        if code.state in ("available", "held") and self.skus[code.sku].redeem_requires_sale:
            return "not_sold"
        if code.valid_from is not None and code.valid_from > self.now_s:
            return "not_yet_valid"
        if self.is_expired(code):
            return "expired"
        return "valid"

    def verify(self, text: str, pin: str | None = None) -> VerificationM:
        code = self._find(text, pin)
        return VerificationM(
            code.code_id,
            self.status(code),
            code.sku,
            code.uses_left,
            code.valid_from,
            code.valid_until,
        )

    def redeem(
        self,
        text: str,
        request_id: str,
        terminal: str,
        pin: str | None = None,
        chosen_redemption_id: int | None = None,
    ) -> RedemptionM:
        key = normalise(text)
        if key is None:
            raise ModelError("INVALID_CODE")
        if not request_id or not terminal:
            raise ModelError("INVALID_ARGUMENT")
        code = self._find_key(key, pin)
        if request_id in self.by_request_id:
            first = self.redemptions[self.by_request_id[request_id]]
            if first.code_id != code.code_id:
                raise ModelError("IDEMPOTENCY_KEY_REUSED", field_in=frozenset({"code", "code_id"}))
            if first.terminal != terminal:
                raise ModelError("IDEMPOTENCY_KEY_REUSED", field_in=frozenset({"terminal"}))
            return self._replayed(first)
        self._check_redeemable(code)
        if code.state == "held":
            raise Unspecified("redeeming a held code of a SKU that needs no sale")
        record = self._take_use(code, request_id, terminal, chosen_redemption_id)
        self.by_request_id[request_id] = record.redemption_id
        return record

    def _replayed(self, first: RedemptionM) -> RedemptionM:
        """A replay: REDEMPTION_ROLLED_BACK if rolled back since, else the first record with the
        uses left now."""
        if first.rolled_back_at_ms is not None:
            details = {
                "redemption_id": first.redemption_id,
                "rolled_back_at_ms": first.rolled_back_at_ms,
            }
            raise ModelError("REDEMPTION_ROLLED_BACK", details)
        return replace(first, uses_left=self.codes[first.code_id].uses_left)

    def redeem_batch(
        self,
        batch_ref: str,
        texts: Sequence[str],
        terminal: str,
        pins: Sequence[str | None],
        chosen_ids: Sequence[int | None],
    ) -> list[RedemptionM | ModelError]:
        """One result per item; a retry replays the first outcomes (see docs/engine.md)."""
        if not batch_ref or not terminal:
            raise ModelError("INVALID_ARGUMENT")
        prints = [(normalise(t) or f"raw:{t}", p) for t, p in zip(texts, pins, strict=True)]
        existing = self.batches.get(batch_ref)
        if existing is not None:
            if existing.terminal != terminal:
                raise ModelError("IDEMPOTENCY_KEY_REUSED", {"field": "terminal"})
            for i, (a, b) in enumerate(zip(existing.prints, prints, strict=False)):
                if a != b:
                    raise ModelError("IDEMPOTENCY_KEY_REUSED", {"field": "codes", "index": i})
            if len(existing.prints) != len(prints):
                index = min(len(existing.prints), len(prints))
                raise ModelError("IDEMPOTENCY_KEY_REUSED", {"field": "codes", "index": index})
            out: list[RedemptionM | ModelError] = []
            for outcome in existing.outcomes:
                if isinstance(outcome, str):
                    out.append(ModelError(outcome))
                    continue
                try:
                    out.append(self._replayed(self.redemptions[outcome]))
                except ModelError as exc:
                    out.append(exc)
            return out
        batch = BatchM(terminal, prints, [])
        results: list[RedemptionM | ModelError] = []
        for i, (text, pin) in enumerate(zip(texts, pins, strict=True)):
            try:
                key = normalise(text)
                if key is None:
                    raise ModelError("INVALID_CODE", {"index": i})
                code = self._find_key(key, pin)
                self._check_redeemable(code)
                record = self._take_use(code, f"{batch_ref}#{i}", terminal, chosen_ids[i])
            except ModelError as exc:
                batch.outcomes.append(exc.code)
                results.append(exc)
                continue
            batch.outcomes.append(record.redemption_id)
            results.append(record)
        self.batches[batch_ref] = batch
        return results

    def _check_redeemable(self, code: CodeM) -> None:
        status = self.status(code)
        if status == "void":
            raise ModelError("VOID")
        if status == "frozen":
            raise ModelError("FROZEN")
        if status == "redeemed":
            last = self.redemptions[code.redemption_ids[-1]]
            raise ModelError(
                "ALREADY_REDEEMED",
                {
                    "redemption_id": last.redemption_id,
                    "redeemed_at_ms": last.redeemed_at_ms,
                    "terminal": last.terminal,
                },
            )
        if status == "not_sold":
            raise ModelError("NOT_SOLD")
        if status == "not_yet_valid":
            raise ModelError("NOT_YET_VALID")
        if status == "expired":
            raise ModelError("EXPIRED")

    def _take_use(
        self, code: CodeM, request_id: str, terminal: str, chosen_redemption_id: int | None
    ) -> RedemptionM:
        if chosen_redemption_id is None:
            chosen_redemption_id = max(self.redemptions, default=0) + 1
        if chosen_redemption_id in self.redemptions:
            raise ModelViolation(f"redemption id {chosen_redemption_id} handed out twice")
        code.uses_left -= 1
        if code.uses_left == 0:
            code.state = "redeemed"
        elif code.state != "withdrawn":
            code.state = "allocated"
        record = RedemptionM(
            chosen_redemption_id,
            request_id,
            code.code_id,
            code.sku,
            terminal,
            code.uses_left,
            self.now_ms,
        )
        self.redemptions[record.redemption_id] = record
        code.redemption_ids.append(record.redemption_id)
        return record

    def rollback(self, redemption_id: int, reason: str) -> RedemptionM:
        record = self.redemptions.get(redemption_id)
        if record is None:
            raise ModelError("REDEMPTION_NOT_FOUND")
        code = self.codes[record.code_id]
        if record.rolled_back_at_ms is not None:
            if code.state in ("void", "frozen"):
                raise Unspecified("repeat rollback of a redemption whose code is now void/frozen")
            return record
        if code.state == "void":
            raise ModelError("VOID")
        if code.state == "frozen":
            raise ModelError("FROZEN")
        record.rolled_back_at_ms = self.now_ms
        record.rollback_reason = reason
        code.uses_left += 1
        if code.state == "redeemed":
            code.state = "withdrawn" if code.was_withdrawn else "allocated"
        return record

    # -------------------------------------------------------------------------- administration

    def _known(self, code_ids: Sequence[int]) -> list[CodeM]:
        if any(i not in self.codes for i in code_ids):
            raise ModelError("CODE_NOT_FOUND")
        return [self.codes[i] for i in code_ids]

    def freeze(self, code_ids: Sequence[int]) -> tuple[int, int]:
        changed = 0
        for code in self._known(code_ids):
            if code.state in ("available", "allocated", "redeemed", "withdrawn"):
                code.frozen_from = code.state
                code.state = "frozen"
                changed += 1
        return changed, len(code_ids) - changed

    def unfreeze(self, code_ids: Sequence[int]) -> tuple[int, int]:
        changed = 0
        for code in self._known(code_ids):
            if code.state == "frozen":
                assert code.frozen_from is not None
                code.state = code.frozen_from
                code.frozen_from = None
                changed += 1
        return changed, len(code_ids) - changed

    def void(self, code_ids: Sequence[int]) -> tuple[int, int]:
        changed = 0
        for code in self._known(code_ids):
            if code.state in ("available", "allocated", "redeemed", "frozen", "withdrawn"):
                code.state = "void"
                changed += 1
        return changed, len(code_ids) - changed

    def withdraw(self, code_ids: Sequence[int]) -> tuple[int, int, list[tuple[int, str]]]:
        """available -> withdrawn; withdrawn unchanged; anything else refused with its state."""
        codes = self._known(code_ids)
        for sku in sorted({c.sku for c in codes}):
            self.sweep(sku)
        changed, unchanged, refused = 0, 0, []
        for code in codes:
            if code.state == "withdrawn":
                unchanged += 1
            elif code.state == "available":
                code.state, code.was_withdrawn = "withdrawn", True
                changed += 1
            else:
                refused.append((code.code_id, code.state))
        return changed, unchanged, refused

    def restore_to_sale(self, code_ids: Sequence[int]) -> tuple[int, int, list[tuple[int, str]]]:
        """withdrawn and never redeemed -> available; available unchanged; else refused."""
        codes = self._known(code_ids)
        for sku in sorted({c.sku for c in codes}):
            self.sweep(sku)
        changed, unchanged, refused = 0, 0, []
        for code in codes:
            if code.state == "available":
                unchanged += 1
            elif code.state == "withdrawn" and not code.redemption_ids:
                code.state, code.was_withdrawn = "available", False
                changed += 1
            else:
                refused.append((code.code_id, code.state))
        return changed, unchanged, refused

    def unlock(self, code_ids: Sequence[int]) -> tuple[int, int]:
        changed = 0
        for code in self._known(code_ids):
            if code.pin_failures or code.lockouts:
                code.pin_failures, code.lockouts, code.locked_until_ms = 0, 0, None
                changed += 1
        return changed, len(code_ids) - changed

    def batch_code_ids(self, batch: int) -> list[int]:
        return sorted(c.code_id for c in self.codes.values() if c.batch == batch)

    # ------------------------------------------------------------------------------ inspection

    def stock(self, sku: str, pool: int | None = None) -> dict[str, int]:
        if sku not in self.skus:
            raise ModelError("SKU_NOT_FOUND")
        self.sweep(sku)
        counts = dict.fromkeys(STOCK_KEYS, 0)
        for code in self.codes.values():
            if code.sku != sku or (pool is not None and code.pool != pool):
                continue
            if code.state == "available":
                counts["expired" if self.is_expired(code) else "available"] += 1
            else:
                counts[code.state] += 1
            counts["total"] += 1
        return counts

    def stock_by_pool(self, sku: str) -> dict[int, dict[str, int]]:
        if sku not in self.skus:
            raise ModelError("SKU_NOT_FOUND")
        pools = sorted({c.pool for c in self.codes.values() if c.sku == sku})
        return {pool: self.stock(sku, pool) for pool in pools}
