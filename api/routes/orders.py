"""Agents: orders (the saga of ``cardsvc.orders``) and holds (flash sales).

Orders touch SQL, so their handlers are plain functions that FastAPI runs in its thread pool;
holds stay in the core and await the journal on the event loop. An agent key sees only its own
orders and holds; an admin key may read any order.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, Field

from api.deps import (
    CallerDep,
    HoldsDep,
    OrdersDep,
    ServicesDep,
    agent_of,
    limits_of,
)
from api.models import Strict
from cardsvc.engine import ORDER_QTY_MAX, REF_LEN_MAX, Engine
from cardsvc.errors import ErrorCode, make_error
from cardsvc.holds import HOLD_TTL_S_MAX, HOLD_TTL_S_MIN
from cardsvc.orders import OrderRequest

router = APIRouter(tags=["agents"])

Ref = Annotated[str, Field(min_length=1, max_length=REF_LEN_MAX)]
SkuId = Annotated[str, Field(min_length=1, max_length=64)]


class OrderCreate(Strict):
    sku: SkuId
    quantity: int = Field(ge=1, le=ORDER_QTY_MAX)
    client_order_id: Ref


class DeliveredCode(BaseModel):
    code: str
    pin: str | None = None
    valid_until: str | None = None


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str
    agent_id: str
    status: str = Field(description="pending, fulfilled, failed or refunded")
    sku: str
    quantity: int
    hold_id: str | None = None
    unit_price_minor: int | None = None
    total_minor: int | None = None
    currency: str | None = None
    created_at: str | None = None
    codes: list[DeliveredCode]
    error: dict[str, Any] | None = None


class HoldCreate(Strict):
    sku: SkuId
    quantity: int = Field(ge=1, le=ORDER_QTY_MAX)
    ttl_seconds: int = Field(ge=HOLD_TTL_S_MIN, le=HOLD_TTL_S_MAX)
    buyer_id: Ref | None = None
    client_hold_id: Ref | None = None


class HoldOut(BaseModel):
    hold_id: str
    sku: str
    quantity: int
    state: str = Field(description="open, confirmed, released or expired")
    expires_at: str | None
    order_id: str | None = None


class HoldConfirm(Strict):
    client_order_id: Ref


class HoldReleased(BaseModel):
    hold_id: str
    released: int


HoldId = Annotated[str, Path(min_length=1, max_length=64)]
OrderId = Annotated[str, Path(min_length=1, max_length=64)]


RETRY_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"model": OrderOut, "description": "a retry: the first result, unchanged"}}


@router.post("/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED,
             responses=RETRY_ANSWER)
async def create_order(body: OrderCreate, caller: OrdersDep, services: ServicesDep,
                 response: Response) -> dict[str, Any]:
    """Buys ``quantity`` codes of ``sku``: 201 with the codes; a retry with the same
    ``client_order_id`` returns the same order with 200. Errors: OUT_OF_STOCK (details:
    ``available``), SKU_NOT_FOUND, IDEMPOTENCY_KEY_REUSED (details: ``field``), RATE_LIMITED
    (daily quota), JOURNAL_UNAVAILABLE (retry with the same ``client_order_id``)."""
    agent_id = agent_of(caller)
    request = OrderRequest(agent_id, body.client_order_id, body.sku, body.quantity)
    order, created = await services.orders.place_async(request, actor=caller.key_id,
                                                       limits=limits_of(services, caller))
    if not created:
        response.status_code = status.HTTP_200_OK
    return order


@router.get("/orders", response_model=OrderOut)
def find_order(caller: OrdersDep, services: ServicesDep,
               client_order_id: Annotated[str, Query(min_length=1, max_length=REF_LEN_MAX)],
               agent_id: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    """The order placed under ``client_order_id`` (for an agent whose request timed out);
    ORDER_NOT_FOUND means the request never took effect. Admins name the agent."""
    if caller.is_admin and caller.agent_id is None:
        if agent_id is None:
            raise make_error(ErrorCode.INVALID_ARGUMENT, "admins must give agent_id",
                             {"field": "agent_id"})
        return services.orders.find(agent_id, client_order_id)
    return services.orders.find(agent_of(caller), client_order_id)


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: OrderId, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """An order and its codes (its agent's key, or an admin's). Errors: ORDER_NOT_FOUND."""
    if not caller.is_admin:
        caller.require("orders")
    agent_id = None if caller.is_admin else agent_of(caller)
    return services.orders.get(order_id, agent_id=agent_id)


@router.post("/holds", response_model=HoldOut, status_code=status.HTTP_201_CREATED)
async def create_hold(body: HoldCreate, caller: HoldsDep, services: ServicesDep) -> dict[str, Any]:
    """Reserves codes for ``ttl_seconds``; they return to stock by themselves unless confirmed.
    Errors: OUT_OF_STOCK, SKU_NOT_FOUND, RATE_LIMITED (open-hold caps per agent and buyer),
    IDEMPOTENCY_KEY_REUSED (a ``client_hold_id`` reused for another hold)."""
    agent_id = agent_of(caller)
    try:
        hold = services.holds.hold(agent_id, body.sku, body.quantity, body.ttl_seconds,
                                    buyer_id=body.buyer_id, client_hold_id=body.client_hold_id,
                                    limits=limits_of(services, caller))
    finally:
        await services.store.wait_async(Engine.last_ticket())
    return hold


@router.get("/holds/{hold_id}", response_model=HoldOut)
async def get_hold(hold_id: HoldId, caller: HoldsDep, services: ServicesDep) -> dict[str, Any]:
    """A hold of the calling agent. Errors: HOLD_NOT_FOUND."""
    hold = services.holds.view(agent_of(caller), hold_id)
    await services.store.wait_async(Engine.last_ticket())
    return hold


@router.post("/holds/{hold_id}/confirm", response_model=OrderOut,
             status_code=status.HTTP_201_CREATED, responses=RETRY_ANSWER)
def confirm_hold(hold_id: HoldId, body: HoldConfirm, caller: HoldsDep, services: ServicesDep,
                 response: Response) -> dict[str, Any]:
    """Turns the hold into an order (as ``POST /v1/orders``, idempotent on
    ``client_order_id``). Errors: HOLD_NOT_FOUND, HOLD_EXPIRED, HOLD_RELEASED,
    HOLD_ALREADY_CONFIRMED."""
    caller.require("orders")
    order, created = services.orders.confirm_hold(
        agent_of(caller), hold_id, body.client_order_id, actor=caller.key_id,
        limits=limits_of(services, caller))
    if not created:
        response.status_code = status.HTTP_200_OK
    return order


@router.delete("/holds/{hold_id}", response_model=HoldReleased)
async def release_hold(hold_id: HoldId, caller: HoldsDep, services: ServicesDep) -> HoldReleased:
    """Returns the hold's codes to stock now (idempotent). Errors: HOLD_NOT_FOUND,
    HOLD_ALREADY_CONFIRMED."""
    try:
        released = services.holds.release(agent_of(caller), hold_id)
    finally:
        await services.store.wait_async(Engine.last_ticket())
    return HoldReleased(hold_id=hold_id, released=released)
