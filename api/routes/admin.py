"""Admins: API keys, the brute-force lockouts (listed and lifted), freezing, unfreezing or
voiding codes, and codes locked by wrong PINs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from api.deps import AdminDep, FreezeDep, RuntimeDep, StockDep
from api.models import DEFAULT_LIMIT, CursorQuery, Id, LimitQuery, PageOut, Strict
from cardsvc.access import Lockout, Principal
from cardsvc.paging import CURSOR_LEN_MAX, PAGE_SIZE_MAX
from cardsvc.runtime import Runtime
from cardsvc.times import iso

router = APIRouter(tags=["admin"])



class KeyCreate(Strict):
    role: str = Field(description="admin, agent or terminal")
    agent_id: Id | None = None
    name: str = Field(default="", max_length=200)
    scopes: list[Annotated[str, Field(max_length=32)]] | None = Field(default=None, max_length=8)
    skus: list[Id] | None = Field(default=None, max_length=1000)
    limits: dict[str, int | float] | None = Field(default=None, max_length=32)


class KeyOut(BaseModel):
    key_id: str
    role: str
    agent_id: str | None
    scopes: list[str]
    skus: list[str] | None
    name: str
    created_at_ms: int
    created_by: str | None = None
    revoked_at_ms: int | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="the API key; shown once, never stored")


class KeyRevoked(BaseModel):
    key_id: str
    revoked: bool


class CodeTarget(Strict):
    code: str | None = Field(default=None, min_length=1, max_length=256)
    order_id: str | None = Field(default=None, min_length=1, max_length=64)
    batch_id: int | None = Field(default=None, ge=1, le=(1 << 31) - 1)
    reason: str | None = Field(default=None, min_length=1, max_length=200,
                               description="why (kept in the audit log)")
    approval_id: str | None = Field(
        default=None, max_length=64,
        description="voiding a batch: an approved batch_void request for it")


class StateChange(BaseModel):
    changed: int
    unchanged: int


@router.post("/keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, caller: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """A new API key, returned once in ``key``. Only a key holding ``export`` may grant
    ``export`` (audited in ``key.create``: scopes and ``granted_by``). Errors: INVALID_ARGUMENT
    (role, scopes, an empty ``skus``, a limit that is not a finite non-negative number),
    LIMIT_EXCEEDED (a limit over its bound), AGENT_NOT_FOUND, SKU_NOT_FOUND, FORBIDDEN (granting
    ``export`` without holding it)."""
    info, text = runtime.credentials.create_key(
        role=body.role, agent_id=body.agent_id, name=body.name, scopes=body.scopes,
        skus=body.skus, limits=body.limits, actor=caller.key_id, granter=caller)
    return {**info.to_dict(), "key": text}


@router.get("/keys", response_model=list[KeyOut])
def list_keys(caller: AdminDep, runtime: RuntimeDep,
              include_revoked: Annotated[bool, Query()] = False) -> list[dict[str, Any]]:
    return [info.to_dict() for info in runtime.credentials.list_keys(
        include_revoked=include_revoked)]


@router.delete("/keys/{key_id}", response_model=KeyRevoked)
def revoke_key(key_id: Annotated[str, Path(max_length=64)], caller: AdminDep,
               runtime: RuntimeDep) -> KeyRevoked:
    """Revokes a key at once (idempotent). Errors: KEY_NOT_FOUND."""
    runtime.credentials.revoke(key_id, actor=caller.key_id)
    return KeyRevoked(key_id=key_id, revoked=True)


class LockoutOut(BaseModel):
    subject: str = Field(description="key:<key_id> (failed lookups of a key) or ip:<address> "
                                     "(requests without a valid key from that address)")
    failures: int
    locked_at: str | None
    locked_at_ms: int
    until: str | None
    until_ms: int
    lockout_s: float


def lockout_out(lockout: Lockout) -> LockoutOut:
    return LockoutOut(subject=lockout.subject, failures=lockout.failures,
                      locked_at=iso(lockout.locked_at_ms), locked_at_ms=lockout.locked_at_ms,
                      until=iso(lockout.until_ms), until_ms=lockout.until_ms,
                      lockout_s=lockout.lockout_s)


@router.get("/lockouts", response_model=PageOut[LockoutOut])
def list_lockouts(caller: AdminDep, runtime: RuntimeDep, cursor: CursorQuery = None,
                  limit: LimitQuery = DEFAULT_LIMIT) -> PageOut[LockoutOut]:
    """The brute-force lockouts in force, newest first: keys locked out for failed lookups and
    addresses locked out for requests without a valid key. Errors: INVALID_ARGUMENT (cursor)."""
    page = runtime.gate.lockouts(cursor=cursor, limit=limit)
    return PageOut[LockoutOut](items=[lockout_out(item) for item in page.items], next=page.next)


@router.delete("/lockouts/{subject}", response_model=LockoutOut)
def lift_lockout(subject: Annotated[str, Path(min_length=1, max_length=132)], caller: AdminDep,
                 runtime: RuntimeDep) -> LockoutOut:
    """Ends a lockout now (audited as ``risk.unlock``); the lockout as it was. Errors:
    LOCKOUT_NOT_FOUND (not locked out), INVALID_ARGUMENT (not a key: or ip: subject)."""
    return lockout_out(runtime.gate.lift(subject, actor=caller.key_id))


def _change(action: str, body: CodeTarget, caller: Principal, runtime: Runtime,
            ) -> dict[str, Any]:
    return runtime.catalog.set_state(action, code=body.code, order_id=body.order_id,
                                      batch_id=body.batch_id, actor=caller.key_id,
                                      reason=body.reason, approval_id=body.approval_id)


@router.post("/codes/freeze", response_model=StateChange)
def freeze(body: CodeTarget, caller: FreezeDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Freezes one code, an order's codes or a batch's codes (give exactly one of ``code``,
    ``order_id``, ``batch_id``): they cannot be sold or redeemed until unfrozen."""
    return _change("freeze", body, caller, runtime)


@router.post("/codes/unfreeze", response_model=StateChange)
def unfreeze(body: CodeTarget, caller: FreezeDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Returns frozen codes to the state they were frozen from."""
    return _change("unfreeze", body, caller, runtime)


@router.post("/codes/void", response_model=StateChange)
def void(body: CodeTarget, caller: StockDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Voids codes for good (a void code is never sold or redeemed). Voiding a whole batch is
    maker-checker: give the ``approval_id`` of an approved ``batch_void`` request. Errors:
    CODE_NOT_FOUND, ORDER_NOT_FOUND, BATCH_NOT_FOUND, APPROVAL_REQUIRED and the other
    APPROVAL_* codes."""
    return _change("void", body, caller, runtime)


class LockedCode(BaseModel):
    code_id: int
    sku: str
    locked_until: str | None
    locked_until_ms: int
    lockouts: int = Field(description="lockouts in a row (each twice as long as the last)")
    pin_failures: int


class LockedPage(BaseModel):
    items: list[LockedCode]
    next: str | None


class UnlockRequest(Strict):
    code: str | None = Field(default=None, min_length=1, max_length=256)
    code_ids: list[Annotated[int, Field(ge=0, le=(1 << 63) - 1)]] | None = Field(
        default=None, min_length=1, max_length=1000)


class Unlocked(BaseModel):
    unlocked: int
    unchanged: int


@router.get("/codes/locked", response_model=LockedPage)
def locked_codes(caller: AdminDep, runtime: RuntimeDep,
                 sku: Annotated[str | None, Query(max_length=64)] = None,
                 limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
                 cursor: Annotated[str | None, Query(max_length=CURSOR_LEN_MAX)] = None,
                 ) -> dict[str, Any]:
    """Codes whose PIN lockout runs now (too many wrong PINs), latest-ending first, by id (never
    their text). Errors: SKU_NOT_FOUND."""
    page = runtime.catalog.locked_codes(sku=sku, limit=limit, cursor=cursor)
    return {"items": [{**item, "locked_until": iso(item["locked_until_ms"])}
                      for item in page.items], "next": page.next}


@router.post("/codes/unlock", response_model=Unlocked)
def unlock(body: UnlockRequest, caller: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Ends the PIN lockout of one code (``code``) or of codes by id (``code_ids``) and clears
    their failure counts (audited ``code.unlock``). Errors: CODE_NOT_FOUND, INVALID_ARGUMENT."""
    return runtime.catalog.unlock(code=body.code, code_ids=body.code_ids, actor=caller.key_id)
