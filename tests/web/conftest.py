"""Fixtures for the web layer's tests, in-process and in a real browser; reusable by the page
tests of later issues (storefront, console, portal).

In-process (fast, no network):

* ``web_settings``: ``WebSettings`` with a fixed test secret; override it in a test module to
  change settings. ``web_app``: ``create_web(web_settings)``.
* ``client``: ``httpx.AsyncClient`` over ``ASGITransport`` on ``https://testserver`` (secure
  transport, so the real ``__Host-`` cookies are used and kept by the client); tests are
  ``async`` with ``pytestmark = pytest.mark.anyio``. ``new_client(app)`` makes another (a
  second browser). ``form_token(client, path)`` GETs a page and returns its CSRF token;
  ``SAME_ORIGIN`` is the ``Origin`` header a browser sends.

In a browser (Debian's chromium driven by Playwright; scripts/ensure_chromium.sh installs it):

* ``web_server``: the app under uvicorn on a free 127.0.0.1 port in a thread, for the session;
  yields its base URL. Page tests of later issues start their own with :func:`serve` and their
  own app (``create_web(settings, hooks, routes=...)``) the same way.
* ``browser``: one headless chromium per test module (``CARDSVC_CHROMIUM`` or ``chromium`` on
  PATH; without either the browser tests skip, saying how to install it). Per module, not per
  session: Playwright's sync API keeps an event loop marked running in the main thread while
  it is started, which would break the ``anyio`` tests of the modules after it.
* ``page``: a fresh context and page per test, desktop size; ``phone_page``: a 360x740 touch
  phone. After each test a full-page screenshot goes to
  ``tests/artifacts/screenshots/<test>.png`` (git-ignored), passed or failed.
* ``tab_to(page, selector)``: presses Tab until the element matching ``selector`` has focus
  (failing after a bound), for keyboard-only navigation tests.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from web import WebSettings, create_web

TEST_SECRET = b"cardsvc-web-test-secret-32-bytes!!"
ORIGIN = "https://testserver"
SAME_ORIGIN = {"origin": ORIGIN}
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
SERVER_START_TIMEOUT_S = 15.0
TAB_PRESSES_MAX = 40
"""A page whose form needs more Tab presses than this is a page keyboard users give up on."""
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(secret_key=TEST_SECRET)


@pytest.fixture
def web_app(web_settings: WebSettings) -> Starlette:
    return create_web(web_settings)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def new_client(app: Starlette, base_url: str = ORIGIN) -> httpx.AsyncClient:
    """A client of ``app`` with its own cookie jar; redirects are not followed."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=base_url, follow_redirects=False)


@pytest.fixture
async def client(web_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with new_client(web_app) as http:
        yield http


_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def form_token(client: httpx.AsyncClient, path: str = "/") -> str:
    """The CSRF token of the first form on ``path`` (the GET also sets the CSRF cookie)."""
    response = await client.get(path)
    assert response.status_code == 200, response.status_code
    found = _TOKEN.search(response.text)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def error_code(html: str) -> tuple[str | None, str | None]:
    """(``data-error-code``, ``data-error-reason``) of an error page, None where absent."""
    code = re.search(r'data-error-code="([A-Z_]+)"', html)
    reason = re.search(r'data-error-reason="([a-z_]+)"', html)
    return (code.group(1) if code else None, reason.group(1) if reason else None)


# ----- a real server and a real browser --------------------------------------------------------


@dataclass
class Served:
    """A web app running under uvicorn in a thread: reach it at ``base_url``."""

    base_url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(app: Starlette) -> Served:
    """Starts ``app`` under uvicorn on a free loopback port and waits until it listens."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture(scope="session")
def web_server() -> Iterator[str]:
    served = serve(create_web(WebSettings(secret_key=TEST_SECRET)))
    try:
        yield served.base_url
    finally:
        served.stop()


def chromium_path() -> str | None:
    """The chromium to drive: ``CARDSVC_CHROMIUM`` (set by scripts/test.sh) or PATH's."""
    return os.environ.get("CARDSVC_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium: run scripts/ensure_chromium.sh (or set CARDSVC_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _screenshot_path(request: pytest.FixtureRequest) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return ARTIFACTS / f"{name}.png"


def _page(browser: Any, request: pytest.FixtureRequest, **options: Any) -> Iterator[Any]:
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        try:
            page.screenshot(path=str(_screenshot_path(request)), full_page=True)
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _page(browser, request, viewport=DESKTOP, locale="zh-CN")


@pytest.fixture
def phone_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _page(browser, request, viewport=PHONE, device_scale_factor=2, is_mobile=True,
                     has_touch=True, locale="zh-CN")


def tab_to(page: Any, selector: str, presses_max: int = TAB_PRESSES_MAX) -> int:
    """Presses Tab until the element matching ``selector`` has focus; returns how many presses
    it took. Fails when it is not reached within ``presses_max`` presses."""
    target = page.locator(selector)
    for presses in range(1, presses_max + 1):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return presses
    raise AssertionError(f"{selector} not reached with {presses_max} Tab presses")
