"""Terminals: verify, redeem (one or a batch), roll back a redemption; and the redemptions as
a record (lists by terminal and time, a search by code).

Each terminal route is one call of ``cardsvc.redemption.Terminals``, which returns only once the
journal holds what it reports (refusals too), after the risk guard and the brute-force counting;
the lists are ``cardsvc.redemption.RedemptionHistory`` (admins: every terminal's; a terminal key:
its own). A code is never put in a URL: the search takes it in the body.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from api.deps import CallerDep, RedeemerDep, RollbackDep, RuntimeDep, VerifierDep, client_ip
from api.models import (
    DEFAULT_LIMIT,
    CursorQuery,
    LimitQuery,
    PageOut,
    Strict,
    TimeQuery,
    time_ms,
)
from cardsvc.errors import CardsvcError
from cardsvc.paging import CURSOR_LEN_MAX, PAGE_SIZE_MAX
from cardsvc.redemption import RedeemItem, RedemptionView
from cardsvc.times import iso, iso_s

router = APIRouter(tags=["terminals"])

CODE_TEXT_LEN_MAX = 256
"""Code text as typed (separators included); the core rejects more than 128 significant
characters with INVALID_CODE."""
PIN_TEXT_LEN_MAX = 64
REQUEST_ID_LEN_MAX = 128
REDEEM_BATCH_ITEMS_MAX = 1000

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
    redemption_id: str = Field(description="opaque public id (rdm_...): reveals no count")
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
    redemption_id: str
    sku: str
    uses_left: int = Field(description="the code's uses left now, after the rollback")
    redeemed_at: str
    rolled_back_at: str | None
    reason: str | None


class RedemptionOut(BaseModel):
    redemption_id: str = Field(description="opaque public id (rdm_...): reveals no count")
    request_id: str
    code_id: int
    sku: str
    terminal: str = Field(description="the key id of the terminal that redeemed")
    uses_left: int = Field(description="the code's uses left right after this redemption")
    redeemed_at: str
    redeemed_at_ms: int
    rolled_back_at: str | None
    rollback_reason: str | None


class RedemptionSearch(Strict):
    code: Code
    cursor: str | None = Field(default=None, min_length=1, max_length=CURSOR_LEN_MAX)
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=PAGE_SIZE_MAX)


def _redemption_out(r: RedemptionView) -> RedemptionOut:
    return RedemptionOut(redemption_id=r.redemption_id, request_id=r.request_id,
                         code_id=r.code_id, sku=r.sku, terminal=r.terminal,
                         uses_left=r.uses_left, redeemed_at=iso(r.redeemed_at_ms) or "",
                         redeemed_at_ms=r.redeemed_at_ms, rolled_back_at=iso(r.rolled_back_at_ms),
                         rollback_reason=r.rollback_reason)


def _redeemed(r: RedemptionView) -> RedeemResponse:
    return RedeemResponse(redemption_id=r.redemption_id, sku=r.sku, uses_left=r.uses_left,
                          redeemed_at=iso(r.redeemed_at_ms) or "", request_id=r.request_id)


@router.post("/verify", response_model=VerifyResponse)
async def verify(body: VerifyRequest, caller: VerifierDep, runtime: RuntimeDep,
                 request: Request) -> VerifyResponse:
    """A code's status for this terminal, without changing it. Errors: CODE_NOT_FOUND,
    PIN_MISMATCH, INVALID_CODE, INVALID_PIN, RATE_LIMITED."""
    result = await runtime.terminals.verify(caller, client_ip(request), body.code, body.pin)
    return VerifyResponse(status=result.status, sku=result.sku, uses_left=result.uses_left,
                          valid_from=iso_s(result.valid_from),
                          valid_until=iso_s(result.valid_until))


@router.post("/redeem", response_model=RedeemResponse)
async def redeem(body: RedeemRequest, caller: RedeemerDep, runtime: RuntimeDep,
                 request: Request) -> RedeemResponse:
    """Redeems one use of a code, exactly once per ``request_id`` (a retry returns the first
    result; the same id for another code is IDEMPOTENCY_KEY_REUSED). Errors: CODE_NOT_FOUND,
    PIN_MISMATCH, CODE_LOCKED (429, Retry-After), ALREADY_REDEEMED (details: ``redeemed_at_ms``,
    ``terminal``, ``redemption_id``), REDEMPTION_ROLLED_BACK (409: a retry of a request whose
    redemption was rolled back since; details ``redemption_id``, ``rolled_back_at_ms``; do not
    hand out value), EXPIRED, NOT_YET_VALID, FROZEN, VOID, NOT_SOLD, RATE_LIMITED."""
    result = await runtime.terminals.redeem(caller, client_ip(request), body.code, body.pin,
                                            body.request_id)
    return _redeemed(result)


@router.post("/redeem/batch", response_model=RedeemBatchResponse)
async def redeem_batch(body: RedeemBatchRequest, caller: RedeemerDep, runtime: RuntimeDep,
                       request: Request) -> RedeemBatchResponse:
    """Up to 1000 independent redemptions, one result each (one failing does not stop the
    others); each item is idempotent on its ``request_id`` as in ``/v1/redeem``."""
    items = [RedeemItem(item.code, item.pin, item.request_id) for item in body.items]
    outcomes = await runtime.terminals.redeem_batch(caller, client_ip(request), items)
    results: list[RedeemItemResult] = []
    for index, result in enumerate(outcomes):
        if isinstance(result, CardsvcError):
            results.append(RedeemItemResult(index=index, ok=False, error=ItemError(
                code=result.code.value, message=result.message, details=result.details)))
        else:
            results.append(RedeemItemResult(index=index, ok=True, redemption=_redeemed(result)))
    redeemed = sum(result.ok for result in results)
    return RedeemBatchResponse(redeemed=redeemed, failed=len(items) - redeemed, results=results)


RedemptionId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post("/redemptions/{redemption_id}/rollback", response_model=RollbackResponse)
async def rollback(redemption_id: RedemptionId, body: RollbackRequest, caller: RollbackDep,
                   runtime: RuntimeDep) -> RollbackResponse:
    """Restores the use a redemption took, recorded as its own event pointing at the
    redemption (history is never rewritten); idempotent. A terminal may roll back only its own
    redemptions; ``redemption_id`` is the public id the redemption returned. Errors:
    REDEMPTION_NOT_FOUND (one answer for unknown, forged and another terminal's ids)."""
    rolled = await runtime.terminals.rollback(caller, redemption_id, body.reason)
    result = rolled.redemption
    return RollbackResponse(redemption_id=result.redemption_id, sku=result.sku,
                            uses_left=rolled.uses_left,
                            redeemed_at=iso(result.redeemed_at_ms) or "",
                            rolled_back_at=iso(result.rolled_back_at_ms),
                            reason=result.rollback_reason)


@router.get("/redemptions", response_model=PageOut[RedemptionOut])
def list_redemptions(caller: CallerDep, runtime: RuntimeDep,
                     terminal: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                     since: TimeQuery = None, until: TimeQuery = None,
                     cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT,
                     ) -> PageOut[RedemptionOut]:
    """Redemptions newest first (rolled-back ones with their rollback), by ``terminal`` (a key
    id) and time ``since <= redeemed < until`` (ISO dates or RFC 3339). Admins see every
    terminal's, a terminal key its own. Errors: FORBIDDEN, INVALID_ARGUMENT (time, cursor)."""
    page = runtime.redemptions.list_redemptions(
        caller, terminal=terminal, since_ms=time_ms("since", since),
        until_ms=time_ms("until", until), cursor=cursor, limit=limit)
    return PageOut[RedemptionOut](items=[_redemption_out(r) for r in page.items],
                                  next=page.next)


@router.post("/redemptions/search", response_model=PageOut[RedemptionOut])
def search_redemptions(body: RedemptionSearch, caller: CallerDep,
                       runtime: RuntimeDep) -> PageOut[RedemptionOut]:
    """The redemptions of one code, newest first, found through the keyed lookup (the code is in
    the body, never the URL; audited as ``redemption.search`` with the code masked). Needs the
    ``trace`` scope (admins). Errors: CODE_NOT_FOUND, INVALID_CODE, FORBIDDEN,
    INVALID_ARGUMENT (cursor)."""
    page = runtime.redemptions.search(caller, body.code, cursor=body.cursor, limit=body.limit)
    return PageOut[RedemptionOut](items=[_redemption_out(r) for r in page.items],
                                  next=page.next)
