"""Risk in the console: the brute-force lockouts in force (API keys and addresses locked out
for failed lookups, ``access.AccessGate.lockouts``) with a button that lifts one (audited
``risk.unlock``). Scope ``admin``. (Codes under a PIN lockout are listed by the API's
``GET /v1/codes/locked``.)
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, query_cursor, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

LIFT_FIELDS = (TextField("subject", 200),)


@console_page("admin")
async def risk(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.gate.lockouts, cursor=query_cursor(request))
    return await render_page(request, "console/risk.html", {
        "items": page.items, "next_cursor": page.next,
        "first_page": query_cursor(request) is not None})


@console_page("admin")
async def lift(request: Request, me: Visitor) -> Response:
    form = await read_form(request, LIFT_FIELDS)
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.gate.lift, form.value("subject"), actor=me.actor)
    except CardsvcError as error:
        return redirect(request, "/console/risk", flash=error_text(error), level="error")
    return redirect(request, "/console/risk", flash=gettext("The lockout is lifted."))


ROUTES = [
    Route("/console/risk", risk, methods=["GET"], name="console_risk"),
    Route("/console/risk/lift", lift, methods=["POST"], name="console_risk_lift"),
]
