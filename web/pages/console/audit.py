"""The audit log in the console: entries by actor, action, object and day range, oldest first
a page at a time (``?after_seq=``), and a "verify chain" button that checks the whole hash chain
and names the first broken entry. One call of ``cardsvc.audit`` each. Scope ``audit``. Details
are shown as JSON text (escaped like every other string of a page).
"""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.audit import ChainCheck, list_entries, verify_log
from web.pages.common import day_range_ms, int_field, parse_date, query_text
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

PAGE_ENTRIES = 100
FILTERS = (("actor", 64), ("action", 64), ("object_type", 32), ("object_id", 128))


def _filters(request: Request, timezone: str) -> tuple[dict[str, str], dict[str, object]]:
    shown = {name: query_text(request, name, size) or "" for name, size in FILTERS}
    since, until = parse_date(query_text(request, "since", 10)), parse_date(
        query_text(request, "until", 10))
    shown["since"] = since.isoformat() if since else ""
    shown["until"] = until.isoformat() if until else ""
    query: dict[str, object] = {name: value or None for name, value in shown.items()
                                if name not in ("since", "until")}
    if since is not None:
        query["since_ms"] = day_range_ms(since, since, timezone)[0]
    if until is not None:
        query["until_ms"] = day_range_ms(until, until, timezone)[1]
    after = int_field(query_text(request, "after_seq", 20) or "", minimum=0)
    query["after_seq"] = after
    return shown, query


async def _page(request: Request, check: ChainCheck | None) -> Response:
    runtime = runtime_of(request)
    shown, query = _filters(request, runtime.timezone)
    entries = await asyncio.to_thread(list_entries, runtime.db, limit=PAGE_ENTRIES,
                                      **query)
    rows = [{"seq": e.seq, "at_ms": e.at_ms, "actor": e.actor, "action": e.action,
             "object_type": e.object_type, "object_id": e.object_id,
             "details": json.dumps(e.details, ensure_ascii=False, sort_keys=True)}
            for e in entries]
    return await render_page(request, "console/audit.html", {
        "rows": rows, "query": shown, "check": check,
        "next_after_seq": rows[-1]["seq"] if len(rows) == PAGE_ENTRIES else None,
        "first_page": query.get("after_seq") is not None})


@console_page("audit")
async def log(request: Request, me: Visitor) -> Response:
    return await _page(request, None)


@console_page("audit")
async def verify(request: Request, me: Visitor) -> Response:
    """Checks the whole chain (reads only) and shows the result above the log."""
    check = await asyncio.to_thread(verify_log, runtime_of(request).db)
    return await _page(request, check)


ROUTES = [
    Route("/console/audit", log, methods=["GET"], name="console_audit"),
    Route("/console/audit/verify", verify, methods=["POST"], name="console_audit_verify"),
]
