"""Holds in the console: every agent's holds newest first (``?status=``, ``?agent_id=``
filter), and releasing one (its codes back to stock, its money back to its holder, audited
``hold.release``). Each is one call of ``sales.Holds``. Scope ``holds``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from cardsvc.sales import HOLD_STATES
from web.i18n import gettext
from web.pages.common import error_text, query_cursor, query_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of


@console_page("holds")
async def holds(request: Request, me: Visitor) -> Response:
    status = query_text(request, "status", 16)
    if status not in HOLD_STATES:
        status = None
    agent_id = query_text(request, "agent_id", 64)
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.holds.list, agent_id=agent_id, status=status,
                                   cursor=query_cursor(request))
    return await render_page(request, "console/holds.html", {
        "items": page.items, "next_cursor": page.next, "status": status,
        "statuses": HOLD_STATES, "agent_id": agent_id or "",
        "first_page": query_cursor(request) is not None})


@console_page("holds")
async def release(request: Request, me: Visitor) -> Response:
    hold_id = request.path_params["hold_id"]
    runtime = runtime_of(request)
    try:
        released = await runtime.holds.release(None, hold_id, actor=me.actor)
    except CardsvcError as error:
        return redirect(request, "/console/holds", flash=error_text(error), level="error")
    return redirect(request, "/console/holds",
                    flash=gettext("Released: %(count)s codes back in stock.")
                    % {"count": released})


ROUTES = [
    Route("/console/holds", holds, methods=["GET"], name="console_holds"),
    Route("/console/holds/{hold_id}/release", release, methods=["POST"],
          name="console_hold_release"),
]
