"""Orders in the console: every agent's orders newest first, filtered by agent, status and day
range (``sales.Orders.list_orders``, never with codes), one order with its codes masked
(``Orders.get`` as the platform sees it), and asking for a refund, which a second staff
member approves and runs on the approvals page (maker-checker, ``refund``). Scope
``masked_views``; asking for a refund ``ledger``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from cardsvc.sales import ORDER_STATUSES
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import (
    day_range_ms,
    error_text,
    parse_date,
    query_cursor,
    query_text,
    redirect,
)
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

REFUND_FIELDS = (TextField("reason", 200),)


@console_page("masked_views")
async def order_list(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    status = query_text(request, "status", 16)
    if status not in ORDER_STATUSES:
        status = None
    agent_id = query_text(request, "agent_id", 64)
    since, until = parse_date(query_text(request, "since", 10)), parse_date(
        query_text(request, "until", 10))
    since_ms = None if since is None else day_range_ms(since, since, runtime.timezone)[0]
    until_ms = None if until is None else day_range_ms(until, until, runtime.timezone)[1]
    try:
        page = await runtime.orders.list_orders(
            actor_agent_id=None, agent_id=agent_id, status=status, since_ms=since_ms,
            until_ms=until_ms, cursor=query_cursor(request))
    except CardsvcError as error:
        return redirect(request, "/console/orders", flash=error_text(error), level="error")
    return await render_page(request, "console/orders.html", {
        "items": page.items, "next_cursor": page.next, "statuses": ORDER_STATUSES,
        "query": {"status": status or "", "agent_id": agent_id or "",
                  "since": since.isoformat() if since else "",
                  "until": until.isoformat() if until else ""},
        "first_page": query_cursor(request) is not None})


@console_page("masked_views")
async def order_detail(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    order = await runtime.orders.get(request.path_params["order_id"], agent_id=None,
                                     actor=me.actor)
    return await render_page(request, "console/order.html", {"order": order, "me": me})


@console_page("ledger")
async def ask_refund(request: Request, me: Visitor) -> Response:
    order_id = request.path_params["order_id"]
    form = await read_form(request, REFUND_FIELDS)
    path = f"/console/orders/{order_id}"
    if not form.ok:
        return redirect(request, path, flash=gettext("Say why (a reason is kept with the "
                                                     "request)."), level="error")
    runtime = runtime_of(request)
    try:
        info, _ = await asyncio.to_thread(runtime.approvals.request, me.principal, "refund",
                                          "order", order_id, form.value("reason"))
    except CardsvcError as error:
        return redirect(request, path, flash=error_text(error), level="error")
    return redirect(request, f"/console/approvals/{info.approval_id}",
                    flash=gettext("Asked for approval. Another staff member approves it on the "
                                  "approvals page."))


ROUTES = [
    Route("/console/orders", order_list, methods=["GET"], name="console_orders"),
    Route("/console/orders/{order_id}", order_detail, methods=["GET"], name="console_order"),
    Route("/console/orders/{order_id}/refund", ask_refund, methods=["POST"],
          name="console_order_refund"),
]
