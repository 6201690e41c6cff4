"""Alerts in the console: the conditions true now and the history of notices (fired, repeated
after the cooldown, resolved, events), read through ``reports.Alerts``. Any staff member whose
work they concern (catalog, ledger, withdrawals or stock) sees them.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from web.pages.common import query_cursor
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

ALERT_SCOPES = ("catalog", "ledger", "withdrawals", "stock")


@console_page()
async def alerts(request: Request, me: Visitor) -> Response:
    if not any(me.may(scope) for scope in ALERT_SCOPES):
        me.principal.require("catalog")
    runtime = runtime_of(request)
    shown = await asyncio.to_thread(runtime.alerts.page, me.principal,
                                    cursor=query_cursor(request))
    return await render_page(request, "console/alerts.html", {
        "firing": shown.firing, "events": shown.events.items, "next_cursor": shown.events.next,
        "first_page": query_cursor(request) is not None, "area": "console"})


ROUTES = [Route("/console/alerts", alerts, methods=["GET"], name="console_alerts")]
