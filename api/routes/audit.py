"""Admins: the audit log (entries by filter, a page at a time; the hash chain verified) and a
code's whole story (``POST /v1/codes/trace``, itself audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import AuditDep, RuntimeDep, TraceDep
from api.models import Strict
from cardsvc import audit
from cardsvc.reports import trace_code
from cardsvc.times import iso

router = APIRouter(tags=["records"])


class AuditEntryOut(BaseModel):
    seq: int
    at: str | None
    at_ms: int
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
    entry_hash: str = Field(description="hex SHA-256 chaining this entry to the previous one")


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page")


class ChainCheckOut(BaseModel):
    ok: bool
    entries_checked: int
    first_broken_seq: int | None
    reason: str | None


class TraceRequest(Strict):
    code: str = Field(min_length=1, max_length=256)


Ms = Annotated[int | None, Query(ge=0, le=(1 << 63) - 1)]


@router.get("/audit", response_model=AuditPage)
def audit_log(caller: AuditDep, runtime: RuntimeDep,
              actor: Annotated[str | None, Query(max_length=64)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              object_type: Annotated[str | None, Query(max_length=32)] = None,
              object_id: Annotated[str | None, Query(max_length=128)] = None,
              since_ms: Ms = None, until_ms: Ms = None, after_seq: Ms = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Audit entries matching every given filter, oldest first, a page at a time."""
    entries = audit.list_entries(runtime.db, actor=actor, action=action,
                                 object_type=object_type, object_id=object_id,
                                 since_ms=since_ms, until_ms=until_ms, after_seq=after_seq,
                                 limit=limit)
    out = [{"seq": e.seq, "at": iso(e.at_ms), "at_ms": e.at_ms, "actor": e.actor,
            "action": e.action, "object_type": e.object_type, "object_id": e.object_id,
            "details": e.details, "entry_hash": e.entry_hash.hex()} for e in entries]
    return {"entries": out, "next_after_seq": out[-1]["seq"] if len(out) == limit else None}


@router.get("/audit/verify", response_model=ChainCheckOut)
def audit_verify(caller: AuditDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Checks the whole hash chain; names the first broken entry."""
    return audit.verify_log(runtime.db).to_dict()


@router.post("/codes/trace")
def trace(body: TraceRequest, caller: TraceDep, runtime: RuntimeDep) -> dict[str, Any]:
    """A code's whole story: batch, supplier, import, order, agent, delivery, redemptions,
    rollbacks, freezes, exports, and a timeline (the code is in the body, not the URL, so it
    never reaches an access log; it comes back masked). Errors: CODE_NOT_FOUND."""
    return trace_code(runtime.store, runtime.db, body.code, actor=caller.key_id,
                      public_id=runtime.terminals.public_id)
