"""Goal: a guest buys in a real browser, end to end, on the service's own pages: browse, check
out (the proof-of-work challenge solved by the page's script), pay in the sandbox, see the code
large with its instructions, reload (masked), show it again (audited), claim it once through
the claim link, find the order again with its password; in zh-CN on a desktop and in English on
a phone, and by keyboard alone (Tab and Enter); the sandbox banner on every page, no console
error (CSP violations included).

Method: the whole service (``server.app.create_asgi``: API, notify route and pages, lifespan
on, so the runtime, the recovery timer and the mail worker run) under uvicorn on 127.0.0.1,
driven by Playwright with Debian's chromium; a screenshot per step goes to
tests/artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import expect

from server.app import create_asgi
from server.settings import Settings
from tests.fixtures.shop import SKU, stock_shop
from tests.web.conftest import ARTIFACTS, _free_port, tab_to

START_TIMEOUT_S = 30.0
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def shop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir: Path = tmp_path_factory.mktemp("shop") / "data"
    app = create_asgi(Settings(data_dir=data_dir, port=port, public_url=base))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the shop did not start"
        time.sleep(0.05)
    stock_shop(app.api.state.runtime)
    stock_shop(app.api.state.runtime, sku="VIDEO1M", name="<b>Video</b> membership, 1 month",
               codes=[f"VIDEO-{i:04d}-ZXCV" for i in range(3)], pins=[None] * 3,  # type: ignore[list-item]
               price=2_500, category="视频会员", validity_text="30 days after activation")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"store_{name}.png"), full_page=True)


def _buy(page: Any, base: str, *, email: str, password: str | None, pay: str, lang: str,
         prefix: str) -> str:
    page.goto(f"{base}/?lang={lang}")
    expect(page.locator("[data-sandbox=on]")).to_be_visible()
    _shot(page, f"{prefix}_1_home")
    page.locator(f"a[href='/p/{SKU}']").click()
    page.fill("#f-email", email)
    if password:
        page.fill("#f-password", password)
    expect(page.locator(".pow-status.is-done")).to_be_visible(timeout=20_000)
    _shot(page, f"{prefix}_2_product")
    page.locator("form[action='/checkout'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/pay/ro_"))
    order_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("[data-deadline-ms]")).to_be_visible()
    _shot(page, f"{prefix}_3_pay")
    page.locator("a.button-primary").click()
    page.wait_for_url(re.compile(r"/store/sandbox/pay"))
    _shot(page, f"{prefix}_4_sandbox")
    page.locator(f"button[name=scenario][value={pay}]").click()
    page.wait_for_url(re.compile(rf"/orders/{order_id}$"))
    return order_id


def test_guest_buys_pays_sees_code_then_masked_claims_and_looks_up(
        page: Any, browser: Any, shop_server: str) -> None:
    errors = _errors(page)
    order_id = _buy(page, shop_server, email="guest@example.com", password=PASSWORD,
                    pay="paid", lang="zh-CN", prefix="zh")
    expect(page.locator("[data-order-status=delivered]")).to_be_visible()
    first = page.locator(".code-item[data-masked=no] code").first
    expect(first).to_have_text(re.compile(r"^SHOP-\d{4}-QWERTY$"))
    expect(page.get_by_text("Open the game, go to Shop > Redeem.")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    _shot(page, "zh_5_order_first_view")
    claim_href = page.locator("a.claim-link").get_attribute("href")
    page.reload()
    expect(page.locator(".code-item[data-masked=yes]").first).to_be_visible()
    assert "QWERTY" not in page.locator(".code-list").inner_text().replace("*", "")[:6]
    _shot(page, "zh_6_order_masked")
    page.locator(f"form[action='/orders/{order_id}/reveal'] button").click()
    expect(page.locator(".code-item[data-masked=no]").first).to_be_visible()
    # The claim link: GET shows only a button; the first POST reveals, a replay is masked.
    assert claim_href is not None
    claim = browser.new_context(locale="zh-CN").new_page()
    claim.goto(claim_href)
    expect(claim.locator("[data-claimed=no]")).to_be_visible()
    assert claim.locator(".code-item").count() == 0
    claim.locator("form button[type=submit]").click()
    expect(claim.locator(".code-item[data-masked=no]").first).to_be_visible()
    _shot(claim, "zh_7_claimed")
    claim.goto(claim_href)
    claim.locator("form button[type=submit]").click()
    expect(claim.locator(".code-item[data-masked=yes]").first).to_be_visible()
    # Another browser finds the order with the email and the order password only.
    other = browser.new_context(locale="zh-CN").new_page()
    other.goto(f"{shop_server}/lookup")
    other.fill("#f-email", "guest@example.com")
    other.fill("#f-password", PASSWORD)
    other.locator("form[aria-label] button[type=submit]").first.click()
    other.wait_for_url(re.compile(rf"/orders/{order_id}$"))
    expect(other.locator("[data-order-status=delivered]")).to_be_visible()
    _shot(other, "zh_8_lookup_found")
    other.goto(f"{shop_server}/orders/{order_id}")
    assert errors == []


def test_english_phone_buyer(phone_page: Any, shop_server: str) -> None:
    page = phone_page
    errors = _errors(page)
    order_id = _buy(page, shop_server, email="phone@example.com", password=None, pay="paid",
                    lang="en", prefix="en_phone")
    expect(page.get_by_role("heading", name="Your codes")).to_be_visible()
    expect(page.locator(".code-item[data-masked=no]").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    _shot(page, "en_phone_5_order")
    page.goto(f"{shop_server}/p/VIDEO1M")
    expect(page.locator("h1")).to_have_text("<b>Video</b> membership, 1 month")
    assert page.evaluate("document.querySelectorAll('h1 b').length") == 0
    _shot(page, "en_phone_6_product_xss_inert")
    assert order_id.startswith("ro_") and errors == []


def test_failed_payment_shows_failed(page: Any, shop_server: str) -> None:
    _buy(page, shop_server, email="fail@example.com", password=None, pay="failed", lang="en",
         prefix="en_failed")
    expect(page.locator("[data-order-status=failed]")).to_be_visible()
    _shot(page, "en_failed_order")


def test_a_guest_buys_by_keyboard_alone(page: Any, shop_server: str) -> None:
    """Tab and Enter only, from the home page to the delivered code: every step of the buying
    flow is reachable and operable without a pointer (focus order follows the page)."""
    errors = _errors(page)
    page.goto(f"{shop_server}/?lang=en")
    tab_to(page, f"a[href='/p/{SKU}']")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/p/{SKU}$"))
    tab_to(page, "#f-email")
    page.keyboard.type("keys@example.com")
    expect(page.locator(".pow-status.is-done")).to_be_visible(timeout=20_000)
    tab_to(page, "form[action='/checkout'] button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/pay/ro_"))
    order_id = page.url.rsplit("/", 1)[1]
    tab_to(page, "a.button-primary")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/store/sandbox/pay"))
    tab_to(page, "button[name=scenario][value=paid]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/orders/{order_id}$"))
    expect(page.locator("[data-order-status=delivered]")).to_be_visible()
    expect(page.locator(".code-item[data-masked=no]").first).to_be_visible()
    _shot(page, "en_keyboard_order")
    assert errors == []
