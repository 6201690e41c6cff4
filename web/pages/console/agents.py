"""Agents in the console: the tree a level at a time (grade, status, balances, credit, how many
sub-agents), and one agent's dossier (settings, balances by account, credit, pool, price
overrides, its price list beside its sub-agents' prices, its commissions with their status and
release date). Every read is one call of ``reports.AgentReports``, which checks who may see
which agent (scope ``masked_views`` or ``ledger``).

Changes are one call each of the use cases the JSON API uses, which audit them: suspending or
reactivating an agent (``agents.AgentUpdates.change``; a suspension releases the holds of its
whole subtree) and its price of a SKU (``agents.PriceLists.set_price``, never below its
parent's), scope ``catalog`` (owners and operators); its credit limit (``change``), scope
``admin`` (owners: credit is money lent).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from cardsvc.money import COMMISSION_STATES
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import money_field, query_cursor, query_text, redirect, refusal_text
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
        "statuses": COMMISSION_STATES, "first_page": query_cursor(request) is not None,
        "may_manage": me.may("catalog"), "may_credit": me.may("admin")})


STATUS_FIELDS = (TextField("status", 16),)
AGENT_STATES = ("active", "suspended")
CREDIT_FIELDS = (TextField("credit", 24),)
PRICE_FIELDS = (TextField("sku", 64), TextField("price", 24), TextField("currency", 3))


async def _change(request: Request, me: Visitor, changes: dict[str, object],
                  done: str) -> Response:
    """One ``AgentUpdates.change`` as the platform, back to the agent's page."""
    agent_id = request.path_params["agent_id"]
    path = f"/console/agents/{agent_id}"
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.agent_updates.change, agent_id, changes,
                                actor=me.actor, actor_agent_id=None)
    except CardsvcError as error:
        return redirect(request, path, flash=refusal_text(error), level="error")
    return redirect(request, path, flash=done)


@console_page("catalog")
async def set_status(request: Request, me: Visitor) -> Response:
    """Suspends (releasing its subtree's holds) or reactivates the agent."""
    form = await read_form(request, STATUS_FIELDS)
    status = form.value("status")
    if not form.ok or status not in AGENT_STATES:
        return redirect(request, f"/console/agents/{request.path_params['agent_id']}",
                        flash=gettext("Check this value."), level="error")
    done = (gettext("Agent suspended; its holds are released.") if status == "suspended"
            else gettext("Agent reactivated."))
    return await _change(request, me, {"status": status}, done)


@console_page("admin")
async def set_credit(request: Request, me: Visitor) -> Response:
    form = await read_form(request, CREDIT_FIELDS)
    credit = money_field(form.value("credit"))
    if not form.ok or credit is None:
        return redirect(request, f"/console/agents/{request.path_params['agent_id']}",
                        flash=gettext("Check this value."), level="error")
    return await _change(request, me, {"credit_limit_minor": credit}, gettext("Saved."))


@console_page("catalog")
async def set_price(request: Request, me: Visitor) -> Response:
    """The agent's own price of a SKU (an override; never below its parent's)."""
    agent_id = request.path_params["agent_id"]
    path = f"/console/agents/{agent_id}"
    form = await read_form(request, PRICE_FIELDS)
    price = money_field(form.value("price"))
    if not form.ok or price is None:
        return redirect(request, path, flash=gettext("Check this value."), level="error")
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(
            runtime.price_lists.set_price, sku=form.value("sku"), price_minor=price,
            currency=form.value("currency"), grade=None, agent_id=agent_id, visible=True,
            actor=me.actor, actor_agent_id=None)
    except CardsvcError as error:
        return redirect(request, path, flash=refusal_text(error), level="error")
    return redirect(request, path, flash=gettext("Saved."))


ROUTES = [
    Route("/console/agents", tree, methods=["GET"], name="console_agents"),
    Route("/console/agents/{agent_id}", dossier, methods=["GET"], name="console_agent"),
    Route("/console/agents/{agent_id}/status", set_status, methods=["POST"],
          name="console_agent_status"),
    Route("/console/agents/{agent_id}/credit", set_credit, methods=["POST"],
          name="console_agent_credit"),
    Route("/console/agents/{agent_id}/prices", set_price, methods=["POST"],
          name="console_agent_price"),
]
