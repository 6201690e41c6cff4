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

Results are the core's values (``Verification``, ``Redemption``; times in Unix ms); the HTTP
layer renders them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cardsvc import audit
from cardsvc.access import Principal, RiskGuard, RiskLimits, audit_lockouts
from cardsvc.catalog import codegen
from cardsvc.catalog.codegen import CodeFormat
from cardsvc.db import Database
from cardsvc.engine import Engine, Redemption, Store, Verification
from cardsvc.errors import CardsvcError, ErrorCode, make_error

FAILED_LOOKUPS = frozenset({ErrorCode.CODE_NOT_FOUND, ErrorCode.PIN_MISMATCH})
"""Refusals that count towards the brute-force guard."""


@dataclass(frozen=True, slots=True)
class RedeemItem:
    """One redemption of a batch: idempotent on its ``request_id``."""

    code: str
    pin: str | None
    request_id: str


@dataclass(frozen=True, slots=True)
class RolledBack:
    """A rolled-back redemption, with the code's uses left *now* (the redemption records the
    uses left when it was made)."""

    redemption: Redemption
    uses_left: int


class Terminals:
    """Verification and redemption for terminal keys, durable before they answer."""

    def __init__(self, store: Store, db: Database, risk: RiskGuard,
                 prefixes: Mapping[str, CodeFormat]) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.risk = risk
        self.prefixes = prefixes
        """Prefixes of generated codes with their formats (the live registry of the catalog's
        batches): terminals' typos in such codes are refused without a lookup."""

    async def verify(self, caller: Principal, ip: str, code: str,
                     pin: str | None) -> Verification:
        """A code's status for this terminal, without changing it. Raises CODE_NOT_FOUND,
        PIN_MISMATCH, INVALID_CODE, INVALID_PIN, RATE_LIMITED."""
        limits = self.risk.limits_of(caller)
        self.risk.admit("verify", caller.key_id, limits)
        self._check_typed(code)
        try:
            self._check_sku(caller, code)
            result = self.engine.verify(code, pin)
        except CardsvcError as error:
            await self._settle(error, caller, ip, limits)
            raise
        await self._settle(None, caller, ip, limits)
        return result

    async def redeem(self, caller: Principal, ip: str, code: str, pin: str | None,
                     request_id: str) -> Redemption:
        """Redeems one use of a code, exactly once per ``request_id`` (a retry returns the first
        result; the same id for another code is IDEMPOTENCY_KEY_REUSED). Raises CODE_NOT_FOUND,
        PIN_MISMATCH, ALREADY_REDEEMED (details: ``redeemed_at``, ``terminal``), EXPIRED,
        NOT_YET_VALID, FROZEN, VOID, NOT_SOLD, RATE_LIMITED."""
        limits = self.risk.limits_of(caller)
        self.risk.admit("redeem", caller.key_id, limits)
        self._check_typed(code)
        try:
            self._check_sku(caller, code)
            result = self.engine.redeem(code, request_id, caller.key_id, pin)
        except CardsvcError as error:
            await self._settle(error, caller, ip, limits)
            raise
        await self._settle(None, caller, ip, limits)
        return result

    async def redeem_batch(self, caller: Principal, ip: str,
                           items: Sequence[RedeemItem]) -> list[Redemption | CardsvcError]:
        """Independent redemptions, one result each in order (one failing does not stop the
        others); each item is idempotent on its ``request_id`` as in :meth:`redeem`. The batch
        costs one rate-limit token per item. Raises RATE_LIMITED for the whole batch."""
        limits = self.risk.limits_of(caller)
        self.risk.admit("redeem", caller.key_id, limits, cost=len(items))
        allowed = list(range(len(items)))
        refused: dict[int, CardsvcError] = {}
        if caller.skus is not None or self.prefixes:
            for index, item in enumerate(items):
                try:
                    self._check_typed(item.code)
                    self._check_sku(caller, item.code)
                except CardsvcError as error:
                    refused[index] = error
            allowed = [index for index in allowed if index not in refused]
        batch = self.engine.redeem_many([items[i].code for i in allowed],
                                        [items[i].request_id for i in allowed], caller.key_id,
                                        [items[i].pin for i in allowed])
        await self.store.wait_async(Engine.last_ticket())
        outcome: dict[int, Redemption | CardsvcError] = dict(refused)
        for position, index in enumerate(allowed):
            outcome[index] = batch[position]
        results = [outcome[index] for index in range(len(items))]
        failed_lookups = sum(isinstance(result, CardsvcError) and result.code in FAILED_LOOKUPS
                             for result in results)
        await self._count_failures(caller, ip, limits, failed_lookups)
        return results

    async def rollback(self, caller: Principal, redemption_id: int,
                       reason: str) -> RolledBack:
        """Restores the use a redemption took, recorded as its own event pointing at the
        redemption (history is never rewritten); idempotent, audited the first time. A terminal
        may roll back only its own redemptions. Raises REDEMPTION_NOT_FOUND."""
        engine = self.engine
        try:
            existing = engine.get_redemption(redemption_id)
            if not caller.is_admin and existing.terminal != caller.key_id:
                raise make_error(ErrorCode.REDEMPTION_NOT_FOUND, "no such redemption",
                                 {"redemption_id": redemption_id})
            first = existing.rolled_back_at_ms is None
            result = engine.rollback(redemption_id, reason)
        except CardsvcError:
            await self.store.wait_async(Engine.last_ticket())
            raise
        await self.store.wait_async(Engine.last_ticket())
        if first:
            await asyncio.to_thread(
                audit.record, self.db, actor=caller.key_id, action="redemption.rollback",
                object_type="redemption", object_id=str(redemption_id),
                details={"reason": reason, "code_id": result.code_id, "sku": result.sku},
                at_ms=engine.now_ms())
        return RolledBack(result, engine.code_info(result.code_id).uses_left)

    async def _settle(self, error: CardsvcError | None, caller: Principal, ip: str,
                      limits: RiskLimits) -> None:
        """After a core call: wait for everything it observed to be durable; count a failed
        lookup. (Runs before the error, if any, is re-raised.)"""
        await self.store.wait_async(Engine.last_ticket())
        if error is not None and error.code in FAILED_LOOKUPS:
            await self._count_failures(caller, ip, limits, 1)

    async def _count_failures(self, caller: Principal, ip: str, limits: RiskLimits,
                              count: int) -> None:
        """Counts failed lookups of the key; records the lockout it starts in the audit log."""
        started = self.risk.record_failures(caller.key_id, limits, count)
        if started:
            await asyncio.to_thread(audit_lockouts, self.db, started, actor=caller.key_id,
                                    ip=ip, at_ms=self.engine.now_ms())

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
