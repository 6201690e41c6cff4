"""Goal: an agent's user does its daily work in the portal (balance, statement, prices, buying
with the codes masked and an audited reveal, its orders, holds, sub-agents with suspension and
their prices, commissions, withdrawals, an API key for a sub-agent shown once), and never
reaches another agent's orders or withdrawals, nor agents outside its direct sub-agents.
Method: the whole service over ASGITransport with the test shop's people (``visit``);
assertions read statuses, ids, ``data-*`` attributes and domain state."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.routing import Route

from cardsvc import audit
from cardsvc.sales import OrderRequest
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


async def test_an_agent_subscribes_to_low_stock_once_and_removes_only_its_own(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    agent = await visit("a1user")
    for _ in range(2):  # a second click asks for what the first gives
        made = await agent.post("/portal/alerts/low-stock", {}, form_page="/portal/alerts")
        assert made.status_code == 303
    mine = runtime.alerts.subscriptions(shop.people["a1user"].user_id)
    assert [sub["kind"] for sub in mine] == ["low_stock"]
    page = await agent.get("/portal/alerts")
    assert f'data-subscription="{mine[0]["subscription_id"]}"' in page.text
    other = await visit("a2user")
    taken = await other.post(f"/portal/alerts/{mine[0]['subscription_id']}/remove", {},
                             form_page="/portal/alerts")
    assert taken.status_code == 303
    assert runtime.alerts.subscriptions(shop.people["a1user"].user_id) == mine
    for bogus in ("0", "99999999999999999999", "x"):
        assert (await agent.post(f"/portal/alerts/{bogus}/remove", {},
                                 form_page="/portal/alerts")).status_code == 303
    gone = await agent.post(f"/portal/alerts/{mine[0]['subscription_id']}/remove", {},
                            form_page="/portal/alerts")
    assert gone.status_code == 303
    assert runtime.alerts.subscriptions(shop.people["a1user"].user_id) == []


# ----- orders, withdrawals and sub-agents: only the agent's own, whatever URL it types ---------


def _family(shop: Service, *, grandchild: bool = True) -> None:
    """A1's direct sub-agent A1-KID (funded) and its own sub-agent A1-GK (A1's grandchild)."""
    runtime = shop.runtime
    runtime.agent_updates.create("A1-KID", "Kid shop", {}, actor="test", actor_agent_id="A1")
    if grandchild:
        runtime.agent_updates.create("A1-GK", "Grandkid", {}, actor="test",
                                     actor_agent_id="A1-KID")
    runtime.money.deposit("A1-KID", 50_000, "CNY", "seed-kid", actor="test")


async def test_an_agent_lists_only_its_own_orders_filtered_by_state_and_day(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    mine, _ = await runtime.orders.place(OrderRequest("A1", "o-mine", "VIP", 1), actor="test",
                                         limits=runtime.risk.limits)
    theirs, _ = await runtime.orders.place(OrderRequest("A2", "o-theirs", "VIP", 1),
                                           actor="test", limits=runtime.risk.limits)
    agent = await visit("a1user")
    page = await agent.get("/portal/orders")
    assert page.status_code == 200
    assert f'href="/portal/orders/{mine.order_id}"' in page.text
    assert theirs.order_id not in page.text
    today = datetime.now(ZoneInfo(runtime.timezone)).date()
    for query in (f"?status=fulfilled&since={today}&until={today}", "?status=pending",
                  f"?since={today + timedelta(days=2)}", f"?agent_id=A2&status={mine.status}"):
        shown = await agent.get("/portal/orders" + query)
        assert shown.status_code == 200 and theirs.order_id not in shown.text, query
    assert mine.order_id in (await agent.get(f"/portal/orders?status=fulfilled&since={today}"
                                             f"&until={today}")).text
    assert mine.order_id not in (await agent.get("/portal/orders?status=pending")).text
    assert mine.order_id not in (await agent.get(
        f"/portal/orders?since={today + timedelta(days=2)}")).text
    assert (await agent.get(f"/portal/orders/{theirs.order_id}")).status_code == 404
    wrong = await agent.get("/portal/orders?cursor=bogus")
    assert wrong.status_code == 303 and wrong.headers["location"] == "/portal/orders"


async def test_an_agent_requests_a_withdrawal_and_sees_only_its_own(
        shop: Service, visit: Any) -> None:
    shop.runtime.money.request_withdrawal("A2", 100, "CNY", "w-a2", actor="test")
    agent = await visit("a1user")
    form = await agent.get("/portal/withdrawals")
    assert form.status_code == 200 and 'data-withdrawal="' not in form.text
    reference = form.text.split('name="reference" value="')[1].split('"')[0]
    asked = await agent.post("/portal/withdrawals", {"amount": "12.34", "reference": reference})
    assert asked.status_code == 303 and asked.headers["location"] == "/portal/withdrawals"
    again = await agent.post("/portal/withdrawals", {"amount": "12.34", "reference": reference},
                             form_page="/portal/withdrawals")
    assert again.status_code == 303
    page = await agent.get("/portal/withdrawals")
    mine = shop.runtime.money.list_withdrawals(actor_agent_id="A1").items
    assert len(mine) == 1 and mine[0].amount_minor == 1234 and mine[0].status == "requested"
    assert page.text.count('data-withdrawal="') == 1 and mine[0].withdrawal_id in page.text
    theirs = shop.runtime.money.list_withdrawals(actor_agent_id="A2").items[0]
    for query in ("", "?status=requested", "?agent_id=A2"):
        shown = await agent.get("/portal/withdrawals" + query)
        assert shown.status_code == 200 and theirs.withdrawal_id not in shown.text, query
    refused = await agent.post("/portal/withdrawals", {"amount": "1.00", "reference": "w-x"},
                               token=False)
    assert refused.status_code == 403
    assert len(shop.runtime.money.list_withdrawals(actor_agent_id="A1").items) == 1


async def test_suspending_a_direct_sub_agent_releases_its_holds_and_reactivates(
        shop: Service, visit: Any) -> None:
    _family(shop)
    runtime = shop.runtime
    held = await runtime.holds.hold("A1-KID", "VIP", 2, 600, buyer_id=None,
                                    client_hold_id="h-kid", limits=runtime.risk.limits,
                                    actor="test")
    agent = await visit("a1user")
    page = await agent.get("/portal/agents")
    assert 'data-sub-agent="A1-KID"' in page.text and "A1-GK" not in page.text
    done = await agent.post("/portal/agents/A1-KID/status", {"status": "suspended"})
    assert done.status_code == 303
    assert runtime.agent_directory.get_for("A1-KID", None)["status"] == "suspended"
    assert (await runtime.holds.view("A1-KID", held.hold_id)).state == "released"
    entries = audit.list_entries(runtime.db, object_id="A1-KID")
    assert entries[-1].actor.startswith("user:")
    back = await agent.post("/portal/agents/A1-KID/status", {"status": "active"},
                            form_page="/portal/agents")
    assert back.status_code == 303
    assert runtime.agent_directory.get_for("A1-KID", None)["status"] == "active"


async def test_an_agent_cannot_act_on_a_grandchild_another_agent_or_itself(
        shop: Service, visit: Any) -> None:
    _family(shop)
    runtime = shop.runtime
    agent = await visit("a1user")
    await agent.get("/portal/agents")
    for target in ("A1-GK", "A2", "A1", "NOPE"):
        refused = await agent.post(f"/portal/agents/{target}/status", {"status": "suspended"})
        assert refused.status_code == 303, target
        priced = await agent.post("/portal/prices", {"agent_id": target, "sku": "VIP",
                                                     "price": "20.00", "currency": "CNY"})
        assert priced.status_code == 303, target
    for target in ("A1-GK", "A2", "A1"):
        assert runtime.agent_directory.get_for(target, None)["status"] == "active"
        assert runtime.price_lists.list_prices(sku="VIP", grade=None, agent_id=target) == []
    flashed = await agent.get("/portal/agents", headers={"accept-language": "en"})
    assert "(FORBIDDEN)" in flashed.text
    other = await visit("a2user")
    assert (await other.post("/portal/agents/A1-KID/status", {"status": "suspended"},
                             form_page="/portal")).status_code == 303
    assert runtime.agent_directory.get_for("A1-KID", None)["status"] == "active"
    for path in ("/portal/agents/A1-KID/status", "/portal/prices"):
        assert (await agent.post(path, {"status": "suspended"}, token=False)).status_code == 403
    assert runtime.agent_directory.get_for("A1-KID", None)["status"] == "active"


async def test_a_sub_agents_price_is_set_and_one_below_cost_is_refused_with_its_code(
        shop: Service, visit: Any) -> None:
    _family(shop, grandchild=False)  # a grandchild's grade price would pin A1-KID's from above
    runtime = shop.runtime
    agent = await visit("a1user")
    page = await agent.get("/portal/prices")
    assert page.status_code == 200 and 'name="agent_id"' in page.text
    low = await agent.post("/portal/prices", {"agent_id": "A1-KID", "sku": "VIP",
                                              "price": "9.99", "currency": "CNY"})
    assert low.status_code == 303
    shown = await agent.get("/portal/prices", headers={"accept-language": "en"})
    assert "(PRICE_BELOW_PARENT)" in shown.text
    assert runtime.price_lists.list_prices(sku="VIP", grade=None, agent_id="A1-KID") == []
    set_ = await agent.post("/portal/prices", {"agent_id": "A1-KID", "sku": "VIP",
                                               "price": "12.50", "currency": "CNY"})
    assert set_.status_code == 303
    rows = runtime.price_lists.list_prices(sku="VIP", grade=None, agent_id="A1-KID")
    assert [row["price_minor"] for row in rows] == [1250]
    assert audit.list_entries(runtime.db, action="price.set")[-1].actor.startswith("user:")


async def test_planted_markup_in_sub_agent_names_and_ids_renders_inert(
        shop: Service, visit: Any) -> None:
    payload = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    shop.runtime.agent_updates.create("A1-XSS", payload, {}, actor="test", actor_agent_id="A1")
    agent = await visit("a1user")
    for path in ("/portal/agents", "/portal/prices"):
        page = await agent.get(path)
        assert page.status_code == 200, path
        assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text, path
    quoted = await agent.get('/portal/orders?status="><script>alert(3)</script>'
                             '&since="onmouseover="x')
    assert quoted.status_code == 200 and "<script>alert(3)" not in quoted.text
    assert '"onmouseover="' not in quoted.text
