"""Goal: an agent's user does its daily work in the portal (balance, statement, prices, buying
with the codes masked and an audited reveal, holds, sub-agents, commissions, a withdrawal
request, an API key for a sub-agent shown once), and never reaches another agent's order or
agents outside its own reach. Method: the whole service over ASGITransport with the test shop's
people (``visit``); assertions read statuses, ids, ``data-*`` attributes and domain state."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from starlette.routing import Route

from cardsvc import audit
from tests.web.console.conftest import CODES, Service, error_of
from web.pages import console

pytestmark = pytest.mark.anyio


async def test_an_agent_buys_sees_its_codes_masked_and_reveals_them_audited(
        shop: Service, visit: Any) -> None:
    agent = await visit("a1user")
    overview = await agent.get("/portal")
    assert overview.status_code == 200 and 'data-agent="A1"' in overview.text
    form = await agent.get("/portal/buy")
    reference = form.text.split('name="client_order_id" value="')[1].split('"')[0]
    placed = await agent.post("/portal/buy", {"sku": "VIP", "quantity": "2",
                                              "client_order_id": reference})
    assert placed.status_code == 303, placed.text[:300]
    where = placed.headers["location"]
    assert where.startswith("/portal/orders/")
    again = await agent.post("/portal/buy", {"sku": "VIP", "quantity": "2",
                                             "client_order_id": reference}, form_page="/portal/buy")
    assert again.headers["location"] == where  # a double submit is one order
    page = await agent.get(where)
    assert page.status_code == 200 and "code-masked" in page.text
    assert not any(code in page.text for code in CODES)
    order_id = where.rsplit("/", 1)[1]
    before = audit.list_entries(shop.runtime.db, action="order.redeliver", object_id=order_id)
    revealed = await agent.post(where + "/reveal", {})
    assert revealed.status_code == 200 and "data-revealed" in revealed.text
    assert sum(code in revealed.text for code in CODES) == 2
    after = audit.list_entries(shop.runtime.db, action="order.redeliver", object_id=order_id)
    assert len(after) == len(before) + 1 and after[-1].actor.startswith("user:")
    other = await visit("a2user")
    assert (await other.get(where)).status_code == 404
    assert (await other.post(where + "/reveal", {}, form_page="/portal")).status_code == 404
    statement = await agent.get("/portal/statement.csv?account=available")
    assert statement.status_code == 200 and statement.headers["content-type"].startswith(
        "text/csv")


async def test_an_agent_creates_a_sub_agent_and_a_key_for_it_shown_once(
        shop: Service, visit: Any) -> None:
    agent = await visit("a1user")
    made = await agent.post("/portal/agents", {"agent_id": "A1-KID", "name": "Kid shop"},
                            form_page="/portal/agents")
    assert made.status_code == 303
    listed = await agent.get("/portal/agents")
    assert "A1-KID" in listed.text
    key = await agent.post("/portal/keys", {"agent_id": "A1-KID", "name": "till"},
                           form_page="/portal/keys")
    assert key.status_code == 200 and "data-key-text" in key.text
    text = key.text.split("data-key-text>")[1].split("<")[0]
    principal = shop.runtime.keys.authenticate(text)
    assert principal.agent_id == "A1-KID" and principal.scopes == frozenset({"orders", "holds"})
    assert text not in (await agent.get("/portal/keys")).text
    elsewhere = await agent.post("/portal/keys", {"agent_id": "A2"}, form_page="/portal/keys")
    assert elsewhere.status_code == 303
    assert (await agent.get("/portal/prices")).status_code == 200
    assert (await agent.get("/portal/commissions")).status_code == 200
    assert (await agent.get("/portal/holds")).status_code == 200
    asked = await agent.post("/portal/withdrawals", {"amount": "10.00", "reference": "w-1"},
                             form_page="/portal")
    assert asked.status_code == 303


async def test_staff_cannot_use_the_portal_and_agents_cannot_use_the_console(
        shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    assert error_of((await owner.get("/portal")).text) == "FORBIDDEN"
    agent = await visit("a1user")
    for route in console.ROUTES:
        assert isinstance(route, Route)
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            if method == "GET":
                response = await agent.get(path)
            else:
                response = await agent.post(path, {}, form_page="/portal")
            assert response.status_code == 403, (method, path)
            assert error_of(response.text) == "FORBIDDEN", (method, path)


async def test_alerts_show_in_the_console_and_the_agents_own_in_the_portal(
        shop: Service, visit: Any) -> None:
    agent = await visit("a1user")
    made = await agent.post("/portal/alerts", {"threshold": "5000.00"}, form_page="/portal/alerts")
    assert made.status_code == 303
    shop.runtime.money.request_withdrawal("A2", 100, "CNY", "w-a2", actor="test")
    await asyncio.to_thread(shop.runtime.reports_round)
    mine = await agent.get("/portal/alerts")
    assert mine.status_code == 200 and "low_balance" not in mine.text
    assert mine.text.count('data-notice="fired"') == 1 and "w-a2" not in mine.text
    owner = await visit("owner")
    console = await owner.get("/console/alerts")
    assert console.status_code == 200 and console.text.count('data-notice="fired"') >= 2
    terminal = await visit("till")
    assert error_of((await terminal.get("/console/alerts")).text) == "FORBIDDEN"
