"""Admins: SKUs, their stock, named pools and batches of codes (import or generation).

These touch SQL, so their handlers run in FastAPI's thread pool. Every mutation is audited and
acknowledged only once the core's journal holds it (``cardsvc.catalog``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field, model_validator

from api.deps import AdminDep, ServicesDep
from api.models import Strict
from cardsvc.catalog import BATCH_CODES_MAX, GENERATE_LENGTH_MAX, GENERATE_LENGTH_MIN, CodeInput
from cardsvc.errors import ErrorCode, make_error

router = APIRouter(tags=["catalog"])

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
UnixSeconds = Annotated[int, Field(ge=0, le=(1 << 32) - 1)]


class SkuCreate(Strict):
    sku: Id
    name: Name
    uses_per_code: int = Field(default=1, ge=1, le=1_000_000)
    redeem_requires_sale: bool = True
    validity_days_after_sale: int | None = Field(default=None, ge=1, le=36_500)


class SkuOut(BaseModel):
    sku: str
    name: str
    uses_per_code: int
    redeem_requires_sale: bool
    validity_days_after_sale: int | None
    created_at_ms: int


class StockCounts(BaseModel):
    available: int = 0
    held: int = 0
    allocated: int = 0
    redeemed: int = 0
    frozen: int = 0
    void: int = 0
    expired: int = 0


class StockOut(StockCounts):
    sku: str
    by_pool: dict[str, StockCounts]


class PoolCreate(Strict):
    pool: Id
    agent_id: Id | None = None


class PoolOut(BaseModel):
    pool: str
    pool_id: int
    agent_id: str | None


class CodeIn(Strict):
    code: str = Field(min_length=1, max_length=256)
    pin: str | None = Field(default=None, max_length=64)


class Generate(Strict):
    count: int = Field(ge=1, le=BATCH_CODES_MAX)
    length: int = Field(default=16, ge=GENERATE_LENGTH_MIN, le=GENERATE_LENGTH_MAX)
    prefix: str = Field(default="", max_length=16, pattern=r"^[A-Za-z0-9-]*$")


class BatchCreate(Strict):
    sku: Id
    codes: list[CodeIn] | None = Field(default=None, min_length=1, max_length=BATCH_CODES_MAX)
    generate: Generate | None = None
    pool: Id | None = None
    valid_from: UnixSeconds | None = None
    valid_until: UnixSeconds | None = None

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
    status: str
    source: str
    submitted: int
    imported: int
    duplicates: int
    valid_from_ms: int | None
    valid_until_ms: int | None
    created_at_ms: int
    created_by: str | None


SkuPath = Annotated[str, Path(min_length=1, max_length=64)]


@router.post("/skus", response_model=SkuOut, status_code=status.HTTP_201_CREATED)
def create_sku(body: SkuCreate, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """A new SKU. Errors: SKU_EXISTS."""
    return services.catalog.create_sku(
        body.sku, body.name, uses_per_code=body.uses_per_code,
        redeem_requires_sale=body.redeem_requires_sale,
        validity_days_after_sale=body.validity_days_after_sale, actor=caller.key_id)


@router.get("/skus", response_model=list[SkuOut])
def list_skus(caller: AdminDep, services: ServicesDep) -> list[dict[str, Any]]:
    return services.catalog.list_skus()


@router.get("/skus/{sku}", response_model=SkuOut)
def get_sku(sku: SkuPath, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Errors: SKU_NOT_FOUND."""
    return services.catalog.get_sku(sku)


@router.get("/skus/{sku}/stock", response_model=StockOut)
def get_stock(sku: SkuPath, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Codes by state, in total and per pool (``expired`` counts unsold codes past their
    ``valid_until``, which are also in ``available``). Errors: SKU_NOT_FOUND."""
    return services.catalog.stock(sku)


@router.post("/pools", response_model=PoolOut, status_code=status.HTTP_201_CREATED)
def create_pool(body: PoolCreate, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """A named stock pool (``shared`` always exists). Errors: POOL_EXISTS, AGENT_NOT_FOUND."""
    return services.catalog.create_pool(body.pool, agent_id=body.agent_id, actor=caller.key_id)


@router.post("/batches", response_model=BatchCreated, status_code=status.HTTP_201_CREATED)
def create_batch(body: BatchCreate, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Imports ``codes`` (or generates ``generate.count`` new ones) as one batch. Duplicates of
    any earlier code are skipped and listed, masked. Errors: SKU_NOT_FOUND, POOL_NOT_FOUND,
    INVALID_CODE / INVALID_PIN (details: ``index``; nothing imported), INVALID_ARGUMENT."""
    catalog = services.catalog
    common: dict[str, Any] = {"pool": body.pool, "valid_from": body.valid_from,
                              "valid_until": body.valid_until, "actor": caller.key_id}
    if body.generate is not None:
        result = catalog.generate_batch(body.sku, body.generate.count,
                                        length=body.generate.length,
                                        prefix=body.generate.prefix, **common)
    else:
        codes = [CodeInput(item.code, item.pin) for item in body.codes or []]
        result = catalog.import_batch(body.sku, codes, **common)
    return {"batch_id": result.batch_id, "imported": result.imported,
            "duplicates": result.duplicates, "status": result.status}


@router.get("/batches/{batch_id}", response_model=BatchOut)
def get_batch(batch_id: Annotated[int, Path(ge=1, le=(1 << 31) - 1)], caller: AdminDep,
              services: ServicesDep) -> dict[str, Any]:
    """Errors: BATCH_NOT_FOUND."""
    return services.catalog.get_batch(batch_id)
