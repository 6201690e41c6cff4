"""Goal: in a real browser (Debian's chromium), the pages render in both languages, the CSP
stops injected script, CSRF refuses forged posts and lets real ones through, a keyboard alone
can fill and send the form, the page scripts work, and a 360 px phone never scrolls sideways.
Method: the app under uvicorn on 127.0.0.1 (plain HTTP, so the __Host- Secure cookies rely on
Chromium treating loopback as a secure context) driven by Playwright; each test leaves a
screenshot in tests/artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.web.conftest import TEST_SECRET, serve, tab_to
from web import WebSettings, create_web

INJECTED = (
    "<!doctype html><html><body><p id='status'>injected</p>"
    "<script>window.pwned = 'inline';</script>"
    "<img src='data:,' onerror=\"window.pwned = 'handler'\">"
    "<p style='color: red' id='styled'>styled</p></body></html>"
)
"""What an escaping bug would let into a page: an inline script, a handler, a style."""


def _no_errors(page: Any) -> list[str]:
    """Collects the page's console errors (CSP violations among them) into the list returned."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_landing_page_in_chinese(page: Any, web_server: str) -> None:
    errors = _no_errors(page)
    response = page.goto(web_server + "/")
    assert response.status == 200
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("h1").inner_text() == "cardsvc"
    assert page.get_by_role("heading", name="试一试表单").is_visible()
    assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK SC\"', '试')")
    assert errors == []


def test_switching_to_english_and_back(page: Any, web_server: str) -> None:
    page.goto(web_server + "/")
    page.get_by_role("link", name="English").click()
    page.wait_for_url(re.compile(r"lang=en"))
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", name="Try a form").is_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["__Host-lang"]["value"] == "en" and cookies["__Host-lang"]["secure"]
    page.goto(web_server + "/demo/kit")  # the cookie keeps the choice
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_role("link", name="简体中文").click()
    page.wait_for_url(re.compile(r"lang=zh-CN"))
    assert page.locator("html").get_attribute("lang") == "zh-CN"


def test_landing_page_in_english(page: Any, web_server: str) -> None:
    page.goto(web_server + "/?lang=en")
    assert page.get_by_text("Digital codes, sold and redeemed safely").is_visible()


@pytest.fixture(scope="module")
def injected_server() -> Iterator[str]:
    async def injected(request: Request) -> Response:
        return HTMLResponse(INJECTED)

    served = serve(create_web(WebSettings(secret_key=TEST_SECRET),
                              routes=[Route("/test/injected", injected)]))
    try:
        yield served.base_url
    finally:
        served.stop()


def test_csp_blocks_injected_script_handlers_and_styles(page: Any, injected_server: str) -> None:
    errors = _no_errors(page)
    response = page.goto(injected_server + "/test/injected")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    page.wait_for_load_state("load")
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("getComputedStyle(document.getElementById('styled')).color") != (
        "rgb(255, 0, 0)")
    assert any("Content Security Policy" in error for error in errors)


def test_csrf_token_lets_the_real_form_through(page: Any, web_server: str) -> None:
    page.goto(web_server + "/")
    page.get_by_label("留言").fill("来自浏览器 <b>")
    page.get_by_role("button", name="提交").click()
    page.wait_for_url(web_server + "/")
    flash = page.locator(".flash-success")
    assert flash.inner_text() == "您输入的是：来自浏览器 <b>"  # noqa: RUF001 (the translation's colon)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["__Host-csrf"]["httpOnly"] and cookies["__Host-csrf"]["sameSite"] == "Strict"


def test_csrf_refuses_a_form_without_its_token(page: Any, web_server: str) -> None:
    page.goto(web_server + "/")
    page.locator("input[name=csrf_token]").evaluate("element => element.remove()")
    page.get_by_label("留言").fill("no token")
    with page.expect_navigation():
        page.get_by_role("button", name="提交").click()
    section = page.locator("[data-error-code]")
    assert section.get_attribute("data-error-code") == "FORBIDDEN"
    assert section.get_attribute("data-error-reason") == "csrf_token_missing"
    assert page.get_by_role("heading", name="不允许此操作").is_visible()


@pytest.fixture(scope="module")
def hostile_server(web_server: str) -> Iterator[str]:
    """Another origin (same host, other port: same site, so SameSite alone would not help)
    whose page posts to the web app. A bare Starlette app: an attacker's page has no CSP
    (ours, with ``form-action 'self'``, would stop the form before it left)."""
    async def hostile(request: Request) -> Response:
        return HTMLResponse(
            f"<!doctype html><form method='post' action='{web_server}/demo/echo'>"
            "<input name='message' value='forged'><button>win a prize</button></form>")

    served = serve(Starlette(routes=[Route("/", hostile)]))
    try:
        yield served.base_url
    finally:
        served.stop()


def test_csrf_refuses_a_post_from_another_origin(page: Any, web_server: str,
                                                 hostile_server: str) -> None:
    page.goto(web_server + "/")  # the victim has the CSRF cookie
    page.goto(hostile_server + "/")
    with page.expect_navigation():
        page.get_by_role("button", name="win a prize").click()
    section = page.locator("[data-error-code]")
    assert section.get_attribute("data-error-code") == "FORBIDDEN"
    assert section.get_attribute("data-error-reason") in ("origin_mismatch",
                                                          "csrf_token_missing")


def test_keyboard_alone_reaches_fills_and_sends_the_form(page: Any, web_server: str) -> None:
    page.goto(web_server + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    presses = tab_to(page, "#f-message")
    assert presses <= 8
    page.keyboard.type("keyboard only")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "keyboard only" in page.locator(".flash-success").inner_text()


def test_page_scripts_count_down_and_copy(page: Any, web_server: str) -> None:
    errors = _no_errors(page)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin=web_server)
    page.goto(web_server + "/demo/kit")
    # expect() polls from Playwright's side: wait_for_function would eval() in the page, which
    # the CSP (no 'unsafe-eval') refuses.
    expect(page.locator(".countdown")).to_have_text(re.compile(r"^1[45]:\d\d$"))
    page.get_by_role("button", name="复制").click()
    expect(page.locator(".copy")).to_have_text("已复制")
    assert page.evaluate("navigator.clipboard.readText()") == "DEMO-0000-0000"
    assert errors == []


@pytest.mark.parametrize("path", ["/", "/demo/kit", "/missing"])
def test_phone_width_has_no_horizontal_scroll(phone_page: Any, web_server: str,
                                              path: str) -> None:
    phone_page.goto(web_server + path)
    widths = phone_page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    assert widths[1] == 360
