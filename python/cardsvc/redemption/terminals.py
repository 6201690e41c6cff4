"""Terminals: verify, redeem (one or a batch), roll back a redemption.

The hot path: no SQL, one core call, then *await the journal* (group commit) before returning,
so nothing is acknowledged that a crash could undo. A refusal reports state too
(``ALREADY_REDEEMED`` tells of a redemption), so refusals wait for what they observed as well.
Every call passes the risk guard first (the key's rate limits and lockout); unknown codes and PIN
mismatches count towards the brute-force guard of the key (never of the address it calls from:
other keys there are not its accomplices), and each lockout that starts is written to the audit
log with the address it came from. A terminal key limited to some SKUs sees codes of other SKUs as
unknown (no status, no PIN check, nothing that tells it the code is real), and a mistyped
generated code (its check character fails) is INVALID_CODE without a lookup.

**Public redemption ids.** The core numbers redemptions in sequence; terminals never see those
numbers. Every redemption id that leaves here, in a result or in an error's details
(``ALREADY_REDEEMED``, ``REDEMPTION_ROLLED_BACK``), is the opaque public id
(``cardsvc.crypto.PublicIds``, ``rdm_...``), and a rollback takes one. A redemption that does
not exist, is not the caller's, or is named by a forged id gets one and the same refusal
(REDEMPTION_NOT_FOUND, "no such redemption"), so probing learns nothing.

**PIN lockout.** The core counts wrong PINs per code, whoever sends them, and locks the code
(``CODE_LOCKED``, 429 with ``retry_after_s``); the call that starts a lockout
(``details.locked``) is written to the audit log as ``code.locked`` (the code's id and masked
text only).

Results are :class:`RedemptionView` and the core's ``Verification`` (times in Unix ms); the
HTTP layer renders them.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from cardsvc import audit
from cardsvc.access import Principal, RiskGuard, RiskLimits, audit_lockouts
from cardsvc.catalog import codegen
from cardsvc.catalog.codegen import CodeFormat
from cardsvc.crypto import PublicIds
from cardsvc.db import Database
from cardsvc.engine import Engine, Redemption, Store, Verification
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.masking import mask_code

FAILED_LOOKUPS = frozenset({ErrorCode.CODE_NOT_FOUND, ErrorCode.PIN_MISMATCH})
"""Refusals that count towards the brute-force guard."""
HOUR_MS = 3_600_000
COUNTED_KEYS_MAX = 100_000
"""(hour, SKU) pairs counted between two drains (~100 bytes each): far more than a timer round
sees; beyond it new pairs are not counted until the next drain (a statistic, never money)."""
RECENT_IDS_MAX = 100_000
"""Redemption ids remembered (~80 bytes each), so a retried request id is not counted twice."""


class RedemptionCounts:
    """Redemptions and rollbacks per (UTC hour, SKU), counted in memory on the hot path (a dict
    increment under a lock) and drained by the reports' timer into their hourly table.
    Thread-safe and bounded."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], list[int]] = {}
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()

    def redeemed(self, redemption: Redemption) -> None:
        """Counts a redemption once, however often its request is retried."""
        with self._lock:
            self._redeemed_locked(redemption.redemption_id, redemption.sku,
                                  redemption.redeemed_at_ms)

    def redeemed_many(self, ok: bytes, numbers: Sequence[int], skus: Sequence[str],
                      at_ms: Sequence[int], since_ms: int) -> None:
        """:meth:`redeemed` of each redemption given as columns (an ``ok`` mask over core
        numbers, SKUs and times), in order, under one lock acquisition; items not ok or made
        before ``since_ms`` are skipped."""
        with self._lock:
            for flag, number, sku, at in zip(ok, numbers, skus, at_ms, strict=True):
                if flag and at >= since_ms:
                    self._redeemed_locked(number, sku, at)

    def _redeemed_locked(self, number: int, sku: str, at_ms: int) -> None:
        """Counts redemption ``number`` unless it was counted already (the lock is held)."""
        recent = self._recent
        if number in recent:
            return
        recent[number] = None
        if len(recent) > RECENT_IDS_MAX:
            recent.popitem(last=False)
        self._count_locked(sku, at_ms, 1, 0)

    def count(self, sku: str, at_ms: int, *, redeemed: int = 0, rolled_back: int = 0) -> None:
        with self._lock:
            self._count_locked(sku, at_ms, redeemed, rolled_back)

    def _count_locked(self, sku: str, at_ms: int, redeemed: int, rolled_back: int) -> None:
        key = (at_ms // HOUR_MS * HOUR_MS, sku)
        current = self._counts.get(key)
        if current is None:
            if len(self._counts) >= COUNTED_KEYS_MAX:
                return
            current = self._counts[key] = [0, 0]
        current[0] += redeemed
        current[1] += rolled_back

    def drain(self) -> dict[tuple[int, str], tuple[int, int]]:
        """The counts so far, forgotten here (``restore`` them if storing them failed)."""
        with self._lock:
            drained, self._counts = self._counts, {}
        return {key: (value[0], value[1]) for key, value in drained.items()}

    def restore(self, drained: Mapping[tuple[int, str], tuple[int, int]]) -> None:
        for (hour_ms, sku), (done, undone) in drained.items():
            self.count(sku, hour_ms, redeemed=done, rolled_back=undone)
REDEMPTION_KIND = "rdm"
_T = TypeVar("_T")


class RedemptionView(NamedTuple):
    """A redemption as a terminal sees it: its public id, never the core's number. (Immutable
    like the frozen dataclasses elsewhere, but a ``NamedTuple``: a batch makes one per item,
    and a tuple is built in a quarter of a frozen dataclass's time.)"""

    redemption_id: str
    request_id: str
    code_id: int
    sku: str
    terminal: str
    uses_left: int
    redeemed_at_ms: int
    rolled_back_at_ms: int | None
    rollback_reason: str | None


class RedeemItem(NamedTuple):
    """One redemption of a batch: idempotent on its ``request_id`` (a ``NamedTuple``, like
    :class:`RedemptionView`)."""

    code: str
    pin: str | None
    request_id: str


@dataclass(frozen=True, slots=True)
class BatchRedemptions:
    """The results of :meth:`Terminals.redeem_batch` as columns, one entry per item in input
    order, so that a large batch is rendered without one result object per item. Item ``i``
    succeeded when ``redemption_ids[i]`` is a public id (then ``skus``, ``uses_left``,
    ``redeemed_at_ms`` and ``code_ids`` describe the redemption, with ``request_ids[i]`` and
    ``terminal``); otherwise ``errors[i]`` is its refusal (public ids in its details) and the
    other columns hold placeholders. Iterating gives each item as a :class:`RedemptionView` or
    a ``CardsvcError``, as a list of them would."""

    terminal: str
    request_ids: list[str]
    redemption_ids: list[str | None]
    code_ids: list[int]
    skus: list[str]
    uses_left: list[int]
    redeemed_at_ms: list[int]
    errors: dict[int, CardsvcError]

    @property
    def redeemed(self) -> int:
        """How many items redeemed a use (new or replayed)."""
        return len(self.request_ids) - len(self.errors)

    def __len__(self) -> int:
        return len(self.request_ids)

    def __iter__(self) -> Iterator[RedemptionView | CardsvcError]:
        return (self.item(index) for index in range(len(self.request_ids)))

    def item(self, index: int) -> RedemptionView | CardsvcError:
        """Item ``index`` as one object: its refusal, or its redemption as a view."""
        public_id = self.redemption_ids[index]
        if public_id is None:
            return self.errors[index]
        return RedemptionView(public_id, self.request_ids[index], self.code_ids[index],
                              self.skus[index], self.terminal, self.uses_left[index],
                              self.redeemed_at_ms[index], None, None)


@dataclass(frozen=True, slots=True)
class RolledBack:
    """A rolled-back redemption, with the code's uses left *now* (the redemption records the
    uses left when it was made)."""

    redemption: RedemptionView
    uses_left: int


class Terminals:
    """Verification and redemption for terminal keys, durable before they answer."""

    def __init__(self, store: Store, db: Database, risk: RiskGuard,
                 prefixes: Mapping[str, CodeFormat], public_ids: PublicIds) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.risk = risk
        self.public_ids = public_ids
        self.prefixes = prefixes
        """Prefixes of generated codes with their formats (the live registry of the catalog's
        batches): terminals' typos in such codes are refused without a lookup."""
        self.counts = RedemptionCounts()
        """Redemptions per hour and SKU, for the dashboards (``cardsvc.reports.rollups``)."""

    async def verify(self, caller: Principal, ip: str, code: str,
                     pin: str | None) -> Verification:
        """A code's status for this terminal, without changing it. Raises CODE_NOT_FOUND,
        PIN_MISMATCH, CODE_LOCKED (details ``retry_after_s``), INVALID_CODE, INVALID_PIN,
        RATE_LIMITED."""
        limits = self.risk.limits_of(caller)
        self.risk.admit("verify", caller.key_id, limits)
        self._check_typed(code)
        try:
            self._check_sku(caller, code)
            result = self.engine.verify(code, pin)
        except CardsvcError as error:
            await self._settle(error, caller, ip, limits, code)
            raise
        await self._settle(None, caller, ip, limits)
        return result

    async def redeem(self, caller: Principal, ip: str, code: str, pin: str | None,
                     request_id: str) -> RedemptionView:
        """Redeems one use of a code, exactly once per ``request_id`` (a retry returns the first
        result; the same id for another code is IDEMPOTENCY_KEY_REUSED). Raises CODE_NOT_FOUND,
        PIN_MISMATCH, CODE_LOCKED, ALREADY_REDEEMED (details: ``redeemed_at_ms``, ``terminal``,
        ``redemption_id``), REDEMPTION_ROLLED_BACK (a replay of a redemption rolled back since:
        details ``redemption_id``, ``rolled_back_at_ms``; hand out nothing), EXPIRED,
        NOT_YET_VALID, FROZEN, VOID, NOT_SOLD, RATE_LIMITED."""
        limits = self.risk.limits_of(caller)
        self.risk.admit("redeem", caller.key_id, limits)
        self._check_typed(code)
        try:
            self._check_sku(caller, code)
            result = self.engine.redeem(code, request_id, caller.key_id, pin)
        except CardsvcError as error:
            await self._settle(error, caller, ip, limits, code)
            raise self._public_error(error) from None
        await self._settle(None, caller, ip, limits)
        if result.redeemed_at_ms >= self._recent_ms():
            self.counts.redeemed(result)
        return self.view(result)

    async def redeem_batch(self, caller: Principal, ip: str,
                           items: Sequence[RedeemItem]) -> BatchRedemptions:
        """:meth:`redeem_columns` of ``items``."""
        return await self.redeem_columns(caller, ip, [item.code for item in items],
                                         [item.pin for item in items],
                                         [item.request_id for item in items])

    async def redeem_columns(self, caller: Principal, ip: str, codes: list[str],
                             pins: list[str | None], request_ids: list[str]) -> BatchRedemptions:
        """Independent redemptions of item ``i`` = ``(codes[i], pins[i], request_ids[i])``
        (lists of one length), one result each in order (one failing does not stop the
        others); each item is idempotent on its ``request_id`` as in :meth:`redeem`. The batch
        costs one rate-limit token per item. Results come as columns (:class:`BatchRedemptions`),
        built from the core's result columns with one call for all the public ids. Raises
        RATE_LIMITED for the whole batch."""
        assert len(codes) == len(pins) == len(request_ids)
        size = len(codes)
        limits = self.risk.limits_of(caller)
        self.risk.admit("redeem", caller.key_id, limits, cost=size)
        allowed: Sequence[int] = range(size)
        refused: dict[int, CardsvcError] = {}
        if caller.skus is not None or self.prefixes:
            for index, code in enumerate(codes):
                try:
                    self._check_typed(code)
                    self._check_sku(caller, code)
                except CardsvcError as error:
                    refused[index] = error
        if refused:
            allowed = [index for index in allowed if index not in refused]
            batch = self.engine.redeem_many([codes[i] for i in allowed],
                                            [request_ids[i] for i in allowed], caller.key_id,
                                            [pins[i] for i in allowed])
        else:
            batch = self.engine.redeem_many(codes, request_ids, caller.key_id, pins)
        await self.store.wait_async(Engine.last_ticket())
        ok, _, numbers, code_ids, uses_left, at_ms, skus = batch.columns()
        errors = dict(refused)
        for position in [p for p, flag in enumerate(ok) if not flag]:
            one = batch[position]
            assert isinstance(one, CardsvcError)  # the columns say this item failed
            if one.code == ErrorCode.CODE_LOCKED and one.details.get("locked"):
                await self._audit_lockout(caller, codes[allowed[position]], one)
            errors[allowed[position]] = self._public_error(one)
        self.counts.redeemed_many(ok, numbers, skus, at_ms, self._recent_ms())
        public_ids: list[str | None]
        if len(errors) == len(refused):  # every item given to the core redeemed
            public_ids = list(self.public_ids.encode_many(REDEMPTION_KIND, numbers))
        else:
            done = [p for p, flag in enumerate(ok) if flag]
            public = self.public_ids.encode_many(REDEMPTION_KIND, [numbers[p] for p in done])
            public_ids = [None] * len(ok)
            for p, public_id in zip(done, public, strict=True):
                public_ids[p] = public_id
        result = BatchRedemptions(caller.key_id, request_ids, public_ids, code_ids, skus,
                                  uses_left, at_ms, errors)
        if refused:
            result = _spread(result, allowed, size)
        failed_lookups = sum(error.code in FAILED_LOOKUPS for error in errors.values())
        if failed_lookups:
            await self._count_failures(caller, ip, limits, failed_lookups)
        return result

    async def rollback(self, caller: Principal, redemption_id: str,
                       reason: str) -> RolledBack:
        """Restores the use a redemption took, recorded as its own event pointing at the
        redemption (history is never rewritten); idempotent, audited the first time. A terminal
        may roll back only its own redemptions. ``redemption_id`` is the public id. Raises
        REDEMPTION_NOT_FOUND, the same for an unknown, forged or another terminal's id."""
        engine = self.engine
        number = self.public_ids.decode(REDEMPTION_KIND, redemption_id)
        if number is None:
            raise _no_redemption(redemption_id)
        try:
            try:
                existing = engine.get_redemption(number)
            except CardsvcError as error:
                if error.code == ErrorCode.REDEMPTION_NOT_FOUND:
                    raise _no_redemption(redemption_id) from None
                raise
            if not caller.is_admin and existing.terminal != caller.key_id:
                raise _no_redemption(redemption_id)
            first = existing.rolled_back_at_ms is None
            result = engine.rollback(number, reason)
        except CardsvcError:
            await self.store.wait_async(Engine.last_ticket())
            raise
        await self.store.wait_async(Engine.last_ticket())
        if first:
            self.counts.count(result.sku, engine.now_ms(), rolled_back=1)
            await asyncio.to_thread(
                audit.record, self.db, actor=caller.key_id, action="redemption.rollback",
                object_type="redemption", object_id=str(number),
                details={"reason": reason, "code_id": result.code_id, "sku": result.sku,
                         "redemption_id": redemption_id},
                at_ms=engine.now_ms())
        return RolledBack(self.view(result), engine.code_info(result.code_id).uses_left)

    def redemption_number(self, redemption_id: str) -> int | None:
        """The core's number of the public id ``redemption_id``; None for an unknown or forged
        one."""
        return self.public_ids.decode(REDEMPTION_KIND, redemption_id)

    def public_id(self, number: int) -> str:
        """The public id of the core's redemption ``number``."""
        return self.public_ids.encode(REDEMPTION_KIND, number)

    def view(self, r: Redemption) -> RedemptionView:
        """``r`` as callers see it: its public id, never the core's number."""
        return _view(r, self.public_id(r.redemption_id))

    def views(self, rs: Sequence[Redemption]) -> list[RedemptionView]:
        """:meth:`view` of each of ``rs``, their public ids made in one call."""
        public = self.public_ids.encode_many(REDEMPTION_KIND, [r.redemption_id for r in rs])
        return [_view(r, public_id) for r, public_id in zip(rs, public, strict=True)]

    def _public_error(self, error: CardsvcError) -> CardsvcError:
        """``error`` with any core redemption number in its details replaced by the public id
        (ALREADY_REDEEMED, REDEMPTION_ROLLED_BACK)."""
        number = error.details.get("redemption_id")
        if isinstance(number, int) and not isinstance(number, bool):
            error.details["redemption_id"] = self.public_id(number)
        return error

    async def _settle(self, error: CardsvcError | None, caller: Principal, ip: str,
                      limits: RiskLimits, code: str | None = None) -> None:
        """After a core call: wait for everything it observed to be durable; count a failed
        lookup; audit a PIN lockout that this call started. (Runs before the error, if any, is
        re-raised.)"""
        await self.store.wait_async(Engine.last_ticket())
        if error is None:
            return
        if error.code in FAILED_LOOKUPS:
            await self._count_failures(caller, ip, limits, 1)
        elif error.code == ErrorCode.CODE_LOCKED and error.details.get("locked") and code:
            await self._audit_lockout(caller, code, error)

    async def _audit_lockout(self, caller: Principal, code: str, error: CardsvcError) -> None:
        """Writes ``code.locked`` for a lockout that just started: the code's id and masked
        text, when it ends, and who sent the PIN that tipped it."""
        try:
            code_id = self.engine.lookup(code)
        except CardsvcError:
            return  # the lockout is the core's fact; without an id there is nothing to name
        await asyncio.to_thread(
            audit.record, self.db, actor=caller.key_id, action="code.locked",
            object_type="code", object_id=str(code_id),
            details={"code": mask_code(code), "locked_until_ms": error.details.get(
                "locked_until_ms"), "retry_after_s": error.details.get("retry_after_s")},
            at_ms=self.engine.now_ms())

    async def _count_failures(self, caller: Principal, ip: str, limits: RiskLimits,
                              count: int) -> None:
        """Counts failed lookups of the key; records the lockout it starts in the audit log."""
        started = self.risk.record_failures(caller.key_id, limits, count)
        if started:
            await asyncio.to_thread(audit_lockouts, self.db, started, actor=caller.key_id,
                                    ip=ip, at_ms=self.engine.now_ms())

    def _recent_ms(self) -> int:
        """Redemptions made before this are replays of old request ids: not counted again."""
        return self.engine.now_ms() - 60_000

    def _check_typed(self, code: str) -> None:
        """A mistyped generated code (its check character fails) is INVALID_CODE without a
        lookup; other codes pass (``cardsvc.catalog.codegen.check_typed``)."""
        if self.prefixes:
            codegen.check_typed(code, self.prefixes)

    def _check_sku(self, caller: Principal, code: str) -> None:
        """For a terminal limited to some SKUs: a code of another SKU does not exist for it.
        Raises CODE_NOT_FOUND."""
        if caller.skus is not None and not caller.may_use_sku(
            self.engine.code_info(self.engine.lookup(code)).sku
        ):
            raise make_error(ErrorCode.CODE_NOT_FOUND, "no such code")


def _no_redemption(redemption_id: str) -> CardsvcError:
    """The one refusal for a redemption that does not exist for the caller (unknown, forged,
    or another terminal's): the same code, message and (empty) details in every case. The id
    is not echoed: a caller may put anything in the path, a code included."""
    del redemption_id
    return make_error(ErrorCode.REDEMPTION_NOT_FOUND, "no such redemption", {})


def _spread(columns: BatchRedemptions, positions: Sequence[int],
            size: int) -> BatchRedemptions:
    """``columns`` of the items at ``positions`` of a batch of ``size`` items, laid out over
    the whole batch (the items in between are refused: their errors are already there)."""
    def spread(values: list[_T], blank: _T) -> list[_T]:
        out = [blank] * size
        for position, value in zip(positions, values, strict=True):
            out[position] = value
        return out
    return BatchRedemptions(columns.terminal, columns.request_ids,
                            spread(columns.redemption_ids, None), spread(columns.code_ids, 0),
                            spread(columns.skus, ""), spread(columns.uses_left, 0),
                            spread(columns.redeemed_at_ms, 0), columns.errors)


def _view(r: Redemption, public_id: str) -> RedemptionView:
    return RedemptionView(public_id, r.request_id, r.code_id, r.sku, r.terminal, r.uses_left,
                          r.redeemed_at_ms, r.rolled_back_at_ms, r.rollback_reason)
