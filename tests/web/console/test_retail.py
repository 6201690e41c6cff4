"""The console's retail order page: staff see one shop order without its codes, support sends
its mail again and changes its address (audited by the domain), and a refund is asked by one
finance user and approved and run by another (maker-checker on ``retail_order``), the money
going back through the provider; agents and terminals are refused.

Method: the whole service over ASGITransport with the test shop's people (``visit``), a shop
product checked out and paid through the sandbox simulator; assertions read statuses, ids and
the domain's state (order status, audit log, queued mails, reconciliation).
"""

from __future__ import annotations

from typing import Any

import pytest

from cardsvc import audit
from cardsvc.reports import reconciliation_report
from cardsvc.sales import CheckoutRequest
from tests.fixtures.shop import CODES as SHOP_CODES
from tests.fixtures.shop import PINS, SKU, stock_shop
from tests.web.console.conftest import Service, error_of

pytestmark = pytest.mark.anyio


async def _delivered(shop: Service) -> str:
    runtime = shop.runtime
    stock_shop(runtime)
    runtime.challenges.enabled = False
    started = await runtime.checkout.start(CheckoutRequest(
        sku=SKU, quantity=1, email="buyer@example.com", channel_id="sandbox", ip="10.0.0.9"))
    order_id = started.order.order_id
    await runtime.checkout.simulate_sandbox(started.order.attempt_id, scenario="paid")
    assert (await runtime.checkout.admin_order(order_id)).status == "delivered"
    return order_id


async def test_staff_see_a_retail_order_without_its_codes(shop: Service, visit: Any) -> None:
    order_id = await _delivered(shop)
    support = await visit("sue")
    listed = await support.get("/console/retail-orders")
    assert f'href="/console/retail-orders/{order_id}"' in listed.text
    page = await support.get(f"/console/retail-orders/{order_id}")
    assert page.status_code == 200 and f'data-retail-order="{order_id}"' in page.text
    assert not any(secret in page.text for secret in (*SHOP_CODES, *PINS[:1]))
    assert "/refund" not in page.text  # support cannot ask for refunds
    missing = await support.get("/console/retail-orders/ret_nosuchorder")
    assert error_of(missing.text) == "ORDER_NOT_FOUND"
    for person in ("a1user", "till"):
        browser = await visit(person)
        refused = await browser.get(f"/console/retail-orders/{order_id}")
        assert error_of(refused.text) == "FORBIDDEN"


async def test_support_resends_the_mail_and_changes_the_address(shop: Service,
                                                                visit: Any) -> None:
    order_id = await _delivered(shop)
    runtime = shop.runtime
    support = await visit("sue")
    page = f"/console/retail-orders/{order_id}"
    sent = await support.post(page + "/resend", {}, form_page=page)
    assert sent.status_code == 303
    moved = await support.post(page + "/email", {"email": "new@example.com"}, form_page=page)
    assert moved.status_code == 303
    assert (await runtime.checkout.admin_order(order_id)).email == "new@example.com"
    actions = {entry.action for entry in audit.list_entries(runtime.db)
               if entry.object_id == order_id}
    assert {"mail.resend", "order.email"} <= actions
    bad = await support.post(page + "/email", {"email": "not an address"}, form_page=page)
    assert bad.status_code == 303
    assert (await runtime.checkout.admin_order(order_id)).email == "new@example.com"
    operator = await visit("oscar")
    refused = await operator.post(page + "/resend", {}, form_page=page)
    assert error_of(refused.text) == "FORBIDDEN"


async def test_a_retail_refund_is_asked_by_one_and_run_by_another(shop: Service,
                                                                  visit: Any) -> None:
    order_id = await _delivered(shop)
    runtime = shop.runtime
    page = f"/console/retail-orders/{order_id}"
    fiona = await visit("fiona")
    assert "/refund" in (await fiona.get(page)).text
    asked = await fiona.post(page + "/refund", {"reason": "buyer was charged twice"},
                             form_page=page)
    assert asked.status_code == 303
    approval = asked.headers["location"]
    assert approval.startswith("/console/approvals/")
    shown = await fiona.get(approval)
    assert f'href="/console/retail-orders/{order_id}"' in shown.text
    own = await fiona.post(approval + "/approve-run", {}, form_page=approval)
    assert own.status_code == 303
    assert (await runtime.checkout.admin_order(order_id)).status == "delivered"
    frank = await visit("frank")
    done = await frank.post(approval + "/approve-run", {}, form_page=approval)
    assert done.status_code == 303
    assert (await runtime.checkout.admin_order(order_id)).status == "refunded"
    report = reconciliation_report(runtime.store, runtime.db, runtime.catalog)
    assert report["ok"], report["differences"]
    again = await fiona.post(page + "/refund", {"reason": "again"}, form_page=page)
    assert again.status_code == 303  # the page no longer offers it; the request is refused
    assert "/refund" not in (await fiona.get(page)).text
