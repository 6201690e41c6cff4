"""Exports of plaintext codes: a batch's or an order's codes as watermarked CSV.

Exports need a key with the ``export`` scope, which no key holds unless it was granted
explicitly; every export is recorded (``exports``, audit ``code.export``) before its first code
is sent, and every row of the CSV carries the export id as a watermark
(``cardsvc.delivery.Exports``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import Field, model_validator

from api.deps import RuntimeDep, require
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
    scope and, maker-checker, an approved ``code_export`` request: one file per approval).
    Errors: BATCH_NOT_FOUND, ORDER_NOT_FOUND, FORBIDDEN, APPROVAL_REQUIRED and the other
    APPROVAL_* codes."""
    result, chunks = runtime.exports.export_stream(actor=caller.key_id, batch_id=body.batch_id,
                                                   order_id=body.order_id,
                                                   approval_id=body.approval_id)
    return StreamingResponse((text for text, _ in chunks), media_type="text/csv", headers={
        "content-disposition": f'attachment; filename="{result.export_id}.csv"',
        "x-export-id": result.export_id})
