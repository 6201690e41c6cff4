"""Retail orders in the console: the storefront's orders newest first, by state
(``sales.Checkout.list_orders``, a keyset page wrapped in the paging convention), with product,
amount, buyer's email and payment channel; one order (``Checkout.admin_order``: no codes, they
leave only through the buyer's links) with sending its mail again (``Checkout.resend``, scope
``resend``), a new address (``Checkout.change_email``, scope ``resend``) and asking for a
refund, which a second staff member approves and runs on the approvals page (maker-checker,
``refund`` of a ``retail_order``; the refund goes back through the payment provider). Scope
``masked_views``; asking for a refund ``ledger``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from cardsvc.paging import decode_cursor, page_of
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, query_cursor, query_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

PAGE_SIZE = 50
STATES = ("pending", "paid", "delivered", "expired", "failed", "paid_unfulfillable", "refunded")


@console_page("masked_views")
async def retail_orders(request: Request, me: Visitor) -> Response:
    status = query_text(request, "status", 24)
    if status not in STATES:
        status = None
    after = decode_cursor(query_cursor(request), (int, str))
    rows = await runtime_of(request).checkout.list_orders(
        status=status, after=None if after is None else (int(after[0]), str(after[1])),
        limit=PAGE_SIZE)
    page = page_of(rows, PAGE_SIZE, key=lambda view: (view.created_at_ms, view.order_id))
    return await render_page(request, "console/retail_orders.html", {
        "items": page.items, "next_cursor": page.next, "status": status, "statuses": STATES,
        "first_page": after is not None})


REFUND_FIELDS = (TextField("reason", 200),)
EMAIL_FIELDS = (TextField("email", 254),)
REFUNDABLE = ("delivered", "paid_unfulfillable")


def _path(order_id: str) -> str:
    return f"/console/retail-orders/{order_id}"


@console_page("masked_views")
async def retail_order(request: Request, me: Visitor) -> Response:
    order = await runtime_of(request).checkout.admin_order(request.path_params["order_id"])
    return await render_page(request, "console/retail_order.html", {
        "order": order, "me": me, "refundable": order.status in REFUNDABLE})


@console_page("resend")
async def resend(request: Request, me: Visitor) -> Response:
    order_id = request.path_params["order_id"]
    await read_form(request, ())
    try:
        await runtime_of(request).checkout.resend(order_id, None, actor=me.actor)
    except CardsvcError as error:
        return redirect(request, _path(order_id), flash=error_text(error), level="error")
    return redirect(request, _path(order_id), flash=gettext("The delivery mail is queued again."))


@console_page("resend")
async def change_email(request: Request, me: Visitor) -> Response:
    order_id = request.path_params["order_id"]
    form = await read_form(request, EMAIL_FIELDS)
    if not form.ok:
        return redirect(request, _path(order_id), flash=gettext("Give an email address."),
                        level="error")
    try:
        await runtime_of(request).checkout.change_email(order_id, form.value("email"),
                                                        actor=me.actor)
    except CardsvcError as error:
        return redirect(request, _path(order_id), flash=error_text(error), level="error")
    return redirect(request, _path(order_id), flash=gettext("The address is changed."))


@console_page("ledger")
async def ask_refund(request: Request, me: Visitor) -> Response:
    order_id = request.path_params["order_id"]
    form = await read_form(request, REFUND_FIELDS)
    if not form.ok:
        return redirect(request, _path(order_id), flash=gettext(
            "Say why (a reason is kept with the request)."), level="error")
    runtime = runtime_of(request)
    try:
        await runtime.checkout.admin_order(order_id)
        info, _ = await asyncio.to_thread(runtime.approvals.request, me.principal, "refund",
                                          "retail_order", order_id, form.value("reason"))
    except CardsvcError as error:
        return redirect(request, _path(order_id), flash=error_text(error), level="error")
    return redirect(request, f"/console/approvals/{info.approval_id}",
                    flash=gettext("Asked for approval. Another staff member approves it on the "
                                  "approvals page."))


ROUTES = [
    Route("/console/retail-orders", retail_orders, methods=["GET"],
          name="console_retail_orders"),
    Route("/console/retail-orders/{order_id}", retail_order, methods=["GET"],
          name="console_retail_order"),
    Route("/console/retail-orders/{order_id}/resend", resend, methods=["POST"],
          name="console_retail_resend"),
    Route("/console/retail-orders/{order_id}/email", change_email, methods=["POST"],
          name="console_retail_email"),
    Route("/console/retail-orders/{order_id}/refund", ask_refund, methods=["POST"],
          name="console_retail_refund"),
]
