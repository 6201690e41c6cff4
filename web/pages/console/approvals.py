"""Maker-checker in the console: the queue of requests the visitor may check, one request with
its buttons (approve and run, approve, reject, cancel, run, download an approved export), and
the owner's waivers. Each button is one domain call (``Approvals`` or ``ApprovedActions``),
which refuses the maker as checker and a run by anyone but the maker or checker.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cardsvc.access import APPROVAL_ACTIONS
from cardsvc.errors import CardsvcError
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, query_cursor, query_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

NOTE_FIELDS = (TextField("note", 200, required=False),)
WAIVER_FIELDS = (TextField("action", 32), TextField("waived", 3, required=False))
APPROVER_SCOPES = tuple(sorted({action.scope for action in APPROVAL_ACTIONS.values()}))


def _may_check(me: Visitor) -> bool:
    return any(me.may(scope) for scope in APPROVER_SCOPES)


@console_page()
async def queue(request: Request, me: Visitor) -> Response:
    if not _may_check(me):
        me.principal.require("withdrawals")
    status = query_text(request, "status", 16) or "pending"
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.approvals.list, me.principal,
                                   status=None if status == "all" else status,
                                   cursor=query_cursor(request))
    return await render_page(request, "console/approvals.html", {
        "items": page.items, "next_cursor": page.next, "status": status, "me": me,
        "first_page": query_cursor(request) is not None})


@console_page()
async def detail(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    approval = await asyncio.to_thread(runtime.approvals.get, me.principal,
                                       request.path_params["approval_id"])
    return await render_page(request, "console/approval.html", {"a": approval, "me": me})


async def _act(request: Request, me: Visitor, what: str) -> Response:
    runtime = runtime_of(request)
    approval_id = request.path_params["approval_id"]
    form = await read_form(request, NOTE_FIELDS)
    note = form.value("note") or None
    path = f"/console/approvals/{approval_id}"
    try:
        if what == "approve_and_run":
            await runtime.approved.approve_and_run(me.principal, approval_id, note)
            message = gettext("Approved and done.")
        elif what == "run":
            await runtime.approved.run(me.principal, approval_id)
            message = gettext("Done.")
        elif what == "approve":
            await asyncio.to_thread(runtime.approvals.approve, me.principal, approval_id, note)
            message = gettext("Approved. Its maker can run it now.")
        elif what == "reject":
            await asyncio.to_thread(runtime.approvals.reject, me.principal, approval_id, note)
            message = gettext("Rejected.")
        else:
            await asyncio.to_thread(runtime.approvals.cancel, me.principal, approval_id)
            message = gettext("Your request is withdrawn.")
    except CardsvcError as error:
        return redirect(request, path, flash=error_text(error), level="error")
    return redirect(request, path, flash=message)


@console_page()
async def approve_and_run(request: Request, me: Visitor) -> Response:
    return await _act(request, me, "approve_and_run")


@console_page()
async def approve(request: Request, me: Visitor) -> Response:
    return await _act(request, me, "approve")


@console_page()
async def reject(request: Request, me: Visitor) -> Response:
    return await _act(request, me, "reject")


@console_page()
async def cancel(request: Request, me: Visitor) -> Response:
    return await _act(request, me, "cancel")


@console_page()
async def run(request: Request, me: Visitor) -> Response:
    return await _act(request, me, "run")


@console_page("export")
async def download(request: Request, me: Visitor) -> Response:
    """The approved export's file, once: the approval is consumed when the export is recorded
    (a second download is APPROVAL_NOT_PENDING)."""
    runtime = runtime_of(request)
    result, chunks = await asyncio.to_thread(runtime.approved.export, me.principal,
                                             request.path_params["approval_id"])
    return StreamingResponse((text for text, _ in chunks), media_type="text/csv", headers={
        "content-disposition": f'attachment; filename="{result.export_id}.csv"',
        "x-export-id": result.export_id})


@console_page("users")
async def settings(request: Request, me: Visitor) -> Response:
    actions = await asyncio.to_thread(runtime_of(request).approvals.settings, me.principal)
    return await render_page(request, "console/approval_settings.html",
                             {"actions": actions, "me": me})


@console_page("users")
async def set_waiver(request: Request, me: Visitor) -> Response:
    form = await read_form(request, WAIVER_FIELDS)
    try:
        await asyncio.to_thread(runtime_of(request).approvals.set_waiver, me.principal,
                                form.value("action"), form.value("waived") == "yes")
    except CardsvcError as error:
        return redirect(request, "/console/approvals/settings", flash=error_text(error),
                        level="error")
    return redirect(request, "/console/approvals/settings", flash=gettext("Saved."))


ROUTES = [
    Route("/console/approvals", queue, methods=["GET"], name="console_approvals"),
    Route("/console/approvals/settings", settings, methods=["GET"],
          name="console_approval_settings"),
    Route("/console/approvals/settings", set_waiver, methods=["POST"],
          name="console_approval_waiver"),
    Route("/console/approvals/{approval_id}", detail, methods=["GET"],
          name="console_approval"),
    Route("/console/approvals/{approval_id}/approve-run", approve_and_run, methods=["POST"],
          name="console_approval_approve_run"),
    Route("/console/approvals/{approval_id}/approve", approve, methods=["POST"],
          name="console_approval_approve"),
    Route("/console/approvals/{approval_id}/reject", reject, methods=["POST"],
          name="console_approval_reject"),
    Route("/console/approvals/{approval_id}/cancel", cancel, methods=["POST"],
          name="console_approval_cancel"),
    Route("/console/approvals/{approval_id}/run", run, methods=["POST"],
          name="console_approval_run"),
    Route("/console/approvals/{approval_id}/download", download, methods=["POST"],
          name="console_approval_download"),
]
