"""Retail orders in the console: the storefront's orders newest first, by state
(``sales.Checkout.list_orders``, a keyset page wrapped in the paging convention), with product,
amount, buyer's email and payment channel. Refunds of retail orders go through the payment
provider (``POST /v1/retail-orders/{id}/refund``). Scope ``masked_views``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.paging import decode_cursor, page_of
from web.pages.common import query_cursor, query_text
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


ROUTES = [Route("/console/retail-orders", retail_orders, methods=["GET"],
                name="console_retail_orders")]
