"""Agents: orders (the saga of ``cardsvc.sales.Orders``) and holds (flash sales).

Each route awaits one use case of ``cardsvc.sales``, which returns only once the SQL commit and
the journal hold what it reports, and renders its result (times as RFC 3339). An agent key sees
only its own orders and holds, its codes in plaintext; an admin key may read and list any order,
its codes masked, list and release any hold; plaintext for support is ``POST
/v1/orders/{id}/reveal`` (the ``export`` scope, audited). Lists never carry codes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, Field

from api.deps import CallerDep, HoldsDep, OrdersDep, RuntimeDep, acting_agent, agent_of, is_platform
from api.models import CursorQuery, PageOut, Strict, TimeQuery, time_ms
from cardsvc.checks import ORDER_QTY_MAX, REF_LEN_MAX
from cardsvc.errors import ErrorCode, make_error
from cardsvc.paging import CURSOR_LEN_MAX, PAGE_SIZE_MAX
from cardsvc.sales import (
    HOLD_TTL_S_MAX,
    HOLD_TTL_S_MIN,
    REASON_LEN_MAX,
    HoldView,
    OrderRequest,
    OrderView,
)
from cardsvc.times import iso, iso_s

router = APIRouter(tags=["agents"])

Ref = Annotated[str, Field(min_length=1, max_length=REF_LEN_MAX)]
SkuId = Annotated[str, Field(min_length=1, max_length=64)]


class OrderCreate(Strict):
    sku: SkuId
    quantity: int = Field(ge=1, le=ORDER_QTY_MAX)
    client_order_id: Ref


class DeliveredCode(BaseModel):
    code: str = Field(description="plaintext for the order's agent; masked for admins")
    pin: str | None = Field(default=None, description="never shown to admins (masked reads)")
    has_pin: bool = False
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
    codes_masked: bool = Field(default=False, description="codes shown masked, without PINs")
    error: dict[str, Any] | None = None


class RevealRequest(Strict):
    reason: str = Field(min_length=1, max_length=REASON_LEN_MAX,
                        description="why support needs the codes (kept in the audit log)")


class OrderSummary(BaseModel):
    """An order in a list: its facts, never its codes."""

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
    created_at_ms: int
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
    agent_id: str | None = None
    amount_minor: int | None = Field(default=None,
                                     description="reserved from the holder's balance + credit")
    currency: str | None = None
    created_at: str | None = None


class HoldPage(BaseModel):
    items: list[HoldOut]
    next: str | None


class HoldConfirm(Strict):
    client_order_id: Ref


class HoldReleased(BaseModel):
    hold_id: str
    released: int


HoldId = Annotated[str, Path(min_length=1, max_length=64)]
OrderId = Annotated[str, Path(min_length=1, max_length=64)]


RETRY_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"model": OrderOut, "description": "a retry: the first result, unchanged"}}


def order_json(view: OrderView) -> dict[str, Any]:
    """The order as the API shows it: times as RFC 3339, ``error`` only on a failed order."""
    out: dict[str, Any] = {
        "order_id": view.order_id,
        "client_order_id": view.client_order_id,
        "agent_id": view.agent_id,
        "status": view.status,
        "sku": view.sku,
        "quantity": view.quantity,
        "hold_id": view.hold_id,
        "unit_price_minor": view.unit_price_minor,
        "total_minor": view.total_minor,
        "currency": view.currency,
        "created_at": iso(view.created_at_ms),
    }
    if view.error is not None:
        out["error"] = view.error
    out["codes"] = [{"code": code.code, "pin": code.pin, "has_pin": code.has_pin,
                     "valid_until": iso_s(code.valid_until_s)} for code in view.codes]
    out["codes_masked"] = view.masked
    return out


def order_summary(view: OrderView) -> OrderSummary:
    return OrderSummary(
        order_id=view.order_id, client_order_id=view.client_order_id, agent_id=view.agent_id,
        status=view.status, sku=view.sku, quantity=view.quantity, hold_id=view.hold_id,
        unit_price_minor=view.unit_price_minor, total_minor=view.total_minor,
        currency=view.currency, created_at=iso(view.created_at_ms),
        created_at_ms=view.created_at_ms, error=view.error)


def hold_json(view: HoldView) -> dict[str, Any]:
    return {"hold_id": view.hold_id, "sku": view.sku, "quantity": view.quantity,
            "state": view.state, "expires_at": iso(view.expires_at_ms), "order_id": view.order_id,
            "agent_id": view.agent_id, "amount_minor": view.amount_minor,
            "currency": view.currency, "created_at": iso(view.created_at_ms)}


@router.post("/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED,
             responses=RETRY_ANSWER)
async def create_order(body: OrderCreate, caller: OrdersDep, runtime: RuntimeDep,
                       response: Response) -> dict[str, Any]:
    """Buys ``quantity`` codes of ``sku``: 201 with the codes; a retry with the same
    ``client_order_id`` returns the same order with 200. Errors: OUT_OF_STOCK (details:
    ``available``), SKU_NOT_FOUND, IDEMPOTENCY_KEY_REUSED (details: ``field``), RATE_LIMITED
    (daily quota), JOURNAL_UNAVAILABLE (retry with the same ``client_order_id``)."""
    request = OrderRequest(agent_of(caller), body.client_order_id, body.sku, body.quantity)
    order, created = await runtime.orders.place(request, actor=caller.key_id,
                                                limits=runtime.risk.limits_of(caller))
    if not created:
        response.status_code = status.HTTP_200_OK
    return order_json(order)


@router.get("/orders", response_model=OrderOut | PageOut[OrderSummary])
async def find_or_list_orders(
    caller: OrdersDep, runtime: RuntimeDep,
    client_order_id: Annotated[str | None, Query(min_length=1, max_length=REF_LEN_MAX)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(pending|fulfilled|failed|refunded)$")] = None,
    since: TimeQuery = None, until: TimeQuery = None, cursor: CursorQuery = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
) -> OrderOut | PageOut[OrderSummary]:
    """With ``client_order_id``: the order placed under it, with its codes (for an agent whose
    request timed out; ORDER_NOT_FOUND means the request never took effect; admins name the
    agent). Without: a page of orders, newest first, never with codes, filtered by ``agent_id``,
    ``status`` and creation time ``since <= created < until`` (ISO dates or RFC 3339); an
    agent's key lists only its own. Errors: INVALID_ARGUMENT (a list filter beside
    ``client_order_id``, a bad time or cursor)."""
    if client_order_id is None:
        page = await runtime.orders.list_orders(
            actor_agent_id=acting_agent(caller, "orders"), agent_id=agent_id, status=status,
            since_ms=time_ms("since", since), until_ms=time_ms("until", until), cursor=cursor,
            limit=limit)
        return PageOut[OrderSummary](items=[order_summary(v) for v in page.items],
                                     next=page.next)
    listing = {"status": status, "since": since, "until": until, "cursor": cursor,
               "limit": limit}
    for name, value in listing.items():
        if value is not None:
            raise make_error(ErrorCode.INVALID_ARGUMENT,
                             f"{name} lists orders; it cannot be given with client_order_id",
                             {"field": name})
    if is_platform(caller):
        if agent_id is None:
            raise make_error(ErrorCode.INVALID_ARGUMENT, "admins must give agent_id",
                             {"field": "agent_id"})
        return OrderOut(**order_json(await runtime.orders.find(
            agent_id, client_order_id, masked=True, actor=caller.key_id)))
    return OrderOut(**order_json(await runtime.orders.find(agent_of(caller), client_order_id,
                                                           actor=caller.key_id)))


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: OrderId, caller: CallerDep, runtime: RuntimeDep) -> dict[str, Any]:
    """An order and its codes: in plaintext for its agent's key (a re-delivery, audited
    ``order.redeliver``), masked for the platform's. Errors: ORDER_NOT_FOUND."""
    caller.require("orders")
    agent_id = None if is_platform(caller) else agent_of(caller)
    return order_json(await runtime.orders.get(order_id, agent_id=agent_id,
                                               actor=caller.key_id))


@router.post("/orders/{order_id}/reveal", response_model=OrderOut)
async def reveal_order(order_id: OrderId, body: RevealRequest, caller: CallerDep,
                       runtime: RuntimeDep) -> dict[str, Any]:
    """An order's codes in plaintext for support: needs the ``export`` scope (never a
    default), audited ``order.reveal`` (who, which order, how many codes, the reason) before
    the codes leave. Errors: FORBIDDEN, ORDER_NOT_FOUND."""
    return order_json(await runtime.orders.reveal(order_id, caller, reason=body.reason))


@router.post("/holds", response_model=HoldOut, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": HoldOut,
                              "description": "a retry (same client_hold_id): the hold, unchanged"}})
async def create_hold(body: HoldCreate, caller: HoldsDep, runtime: RuntimeDep,
                      response: Response) -> dict[str, Any]:
    """Reserves codes for ``ttl_seconds`` and their price from the agent's balance + credit;
    both return by themselves unless confirmed: 201; a retry with the same ``client_hold_id``
    returns the same hold with 200. Errors: OUT_OF_STOCK, SKU_NOT_FOUND,
    INSUFFICIENT_BALANCE (the hold's value beyond balance + credit), LIMIT_EXCEEDED (open-hold
    caps per agent and buyer), IDEMPOTENCY_KEY_REUSED (a ``client_hold_id`` reused for another
    hold)."""
    hold = await runtime.holds.hold(agent_of(caller), body.sku, body.quantity, body.ttl_seconds,
                                    buyer_id=body.buyer_id, client_hold_id=body.client_hold_id,
                                    limits=runtime.risk.limits_of(caller), actor=caller.key_id)
    if hold.replayed:
        response.status_code = status.HTTP_200_OK
    return hold_json(hold)


@router.get("/holds", response_model=HoldPage)
def list_holds(caller: HoldsDep, runtime: RuntimeDep,
               agent_id: Annotated[str | None, Query(max_length=64)] = None,
               state: Annotated[str | None, Query(max_length=16)] = None,
               limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
               cursor: Annotated[str | None, Query(max_length=CURSOR_LEN_MAX)] = None,
               ) -> dict[str, Any]:
    """Holds newest first (cursor pagination) with their money and state: an agent's own, or
    for admins every agent's (``agent_id`` filters). ``state``: open, confirmed, released,
    expired."""
    viewer = None if caller.is_admin else agent_of(caller)
    page = runtime.holds.list(agent_id=viewer if viewer is not None else agent_id,
                              status=state, limit=limit, cursor=cursor)
    return {"items": [hold_json(view) for view in page.items], "next": page.next}


@router.get("/holds/{hold_id}", response_model=HoldOut)
async def get_hold(hold_id: HoldId, caller: HoldsDep, runtime: RuntimeDep) -> dict[str, Any]:
    """A hold of the calling agent. Errors: HOLD_NOT_FOUND."""
    return hold_json(await runtime.holds.view(agent_of(caller), hold_id))


@router.post("/holds/{hold_id}/confirm", response_model=OrderOut,
             status_code=status.HTTP_201_CREATED, responses=RETRY_ANSWER)
async def confirm_hold(hold_id: HoldId, body: HoldConfirm, caller: HoldsDep,
                       runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    """Turns the hold into an order (as ``POST /v1/orders``, idempotent on
    ``client_order_id``) at the hold's price, paid with the money the hold reserved. Errors:
    HOLD_NOT_FOUND, HOLD_EXPIRED, HOLD_RELEASED, HOLD_ALREADY_CONFIRMED."""
    caller.require("orders")
    order, created = await runtime.orders.confirm_hold(
        agent_of(caller), hold_id, body.client_order_id, actor=caller.key_id,
        limits=runtime.risk.limits_of(caller))
    if not created:
        response.status_code = status.HTTP_200_OK
    return order_json(order)


@router.delete("/holds/{hold_id}", response_model=HoldReleased)
async def release_hold(hold_id: HoldId, caller: HoldsDep, runtime: RuntimeDep) -> HoldReleased:
    """Returns the hold's codes to stock and its reserved money to its agent now
    (idempotent): the agent's own hold, or any hold for an admin. Errors: HOLD_NOT_FOUND,
    HOLD_ALREADY_CONFIRMED."""
    agent_id = None if caller.is_admin else agent_of(caller)
    released = await runtime.holds.release(agent_id, hold_id, actor=caller.key_id)
    return HoldReleased(hold_id=hold_id, released=released)
