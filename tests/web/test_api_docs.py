"""Goal: the API's ``/docs`` page renders in a real browser with no network beyond this
process and without violating its own Content-Security-Policy (an offline host, or a strict
corporate proxy, still gets a working API browser).

Method: the JSON app (``server.app.create_app``; the docs need no store, so the lifespan stays
off) under uvicorn on loopback; chromium with every request to another host aborted; the
Swagger UI title and an operation must appear, and no CSP violation may be reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.app import create_app
from server.settings import Settings
from tests.web.conftest import serve


def test_docs_render_offline_under_their_csp(browser: Any, tmp_path: Path) -> None:
    served = serve(create_app(Settings(data_dir=tmp_path / "data")))  # type: ignore[arg-type]
    context = browser.new_context()
    try:
        page = context.new_page()
        outside: list[str] = []

        def only_local(route: Any) -> None:
            if route.request.url.startswith(served.base_url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        violations: list[str] = []
        page.on("console", lambda message: violations.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(f"{served.base_url}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
        assert "cardsvc" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        assert outside == [] and violations == []
    finally:
        context.close()
        served.stop()
