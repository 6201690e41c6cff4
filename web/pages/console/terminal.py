"""The terminal page (网页端核销): a staff or terminal user verifies a code typed or scanned
(the browser's camera through ``BarcodeDetector`` where it exists: ``static/js/terminal.js``;
``Permissions-Policy`` allows the camera for this origin only), sees its product, validity and
uses left, then redeems it. Both go through ``redemption.Terminals`` as the API's terminal
routes do (the risk guard's limits and brute-force lockouts, durable before answering), with
the user as the terminal. A refused redemption shows why; ``ALREADY_REDEEMED`` shows who
redeemed it and when.

The code is posted, never put in a URL. The redeem form carries a request id rendered with the
verification, so a double click or a reload redeems once (the core's idempotency).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.access import actor_names
from cardsvc.errors import CardsvcError, ErrorCode
from web.forms import TextField, read_form
from web.pages.common import error_text, form_token
from web.render import render_page
from web.sessions import Visitor, client_ip, console_page, runtime_of

CODE_FIELDS = (TextField("code", 256), TextField("pin", 64, required=False))
REDEEM_FIELDS = (*CODE_FIELDS, TextField("request_id", 128))
TERMINAL_REFUSALS = {
    ErrorCode.CODE_NOT_FOUND, ErrorCode.INVALID_CODE, ErrorCode.INVALID_PIN,
    ErrorCode.PIN_MISMATCH, ErrorCode.ALREADY_REDEEMED, ErrorCode.EXPIRED,
    ErrorCode.NOT_YET_VALID, ErrorCode.FROZEN, ErrorCode.VOID, ErrorCode.NOT_SOLD,
    ErrorCode.CODE_LOCKED, ErrorCode.RATE_LIMITED, ErrorCode.REDEMPTION_ROLLED_BACK,
}


@console_page("verify")
async def terminal(request: Request, me: Visitor) -> Response:
    return await render_page(request, "console/terminal.html", {
        "result": None, "code": "", "pin": "", "me": me})


async def _refusal(request: Request, error: CardsvcError) -> dict[str, Any]:
    """What the page shows of a refusal; for ALREADY_REDEEMED, who (by name) and when."""
    shown: dict[str, Any] = {"code": error.code.value, "text": error_text(error)}
    if error.code == ErrorCode.ALREADY_REDEEMED:
        terminal_id = str(error.details.get("terminal", ""))
        names = await asyncio.to_thread(actor_names, runtime_of(request).db, [terminal_id])
        shown["by"] = names.get(terminal_id, terminal_id)
        shown["at_ms"] = error.details.get("redeemed_at_ms")
    return shown


@console_page("verify")
async def verify(request: Request, me: Visitor) -> Response:
    form = await read_form(request, CODE_FIELDS)
    context: dict[str, Any] = {"code": form.value("code"), "pin": form.value("pin"),
                               "me": me, "result": None}
    if not form.ok:
        return await render_page(request, "console/terminal.html", context, status=422)
    runtime = runtime_of(request)
    try:
        found = await runtime.terminals.verify(me.principal, client_ip(request),
                                               form.value("code"), form.value("pin") or None)
    except CardsvcError as error:
        if error.code not in TERMINAL_REFUSALS:
            raise
        context["result"] = {"kind": "refused", **await _refusal(request, error)}
        return await render_page(request, "console/terminal.html", context, status=409)
    sku = await asyncio.to_thread(runtime.catalog.get_sku, found.sku)
    context["result"] = {"kind": "verified", "status": found.status, "sku": found.sku,
                         "name": sku["name"], "uses_left": found.uses_left,
                         "valid_from": found.valid_from, "valid_until": found.valid_until,
                         "request_id": form_token(), "may_redeem": me.may("redeem")}
    return await render_page(request, "console/terminal.html", context)


@console_page("redeem")
async def redeem(request: Request, me: Visitor) -> Response:
    form = await read_form(request, REDEEM_FIELDS)
    context: dict[str, Any] = {"code": "", "pin": "", "me": me, "result": None}
    if not form.ok:
        return await render_page(request, "console/terminal.html", context, status=422)
    runtime = runtime_of(request)
    try:
        done = await runtime.terminals.redeem(me.principal, client_ip(request),
                                              form.value("code"), form.value("pin") or None,
                                              form.value("request_id"))
    except CardsvcError as error:
        if error.code not in TERMINAL_REFUSALS:
            raise
        context["result"] = {"kind": "refused", **await _refusal(request, error)}
        return await render_page(request, "console/terminal.html", context, status=409)
    context["result"] = {"kind": "redeemed", "sku": done.sku, "uses_left": done.uses_left,
                         "at_ms": done.redeemed_at_ms, "redemption_id": done.redemption_id}
    return await render_page(request, "console/terminal.html", context)


ROUTES = [
    Route("/console/terminal", terminal, methods=["GET"], name="console_terminal"),
    Route("/console/terminal/verify", verify, methods=["POST"], name="console_terminal_verify"),
    Route("/console/terminal/redeem", redeem, methods=["POST"], name="console_terminal_redeem"),
]
