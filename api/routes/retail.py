"""Admins: payment channels (secrets sealed, never shown; each with its notify URL) and retail
orders (list, read, refund, change the address, resend the mail), and the per-channel
reconciliation of attempts against callbacks and postings."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from api.deps import AdminDep, RuntimeDep
from api.models import Id, Name, Strict
from api.routes.shop import RetailOrderOut, retail_order_json
from cardsvc.paging import check_page_size, decode_cursor, page_of
from cardsvc.payments import ChannelView
from cardsvc.reports import channel_reconciliation

router = APIRouter(tags=["retail"])

ChannelPath = Annotated[str, Path(min_length=1, max_length=64)]
OrderPath = Annotated[str, Path(min_length=1, max_length=64)]
Settings = dict[str, Annotated[str, Field(max_length=16_384)]]


class ChannelCreate(Strict):
    channel_id: Id
    provider: str = Field(description="sandbox, epay, alipay, wechatpay or stripe")
    display_name: Name
    merchant_id: str = Field(default="", max_length=128)
    secrets: Settings = Field(default_factory=dict,
                              description="the provider's secrets by name (sealed, never shown)")
    verify_keys: Settings = Field(default_factory=dict)
    options: Settings = Field(default_factory=dict)
    enabled: bool = True


class ChannelUpdate(Strict):
    display_name: Name | None = None
    merchant_id: str | None = Field(default=None, max_length=128)
    secrets: Settings | None = None
    verify_keys: Settings | None = None
    options: Settings | None = None
    enabled: bool | None = None


class ChannelOut(BaseModel):
    channel_id: str
    provider: str
    display_name: str
    merchant_id: str
    enabled: bool
    sandbox: bool
    notify_url: str = Field(description="give this URL to the provider")
    secret_names: list[str]
    verify_key_ids: list[str]
    options: dict[str, str]
    secret_version: int


class RetailOrderPage(BaseModel):
    items: list[RetailOrderOut]
    next: str | None


class RefundIn(Strict):
    reason: str = Field(min_length=1, max_length=200)
    approval_id: str | None = Field(
        default=None, max_length=64,
        description="maker-checker: an approved refund request for this retail order")


class EmailIn(Strict):
    email: str = Field(min_length=3, max_length=254)


def channel_json(view: ChannelView) -> dict[str, Any]:
    return {"channel_id": view.channel_id, "provider": view.provider,
            "display_name": view.display_name, "merchant_id": view.merchant_id,
            "enabled": view.enabled, "sandbox": view.sandbox, "notify_url": view.notify_url,
            "secret_names": list(view.secret_names), "verify_key_ids": list(view.verify_key_ids),
            "options": dict(view.options), "secret_version": view.secret_version}


@router.post("/payment-channels", response_model=ChannelOut,
             status_code=status.HTTP_201_CREATED)
def create_channel(body: ChannelCreate, caller: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """A payment channel (audited without its secrets). Errors: CHANNEL_EXISTS,
    PAYMENT_CONFIG_INVALID (``details.setting``), SANDBOX_IN_PRODUCTION."""
    return channel_json(runtime.channels.create(
        body.channel_id, body.provider, display_name=body.display_name,
        merchant_id=body.merchant_id, secrets_=body.secrets, verify_keys=body.verify_keys,
        options=body.options, enabled=body.enabled, actor=caller.key_id))


@router.get("/payment-channels", response_model=list[ChannelOut])
def list_channels(caller: AdminDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    return [channel_json(view) for view in runtime.channels.all()]


@router.get("/payment-channels/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: ChannelPath, caller: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Errors: CHANNEL_NOT_FOUND."""
    return channel_json(runtime.channels.get(channel_id))


@router.patch("/payment-channels/{channel_id}", response_model=ChannelOut)
def update_channel(channel_id: ChannelPath, body: ChannelUpdate, caller: AdminDep,
                   runtime: RuntimeDep) -> dict[str, Any]:
    """Changes a channel; ``secrets`` replaces them all (the secret version goes up). Errors:
    CHANNEL_NOT_FOUND, PAYMENT_CONFIG_INVALID, SANDBOX_IN_PRODUCTION."""
    changes = body.model_dump(exclude_unset=True)
    return channel_json(runtime.channels.update(channel_id, changes, actor=caller.key_id))


@router.get("/payment-channels/{channel_id}/reconciliation")
def reconcile_channel(channel_id: ChannelPath, caller: AdminDep, runtime: RuntimeDep,
                      since_ms: Annotated[int | None, Query(ge=0)] = None,
                      until_ms: Annotated[int | None, Query(ge=0)] = None) -> dict[str, Any]:
    """Attempts against callbacks and postings for one channel (default: the last 24 h)."""
    runtime.channels.get(channel_id)
    return channel_reconciliation(runtime.db, channel_id, since_ms=since_ms, until_ms=until_ms,
                                  now_ms=runtime.engine.now_ms())


@router.get("/retail-orders", response_model=RetailOrderPage)
async def list_orders(caller: AdminDep, runtime: RuntimeDep,
                      status_: Annotated[str | None, Query(alias="status", max_length=24)] = None,
                      limit: Annotated[int | None, Query()] = None,
                      cursor: Annotated[str | None, Query(max_length=512)] = None,
                      ) -> dict[str, Any]:
    """Retail orders, newest first (``cardsvc.paging``)."""
    size = check_page_size(limit)
    after = decode_cursor(cursor, (int, str))
    rows = await runtime.checkout.list_orders(
        status=status_, after=None if after is None else (int(after[0]), str(after[1])),
        limit=size)
    page = page_of(rows, size, key=lambda view: (view.created_at_ms, view.order_id))
    return {"items": [retail_order_json(view) for view in page.items], "next": page.next}


@router.get("/retail-orders/{order_id}", response_model=RetailOrderOut)
async def get_order(order_id: OrderPath, caller: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Errors: ORDER_NOT_FOUND."""
    return retail_order_json(await runtime.checkout.admin_order(order_id))


@router.post("/retail-orders/{order_id}/refund", response_model=RetailOrderOut)
async def refund(order_id: OrderPath, body: RefundIn, caller: AdminDep,
                 runtime: RuntimeDep) -> dict[str, Any]:
    """Refunds through the provider and reverses the money (idempotent). Under maker-checker
    give the ``approval_id`` of an approved ``refund`` request for this retail order (object
    type ``retail_order``). Errors: ORDER_NOT_FOUND, ORDER_NOT_REFUNDABLE, APPROVAL_REQUIRED
    (and the other approval refusals), PAYMENT_PROVIDER_*, PAYMENT_OPERATION_UNSUPPORTED."""
    return retail_order_json(await runtime.checkout.refund(
        order_id, actor=caller.key_id, reason=body.reason, approval_id=body.approval_id))


@router.post("/retail-orders/{order_id}/email", response_model=RetailOrderOut)
async def change_email(order_id: OrderPath, body: EmailIn, caller: AdminDep,
                       runtime: RuntimeDep) -> dict[str, Any]:
    """Changes the order's address (audited). Errors: ORDER_NOT_FOUND, INVALID_ARGUMENT."""
    return retail_order_json(await runtime.checkout.change_email(order_id, body.email,
                                                                 actor=caller.key_id))


@router.post("/retail-orders/{order_id}/resend", status_code=status.HTTP_202_ACCEPTED)
async def resend(order_id: OrderPath, caller: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Queues the delivery mail again (rate-limited, audited). Errors: ORDER_NOT_FOUND,
    ORDER_NOT_DELIVERED, RATE_LIMITED."""
    await runtime.checkout.resend(order_id, None, actor=caller.key_id)
    await asyncio.sleep(0)
    return {"order_id": order_id, "queued": True}
