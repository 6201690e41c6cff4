"""Finding a code and its whole story: search by the full code (posted, never in a URL, and
looked up through the core's keyed hash), by the last 4 characters and the SKU (the keyed
suffix digest), by order or by batch; the trace timeline of one code on one page (audited);
freeze, unfreeze and void it with a reason. Scope ``trace``; freezing ``freeze``; voiding
``stock``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError, ErrorCode
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import (
    error_text,
    int_field,
    path_int,
    query_cursor,
    query_text,
    redirect,
    sku_options,
)
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

FIND_FIELDS = (TextField("code", 256),)
STATE_FIELDS = (TextField("reason", 200),)
ACTION_SCOPES = {"freeze": "freeze", "unfreeze": "freeze", "void": "stock"}


@console_page("trace")
async def search(request: Request, me: Visitor) -> Response:
    """The search forms, and the results of a last-4, order or batch search."""
    runtime = runtime_of(request)
    sku, last4 = query_text(request, "sku", 64), query_text(request, "last4", 16)
    order_id, batch_text = query_text(request, "order_id", 64), query_text(request, "batch_id")
    cursor = query_cursor(request)
    page, problem = None, None
    try:
        if sku and last4:
            page = await asyncio.to_thread(runtime.codes.by_suffix, me.principal, sku, last4,
                                           cursor=cursor)
        elif order_id:
            page = await asyncio.to_thread(runtime.codes.by_order, me.principal, order_id,
                                           cursor=cursor)
        elif batch_text:
            batch_id = int_field(batch_text, minimum=1, maximum=(1 << 31) - 1)
            if batch_id is None:
                problem = gettext("Give a batch number.")
            else:
                page = await asyncio.to_thread(runtime.codes.by_batch, me.principal, batch_id,
                                               cursor=cursor)
    except CardsvcError as error:
        if error.code == ErrorCode.FORBIDDEN:
            raise
        problem = error_text(error)
    skus = await asyncio.to_thread(runtime.catalog.list_skus)
    return await render_page(request, "console/codes.html", {
        "page": page, "problem": problem, "sku_options": sku_options(skus),
        "query": {"sku": sku or "", "last4": last4 or "", "order_id": order_id or "",
                  "batch_id": batch_text or ""}, "first_page": cursor is not None})


@console_page("trace")
async def find(request: Request, me: Visitor) -> Response:
    """The full code, posted: to its trace (by id, so the code never reaches a URL)."""
    form = await read_form(request, FIND_FIELDS)
    runtime = runtime_of(request)
    try:
        code_id = await asyncio.to_thread(runtime.codes.by_code, me.principal,
                                          form.value("code"))
    except CardsvcError as error:
        if error.code not in (ErrorCode.CODE_NOT_FOUND, ErrorCode.INVALID_CODE):
            raise
        return redirect(request, "/console/codes", flash=error_text(error), level="error")
    return redirect(request, f"/console/codes/{code_id}")


def _code_id(request: Request) -> int:
    return path_int(request, "code_id")


@console_page("trace")
async def trace(request: Request, me: Visitor) -> Response:
    """One code's story: facts and one timeline (this read is audited as ``code.trace``)."""
    story = await asyncio.to_thread(runtime_of(request).codes.trace, me.principal,
                                    _code_id(request))
    return await render_page(request, "console/code.html", {"story": story, "me": me})


async def _change(request: Request, me: Visitor, action: str) -> Response:
    me.principal.require(ACTION_SCOPES[action])
    code_id = _code_id(request)
    form = await read_form(request, STATE_FIELDS)
    path = f"/console/codes/{code_id}"
    if not form.ok:
        return redirect(request, path, flash=gettext("Say why (it is kept in the audit log)."),
                        level="error")
    try:
        result = await asyncio.to_thread(runtime_of(request).catalog.set_state, action,
                                         code_id=code_id, actor=me.actor,
                                         reason=form.value("reason"))
    except CardsvcError as error:
        return redirect(request, path, flash=error_text(error), level="error")
    if not result["changed"]:
        return redirect(request, path, flash=gettext("Nothing changed: the code is not in a "
                                                     "state this applies to."), level="info")
    return redirect(request, path, flash=gettext("Done."))


@console_page()
async def freeze(request: Request, me: Visitor) -> Response:
    return await _change(request, me, "freeze")


@console_page()
async def unfreeze(request: Request, me: Visitor) -> Response:
    return await _change(request, me, "unfreeze")


@console_page()
async def void(request: Request, me: Visitor) -> Response:
    return await _change(request, me, "void")


ROUTES = [
    Route("/console/codes", search, methods=["GET"], name="console_codes"),
    Route("/console/codes/find", find, methods=["POST"], name="console_code_find"),
    Route("/console/codes/{code_id}", trace, methods=["GET"], name="console_code"),
    Route("/console/codes/{code_id}/freeze", freeze, methods=["POST"],
          name="console_code_freeze"),
    Route("/console/codes/{code_id}/unfreeze", unfreeze, methods=["POST"],
          name="console_code_unfreeze"),
    Route("/console/codes/{code_id}/void", void, methods=["POST"], name="console_code_void"),
]
