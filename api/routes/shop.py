"""The shop for apps: the JSON twin of the storefront's pages (public, no API key).

Every route makes the same domain call as its page (``cardsvc.sales.Checkout``): the catalog,
the challenge, a checkout, an order's status, its codes and the lookup. An order is reached with
its token in the ``X-Order-Token`` header, never by its id alone; every miss is the same
ORDER_NOT_FOUND. Limits (caps, rates, the challenge) are the domain's, shared with the pages.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, status
from pydantic import BaseModel, Field

from api.deps import RuntimeDep, client_ip
from api.models import Strict
from cardsvc.sales import CheckoutRequest, PaymentView, RetailOrderView, ShopSku, StockLevel
from cardsvc.times import iso

router = APIRouter(prefix="/shop", tags=["shop"])

OrderPath = Annotated[str, Path(min_length=1, max_length=64)]
SkuPath = Annotated[str, Path(min_length=1, max_length=64)]
OrderToken = Annotated[str | None, Header(alias="X-Order-Token", max_length=128)]


class ShopItem(BaseModel):
    sku: str
    name: str
    kind: str
    category: str | None
    description: str | None
    usage_instructions: str | None
    validity_text: str | None
    price_minor: int
    currency: str
    quantity_min: int
    quantity_max: int
    stock: str = Field(description="in_stock, low or sold_out")
    stock_count: int | None = Field(description="only for SKUs that show their exact stock")


class ShopCatalog(BaseModel):
    items: list[ShopItem]


class ShopChannel(BaseModel):
    channel_id: str
    name: str
    sandbox: bool


class Challenge(BaseModel):
    algorithm: str
    challenge: str
    maxnumber: int
    salt: str
    signature: str


class CheckoutIn(Strict):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=100)
    email: str = Field(min_length=3, max_length=254)
    channel_id: str = Field(min_length=1, max_length=64)
    password: str | None = Field(default=None, min_length=12, max_length=256,
                                 description="an order password for the lookup (optional)")
    challenge: str | None = Field(default=None, max_length=2000,
                                  description="the solved challenge (base64 ALTCHA payload)")
    locale: str = Field(default="zh_CN", pattern="^(zh_CN|en)$")


class RetailOrderOut(BaseModel):
    order_id: str
    status: str = Field(description="pending, paid, delivered, expired, failed, "
                        "paid_unfulfillable or refunded")
    sku: str
    product_name: str
    quantity: int
    unit_price_minor: int
    total_minor: int
    currency: str
    email: str = Field(description="masked, except for admins")
    channel_id: str
    created_at: str | None
    expires_at: str | None
    paid_at: str | None
    delivered_at: str | None
    late: bool
    usage_instructions: str | None


class PaymentOut(BaseModel):
    kind: str = Field(description="redirect, qr or form")
    url: str | None
    qr_text: str | None
    form_fields: dict[str, str] | None
    expires_at: str | None
    channel_id: str
    channel_name: str
    sandbox: bool


class CheckoutOut(BaseModel):
    order: RetailOrderOut
    token: str = Field(description="the order's token: keep it, it is the key to the order")
    payment: PaymentOut


class RevealIn(Strict):
    full: bool = Field(default=False, description="show the codes in full again (audited)")


class CodeOut(BaseModel):
    code: str
    pin: str | None
    masked: bool


class CodesOut(BaseModel):
    order: RetailOrderOut
    codes: list[CodeOut]
    full: bool


class LookupIn(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class LookupHit(BaseModel):
    order_id: str
    token: str


class LookupOut(BaseModel):
    orders: list[LookupHit]


def item_json(item: ShopSku, stock: StockLevel) -> dict[str, Any]:
    return {"sku": item.sku, "name": item.name, "kind": item.kind, "category": item.category,
            "description": item.description, "usage_instructions": item.usage_instructions,
            "validity_text": item.validity_text, "price_minor": item.price_minor,
            "currency": item.currency, "quantity_min": item.quantity_min,
            "quantity_max": item.quantity_max, "stock": stock.level, "stock_count": stock.count}


def retail_order_json(view: RetailOrderView) -> dict[str, Any]:
    return {"order_id": view.order_id, "status": view.status, "sku": view.sku,
            "product_name": view.product_name, "quantity": view.quantity,
            "unit_price_minor": view.unit_price_minor, "total_minor": view.total_minor,
            "currency": view.currency, "email": view.email, "channel_id": view.channel_id,
            "created_at": iso(view.created_at_ms), "expires_at": iso(view.hold_expires_at_ms),
            "paid_at": iso(view.paid_at_ms), "delivered_at": iso(view.delivered_at_ms),
            "late": view.late, "usage_instructions": view.usage_instructions}


def payment_json(view: PaymentView) -> dict[str, Any]:
    return {"kind": view.kind, "url": view.url, "qr_text": view.qr_text,
            "form_fields": None if view.form_fields is None else dict(view.form_fields),
            "expires_at": iso(view.expires_at_ms), "channel_id": view.channel_id,
            "channel_name": view.channel_name, "sandbox": view.sandbox}


@router.get("/catalog", response_model=ShopCatalog)
def catalog(runtime: RuntimeDep) -> dict[str, Any]:
    """The products on sale, with their retail price and stock level."""
    shop = runtime.shop
    return {"items": [item_json(item, shop.stock(item)) for item in shop.skus()]}


@router.get("/skus/{sku}", response_model=ShopItem)
def product(sku: SkuPath, runtime: RuntimeDep) -> dict[str, Any]:
    """One product. Errors: SKU_NOT_FOUND (also off sale)."""
    item = runtime.shop.get(sku)
    return item_json(item, runtime.shop.stock(item))


@router.get("/channels", response_model=list[ShopChannel])
def channels(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """The payment channels a buyer may choose."""
    return [{"channel_id": view.channel_id, "name": view.display_name, "sandbox": view.sandbox}
            for view in runtime.channels.storefront()]


@router.get("/challenge", response_model=Challenge)
def challenge(runtime: RuntimeDep) -> dict[str, Any]:
    """A proof-of-work challenge: find ``n <= maxnumber`` with SHA-256(salt + n) ==
    challenge, then send base64(JSON {algorithm, challenge, number, salt, signature}) as the
    checkout's ``challenge``."""
    return runtime.challenges.issue()


@router.post("/checkouts", response_model=CheckoutOut, status_code=status.HTTP_201_CREATED)
async def create_checkout(body: CheckoutIn, request: Request,
                          runtime: RuntimeDep) -> dict[str, Any]:
    """Holds the codes and starts the payment; pay with ``payment`` before ``expires_at``.
    Errors: SKU_NOT_FOUND, QUANTITY_NOT_ALLOWED, OUT_OF_STOCK, RATE_LIMITED (caps per email, IP
    and token; checkouts per IP), CHALLENGE_FAILED, CHANNEL_NOT_FOUND, CHANNEL_DISABLED,
    SANDBOX_IN_PRODUCTION, INVALID_ARGUMENT (email)."""
    result = await runtime.checkout.start(CheckoutRequest(
        sku=body.sku, quantity=body.quantity, email=body.email, channel_id=body.channel_id,
        ip=client_ip(request), password=body.password, challenge=body.challenge,
        buyer_token=request.headers.get("x-order-token"), locale=body.locale))
    return {"order": retail_order_json(result.order), "token": result.token,
            "payment": payment_json(result.payment)}


@router.get("/orders/{order_id}", response_model=RetailOrderOut)
async def order(order_id: OrderPath, runtime: RuntimeDep,
                x_order_token: OrderToken = None) -> dict[str, Any]:
    """The order its token opens. Errors: ORDER_NOT_FOUND (also for a wrong token)."""
    return retail_order_json(await runtime.checkout.order(order_id, x_order_token))


@router.get("/orders/{order_id}/payment", response_model=PaymentOut)
async def order_payment(order_id: OrderPath, runtime: RuntimeDep,
                        x_order_token: OrderToken = None) -> dict[str, Any]:
    """How to pay the pending order. Errors: ORDER_NOT_FOUND, ORDER_NOT_PAYABLE."""
    _, payment = await runtime.checkout.payment(order_id, x_order_token)
    return payment_json(payment)


@router.post("/orders/{order_id}/reveal", response_model=CodesOut)
async def reveal(order_id: OrderPath, body: RevealIn, request: Request, runtime: RuntimeDep,
                 x_order_token: OrderToken = None) -> dict[str, Any]:
    """The delivered order's codes: in full the first time the API shows them (or with
    ``full``, audited), masked after. Errors: ORDER_NOT_FOUND, ORDER_NOT_DELIVERED,
    RATE_LIMITED."""
    view, codes, full = await runtime.checkout.codes(
        order_id, x_order_token, full=body.full, channel="api", ip=client_ip(request))
    return {"order": retail_order_json(view), "full": full,
            "codes": [{"code": c.code, "pin": c.pin, "masked": c.masked} for c in codes]}


@router.post("/lookup", response_model=LookupOut)
async def lookup(body: LookupIn, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """The orders of an email whose order password this is, each with a new token. Errors:
    ORDER_NOT_FOUND (the same for every miss), RATE_LIMITED (per IP and per order)."""
    hits = await runtime.checkout.lookup(body.email, body.password, ip=client_ip(request))
    return {"orders": [{"order_id": order_id, "token": token} for order_id, token in hits]}
