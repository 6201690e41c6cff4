"""Money in the console: the latest stored reconciliation (stock by state and cost, sales,
commissions, withdrawals, and every difference between the ledger, the orders and the core's
stock) and a button that runs a new one (``reports.Reconciliations``), and an agent's statement
as CSV for a day range (``money.AgentMoney.statement_csv``). Scope ``reconciliation``;
statements ``ledger``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from web.i18n import gettext
from web.pages.common import day_range_ms, parse_date, query_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

STATEMENT_DAYS_DEFAULT = 30
SHOWN_APART = frozenset({"ok", "differences", "difference_count", "orders_checked"})


@console_page("reconciliation")
async def money(request: Request, me: Visitor) -> Response:
    latest = await asyncio.to_thread(runtime_of(request).reconciliations.latest)
    today = date.today()
    figures = [] if latest is None else [
        (name, json.dumps(value, ensure_ascii=False, sort_keys=True))
        for name, value in sorted(latest["report"].items()) if name not in SHOWN_APART]
    return await render_page(request, "console/money.html", {
        "run": latest, "figures": figures,
        "since": (today - timedelta(days=STATEMENT_DAYS_DEFAULT)).isoformat(),
        "until": today.isoformat()})


@console_page("reconciliation")
async def reconcile(request: Request, me: Visitor) -> Response:
    run = await asyncio.to_thread(runtime_of(request).reconciliations.run, actor=me.actor)
    text = (gettext("Reconciled: everything agrees.") if run["ok"] else
            gettext("Reconciled: %(count)s differences.") % {"count": run["differences"]})
    return redirect(request, "/console/money", flash=text,
                    level="success" if run["ok"] else "error")


@console_page("ledger")
async def statement(request: Request, me: Visitor) -> Response:
    """``?agent_id=&account=&since=&until=`` as CSV."""
    runtime = runtime_of(request)
    agent_id = query_text(request, "agent_id", 64) or ""
    account = query_text(request, "account", 16) or "available"
    today = date.today()
    since = parse_date(query_text(request, "since", 10)) or today - timedelta(
        days=STATEMENT_DAYS_DEFAULT)
    until = parse_date(query_text(request, "until", 10)) or today
    since_ms, until_ms = day_range_ms(since, until, runtime.timezone)
    text = await asyncio.to_thread(runtime.money.statement_csv, agent_id, account, since_ms,
                                   until_ms, actor_agent_id=None)
    name = f"statement-{agent_id}-{account}-{since}-{until}.csv"
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"})


ROUTES = [
    Route("/console/money", money, methods=["GET"], name="console_money"),
    Route("/console/money/reconcile", reconcile, methods=["POST"], name="console_reconcile"),
    Route("/console/money/statement.csv", statement, methods=["GET"],
          name="console_statement"),
]
