"""The buyer's order pages: the order (status; once delivered, the codes large with a copy
button and the product's instructions, masked after the first view), the audited reveal, the
resend, the state the payment page polls, and the lookup (email + order password, or the
order's token; never by order number or email alone)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from cardsvc.errors import CardsvcError, ErrorCode
from web.errors import status_of
from web.flash import add_flash
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.store.common import (
    client_ip,
    error_text,
    open_order,
    remember_token,
    runtime_of,
    shop_context,
)
from web.pages.store.shop import qr_svg
from web.render import render_page, renderer_of

LOOKUP_FIELDS = (
    TextField("email", max_chars=254, required=False),
    TextField("password", max_chars=256, required=False),
    TextField("token", max_chars=128, required=False),
)


async def order_page(request: Request) -> Response:
    """The order. A mail link's ``?t=`` token is checked, kept in the cookie and dropped from
    the address (so it never lingers in the history or a referrer)."""
    order_id = request.path_params["order_id"]
    link_token = request.query_params.get("t")
    if link_token:
        order = await runtime_of(request).checkout.order(order_id, link_token[:128])
        response = RedirectResponse(f"/orders/{order.order_id}", status_code=303)
        remember_token(response, request, link_token[:128])
        return response
    return await _render_order(request, order_id, full=False)


async def reveal(request: Request) -> Response:
    """Shows the codes in full again (an audited action)."""
    return await _render_order(request, request.path_params["order_id"], full=True)


async def _render_order(request: Request, order_id: str, *, full: bool) -> Response:
    runtime = runtime_of(request)
    order, token = await open_order(request, order_id)
    codes: list[object] = []
    shown_full = False
    claim_qr = None
    claim_url = None
    if order.status == "delivered":
        order, shown, shown_full = await runtime.checkout.codes(
            order_id, token, full=full, channel="page", ip=client_ip(request))
        codes = list(shown)
        claim_url = runtime.checkout.claim_url(order_id)
        claim_qr = qr_svg(claim_url)
    return await render_page(request, "store/order.html", {
        **shop_context(request), "order": order, "codes": codes, "full": shown_full,
        "claim_qr": claim_qr, "claim_url": claim_url})


async def resend(request: Request) -> Response:
    """Sends the delivery mail again, to the order's address (rate-limited, audited)."""
    order_id = request.path_params["order_id"]
    _, token = await open_order(request, order_id)
    renderer = renderer_of(request)
    response = RedirectResponse(f"/orders/{order_id}", status_code=303)
    try:
        await runtime_of(request).checkout.resend(order_id, token)
    except CardsvcError as error:
        if error.code != ErrorCode.RATE_LIMITED:
            raise
        add_flash(response, request, signer=renderer.signer, cookies=renderer.cookies,
                  text=error_text(error), level="warning")
        return response
    add_flash(response, request, signer=renderer.signer, cookies=renderer.cookies,
              text=gettext("The mail is on its way to the address of the order."),
              level="success")
    return response


async def state(request: Request) -> Response:
    """``{"state": status}`` for the payment page's polling."""
    order, _ = await open_order(request, request.path_params["order_id"])
    return JSONResponse({"state": order.status}, headers={"cache-control": "no-store"})


async def lookup_page(request: Request) -> Response:
    return await render_page(request, "store/lookup.html",
                             {**shop_context(request), "form": None, "error": None})


async def lookup(request: Request) -> Response:
    """Finds orders by email + order password (each gets a new token in the cookie) or by an
    order token; every miss is the same "not found"."""
    form = await read_form(request, LOOKUP_FIELDS)
    checkout = runtime_of(request).checkout
    ip = client_ip(request)
    try:
        if form.value("token"):
            order_id = await checkout.lookup_token(form.value("token"), ip=ip)
            hits = [(order_id, form.value("token"))]
        else:
            hits = await checkout.lookup(form.value("email"), form.value("password"), ip=ip)
    except CardsvcError as error:
        if error.code not in (ErrorCode.ORDER_NOT_FOUND, ErrorCode.RATE_LIMITED):
            raise
        return await render_page(request, "store/lookup.html", {
            **shop_context(request), "form": form,
            "error": {"code": error.code.value, "text": error_text(error)}},
            status=status_of(error.code))
    response = RedirectResponse(f"/orders/{hits[0][0]}", status_code=303)
    remember_token(response, request, *(token for _, token in hits))
    return response
