"""Goal: in a real browser (Debian's chromium), the console's and portal's main flows work end to
end: log in with TOTP (keyboard only), import a file and watch its progress, trace a code, the
terminal page redeeming a code twice (the second time it names who redeemed it), an agent
placing an order and creating a key for a new sub-agent, an agent requesting a withdrawal,
listing its orders and suspending a sub-agent by keyboard alone, the terminal page on a
phone without sideways scrolling, a shop order's page and its refund request, creating a
payment channel, and inviting a colleague from the portal. Method: the whole service with the
test shop under uvicorn on 127.0.0.1 (``served_shop``), driven by Playwright; each test leaves
a screenshot in tests/artifacts/screenshots/. Bounded: no sleeps, Playwright's waits with short
timeouts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.fixtures.shop import stock_shop
from tests.web.conftest import ARTIFACTS, tab_to
from tests.web.console.conftest import CODES, PASSES, PASSWORD, Service

WAIT_MS = 10_000


def log_in(page: Any, base: str, service: Service, login: str) -> None:
    person = service.people[login]
    page.goto(base + "/auth/login")
    page.fill("#f-login", login)
    page.fill("#f-password", PASSWORD)
    if person.secret is not None:
        page.fill("#f-code", service.code_for(person))
    page.locator("form button[type=submit]").first.click()
    page.wait_for_load_state()


def test_owner_logs_in_with_totp_by_keyboard_alone(
        page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    page.goto(base + "/auth/login")
    tab_to(page, "#f-login")
    page.keyboard.type("owner")
    tab_to(page, "#f-password")
    page.keyboard.type(PASSWORD)
    tab_to(page, "#f-code")
    page.keyboard.type(service.code_for(service.people["owner"]))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console$"), timeout=WAIT_MS)
    expect(page.locator("#money-title")).to_be_visible()
    tab_to(page, "a[href='/console/agents']")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/agents$"), timeout=WAIT_MS)
    expect(page.locator("a[href='/console/agents/A1']")).to_be_visible()


def test_an_import_shows_its_progress_and_ends_imported(
        page: Any, served_shop: tuple[str, Service], tmp_path: Path) -> None:
    base, service = served_shop
    log_in(page, base, service, "oscar")
    upload = tmp_path / "codes.csv"
    upload.write_text("code\n" + "".join(f"BROWSER-{i:05d}-QQ\n" for i in range(300)))
    page.goto(base + "/console/batches/new")
    page.set_input_files("#f-file", str(upload))
    page.select_option("#f-u-sku", "VIP")
    page.get_by_role("button", name=re.compile("Upload|上传")).click()
    page.wait_for_url(re.compile(r"/console/batches/\d+$"), timeout=WAIT_MS)
    expect(page.locator("[data-progress-state]")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("body")).to_contain_text("300")


def test_support_traces_a_code_typed_in_full(page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    log_in(page, base, service, "sue")
    page.goto(base + "/console/codes")
    page.fill("#f-full-code", CODES[3].lower())
    page.locator("#f-full-code").press("Enter")
    page.wait_for_url(re.compile(r"/console/codes/\d+$"), timeout=WAIT_MS)
    assert CODES[3] not in page.content()
    expect(page.locator("body")).to_contain_text("Acme Cards")


def test_the_terminal_redeems_once_and_the_second_try_names_who_and_when(
        page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    log_in(page, base, service, "till")
    page.wait_for_url(re.compile(r"/console/terminal$"), timeout=WAIT_MS)
    other = page.context.new_page()
    for tab in (page, other):
        tab.goto(base + "/console/terminal")
        tab.fill("#f-code", PASSES[2])
        tab.locator("#f-code").press("Enter")
        expect(tab.locator("[data-status=valid]")).to_be_visible(timeout=WAIT_MS)
    page.get_by_role("button", name=re.compile("Redeem one use|核销一次")).click()
    expect(page.locator("[data-result=redeemed]")).to_be_visible(timeout=WAIT_MS)
    other.get_by_role("button", name=re.compile("Redeem one use|核销一次")).click()
    refused = other.locator("[data-result=refused]")
    expect(refused).to_have_attribute("data-error-code", "ALREADY_REDEEMED", timeout=WAIT_MS)
    expect(refused).to_contain_text("Till")
    other.close()


def test_an_agent_orders_and_keys_a_new_sub_agent(
        page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    log_in(page, base, service, "a2user")
    page.goto(base + "/portal/buy")
    page.fill("#f-quantity", "1")
    page.get_by_role("button", name=re.compile("Place the order|提交订单")).click()
    page.wait_for_url(re.compile(r"/portal/orders/"), timeout=WAIT_MS)
    expect(page.locator(".code-masked").first).to_be_visible()
    page.goto(base + "/portal/agents")
    page.fill("#f-agent_id", "A2-SHOP")
    page.fill("#f-name", "Corner shop")
    page.get_by_role("button", name=re.compile("^(Create|创建)$")).click()
    expect(page.locator("body")).to_contain_text("A2-SHOP", timeout=WAIT_MS)
    page.goto(base + "/portal/keys")
    page.fill("#f-agent_id", "A2-SHOP")
    page.get_by_role("button", name=re.compile("Create the key|创建密钥")).click()
    expect(page.locator("[data-key-text]")).to_be_visible(timeout=WAIT_MS)


def test_the_terminal_page_fits_a_phone(phone_page: Any,
                                        served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    log_in(phone_page, base, service, "till")
    phone_page.goto(base + "/console/terminal")
    expect(phone_page.locator("#f-code")).to_be_visible()
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= phone_page.viewport_size["width"]


def test_a_payout_is_approved_in_the_browser_by_a_second_person(
        page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    asked, _ = service.runtime.money.request_withdrawal("A2", 2_000, "CNY", "browser-w",
                                                        actor="test")
    log_in(page, base, service, "fiona")
    page.goto(base + "/console/withdrawals")
    row = page.locator(f"[data-withdrawal='{asked.withdrawal_id}']")
    row.get_by_role("button", name=re.compile("^(Approve|批准)$")).click()
    page.goto(base + "/console/withdrawals?status=approved")
    row = page.locator(f"[data-withdrawal='{asked.withdrawal_id}']")
    row.get_by_role("button", name=re.compile("Ask to pay it out|申请付款")).click()
    page.wait_for_url(re.compile(r"/console/approvals/"), timeout=WAIT_MS)
    approval = page.url
    checker = page.context.browser.new_context().new_page()
    try:
        log_in(checker, base, service, "frank")
        checker.goto(approval)
        checker.get_by_role("button",
                            name=re.compile("Approve and do it now|批准并立即执行")).click()
        checker.wait_for_load_state()
    finally:
        checker.context.close()
    paid = service.runtime.money.get_withdrawal(asked.withdrawal_id, actor_agent_id=None)
    assert paid.status == "paid"


def test_an_agent_withdraws_lists_its_orders_and_suspends_a_sub_agent_by_keyboard(
        page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    service.runtime.agent_updates.create("A1-KEYS", "Keyboard shop", {}, actor="test",
                                         actor_agent_id="A1")
    page.goto(base + "/auth/login")
    tab_to(page, "#f-login")
    page.keyboard.type("a1user")
    tab_to(page, "#f-password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal$"), timeout=WAIT_MS)
    tab_to(page, "nav a[href='/portal/withdrawals']")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal/withdrawals$"), timeout=WAIT_MS)
    tab_to(page, "#f-amount")
    page.keyboard.type("5.00")
    page.keyboard.press("Enter")
    expect(page.locator("[data-withdrawal]")).to_have_count(1, timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "portal-withdrawals.png"), full_page=True)
    tab_to(page, "nav a[href='/portal/buy']")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal/buy$"), timeout=WAIT_MS)
    tab_to(page, "#f-quantity")
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal/orders/"), timeout=WAIT_MS)
    order_id = page.url.rsplit("/", 1)[1]
    tab_to(page, "nav a[href='/portal/orders']")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal/orders$"), timeout=WAIT_MS)
    expect(page.locator(f"a[href='/portal/orders/{order_id}']")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "portal-orders.png"), full_page=True)
    tab_to(page, "nav a[href='/portal/agents']")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal/agents$"), timeout=WAIT_MS)
    tab_to(page, "[data-sub-agent='A1-KEYS'] button")
    page.keyboard.press("Enter")
    expect(page.locator("[data-sub-agent='A1-KEYS'] input[value='active']")).to_have_count(
        1, timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "portal-sub-agents.png"), full_page=True)
    assert service.runtime.agent_directory.get_for("A1-KEYS", None)["status"] == "suspended"


def test_staff_open_a_shop_order_and_ask_for_its_refund(
        page: Any, served_shop: tuple[str, Service]) -> None:
    """A guest's order bought and paid through the shop's own API and sandbox page, then the
    retail order page as finance sees it (no code on it) and the refund asked for."""
    base, service = served_shop
    stock_shop(service.runtime, sku="BROWSERSHOP")
    service.runtime.challenges.enabled = False
    started = page.request.post(base + "/v1/shop/checkouts", data={
        "sku": "BROWSERSHOP", "quantity": 1, "email": "guest@example.com",
        "channel_id": "sandbox"})
    assert started.status == 201, started.text()
    order_id = started.json()["order"]["order_id"]
    pay = urlsplit(started.json()["payment"]["url"])  # the service's public URL: its path
    page.goto(f"{base}{pay.path}?{pay.query}")
    with page.expect_response(lambda r: r.request.method == "POST"
                              and "/store/sandbox/pay" in r.url) as paid:
        page.locator("button[name=scenario][value=paid]").click()
    assert paid.value.status == 303  # answered once the paid callback has delivered the order
    assert service.runtime.engine.order_code_ids(order_id)
    page.context.clear_cookies()
    log_in(page, base, service, "fiona")
    page.goto(base + "/console/retail-orders")
    page.locator(f"a[href='/console/retail-orders/{order_id}']").click()
    expect(page.locator(f"[data-retail-order='{order_id}']")).to_be_visible(timeout=WAIT_MS)
    assert "SHOP-" not in page.locator("main").inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-retail-order.png"), full_page=True)
    page.fill("#f-reason", "charged twice")
    page.get_by_role("button", name=re.compile("Ask for a refund|申请退款")).click()
    page.wait_for_url(re.compile(r"/console/approvals/"), timeout=WAIT_MS)
    expect(page.locator(f"a[href='/console/retail-orders/{order_id}']")).to_be_visible()


def test_the_owner_creates_a_payment_channel_whose_secret_is_not_shown(
        page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    secret = "browser-typed-secret-once"
    log_in(page, base, service, "owner")
    page.goto(base + "/console/channels")
    page.fill("#f-channel_id", "ep-browser")
    page.select_option("#f-provider", "epay")
    page.fill("#f-display_name", "EPay (browser)")
    page.fill("#f-merchant_id", "1001")
    page.fill("#f-secret_1_name", "key")
    page.fill("#f-secret_1_value", secret)
    page.fill("#f-options", "gateway=https://pay.example.com/")
    page.get_by_role("button", name=re.compile("Create the channel|创建渠道")).click()
    expect(page.locator("[data-channel='ep-browser']")).to_be_visible(timeout=WAIT_MS)
    assert secret not in page.content()
    page.screenshot(path=str(ARTIFACTS / "console-channels.png"), full_page=True)


def test_an_agent_invites_a_colleague_on_the_people_page(
        page: Any, served_shop: tuple[str, Service]) -> None:
    base, service = served_shop
    log_in(page, base, service, "a1user")
    page.goto(base + "/portal/users")
    page.fill("#f-login", "a1colleague")
    page.fill("#f-display_name", "Colleague")
    page.get_by_role("button", name=re.compile("^(Invite|邀请)$")).click()
    expect(page.locator("[data-invitation-link]")).to_contain_text("/auth/invitation/",
                                                                    timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "portal-people.png"), full_page=True)
