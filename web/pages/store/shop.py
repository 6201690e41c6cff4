"""The shop's pages: home (products by category), a product with its checkout form, the
checkout itself, the payment page, and the sandbox provider's pay page.

Each route reads its input, makes one domain call (``cardsvc.sales.Checkout`` or the shop's
catalog) and renders or redirects; refusals of the checkout are shown on the product page with
their code (``data-error-code``) and a sentence.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import segno
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsvc.errors import CardsvcError, ErrorCode, invalid
from cardsvc.payments import SCENARIOS
from cardsvc.sales import CheckoutRequest
from web.errors import status_of
from web.forms import TextField, read_form
from web.i18n import active
from web.pages.store.common import (
    client_ip,
    error_text,
    open_order,
    remember_token,
    runtime_of,
    shop_context,
    tokens_of,
)
from web.render import render_page

CHECKOUT_FIELDS = (
    TextField("sku", max_chars=64),
    TextField("quantity", max_chars=4),
    TextField("email", max_chars=254),
    TextField("password", max_chars=256, required=False),
    TextField("channel_id", max_chars=64),
    TextField("challenge", max_chars=2000, required=False),
)
SANDBOX_FIELDS = (
    TextField("out_trade_no", max_chars=32),
    TextField("scenario", max_chars=32),
    TextField("events", max_chars=32, required=False),
    TextField("duplicates", max_chars=2, required=False),
    TextField("delay_s", max_chars=4, required=False),
    TextField("tamper_amount", max_chars=3, required=False),
    TextField("return_url", max_chars=1024, required=False),
)
QR_SCALE = 5


async def home(request: Request) -> Response:
    """Products on sale, grouped by category, with price and stock level."""
    shop = runtime_of(request).shop
    groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for item in shop.skus():
        groups.setdefault(item.category or "", []).append(
            {"item": item, "stock": shop.stock(item)})
    return await render_page(request, "store/home.html",
                             {**shop_context(request), "groups": groups})


async def product(request: Request) -> Response:
    """A product and its checkout form."""
    return await _product_page(request, request.path_params["sku"], form=None, error=None)


async def _product_page(request: Request, sku: str, *, form: Any, error: CardsvcError | None,
                        status: int = 200) -> Response:
    runtime = runtime_of(request)
    item = runtime.shop.get(sku)
    context = {
        **shop_context(request), "item": item, "stock": runtime.shop.stock(item),
        "channels": runtime.channels.storefront(), "form": form,
        "challenge_on": runtime.challenges.enabled,
        "error": None if error is None else {"code": error.code.value,
                                             "text": error_text(error)},
    }
    return await render_page(request, "store/product.html", context, status=status)


async def checkout(request: Request) -> Response:
    """Starts the checkout; on success the order's token goes into the ``orders`` cookie and
    the buyer goes to the payment page."""
    form = await read_form(request, CHECKOUT_FIELDS)
    sku = form.value("sku")
    if not form.ok:
        return await _product_page(request, sku, form=form, error=None, status=422)
    tokens = tokens_of(request)
    try:
        quantity = int(form.value("quantity")) if form.value("quantity").isdigit() else 0
        result = await runtime_of(request).checkout.start(CheckoutRequest(
            sku=sku, quantity=quantity, email=form.value("email"),
            channel_id=form.value("channel_id"), ip=client_ip(request),
            password=form.value("password") or None,
            challenge=form.value("challenge") or None,
            buyer_token=tokens[-1] if tokens else None, locale=active().locale))
    except CardsvcError as error:
        if error.code == ErrorCode.SKU_NOT_FOUND:
            raise
        return await _product_page(request, sku, form=form, error=error,
                                   status=status_of(error.code))
    response = RedirectResponse(f"/pay/{result.order.order_id}", status_code=303)
    remember_token(response, request, result.token)
    return response


async def pay(request: Request) -> Response:
    """How to pay: a button to the provider's page, or its QR code; the countdown to the
    hold's expiry; the page polls the order's state and moves on once it is paid."""
    order_id = request.path_params["order_id"]
    order, token = await open_order(request, order_id)
    if order.status != "pending":
        return RedirectResponse(f"/orders/{order_id}", status_code=303)
    _, payment = await runtime_of(request).checkout.payment(order_id, token)
    qr = None
    if payment.kind == "qr" and payment.qr_text:
        qr = qr_svg(payment.qr_text)
    return await render_page(request, "store/pay.html", {
        **shop_context(request), "order": order, "payment": payment, "qr": qr})


def qr_svg(text: str) -> Markup:
    """``text`` as an inline SVG QR code (presentation attributes only: the CSP forbids style
    attributes, not these)."""
    svg = segno.make(text, error="m").svg_inline(scale=QR_SCALE, dark="#1d2430", light="#ffffff",
                                                 svgclass="qr-svg")
    return Markup(svg.replace("<svg ", '<svg role="img" aria-hidden="true" ', 1))


async def sandbox_page(request: Request) -> Response:
    """The sandbox provider's pay page (where the sandbox channel sends the buyer)."""
    params = request.query_params
    facts = {name: params.get(name, "")[:200] for name in
             ("out_trade_no", "amount_minor", "currency", "subject", "expires_at_ms",
              "return_url")}
    amount = facts["amount_minor"]
    return await render_page(request, "store/sandbox_pay.html", {
        **shop_context(request), "facts": facts, "scenarios": list(SCENARIOS),
        "amount_minor": int(amount) if amount.isdigit() else None,
        "currency": facts["currency"] if len(facts["currency"]) == 3 else "CNY"})


async def sandbox_submit(request: Request) -> Response:
    """Pays (or fails) the sandbox attempt: the simulator sends its signed callbacks, then the
    buyer returns to the shop."""
    form = await read_form(request, SANDBOX_FIELDS)
    if not form.ok:
        raise invalid("out_trade_no", "the sandbox form is incomplete")
    delay = form.value("delay_s")
    duplicates = form.value("duplicates")
    await runtime_of(request).checkout.simulate_sandbox(
        form.value("out_trade_no"),
        scenario=form.value("events") if form.value("scenario") == "custom"
        else form.value("scenario"),
        duplicates=int(duplicates) if duplicates.isdigit() else 0,
        delay_ms=int(delay) * 1000 if delay.isdigit() else 0,
        tamper_amount=form.value("tamper_amount") == "on")
    back = urlsplit(form.value("return_url")).path
    target = back if back.startswith("/orders/") and len(back) <= 80 else "/"
    return RedirectResponse(target, status_code=303)
