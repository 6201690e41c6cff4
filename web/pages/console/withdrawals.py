"""The withdrawals queue: agents' requests newest first by status (``money.AgentMoney
.list_withdrawals``), approving or rejecting one (``decide_withdrawal``), and asking to pay an
approved one out, which a second staff member approves and runs on the approvals page
(maker-checker, ``withdrawal_payout``). Scope ``withdrawals``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from cardsvc.money import WITHDRAWAL_STATUSES
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, query_cursor, query_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

NOTE_FIELDS = (TextField("note", 200, required=False),)
PAY_FIELDS = (TextField("reason", 200),)
QUEUE = "/console/withdrawals"


@console_page("withdrawals")
async def queue(request: Request, me: Visitor) -> Response:
    status = query_text(request, "status", 16) or "requested"
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.money.list_withdrawals, actor_agent_id=None,
                                   status=None if status == "all" else status,
                                   cursor=query_cursor(request))
    return await render_page(request, "console/withdrawals.html", {
        "items": page.items, "next_cursor": page.next, "status": status,
        "statuses": WITHDRAWAL_STATUSES, "first_page": query_cursor(request) is not None})


async def _decide(request: Request, me: Visitor, decision: str) -> Response:
    form = await read_form(request, NOTE_FIELDS)
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.money.decide_withdrawal,
                                request.path_params["withdrawal_id"], decision, actor=me.actor,
                                note=form.value("note") or None)
    except CardsvcError as error:
        return redirect(request, QUEUE, flash=error_text(error), level="error")
    return redirect(request, QUEUE, flash=gettext("Saved."))


@console_page("withdrawals")
async def approve(request: Request, me: Visitor) -> Response:
    return await _decide(request, me, "approve")


@console_page("withdrawals")
async def reject(request: Request, me: Visitor) -> Response:
    return await _decide(request, me, "reject")


@console_page("withdrawals")
async def ask_payout(request: Request, me: Visitor) -> Response:
    withdrawal_id = request.path_params["withdrawal_id"]
    form = await read_form(request, PAY_FIELDS)
    if not form.ok:
        return redirect(request, QUEUE, flash=gettext("Say why (a reason is kept with the "
                                                      "request)."), level="error")
    runtime = runtime_of(request)
    try:
        info, _ = await asyncio.to_thread(runtime.approvals.request, me.principal,
                                          "withdrawal_payout", "withdrawal", withdrawal_id,
                                          form.value("reason"))
    except CardsvcError as error:
        return redirect(request, QUEUE, flash=error_text(error), level="error")
    return redirect(request, f"/console/approvals/{info.approval_id}",
                    flash=gettext("Asked for approval. Another staff member approves it on the "
                                  "approvals page."))


ROUTES = [
    Route(QUEUE, queue, methods=["GET"], name="console_withdrawals"),
    Route(QUEUE + "/{withdrawal_id}/approve", approve, methods=["POST"],
          name="console_withdrawal_approve"),
    Route(QUEUE + "/{withdrawal_id}/reject", reject, methods=["POST"],
          name="console_withdrawal_reject"),
    Route(QUEUE + "/{withdrawal_id}/pay", ask_payout, methods=["POST"],
          name="console_withdrawal_pay"),
]
