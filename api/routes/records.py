"""Admins: the audit log, a code's whole story, and exports of plaintext codes.

Exports need a key with the ``export`` scope, which no key holds unless it was granted
explicitly; every export is recorded (``exports``, audit ``code.export``) before its first code
is sent, and every row of the CSV carries the export id as a watermark.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from api.deps import AdminDep, ServicesDep, require
from api.models import Strict
from cardsvc import audit, exports
from cardsvc.access.apikeys import Principal
from cardsvc.errors import ErrorCode, make_error
from cardsvc.times import iso
from cardsvc.trace import trace_code

router = APIRouter(tags=["records"])

ExporterDep = Annotated[Principal, Depends(require("export"))]


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


class ExportRequest(Strict):
    batch_id: int | None = Field(default=None, ge=1, le=(1 << 31) - 1)
    order_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def one_target(self) -> ExportRequest:
        if (self.batch_id is None) == (self.order_id is None):
            raise make_error(ErrorCode.INVALID_ARGUMENT, "give exactly one of batch_id, order_id",
                             {"field": "batch_id"})
        return self


Ms = Annotated[int | None, Query(ge=0, le=(1 << 63) - 1)]


@router.get("/audit", response_model=AuditPage)
def audit_log(caller: AdminDep, services: ServicesDep,
              actor: Annotated[str | None, Query(max_length=64)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              object_type: Annotated[str | None, Query(max_length=32)] = None,
              object_id: Annotated[str | None, Query(max_length=128)] = None,
              since_ms: Ms = None, until_ms: Ms = None, after_seq: Ms = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Audit entries matching every given filter, oldest first, a page at a time."""
    with services.db.read() as session:
        entries = audit.query(session, actor=actor, action=action, object_type=object_type,
                              object_id=object_id, since_ms=since_ms, until_ms=until_ms,
                              after_seq=after_seq, limit=limit)
        out = [{"seq": e.seq, "at": iso(e.at_ms), "at_ms": e.at_ms, "actor": e.actor,
                "action": e.action, "object_type": e.object_type, "object_id": e.object_id,
                "details": e.details, "entry_hash": e.entry_hash.hex()} for e in entries]
    return {"entries": out, "next_after_seq": out[-1]["seq"] if len(out) == limit else None}


@router.get("/audit/verify", response_model=ChainCheckOut)
def audit_verify(caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Checks the whole hash chain; names the first broken entry."""
    with services.db.read() as session:
        return audit.verify(session).to_dict()


@router.post("/codes/trace")
def trace(body: TraceRequest, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """A code's whole story: batch, supplier, import, order, agent, delivery, redemptions,
    rollbacks, freezes, exports, and a timeline (the code is in the body, not the URL, so it
    never reaches an access log; it comes back masked). Errors: CODE_NOT_FOUND."""
    return trace_code(services, body.code, actor=caller.key_id)


@router.post("/exports", response_class=StreamingResponse,
             responses={200: {"content": {"text/csv": {}}}})
def export(body: ExportRequest, caller: ExporterDep, services: ServicesDep) -> StreamingResponse:
    """The plaintext codes of a batch or an order as watermarked CSV (needs the ``export``
    scope). Errors: BATCH_NOT_FOUND, ORDER_NOT_FOUND, FORBIDDEN."""
    result, chunks = exports.export_stream(services.db, services.keyring, actor=caller.key_id,
                                           batch_id=body.batch_id, order_id=body.order_id)
    return StreamingResponse((text for text, _ in chunks), media_type="text/csv", headers={
        "content-disposition": f'attachment; filename="{result.export_id}.csv"',
        "x-export-id": result.export_id})
