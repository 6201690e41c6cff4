"""Terminals: verify, redeem (one or a batch), roll back a redemption.

The hot path: no SQL, one core call, then ``await`` the journal (group commit) before the
response, so nothing is acknowledged that a crash could undo. A refusal reports state too
(``ALREADY_REDEEMED`` tells of a redemption), so errors wait for what they observed as well.
Every call passes the risk guard first (rate limits, lockouts), and unknown codes and PIN
mismatches count towards the brute-force guard of the key and the client IP.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from api.deps import RedeemerDep, RollbackDep, ServicesDep, VerifierDep, client_ip, limits_of
from api.models import Strict
from cardsvc.access.apikeys import Principal
from cardsvc.access.risk import RiskLimits
from cardsvc.catalog import codegen
from cardsvc.engine import Engine, Redemption
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.services import Services
from cardsvc.times import iso, iso_s

router = APIRouter(tags=["terminals"])

CODE_TEXT_LEN_MAX = 256
"""Code text as typed (separators included); the core rejects more than 128 significant
characters with INVALID_CODE."""
PIN_TEXT_LEN_MAX = 64
REQUEST_ID_LEN_MAX = 128
REDEEM_BATCH_ITEMS_MAX = 1000
FAILED_LOOKUPS = frozenset({ErrorCode.CODE_NOT_FOUND, ErrorCode.PIN_MISMATCH})

Code = Annotated[str, Field(min_length=1, max_length=CODE_TEXT_LEN_MAX)]
Pin = Annotated[str | None, Field(default=None, max_length=PIN_TEXT_LEN_MAX)]
RequestId = Annotated[str, Field(min_length=1, max_length=REQUEST_ID_LEN_MAX)]


class VerifyRequest(Strict):
    code: Code
    pin: Pin = None


class VerifyResponse(BaseModel):
    status: str = Field(description="valid, redeemed, frozen, void, expired, not_yet_valid "
                                    "or not_sold")
    sku: str
    uses_left: int
    valid_from: str | None
    valid_until: str | None


class RedeemRequest(Strict):
    code: Code
    pin: Pin = None
    request_id: RequestId


class RedeemResponse(BaseModel):
    redemption_id: int
    sku: str
    uses_left: int
    redeemed_at: str
    request_id: str


class RedeemBatchRequest(Strict):
    items: list[RedeemRequest] = Field(min_length=1, max_length=REDEEM_BATCH_ITEMS_MAX)


class ItemError(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class RedeemItemResult(BaseModel):
    index: int
    ok: bool
    redemption: RedeemResponse | None = None
    error: ItemError | None = None


class RedeemBatchResponse(BaseModel):
    redeemed: int
    failed: int
    results: list[RedeemItemResult]


class RollbackRequest(Strict):
    reason: str = Field(min_length=1, max_length=500)


class RollbackResponse(BaseModel):
    redemption_id: int
    sku: str
    uses_left: int = Field(description="the code's uses left now, after the rollback")
    redeemed_at: str
    rolled_back_at: str | None
    reason: str | None


def _redeemed(r: Redemption) -> RedeemResponse:
    return RedeemResponse(redemption_id=r.redemption_id, sku=r.sku, uses_left=r.uses_left,
                          redeemed_at=iso(r.redeemed_at_ms) or "", request_id=r.request_id)


async def _count_failures(
    services: Services, caller: Principal, ip: str, limits: RiskLimits, count: int
) -> None:
    """Counts failed lookups; records each lockout it starts in the audit log."""
    for lockout in services.risk.record_failures(caller.key_id, ip, limits, count):
        await asyncio.to_thread(
            services.record, actor=caller.key_id, action="risk.lockout",
            object_type="subject", object_id=lockout.subject,
            details={"failures": lockout.failures, "lockout_s": lockout.lockout_s},
        )


async def _settle(services: Services, error: CardsvcError | None, caller: Principal, ip: str,
                  limits: RiskLimits) -> None:
    """After a core call: wait for everything it observed to be durable; count a failed
    lookup. (Runs before the error, if any, is re-raised.)"""
    await services.store.wait_async(Engine.last_ticket())
    if error is not None and error.code in FAILED_LOOKUPS:
        await _count_failures(services, caller, ip, limits, 1)


def _unknown_code() -> CardsvcError:
    return make_error(ErrorCode.CODE_NOT_FOUND, "no such code")


def _check_typed(services: Services, code: str) -> None:
    """A mistyped generated code (its check character fails) is INVALID_CODE without a
    lookup; other codes pass (``cardsvc.catalog.codegen.check_typed``)."""
    prefixes = services.batches.prefixes
    if prefixes:
        codegen.check_typed(code, prefixes)


def _check_sku(engine: Engine, caller: Principal, code: str) -> None:
    """For a terminal limited to some SKUs: a code of another SKU does not exist for it (no
    status, no PIN check, nothing that tells it the code is real). Raises CODE_NOT_FOUND."""
    if caller.skus is not None and not caller.may_use_sku(
        engine.code_info(engine.lookup(code)).sku
    ):
        raise _unknown_code()


@router.post("/verify", response_model=VerifyResponse)
async def verify(body: VerifyRequest, caller: VerifierDep, services: ServicesDep,
                 request: Request) -> VerifyResponse:
    """A code's status for this terminal, without changing it. Errors: CODE_NOT_FOUND,
    PIN_MISMATCH, INVALID_CODE, INVALID_PIN, RATE_LIMITED."""
    ip = client_ip(request)
    limits = limits_of(services, caller)
    services.risk.admit("verify", caller.key_id, ip, limits)
    _check_typed(services, body.code)
    try:
        _check_sku(services.engine, caller, body.code)
        result = services.engine.verify(body.code, body.pin)
    except CardsvcError as error:
        await _settle(services, error, caller, ip, limits)
        raise
    await _settle(services, None, caller, ip, limits)
    return VerifyResponse(status=result.status, sku=result.sku, uses_left=result.uses_left,
                          valid_from=iso_s(result.valid_from),
                          valid_until=iso_s(result.valid_until))


@router.post("/redeem", response_model=RedeemResponse)
async def redeem(body: RedeemRequest, caller: RedeemerDep, services: ServicesDep,
                 request: Request) -> RedeemResponse:
    """Redeems one use of a code, exactly once per ``request_id`` (a retry returns the first
    result; the same id for another code is IDEMPOTENCY_KEY_REUSED). Errors: CODE_NOT_FOUND,
    PIN_MISMATCH, ALREADY_REDEEMED (details: ``redeemed_at``, ``terminal``), EXPIRED,
    NOT_YET_VALID, FROZEN, VOID, NOT_SOLD, RATE_LIMITED."""
    ip = client_ip(request)
    limits = limits_of(services, caller)
    services.risk.admit("redeem", caller.key_id, ip, limits)
    engine = services.engine
    _check_typed(services, body.code)
    try:
        _check_sku(engine, caller, body.code)
        result = engine.redeem(body.code, body.request_id, caller.key_id, body.pin)
    except CardsvcError as error:
        await _settle(services, error, caller, ip, limits)
        raise
    await _settle(services, None, caller, ip, limits)
    return _redeemed(result)


@router.post("/redeem/batch", response_model=RedeemBatchResponse)
async def redeem_batch(body: RedeemBatchRequest, caller: RedeemerDep, services: ServicesDep,
                       request: Request) -> RedeemBatchResponse:
    """Up to 1000 independent redemptions, one result each (one failing does not stop the
    others); each item is idempotent on its ``request_id`` as in ``/v1/redeem``."""
    ip = client_ip(request)
    limits = limits_of(services, caller)
    items = body.items
    services.risk.admit("redeem", caller.key_id, ip, limits, cost=len(items))
    engine = services.engine
    allowed = list(range(len(items)))
    refused: dict[int, CardsvcError] = {}
    if caller.skus is not None or services.batches.prefixes:
        for index, item in enumerate(items):
            try:
                _check_typed(services, item.code)
                _check_sku(engine, caller, item.code)
            except CardsvcError as error:
                refused[index] = error
        allowed = [index for index in allowed if index not in refused]
    batch = engine.redeem_many([items[i].code for i in allowed],
                               [items[i].request_id for i in allowed], caller.key_id,
                               [items[i].pin for i in allowed])
    await services.store.wait_async(Engine.last_ticket())
    outcome: dict[int, Redemption | CardsvcError] = dict(refused)
    for position, index in enumerate(allowed):
        outcome[index] = batch[position]
    results: list[RedeemItemResult] = []
    failed_lookups = 0
    for index in range(len(items)):
        result = outcome[index]
        if isinstance(result, CardsvcError):
            failed_lookups += result.code in FAILED_LOOKUPS
            results.append(RedeemItemResult(index=index, ok=False, error=ItemError(
                code=result.code.value, message=result.message, details=result.details)))
        else:
            results.append(RedeemItemResult(index=index, ok=True, redemption=_redeemed(result)))
    await _count_failures(services, caller, ip, limits, failed_lookups)
    redeemed = sum(result.ok for result in results)
    return RedeemBatchResponse(redeemed=redeemed, failed=len(items) - redeemed, results=results)


RedemptionId = Annotated[int, Path(ge=0, le=(1 << 63) - 1)]


@router.post("/redemptions/{redemption_id}/rollback", response_model=RollbackResponse)
async def rollback(redemption_id: RedemptionId, body: RollbackRequest, caller: RollbackDep,
                   services: ServicesDep) -> RollbackResponse:
    """Restores the use a redemption took, recorded as its own event pointing at the
    redemption (history is never rewritten); idempotent. A terminal may roll back only its own
    redemptions. Errors: REDEMPTION_NOT_FOUND."""
    engine = services.engine
    try:
        existing = engine.get_redemption(redemption_id)
        if not caller.is_admin and existing.terminal != caller.key_id:
            raise make_error(ErrorCode.REDEMPTION_NOT_FOUND, "no such redemption",
                             {"redemption_id": redemption_id})
        first = existing.rolled_back_at_ms is None
        result = engine.rollback(redemption_id, body.reason)
    except CardsvcError:
        await services.store.wait_async(Engine.last_ticket())
        raise
    await services.store.wait_async(Engine.last_ticket())
    if first:
        await asyncio.to_thread(
            services.record, actor=caller.key_id, action="redemption.rollback",
            object_type="redemption", object_id=str(redemption_id),
            details={"reason": body.reason, "code_id": result.code_id, "sku": result.sku},
        )
    # The redemption records the uses left when it was made; report the code's uses now.
    return RollbackResponse(redemption_id=result.redemption_id, sku=result.sku,
                            uses_left=engine.code_info(result.code_id).uses_left,
                            redeemed_at=iso(result.redeemed_at_ms) or "",
                            rolled_back_at=iso(result.rolled_back_at_ms),
                            reason=result.rollback_reason)
