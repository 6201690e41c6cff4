"""Goal: the service's ASGI application sends the API's paths to the JSON app (envelopes, no web
middleware) and every other path to the web pages (HTML, CSP, CSRF), and both see the same
runtime once the lifespan has run.

Method: ``create_asgi`` over a temporary data directory, requests through httpx's
``ASGITransport`` after entering the JSON app's lifespan, as uvicorn would.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from server.app import GC_THRESHOLDS, Composed, create_asgi, tune_collector
from server.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[Composed, httpx.AsyncClient]]:
    composed = create_asgi(Settings(data_dir=tmp_path / "data"))
    async with composed.api.router.lifespan_context(composed.api):
        transport = httpx.ASGITransport(app=composed)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            yield composed, http


@pytest.mark.anyio
async def test_api_paths_answer_json_and_other_paths_html(
    service: tuple[Composed, httpx.AsyncClient],
) -> None:
    composed, http = service
    health = await http.get("/healthz")
    assert health.json() == {"status": "ok"}
    assert "content-security-policy" not in health.headers
    unknown_api = await http.get("/v1/no-such-thing")
    assert unknown_api.status_code == 404
    assert unknown_api.json()["error"]["code"] == "ROUTE_NOT_FOUND"
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    missing_page = await http.get("/no-such-page")
    assert missing_page.status_code == 404
    assert missing_page.headers["content-type"].startswith("text/html")
    assert composed.web.state.runtime is composed.api.state.runtime  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_web_form_without_its_token_is_refused_by_the_web_layer(
    service: tuple[Composed, httpx.AsyncClient],
) -> None:
    _, http = service
    refused = await http.post("/demo/echo", data={"message": "hi"},
                              headers={"origin": "https://testserver"})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")


def test_tune_collector_freezes_start_up_and_sets_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
