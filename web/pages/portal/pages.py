"""The agents' portal pages, always of the logged-in user's own agent (``portal_page``): the
overview (balances and credit) with the statement as CSV, the price list (own price beside the
sub-agents') and setting a direct sub-agent's price, buying (an order placed through the order
saga, its codes shown masked; the plaintext only through an audited reveal), its orders
(filtered by state and day range), holds, sub-agents (create, suspend, reactivate), commissions
(status and release date), withdrawals (request, list with state) and API keys for itself or a
direct sub-agent (the key shown once). Each page is one domain call; the domain checks the agent
may do it (a sub-agent is a direct one, a price is not below the agent's own).
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError, invalid
from cardsvc.money import COMMISSION_STATES, WITHDRAWAL_STATUSES
from cardsvc.sales import ORDER_STATUSES, OrderRequest
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import (
    day_range_ms,
    error_text,
    form_token,
    int_field,
    money_field,
    parse_date,
    query_cursor,
    query_text,
    redirect,
    refusal_text,
)
from web.render import render_page
from web.sessions import Visitor, portal_page, runtime_of

ACCOUNTS = ("available", "pending", "withdrawing")
BUY_FIELDS = (TextField("sku", 64), TextField("quantity", 6), TextField("client_order_id", 64))
REVEAL_FIELDS: tuple[TextField, ...] = ()
SUB_AGENT_FIELDS = (TextField("agent_id", 64), TextField("name", 128))
KEY_FIELDS = (TextField("agent_id", 64), TextField("name", 128, required=False))
WITHDRAW_FIELDS = (TextField("amount", 24), TextField("reference", 64))
STATUS_FIELDS = (TextField("status", 16),)
SUB_AGENT_STATES = ("active", "suspended")
PRICE_FIELDS = (TextField("agent_id", 64), TextField("sku", 64), TextField("price", 24),
                TextField("currency", 3))
STATEMENT_DAYS_DEFAULT = 30


def _own(me: Visitor) -> str:
    agent_id = me.agent_id
    assert agent_id is not None  # portal_page refuses users without an agent
    return agent_id


@portal_page()
async def overview(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    balance = await asyncio.to_thread(runtime.money.balance, _own(me),
                                      actor_agent_id=_own(me))
    today = date.today()
    return await render_page(request, "portal/overview.html", {
        "balance": balance, "accounts": ACCOUNTS,
        "since": (today - timedelta(days=STATEMENT_DAYS_DEFAULT)).isoformat(),
        "until": today.isoformat(), "withdraw_reference": form_token()})


@portal_page()
async def statement_csv(request: Request, me: Visitor) -> Response:
    """The statement of one account for a day range (``?account=&since=&until=``) as CSV."""
    runtime = runtime_of(request)
    account = query_text(request, "account", 16) or "available"
    today = date.today()
    since = parse_date(query_text(request, "since", 10)) or today - timedelta(
        days=STATEMENT_DAYS_DEFAULT)
    until = parse_date(query_text(request, "until", 10)) or today
    since_ms, until_ms = day_range_ms(since, until, runtime.timezone)
    text = await asyncio.to_thread(runtime.money.statement_csv, _own(me), account, since_ms,
                                   until_ms, actor_agent_id=_own(me))
    name = f"statement-{_own(me)}-{account}-{since}-{until}.csv"
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"})


@portal_page("orders")
async def prices(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    lines = await asyncio.to_thread(runtime.agent_reports.price_list, me.principal, _own(me))
    return await render_page(request, "portal/prices.html", {
        "prices": lines, "sub_ids": sorted({sub for line in lines for sub in line.sub_prices}),
        "may_set": me.may("sub_agents")})


@portal_page("sub_agents")
async def set_sub_price(request: Request, me: Visitor) -> Response:
    """A direct sub-agent's price of a SKU (``agents.PriceLists.set_price`` as the agent: a
    direct sub-agent only, never below the agent's own price; audited ``price.set``)."""
    form = await read_form(request, PRICE_FIELDS)
    price = money_field(form.value("price"))
    if not form.ok or price is None:
        return redirect(request, "/portal/prices", flash=gettext("Check this value."),
                        level="error")
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(
            runtime.price_lists.set_price, sku=form.value("sku"), price_minor=price,
            currency=form.value("currency"), grade=None, agent_id=form.value("agent_id"),
            visible=True, actor=me.actor, actor_agent_id=_own(me))
    except CardsvcError as error:
        return redirect(request, "/portal/prices", flash=refusal_text(error), level="error")
    return redirect(request, "/portal/prices", flash=gettext("Saved."))


@portal_page("orders")
async def buy_form(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    lines = await asyncio.to_thread(runtime.agent_reports.price_list, me.principal, _own(me))
    return await render_page(request, "portal/buy.html", {
        "prices": lines, "client_order_id": form_token(), "problem": None})


@portal_page("orders")
async def buy(request: Request, me: Visitor) -> Response:
    form = await read_form(request, BUY_FIELDS)
    quantity = int_field(form.value("quantity"), minimum=1, maximum=100_000)
    if not form.ok or quantity is None:
        return redirect(request, "/portal/buy", flash=gettext("Check this value."),
                        level="error")
    runtime = runtime_of(request)
    try:
        order, _ = await runtime.orders.place(
            OrderRequest(_own(me), form.value("client_order_id"), form.value("sku"), quantity),
            actor=me.actor, limits=runtime.risk.limits_for(me.actor, {}))
    except CardsvcError as error:
        return redirect(request, "/portal/buy", flash=error_text(error), level="error")
    return redirect(request, f"/portal/orders/{order.order_id}",
                    flash=gettext("Order placed."))


@portal_page("orders")
async def order(request: Request, me: Visitor) -> Response:
    """The order with its codes masked."""
    runtime = runtime_of(request)
    shown = await runtime.orders.masked_for(request.path_params["order_id"], _own(me),
                                            actor=me.actor)
    return await render_page(request, "portal/order.html", {"order": shown, "revealed": False})


@portal_page("orders")
async def order_list(request: Request, me: Visitor) -> Response:
    """The agent's own orders newest first (``?status=``, ``?since=``, ``?until=`` filter),
    each linking to its page; the domain never lists another agent's."""
    runtime = runtime_of(request)
    status = query_text(request, "status", 16)
    if status not in ORDER_STATUSES:
        status = None
    since, until = parse_date(query_text(request, "since", 10)), parse_date(
        query_text(request, "until", 10))
    since_ms = None if since is None else day_range_ms(since, since, runtime.timezone)[0]
    until_ms = None if until is None else day_range_ms(until, until, runtime.timezone)[1]
    try:
        page = await runtime.orders.list_orders(
            actor_agent_id=_own(me), status=status, since_ms=since_ms, until_ms=until_ms,
            cursor=query_cursor(request))
    except CardsvcError as error:
        return redirect(request, "/portal/orders", flash=error_text(error), level="error")
    return await render_page(request, "portal/orders.html", {
        "items": page.items, "next_cursor": page.next, "statuses": ORDER_STATUSES,
        "query": {"status": status or "", "since": since.isoformat() if since else "",
                  "until": until.isoformat() if until else ""},
        "first_page": query_cursor(request) is not None})


@portal_page("orders")
async def reveal(request: Request, me: Visitor) -> Response:
    """The order's codes in plaintext for its own agent (audited ``order.redeliver``); POST
    only, so the codes never sit in a URL or a cached page."""
    await read_form(request, REVEAL_FIELDS)
    runtime = runtime_of(request)
    shown = await runtime.orders.get(request.path_params["order_id"], agent_id=_own(me),
                                     actor=me.actor)
    return await render_page(request, "portal/order.html", {"order": shown, "revealed": True})


@portal_page("holds")
async def holds(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.holds.list, agent_id=_own(me),
                                   cursor=query_cursor(request))
    return await render_page(request, "portal/holds.html", {
        "items": page.items, "next_cursor": page.next,
        "first_page": query_cursor(request) is not None})


@portal_page("sub_agents")
async def sub_agents(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.agent_reports.children, me.principal, _own(me),
                                   cursor=query_cursor(request))
    return await render_page(request, "portal/agents.html", {
        "items": page.items, "next_cursor": page.next,
        "first_page": query_cursor(request) is not None})


@portal_page("sub_agents")
async def create_sub_agent(request: Request, me: Visitor) -> Response:
    form = await read_form(request, SUB_AGENT_FIELDS)
    if not form.ok:
        return redirect(request, "/portal/agents", flash=gettext("Check this value."),
                        level="error")
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.agent_updates.create, form.value("agent_id"),
                                form.value("name"), {}, actor=me.actor,
                                actor_agent_id=_own(me))
    except CardsvcError as error:
        return redirect(request, "/portal/agents", flash=error_text(error), level="error")
    return redirect(request, "/portal/agents", flash=gettext("Sub-agent created."))


@portal_page("sub_agents")
async def set_sub_agent_status(request: Request, me: Visitor) -> Response:
    """Suspends or reactivates a direct sub-agent (``agents.AgentUpdates.change`` as the agent:
    a direct sub-agent only; a suspension releases the holds of its whole subtree)."""
    form = await read_form(request, STATUS_FIELDS)
    if not form.ok or form.value("status") not in SUB_AGENT_STATES:
        return redirect(request, "/portal/agents", flash=gettext("Check this value."),
                        level="error")
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.agent_updates.change, request.path_params["agent_id"],
                                {"status": form.value("status")}, actor=me.actor,
                                actor_agent_id=_own(me))
    except CardsvcError as error:
        return redirect(request, "/portal/agents", flash=refusal_text(error), level="error")
    done = (gettext("Sub-agent suspended; its holds are released.")
            if form.value("status") == "suspended" else gettext("Sub-agent reactivated."))
    return redirect(request, "/portal/agents", flash=done)


@portal_page()
async def commissions(request: Request, me: Visitor) -> Response:
    status = query_text(request, "status", 16)
    if status not in COMMISSION_STATES:
        status = None
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.agent_reports.commissions, me.principal, _own(me),
                                   status=status, cursor=query_cursor(request))
    return await render_page(request, "portal/commissions.html", {
        "items": page.items, "next_cursor": page.next, "status": status,
        "statuses": COMMISSION_STATES, "first_page": query_cursor(request) is not None})


@portal_page()
async def withdrawals(request: Request, me: Visitor) -> Response:
    """The agent's own withdrawals newest first with their state (``?status=`` filters), and
    the request form."""
    status = query_text(request, "status", 16)
    if status not in WITHDRAWAL_STATUSES:
        status = None
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.money.list_withdrawals, actor_agent_id=_own(me),
                                   status=status, cursor=query_cursor(request))
    return await render_page(request, "portal/withdrawals.html", {
        "items": page.items, "next_cursor": page.next, "status": status,
        "statuses": WITHDRAWAL_STATUSES, "withdraw_reference": form_token(),
        "first_page": query_cursor(request) is not None})


@portal_page()
async def request_withdrawal(request: Request, me: Visitor) -> Response:
    form = await read_form(request, WITHDRAW_FIELDS)
    amount = money_field(form.value("amount"))
    if not form.ok or not amount:
        return redirect(request, "/portal/withdrawals", flash=gettext("Check this value."),
                        level="error")
    runtime = runtime_of(request)
    try:
        balance = await asyncio.to_thread(runtime.money.balance, _own(me),
                                          actor_agent_id=_own(me))
        await asyncio.to_thread(runtime.money.request_withdrawal, _own(me), amount,
                                str(balance["currency"]), form.value("reference"),
                                actor=me.actor)
    except CardsvcError as error:
        return redirect(request, "/portal/withdrawals", flash=error_text(error),
                        level="error")
    return redirect(request, "/portal/withdrawals", flash=gettext("Withdrawal requested."))


@portal_page("sub_agents")
async def keys(request: Request, me: Visitor) -> Response:
    return await render_page(request, "portal/keys.html", {"created": None, "own": _own(me)})


@portal_page("sub_agents")
async def create_key(request: Request, me: Visitor) -> Response:
    """Issues a key and shows its text on this response only (never stored, never again)."""
    form = await read_form(request, KEY_FIELDS)
    if not form.ok:
        return redirect(request, "/portal/keys", flash=gettext("Check this value."),
                        level="error")
    runtime = runtime_of(request)
    try:
        principal, text = await asyncio.to_thread(
            runtime.credentials.create_agent_key, me.principal,
            agent_id=form.value("agent_id"), name=form.value("name"))
    except CardsvcError as error:
        return redirect(request, "/portal/keys", flash=error_text(error), level="error")
    return await render_page(request, "portal/keys.html", {
        "created": {"key_id": principal.key_id, "agent_id": principal.agent_id, "text": text},
        "own": _own(me)})


ALERT_FIELDS = (TextField("threshold", 24),)


@portal_page()
async def alerts(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    shown = await asyncio.to_thread(runtime.alerts.page, me.principal, user_id=me.user_id,
                                    cursor=query_cursor(request))
    return await render_page(request, "console/alerts.html", {
        "firing": shown.firing, "events": shown.events.items, "next_cursor": shown.events.next,
        "first_page": query_cursor(request) is not None, "area": "portal",
        "subscriptions": shown.subscriptions, "currency": shown.currency or ""})


@portal_page()
async def subscribe(request: Request, me: Visitor) -> Response:
    """A low-balance alert below the amount typed."""
    form = await read_form(request, ALERT_FIELDS)
    threshold = money_field(form.value("threshold"))
    if not form.ok or not threshold:
        return redirect(request, "/portal/alerts", flash=gettext("Check this value."),
                        level="error")
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.alerts.subscribe, me.principal, user_id=me.user_id,
                                kind="low_balance", threshold_minor=threshold)
    except CardsvcError as error:
        return redirect(request, "/portal/alerts", flash=error_text(error), level="error")
    return redirect(request, "/portal/alerts", flash=gettext("Saved."))


@portal_page()
async def subscribe_low_stock(request: Request, me: Visitor) -> Response:
    """An alert when the stock of a SKU this agent buys runs low (one per user)."""
    await read_form(request, ())
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.alerts.subscribe, me.principal, user_id=me.user_id,
                                kind="low_stock")
    except CardsvcError as error:
        return redirect(request, "/portal/alerts", flash=error_text(error), level="error")
    return redirect(request, "/portal/alerts", flash=gettext("Saved."))


@portal_page()
async def unsubscribe(request: Request, me: Visitor) -> Response:
    await read_form(request, ())
    number = int_field(str(request.path_params["subscription_id"]), minimum=1,
                       maximum=(1 << 31) - 1)
    runtime = runtime_of(request)
    try:
        if number is None:
            raise invalid("subscription_id", "no such subscription of yours")
        await asyncio.to_thread(runtime.alerts.unsubscribe, user_id=me.user_id,
                                subscription_id=number)
    except CardsvcError as error:
        return redirect(request, "/portal/alerts", flash=error_text(error), level="error")
    return redirect(request, "/portal/alerts", flash=gettext("Removed."))


ROUTES = [
    Route("/portal/alerts", alerts, methods=["GET"], name="portal_alerts"),
    Route("/portal/alerts", subscribe, methods=["POST"], name="portal_subscribe"),
    Route("/portal/alerts/low-stock", subscribe_low_stock, methods=["POST"],
          name="portal_subscribe_low_stock"),
    Route("/portal/alerts/{subscription_id}/remove", unsubscribe, methods=["POST"],
          name="portal_unsubscribe"),
    Route("/portal", overview, methods=["GET"], name="portal"),
    Route("/portal/statement.csv", statement_csv, methods=["GET"], name="portal_statement"),
    Route("/portal/prices", prices, methods=["GET"], name="portal_prices"),
    Route("/portal/prices", set_sub_price, methods=["POST"], name="portal_price_set"),
    Route("/portal/buy", buy_form, methods=["GET"], name="portal_buy_form"),
    Route("/portal/buy", buy, methods=["POST"], name="portal_buy"),
    Route("/portal/orders", order_list, methods=["GET"], name="portal_orders"),
    Route("/portal/orders/{order_id}", order, methods=["GET"], name="portal_order"),
    Route("/portal/orders/{order_id}/reveal", reveal, methods=["POST"],
          name="portal_order_reveal"),
    Route("/portal/holds", holds, methods=["GET"], name="portal_holds"),
    Route("/portal/agents", sub_agents, methods=["GET"], name="portal_agents"),
    Route("/portal/agents", create_sub_agent, methods=["POST"], name="portal_agent_create"),
    Route("/portal/agents/{agent_id}/status", set_sub_agent_status, methods=["POST"],
          name="portal_agent_status"),
    Route("/portal/commissions", commissions, methods=["GET"], name="portal_commissions"),
    Route("/portal/withdrawals", withdrawals, methods=["GET"], name="portal_withdrawals"),
    Route("/portal/withdrawals", request_withdrawal, methods=["POST"],
          name="portal_withdraw"),
    Route("/portal/keys", keys, methods=["GET"], name="portal_keys"),
    Route("/portal/keys", create_key, methods=["POST"], name="portal_key_create"),
]
