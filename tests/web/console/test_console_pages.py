"""The console's pages in process: each renders for the roles whose scopes open it and is
refused (403) to the others, and its forms call the domain (changes visible afterwards).

Method: the whole service over ASGITransport with the test shop's people (``visit``); the
assertions read statuses, ``data-error-code`` and the domain's state, never page text beyond
ids the shop made.
"""

from __future__ import annotations

from typing import Any

import pytest

from cardsvc import audit
from cardsvc.sales import OrderRequest
from tests.web.console.conftest import CODES, Service, error_of

pytestmark = pytest.mark.anyio


async def test_the_dashboard_shows_each_role_its_sections(shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    page = await owner.get("/console")
    assert page.status_code == 200
    assert 'id="money-title"' in page.text and 'id="stock-title"' in page.text
    for name in ("hourly", "channel", "sku", "stock"):
        csv = await owner.get(f"/console/charts/{name}.csv?range=7d")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    support = await visit("sue")
    page = await support.get("/console")
    assert page.status_code == 200 and 'id="money-title"' not in page.text
    assert (await support.get("/console/charts/channel.csv")).status_code == 404


async def test_catalog_pages_create_and_edit_a_product(shop: Service, visit: Any) -> None:
    operator = await visit("oscar")
    assert (await operator.get("/console/skus")).status_code == 200
    made = await operator.post("/console/skus", {
        "sku": "GAME100", "name": "Game points 100", "kind": "voucher", "currency": "CNY",
        "retail_price": "12.50", "low_stock_threshold": "3", "uses_per_code": "1",
        "on_sale": "yes", "redeem_requires_sale": "yes"}, form_page="/console/skus/new")
    assert made.status_code == 303, made.text[:300]
    sku = shop.runtime.catalog.get_sku("GAME100")
    assert (sku["retail_price_minor"], sku["kind"], sku["low_stock_threshold"]) == (
        1250, "voucher", 3)
    bad = await operator.post("/console/skus/GAME100", {"name": "Game points", "cost": "x"},
                              form_page="/console/skus/GAME100")
    assert bad.status_code == 422
    saved = await operator.post("/console/skus/GAME100", {
        "name": "Game points", "currency": "CNY", "cost": "8", "kind": "voucher"},
        form_page="/console/skus/GAME100")
    assert saved.status_code == 303
    sku = shop.runtime.catalog.get_sku("GAME100")
    assert (sku["name"], sku["cost_minor"], sku["on_sale"]) == ("Game points", 800, False)
    again = await operator.post("/console/skus", {"sku": "GAME100", "name": "dup"},
                                form_page="/console/skus/new")
    assert again.status_code == 422
    finance = await visit("fiona")
    assert error_of((await finance.get("/console/skus")).text) == "FORBIDDEN"


async def test_a_file_upload_imports_in_the_background_and_reports(shop: Service,
                                                                   visit: Any) -> None:
    operator = await visit("oscar")
    form = await operator.get("/console/batches/new?sku=VIP")
    assert form.status_code == 200
    rows = "code,pin\n" + "".join(f"UPLOAD-{i:04d}-QRST,{i:04d}\n" for i in range(30))
    rows += "CONSOLE-0001-WXYZ,0001\n"  # a duplicate of the shop's stock
    answer = await operator.post("/console/batches/upload", {
        "sku": "VIP", "supplier": "Zeta <b>Cards</b>", "unit_cost": "4.20", "currency": "CNY",
        "mode": "per_row"}, files={"file": ("codes.csv", rows.encode(), "text/csv")})
    assert answer.status_code == 303, answer.text[:400]
    path = answer.headers["location"]
    batch_id = int(path.rsplit("/", 1)[1])
    for _ in range(200):
        state = (await operator.get(f"{path}/progress")).json()
        if state["state"] != "importing":
            break
        await __import__("anyio").sleep(0.02)
    assert (state["state"], state["imported"], state["duplicates"]) == ("ready", 30, 1)
    page = await operator.get(path)
    assert page.status_code == 200 and "<b>Cards</b>" not in page.text
    assert "&lt;b&gt;Cards&lt;/b&gt;" in page.text
    report = await operator.get(f"{path}/report.csv")
    assert "duplicate" in report.text and "CONSOLE-0001" not in report.text
    assert shop.runtime.batches.get(batch_id)["unit_cost_minor"] == 420
    refused = await operator.post("/console/batches/upload", {"sku": "VIP"},
                                  files={"file": ("codes.csv", rows.encode(), "text/csv")},
                                  token=False)
    assert error_of(refused.text) == "FORBIDDEN"


async def test_generate_and_ask_to_void_a_batch(shop: Service, visit: Any) -> None:
    operator = await visit("oscar")
    made = await operator.post("/console/batches/generate", {
        "sku": "VIP", "count": "25", "prefix": "GEN", "length": "12"},
        form_page="/console/batches/new")
    assert made.status_code == 303, made.text[:300]
    path = made.headers["location"]
    page = await operator.get(path)
    assert page.status_code == 200
    asked = await operator.post(f"{path}/void", {"reason": "supplier recalled it"})
    assert asked.status_code == 303 and "/console/approvals/apr_" in asked.headers["location"]


async def test_maker_checker_on_a_batch_void_needs_two_people(shop: Service,
                                                             visit: Any) -> None:
    operator = await visit("oscar")
    asked = await operator.post("/console/batches/1/void", {"reason": "recalled"},
                                form_page="/console/batches/1")
    approval_path = asked.headers["location"]
    mine = await operator.get(approval_path)
    assert "/approve-run" not in mine.text  # the maker gets no approve button...
    self_approve = await operator.post(f"{approval_path}/approve-run", {})
    assert self_approve.status_code == 303  # ...and the domain refuses it anyway
    approval_id = approval_path.rsplit("/", 1)[1]
    assert shop.runtime.approvals.get(shop.people["owner"].principal(shop.runtime),
                                      approval_id).status == "pending"
    assert shop.runtime.catalog.stock("VIP")["void"] == 0
    owner = await visit("owner")
    page = await owner.get(approval_path)
    assert "/approve-run" in page.text
    done = await owner.post(f"{approval_path}/approve-run", {"note": "ok"})
    assert done.status_code == 303
    assert shop.runtime.catalog.stock("VIP")["void"] == 20
    again = await owner.post(f"{approval_path}/run", {}, form_page=approval_path)
    assert again.status_code == 303
    assert shop.runtime.approvals.get(shop.people["owner"].principal(shop.runtime),
                                      approval_id).status == "executed"
    queue = await owner.get("/console/approvals?status=all")
    assert approval_id in queue.text


async def test_support_finds_a_code_three_ways_and_freezes_it(shop: Service,
                                                              visit: Any) -> None:
    support = await visit("sue")
    found = await support.post("/console/codes/find", {"code": "console-0003-wxyz"},
                               form_page="/console/codes")
    assert found.status_code == 303
    path = found.headers["location"]
    assert "CONSOLE" not in path
    trace = await support.get(path)
    assert trace.status_code == 200
    assert "CONSOLE-0003" not in trace.text and "WXYZ" in trace.text
    by_suffix = await support.get("/console/codes?sku=VIP&last4=wx-yz")
    assert by_suffix.text.count('href="/console/codes/') >= 20
    assert "CONSOLE-00" not in by_suffix.text
    by_batch = await support.get("/console/codes?batch_id=1")
    assert by_batch.status_code == 200 and "rel=\"next\"" not in by_batch.text
    frozen = await support.post(f"{path}/freeze", {"reason": "customer dispute"},
                                form_page=path)
    assert frozen.status_code == 303
    assert shop.runtime.catalog.stock("VIP")["frozen"] == 1
    refused = await support.post(f"{path}/void", {"reason": "no"}, form_page=path)
    assert error_of(refused.text) == "FORBIDDEN"
    missing = await support.post("/console/codes/find", {"code": "NOPE-NOPE-NOPE"},
                                 form_page="/console/codes")
    assert missing.status_code == 303 and missing.headers["location"] == "/console/codes"


async def test_the_terminal_redeems_once_and_then_says_who_and_when(shop: Service,
                                                                    visit: Any) -> None:
    till = await visit("till")
    page = await till.get("/console/terminal")
    assert page.status_code == 200 and "/static/js/terminal." in page.text
    checked = await till.post("/console/terminal/verify", {"code": "pass-0001-klmn"})
    assert checked.status_code == 200 and 'data-status="valid"' in checked.text
    request_id = checked.text.split('name="request_id" value="')[1].split('"')[0]
    body = {"code": "pass-0001-klmn", "pin": "", "request_id": request_id}
    first = await till.post("/console/terminal/redeem", body)
    assert first.status_code == 200 and 'data-result="redeemed"' in first.text
    replay = await till.post("/console/terminal/redeem", body)  # a double click
    assert 'data-result="redeemed"' in replay.text
    other = await visit("oscar")
    again = await other.post("/console/terminal/redeem", {**body, "request_id": "web-other"},
                             form_page="/console/terminal")
    assert (again.status_code, error_of(again.text)) == (409, "ALREADY_REDEEMED")
    assert "Till" in again.text
    finance = await visit("fiona")
    assert error_of((await finance.get("/console/terminal")).text) == "FORBIDDEN"
    agent = await visit("a1user")
    assert error_of((await agent.get("/console/terminal")).text) == "FORBIDDEN"


async def test_the_agents_tree_and_an_agents_page_show_balances_and_prices(
        shop: Service, visit: Any) -> None:
    support = await visit("sue")
    tree = await support.get("/console/agents")
    assert tree.status_code == 200 and 'href="/console/agents/A1"' in tree.text
    page = await support.get("/console/agents/A1")
    assert page.status_code == 200 and "Agent A1" in page.text
    assert (await support.get("/console/agents/NOPE")).status_code == 404
    agent = await visit("a1user")
    for path in ("/console/agents", "/console/agents/A1", "/console/holds", "/console/audit"):
        assert error_of((await agent.get(path)).text) == "FORBIDDEN", path


async def test_staff_release_an_agents_open_hold(shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    held = await runtime.holds.hold("A1", "VIP", 2, 600, buyer_id=None, client_hold_id="h-1",
                                    limits=runtime.risk.limits, actor="test")
    operator = await visit("oscar")
    page = await operator.get("/console/holds?status=open")
    assert page.status_code == 200 and held.hold_id in page.text
    done = await operator.post(f"/console/holds/{held.hold_id}/release", {},
                               form_page="/console/holds")
    assert done.status_code == 303
    assert (await runtime.holds.view("A1", held.hold_id)).state == "released"
    again = await operator.post(f"/console/holds/{held.hold_id}/release", {},
                                form_page="/console/holds")
    assert again.status_code == 303
    support = await visit("sue")
    assert error_of((await support.get("/console/holds")).text) == "FORBIDDEN"


async def test_the_audit_log_filters_and_verifies_the_chain(shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    page = await owner.get("/console/audit?action=sku.create")
    assert page.status_code == 200 and "sku.create" in page.text
    assert "batch.import" not in page.text
    checked = await owner.post("/console/audit/verify", {}, form_page="/console/audit")
    assert checked.status_code == 200 and 'data-chain="ok"' in checked.text
    refused = await owner.post("/console/audit/verify", {}, token=False)
    assert refused.status_code == 403
    operator = await visit("oscar")
    assert error_of((await operator.get("/console/audit")).text) == "FORBIDDEN"


async def test_finance_reconciles_and_sees_the_stored_run(shop: Service, visit: Any) -> None:
    finance = await visit("fiona")
    before = await finance.get("/console/money")
    assert before.status_code == 200 and "data-reconciled" not in before.text
    ran = await finance.post("/console/money/reconcile", {}, form_page="/console/money")
    assert ran.status_code == 303
    after = await finance.get("/console/money")
    assert 'data-reconciled="ok"' in after.text
    statement = await finance.get("/console/money/statement.csv?agent_id=A1")
    assert statement.status_code == 200 and statement.headers["content-type"].startswith(
        "text/csv")
    support = await visit("sue")
    assert error_of((await support.get("/console/money")).text) == "FORBIDDEN"


async def test_the_owner_creates_a_key_shown_once_and_revokes_it(shop: Service,
                                                                 visit: Any) -> None:
    owner = await visit("owner")
    made = await owner.post("/console/keys", {"role": "terminal", "name": "front desk"},
                            form_page="/console/keys")
    assert made.status_code == 200 and "data-key-text" in made.text
    text = made.text.split("data-key-text>")[1].split("<")[0]
    key_id = shop.runtime.keys.authenticate(text).key_id
    listed = await owner.get("/console/keys")
    assert key_id in listed.text and text not in listed.text
    gone = await owner.post(f"/console/keys/{key_id}/revoke", {}, form_page="/console/keys")
    assert gone.status_code == 303 and key_id not in (await owner.get("/console/keys")).text
    operator = await visit("oscar")
    assert error_of((await operator.get("/console/keys")).text) == "FORBIDDEN"


async def test_orders_list_filter_and_a_refund_asked_then_approved_by_someone_else(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    order, _ = await runtime.orders.place(OrderRequest("A1", "o-refund", "VIP", 1),
                                          actor="test", limits=runtime.risk.limits)
    operator = await visit("oscar")
    listed = await operator.get("/console/orders?agent_id=A1&status=fulfilled")
    assert listed.status_code == 200 and order.order_id in listed.text
    assert order.order_id not in (await operator.get("/console/orders?agent_id=A2")).text
    page = await operator.get(f"/console/orders/{order.order_id}")
    assert page.status_code == 200 and "code-masked" in page.text
    assert not any(code in page.text for code in CODES)
    fiona = await visit("fiona")
    asked = await fiona.post(f"/console/orders/{order.order_id}/refund",
                             {"reason": "customer changed their mind"},
                             form_page=f"/console/orders/{order.order_id}")
    assert asked.status_code == 303 and asked.headers["location"].startswith(
        "/console/approvals/")
    approval = asked.headers["location"]
    own = await fiona.post(approval + "/approve-run", {}, form_page=approval)
    assert (await runtime.orders.get(order.order_id, agent_id=None)).status == "fulfilled"
    assert own.status_code == 303
    frank = await visit("frank")
    done = await frank.post(approval + "/approve-run", {}, form_page=approval)
    assert done.status_code == 303
    assert (await runtime.orders.get(order.order_id, agent_id=None)).status == "refunded"


async def test_a_withdrawal_is_approved_then_paid_out_with_a_second_persons_approval(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    asked, _ = runtime.money.request_withdrawal("A1", 5_000, "CNY", "w-1", actor="test")
    fiona = await visit("fiona")
    queue = await fiona.get("/console/withdrawals")
    assert asked.withdrawal_id in queue.text
    approved = await fiona.post(f"/console/withdrawals/{asked.withdrawal_id}/approve", {})
    assert approved.status_code == 303
    pay = await fiona.post(f"/console/withdrawals/{asked.withdrawal_id}/pay",
                           {"reason": "monthly payout"}, form_page="/console/withdrawals")
    approval = pay.headers["location"]
    assert approval.startswith("/console/approvals/")
    frank = await visit("frank")
    ran = await frank.post(approval + "/approve-run", {}, form_page=approval)
    assert ran.status_code == 303
    paid = runtime.money.get_withdrawal(asked.withdrawal_id, actor_agent_id=None)
    assert paid.status == "paid"
    support = await visit("sue")
    assert error_of((await support.get("/console/withdrawals")).text) == "FORBIDDEN"


async def test_the_owner_lists_and_lifts_a_lockout(shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    page = await owner.get("/console/risk")
    assert page.status_code == 200
    missing = await owner.post("/console/risk/lift", {"subject": "ip:10.9.9.9"},
                               form_page="/console/risk")
    assert missing.status_code == 303
    operator = await visit("oscar")
    assert error_of((await operator.get("/console/risk")).text) == "FORBIDDEN"


async def test_batches_are_listed_and_filtered(shop: Service, visit: Any) -> None:
    operator = await visit("oscar")
    page = await operator.get("/console/batches")
    assert page.status_code == 200 and 'href="/console/batches/1"' in page.text
    assert 'href="/console/batches/1"' not in (await operator.get(
        "/console/batches?status=failed")).text
    support = await visit("sue")
    assert error_of((await support.get("/console/batches")).text) == "FORBIDDEN"


async def test_the_owner_invites_a_staff_member_with_a_link_shown_once(
        shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    made = await owner.post("/console/users", {"login": "nina", "display_name": "Nina",
                                               "role": "support"}, form_page="/console/users")
    assert made.status_code == 200 and "data-invitation-link" in made.text
    link = made.text.split("data-invitation-link>")[1].split("<")[0]
    assert link.startswith("/auth/invitation/")
    listed = await owner.get("/console/users")
    assert "nina" in listed.text and link not in listed.text
    finance = await visit("fiona")
    assert error_of((await finance.get("/console/users")).text) == "FORBIDDEN"


async def test_payment_channels_are_listed_and_switched_off_and_on(
        shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    page = await owner.get("/console/channels")
    assert page.status_code == 200
    for channel in shop.runtime.channels.all():
        off = await owner.post(f"/console/channels/{channel.channel_id}/disable", {},
                               form_page="/console/channels")
        assert off.status_code == 303
        assert not shop.runtime.channels.get(channel.channel_id).enabled
    operator = await visit("oscar")
    assert error_of((await operator.get("/console/channels")).text) == "FORBIDDEN"


async def test_retail_orders_are_listed_for_staff(shop: Service, visit: Any) -> None:
    support = await visit("sue")
    page = await support.get("/console/retail-orders?status=delivered")
    assert page.status_code == 200 and "<table" in page.text
    agent = await visit("a1user")
    assert error_of((await agent.get("/console/retail-orders")).text) == "FORBIDDEN"


async def test_an_alert_address_set_on_the_account_page_gets_mail_the_alerts_page_shows(
        shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    bad = await owner.post("/auth/account/email", {"email": "not an address"},
                           form_page="/auth/account")
    assert bad.status_code == 303 and shop.runtime.alerts.evaluate()["mails"] == 0
    saved = await owner.post("/auth/account/email", {"email": "Olivia@Example.com"},
                             form_page="/auth/account")
    assert saved.status_code == 303
    assert 'value="olivia@example.com"' in (await owner.get("/auth/account")).text
    shop.runtime.catalog.update_sku("VIP", {"low_stock_threshold": 100}, actor="test")
    assert shop.runtime.alerts.evaluate()["mails"] == 1
    page = await owner.get("/console/alerts")
    assert page.status_code == 200 and 'data-mails-queued="1"' in page.text
    assert 'data-mailed="0"' in page.text


async def test_operators_suspend_and_reprice_an_agent_and_owners_set_its_credit(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    held = await runtime.holds.hold("A1", "VIP", 1, 600, buyer_id=None, client_hold_id="h-c",
                                    limits=runtime.risk.limits, actor="test")
    operator = await visit("oscar")
    page = await operator.get("/console/agents/A1")
    assert 'data-agent-status="active"' in page.text and 'name="credit"' not in page.text
    done = await operator.post("/console/agents/A1/status", {"status": "suspended"})
    assert done.status_code == 303
    assert runtime.agent_directory.get_for("A1", None)["status"] == "suspended"
    assert (await runtime.holds.view("A1", held.hold_id)).state == "released"
    suspended = await operator.get("/console/agents/A1")
    assert suspended.status_code == 200 and 'data-agent-status="suspended"' in suspended.text
    back = await operator.post("/console/agents/A1/status", {"status": "active"})
    assert back.status_code == 303
    assert runtime.agent_directory.get_for("A1", None)["status"] == "active"
    priced = await operator.post("/console/agents/A1/prices", {"sku": "VIP", "price": "11.00",
                                                               "currency": "CNY"},
                                 form_page="/console/agents/A1")
    assert priced.status_code == 303
    rows = runtime.price_lists.list_prices(sku="VIP", grade=None, agent_id="A1")
    assert [row["price_minor"] for row in rows] == [1100]
    refused = await operator.post("/console/agents/A1/credit", {"credit": "500.00"},
                                  form_page="/console/agents/A1")
    assert refused.status_code == 403
    owner = await visit("owner")
    credit = await owner.post("/console/agents/A1/credit", {"credit": "500.00"},
                              form_page="/console/agents/A1")
    assert credit.status_code == 303
    assert runtime.agent_directory.get_for("A1", None)["credit_limit_minor"] == 50_000
    owner_actor = f"user:{shop.people['owner'].user_id}"
    changes = audit.list_entries(runtime.db, object_id="A1", actor=owner_actor)
    assert [entry.action for entry in changes][-1:] == ["agent.credit_limit"]
    operated = audit.list_entries(runtime.db, object_id="A1", action="agent.status")
    assert len(operated) == 2 and operated[-1].actor == f"user:{shop.people['oscar'].user_id}"
    assert audit.list_entries(runtime.db, action="price.set")[-1].actor.startswith("user:")
    no_token = await owner.post("/console/agents/A1/status", {"status": "suspended"},
                                token=False)
    assert no_token.status_code == 403
    assert runtime.agent_directory.get_for("A1", None)["status"] == "active"
    for login in ("sue", "fiona"):
        staff = await visit(login)
        for path in ("/console/agents/A1/status", "/console/agents/A1/prices",
                     "/console/agents/A1/credit"):
            response = await staff.post(path, {"status": "suspended", "sku": "VIP",
                                               "price": "1.00", "currency": "CNY",
                                               "credit": "9.00"},
                                        form_page="/console/agents/A1")
            assert error_of(response.text) == "FORBIDDEN", (login, path)
    assert runtime.agent_directory.get_for("A1", None)["status"] == "active"


async def test_an_agent_price_below_its_parents_is_refused_in_the_console(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    runtime.agent_updates.create("A1-KID", "Kid", {}, actor="test", actor_agent_id="A1")
    operator = await visit("oscar")
    low = await operator.post("/console/agents/A1-KID/prices",
                              {"sku": "VIP", "price": "1.00", "currency": "CNY"},
                              form_page="/console/agents/A1-KID")
    assert low.status_code == 303
    shown = await operator.get("/console/agents/A1-KID", headers={"accept-language": "en"})
    assert "(PRICE_BELOW_PARENT)" in shown.text
    assert runtime.price_lists.list_prices(sku="VIP", grade=None, agent_id="A1-KID") == []
