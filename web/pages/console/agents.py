"""Agents in the console: the tree a level at a time (grade, status, balances, credit, how many
sub-agents), and one agent's dossier (settings, balances by account, credit, pool, price
overrides, its price list beside its sub-agents' prices, its commissions with their status and
release date). Reads only; every read is one call of ``reports.AgentReports``, which checks who
may see which agent. Scope ``masked_views`` (or ``ledger``).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.money import COMMISSION_STATES
from web.pages.common import query_cursor, query_text
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of


@console_page()
async def tree(request: Request, me: Visitor) -> Response:
    """The agents directly under ``?parent=`` (the top level without it)."""
    parent = query_text(request, "parent", 64)
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.agent_reports.children, me.principal, parent,
                                   cursor=query_cursor(request))
    return await render_page(request, "console/agents.html", {
        "items": page.items, "next_cursor": page.next, "parent": parent,
        "first_page": query_cursor(request) is not None})


@console_page()
async def dossier(request: Request, me: Visitor) -> Response:
    """One agent: its dossier, price list against its sub-agents', and commissions
    (``?status=`` filters them)."""
    agent_id = request.path_params["agent_id"]
    status = query_text(request, "status", 16)
    if status not in COMMISSION_STATES:
        status = None
    runtime = runtime_of(request)
    shown = await asyncio.to_thread(runtime.agent_reports.agent_page, me.principal, agent_id,
                                    status=status, cursor=query_cursor(request))
    return await render_page(request, "console/agent.html", {
        "facts": shown.dossier, "agent": shown.dossier["agent"], "prices": shown.prices,
        "sub_ids": sorted({sub for line in shown.prices for sub in line.sub_prices}),
        "commissions": shown.commissions.items, "next_cursor": shown.commissions.next,
        "status": status,
        "statuses": COMMISSION_STATES, "first_page": query_cursor(request) is not None})


ROUTES = [
    Route("/console/agents", tree, methods=["GET"], name="console_agents"),
    Route("/console/agents/{agent_id}", dossier, methods=["GET"], name="console_agent"),
]
