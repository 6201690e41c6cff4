"""Exports of plaintext codes: a batch's or an order's codes as watermarked CSV.

Exports need a key with the ``export`` scope, which no key holds unless it was granted
explicitly; every export is recorded (``exports``, audit ``code.export``) before its first code
is sent, a batch's unsold codes are withdrawn from sale first (audit ``code.withdraw``), and
every row of the CSV carries the export id as a watermark (``cardsvc.delivery.Exports``). An
admin puts a never-delivered export's codes back on sale (audit ``export.restore``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from api.deps import AdminDep, RuntimeDep, require
from api.models import Strict
from cardsvc.access import Principal
from cardsvc.errors import ErrorCode, make_error

router = APIRouter(tags=["records"])

ExporterDep = Annotated[Principal, Depends(require("export"))]


class ExportRequest(Strict):
    batch_id: int | None = Field(default=None, ge=1, le=(1 << 31) - 1)
    order_id: str | None = Field(default=None, min_length=1, max_length=64)
    approval_id: str | None = Field(
        default=None, max_length=64,
        description="an approved code_export request for this batch or order (maker-checker)")

    @model_validator(mode="after")
    def one_target(self) -> ExportRequest:
        if (self.batch_id is None) == (self.order_id is None):
            raise make_error(ErrorCode.INVALID_ARGUMENT, "give exactly one of batch_id, order_id",
                             {"field": "batch_id"})
        return self


@router.post("/exports", response_class=StreamingResponse,
             responses={200: {"content": {"text/csv": {}}}})
def export(body: ExportRequest, caller: ExporterDep, runtime: RuntimeDep) -> StreamingResponse:
    """The plaintext codes of a batch or an order as watermarked CSV (needs the ``export``
    scope and, maker-checker, an approved ``code_export`` request: one file per approval). A
    batch's export first withdraws its unsold codes from sale (they are never sold again, still
    redeemable) and holds exactly the codes withdrawn; codes held by an open hold, sold,
    redeemed, frozen or void are left out and counted (``x-export-refused``). Text cells that a
    spreadsheet would run as a formula carry a leading ``'`` (the file's second line names the
    rule). Errors: BATCH_NOT_FOUND, ORDER_NOT_FOUND, FORBIDDEN, JOURNAL_UNAVAILABLE,
    APPROVAL_REQUIRED and the other APPROVAL_* codes."""
    result, chunks = runtime.exports.export_stream(actor=caller.key_id, batch_id=body.batch_id,
                                                   order_id=body.order_id,
                                                   approval_id=body.approval_id)
    refused = ",".join(f"{state}={count}" for state, count in sorted(result.refused.items()))
    return StreamingResponse((text for text, _ in chunks), media_type="text/csv", headers={
        "content-disposition": f'attachment; filename="{result.export_id}.csv"',
        "x-export-id": result.export_id, "x-export-codes": str(result.codes),
        "x-export-withdrawn": str(result.withdrawn), "x-export-refused": refused})


class RestoreOut(BaseModel):
    export_id: str
    restored: int = Field(description="codes back on sale")
    unchanged: int = Field(description="codes already on sale")
    refused: dict[str, int] = Field(description="codes left out of sale, by state (a code "
                                                "redeemed once is never sold again)")


@router.post("/exports/{export_id}/restore", response_model=RestoreOut)
def restore_export(export_id: Annotated[str, Path(min_length=1, max_length=64)],
                   caller: AdminDep, runtime: RuntimeDep) -> RestoreOut:
    """Puts the codes of a batch export that was never delivered back on sale (audited
    ``export.restore``; idempotent). Errors: EXPORT_NOT_FOUND, INVALID_ARGUMENT (an order's
    export)."""
    done = runtime.exports.restore(export_id, actor=caller.key_id)
    return RestoreOut(export_id=done.export_id, restored=done.restored, unchanged=done.unchanged,
                      refused=done.refused)
