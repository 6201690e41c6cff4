"""Admins: SKUs, their stock, named pools and batches of codes (import or generation).

These touch SQL, so their handlers run in FastAPI's thread pool. Every mutation is audited and
acknowledged only once the core's journal holds it (``cardsvc.catalog``).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, UploadFile, status
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from api.deps import AdminDep, CatalogDep, RuntimeDep, StockDep
from api.models import (
    CURRENCY_RE,
    DEFAULT_LIMIT,
    MONEY_MINOR_MAX,
    Currency,
    CursorQuery,
    Id,
    LimitQuery,
    Money,
    Name,
    PageOut,
    Strict,
)
from cardsvc.catalog import KINDS, LIST_CODES_MAX, BatchMeta, CodeFormat, CodeInput
from cardsvc.errors import ErrorCode, make_error

router = APIRouter(tags=["catalog"])

UnixSeconds = Annotated[int, Field(ge=0, le=(1 << 32) - 1)]


Kind = Annotated[str, Field(description=" | ".join(KINDS))]


class SkuEditable(Strict):
    kind: Kind | None = None
    currency: Currency | None = None
    face_value_minor: Money | None = None
    cost_minor: Money | None = None
    retail_price_minor: Money | None = None
    purchase_limit_per_buyer: int | None = Field(default=None, ge=0, le=1_000_000)
    low_stock_threshold: int | None = Field(default=None, ge=0, le=1 << 31)
    on_sale: bool | None = None
    category: Name | None = None
    description: str | None = Field(default=None, max_length=4000)
    usage_instructions: str | None = Field(default=None, max_length=4000)
    validity_text: Name | None = None
    retail_quantity_min: int | None = Field(default=None, ge=1, le=100)
    retail_quantity_max: int | None = Field(default=None, ge=1, le=100)
    show_exact_stock: bool | None = Field(
        default=None, description="the shop shows the exact count (default: in stock / low / "
        "sold out only)")
    retail_pool: Id | None = Field(default=None, description="the pool retail draws from "
                                   "(default: shared)")
    codes_in_mail: bool | None = Field(default=None, description="the delivery mail carries the "
                                       "codes (default: the claim link only)")


class SkuCreate(SkuEditable):
    sku: Id
    name: Name
    uses_per_code: int = Field(default=1, ge=1, le=1_000_000)
    redeem_requires_sale: bool = True
    validity_days_after_sale: int | None = Field(default=None, ge=1, le=36_500)


class SkuUpdate(SkuEditable):
    name: Name | None = None


class SkuOut(BaseModel):
    sku: str
    name: str
    kind: str
    uses_per_code: int
    redeem_requires_sale: bool
    validity_days_after_sale: int | None
    currency: str
    face_value_minor: int | None
    cost_minor: int | None
    retail_price_minor: int | None
    purchase_limit_per_buyer: int | None
    low_stock_threshold: int | None
    on_sale: bool
    category: str | None = None
    description: str | None = None
    usage_instructions: str | None = None
    validity_text: str | None = None
    retail_quantity_min: int | None = None
    retail_quantity_max: int | None = None
    show_exact_stock: bool = False
    retail_pool: str | None = None
    codes_in_mail: bool = False
    created_at_ms: int
    updated_at_ms: int | None


class StockCounts(BaseModel):
    available: int = 0
    held: int = 0
    allocated: int = 0
    redeemed: int = 0
    frozen: int = 0
    void: int = 0
    withdrawn: int = Field(default=0, description="out of sale: exported in a file")
    expired: int = 0


class StockOut(StockCounts):
    sku: str
    by_pool: dict[str, StockCounts]
    low_stock: bool = Field(description="sellable stock at or below the SKU's threshold")


class PoolCreate(Strict):
    pool: Id
    agent_id: Id | None = None


class PoolOut(BaseModel):
    pool: str
    pool_id: int
    agent_id: str | None


class PoolListed(PoolOut):
    created_at_ms: int = Field(description="when it was named; 0 for shared, always there")


class CodeIn(Strict):
    code: str = Field(min_length=1, max_length=256)
    pin: str | None = Field(default=None, max_length=64)


class Generate(Strict):
    count: int = Field(ge=1, le=LIST_CODES_MAX)
    length: int = Field(default=16, ge=6, le=64, description="random characters")
    prefix: str = Field(default="", max_length=16, pattern=r"^[A-Za-z0-9]*$")
    group: int = Field(default=4, ge=0, le=16, description="characters per group; 0: none")
    check: bool = Field(default=True, description="append a check character")
    pin_length: int = Field(default=0, ge=0, le=32)


class BatchFacts(Strict):
    pool: Id | None = None
    valid_from: UnixSeconds | None = None
    valid_until: UnixSeconds | None = None
    supplier: Name | None = None
    unit_cost_minor: Money | None = None
    currency: Currency | None = None
    purchase_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")


class BatchCreate(BatchFacts):
    sku: Id
    codes: list[CodeIn] | None = Field(default=None, min_length=1, max_length=LIST_CODES_MAX)
    generate: Generate | None = None

    @model_validator(mode="after")
    def one_source(self) -> BatchCreate:
        if (self.codes is None) == (self.generate is None):
            raise make_error(ErrorCode.INVALID_ARGUMENT, "give exactly one of codes, generate",
                             {"field": "codes"})
        return self


class Duplicate(BaseModel):
    index: int
    code: str = Field(description="masked: all but the last 4 characters are *")


class BatchCreated(BaseModel):
    batch_id: int
    imported: int
    duplicates: list[Duplicate]
    status: str


class BatchOut(BaseModel):
    batch_id: int
    sku: str
    pool: str
    status: str = Field(description="importing, ready, rejected, failed or cancelled")
    source: str
    submitted: int
    processed: int
    imported: int
    duplicates: int
    valid_from_ms: int | None
    valid_until_ms: int | None
    supplier: str | None
    unit_cost_minor: int | None
    currency: str | None
    purchase_date: str | None
    source_name: str | None
    error_code: str | None
    error_details: dict[str, Any] | None = Field(
        description="why the batch was rejected or failed: the error's details (reason, field, "
                    "line, ...; docs/import.md)")
    error_message: str | None
    created_at_ms: int
    created_by: str | None


SkuPath = Annotated[str, PathParam(min_length=1, max_length=64)]
BatchId = Annotated[int, PathParam(ge=1, le=(1 << 31) - 1)]


@router.post("/skus", response_model=SkuOut, status_code=status.HTTP_201_CREATED)
def create_sku(body: SkuCreate, caller: CatalogDep, runtime: RuntimeDep) -> dict[str, Any]:
    """A new SKU. Errors: SKU_EXISTS."""
    extra = body.model_dump(include=set(SkuEditable.model_fields), exclude_none=True)
    return runtime.catalog.create_sku(
        body.sku, body.name, uses_per_code=body.uses_per_code,
        redeem_requires_sale=body.redeem_requires_sale,
        validity_days_after_sale=body.validity_days_after_sale, actor=caller.key_id, **extra)


@router.patch("/skus/{sku}", response_model=SkuOut)
def update_sku(sku: SkuPath, body: SkuUpdate, caller: CatalogDep,
               runtime: RuntimeDep) -> dict[str, Any]:
    """Changes the given catalog fields (audited with old and new values). Fields the core
    enforces (uses per code, sale before redemption, validity) cannot change. Errors:
    SKU_NOT_FOUND."""
    return runtime.catalog.update_sku(sku, body.model_dump(exclude_unset=True),
                                       actor=caller.key_id)


@router.get("/skus", response_model=list[SkuOut])
def list_skus(caller: CatalogDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return runtime.catalog.list_skus()


@router.get("/skus/{sku}", response_model=SkuOut)
def get_sku(sku: SkuPath, caller: CatalogDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Errors: SKU_NOT_FOUND."""
    return runtime.catalog.get_sku(sku)


@router.get("/skus/{sku}/stock", response_model=StockOut)
def get_stock(sku: SkuPath, caller: CatalogDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Codes by state, in total and per pool (``expired`` counts unsold codes past their
    ``valid_until``, which are also in ``available``). Errors: SKU_NOT_FOUND."""
    return runtime.catalog.stock(sku)


@router.post("/pools", response_model=PoolOut, status_code=status.HTTP_201_CREATED)
def create_pool(body: PoolCreate, caller: CatalogDep, runtime: RuntimeDep) -> dict[str, Any]:
    """A named stock pool (``shared`` always exists). Errors: POOL_EXISTS, AGENT_NOT_FOUND."""
    return runtime.agent_updates.create_pool(body.pool, agent_id=body.agent_id,
                                              actor=caller.key_id)


@router.get("/pools", response_model=PageOut[PoolListed])
def list_pools(caller: AdminDep, runtime: RuntimeDep,
               agent_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
               cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT,
               ) -> PageOut[PoolListed]:
    """Named pools, newest first, ``shared`` last; ``agent_id`` gives that agent's channel
    pools. Errors: INVALID_ARGUMENT (cursor)."""
    page = runtime.catalog.list_pools(agent_id=agent_id, cursor=cursor, limit=limit)
    return PageOut[PoolListed](items=[PoolListed(**asdict(info)) for info in page.items],
                               next=page.next)


@router.get("/batches", response_model=PageOut[BatchOut])
def list_batches(caller: AdminDep, runtime: RuntimeDep,
                 sku: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                 status: Annotated[str | None, Query(
                     pattern="^(importing|ready|failed|rejected)$")] = None,
                 cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT,
                 ) -> PageOut[BatchOut]:
    """Batches newest first, of ``sku`` and in ``status`` when given. Errors: INVALID_ARGUMENT
    (cursor)."""
    page = runtime.batches.list_batches(sku=sku, status=status, cursor=cursor, limit=limit)
    return PageOut[BatchOut](items=[BatchOut(**asdict(info)) for info in page.items],
                             next=page.next)


@router.post("/batches", response_model=BatchCreated, status_code=status.HTTP_201_CREATED)
def create_batch(body: BatchCreate, caller: StockDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Imports ``codes`` (or generates ``generate.count`` new ones) as one batch. Duplicates of
    any earlier code are skipped and listed, masked. Errors: SKU_NOT_FOUND, POOL_NOT_FOUND,
    INVALID_CODE / INVALID_PIN (details: ``index``; nothing imported), INVALID_ARGUMENT."""
    batches = runtime.batches
    meta = BatchMeta(sku=body.sku, **body.model_dump(include=set(BatchFacts.model_fields)))
    if body.generate is not None:
        spec = body.generate
        fmt = CodeFormat(length=spec.length, group=spec.group, prefix=spec.prefix,
                         check=spec.check, pin_length=spec.pin_length)
        result = batches.generate(meta, fmt, spec.count, actor=caller.key_id)
    else:
        codes = [CodeInput(item.code, item.pin) for item in body.codes or []]
        result = batches.import_codes(meta, codes, actor=caller.key_id)
    return {"batch_id": result.batch_id, "imported": result.imported,
            "duplicates": result.duplicates, "status": result.status}


@router.post("/batches/upload", response_model=BatchOut,
             status_code=status.HTTP_202_ACCEPTED)
async def upload_batch(
    caller: StockDep, runtime: RuntimeDep, file: UploadFile,
    sku: Annotated[str, Form(min_length=1, max_length=64)],
    pool: Annotated[str | None, Form(max_length=64)] = None,
    mode: Annotated[str, Form(pattern="^(all_or_nothing|per_row)$")] = "all_or_nothing",
    encoding: Annotated[str, Form(pattern="^(utf-8|gb18030)$")] = "utf-8",
    supplier: Annotated[str | None, Form(max_length=200)] = None,
    unit_cost_minor: Annotated[int | None, Form(ge=0, le=MONEY_MINOR_MAX)] = None,
    currency: Annotated[str | None, Form(pattern=CURRENCY_RE)] = None,
    purchase_date: Annotated[str | None, Form(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    valid_from: Annotated[int | None, Form(ge=0, le=(1 << 32) - 1)] = None,
    valid_until: Annotated[int | None, Form(ge=0, le=(1 << 32) - 1)] = None,
) -> dict[str, Any]:
    """Uploads a CSV or XLSX file (multipart field ``file``, up to the upload limit) to import
    as one batch (docs/import.md). ``encoding`` applies to CSV: ``utf-8`` (UTF-16 with a byte
    order mark is recognised) or ``gb18030`` (GBK), never guessed. Answers 202 with the batch
    (status ``importing``) at once; poll ``GET /v1/batches/{batch_id}`` (``processed`` counts
    rows as they load) until ``ready``, ``rejected``, ``failed`` or ``cancelled``
    (``error_details`` and the report say why; ``POST /v1/batches/{batch_id}/cancel`` stops
    it). Imports run in a bounded queue with its own workers, never on the event loop. Errors
    before the import starts, with nothing created: LIMIT_EXCEEDED (``import_queue``: too many
    uploads waiting; retry later), SKU_NOT_FOUND, POOL_NOT_FOUND, INVALID_ARGUMENT."""
    name = Path(file.filename or "upload.csv").name[:200]
    meta = BatchMeta(sku=sku, pool=pool, valid_from=valid_from, valid_until=valid_until,
                     source="upload", supplier=supplier, unit_cost_minor=unit_cost_minor,
                     currency=currency, purchase_date=purchase_date, source_name=name)
    return await asyncio.to_thread(runtime.jobs.start_upload, meta, file.file,
                                   actor=caller.key_id, mode=mode, encoding=encoding)


@router.post("/batches/{batch_id}/cancel", response_model=BatchOut,
             status_code=status.HTTP_202_ACCEPTED)
def cancel_batch(batch_id: BatchId, caller: StockDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Asks the import of an uploaded batch to stop (audited). Answers 202 with the batch as it
    is: still ``importing`` until its job reaches the next chunk, then ``cancelled``, everything
    it had imported voided; a batch already ``cancelled`` is returned as is. Errors:
    BATCH_NOT_FOUND, BATCH_NOT_CANCELLABLE (the batch is ready, rejected or failed, or was not
    uploaded)."""
    return runtime.jobs.cancel(batch_id, actor=caller.key_id)


@router.get("/batches/{batch_id}", response_model=BatchOut)
def get_batch(batch_id: BatchId, caller: StockDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Errors: BATCH_NOT_FOUND."""
    return runtime.batches.get(batch_id)


@router.get("/batches/{batch_id}/report", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def batch_report(batch_id: BatchId, caller: StockDep, runtime: RuntimeDep) -> StreamingResponse:
    """The batch's report as CSV (``line,field,reason,code``): rejected rows and duplicates,
    codes masked. Errors: BATCH_NOT_FOUND."""
    return StreamingResponse(
        runtime.batches.report_csv(batch_id), media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="batch-{batch_id}-report.csv"'})
