"""Goal: static assets are served from memory under content-hashed URLs cached for a year, the
plain paths revalidate with ETags, and nothing outside the asset list is reachable. Method:
request assets in-process and compare bytes with the files."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from web.static import STATIC_DIR, StaticAssets

pytestmark = pytest.mark.anyio


async def test_hashed_urls_are_immutable_and_match_the_file(web_app: Starlette,
                                                            client: httpx.AsyncClient) -> None:
    url = web_app.state.assets.url("css/site.css")
    assert url.startswith("/static/css/site.") and url.endswith(".css") and url != (
        "/static/css/site.css")
    response = await client.get(url)
    assert response.status_code == 200
    assert response.content == (STATIC_DIR / "css" / "site.css").read_bytes()
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_plain_paths_revalidate_with_etags(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/js/site.js")
    assert response.headers["cache-control"] == "no-cache"
    again = await client.get("/static/js/site.js",
                             headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", [
    "/static/", "/static/nope.css", "/static/../settings.py", "/static/%2e%2e/app.py",
    "/static/css/site.000000000000.css",
])
async def test_nothing_else_is_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404


async def test_pages_link_hashed_assets_only(client: httpx.AsyncClient, web_app: Starlette) -> None:
    html = (await client.get("/")).text
    for asset in ("css/site.css", "js/site.js"):
        assert web_app.state.assets.url(asset) in html


def test_a_changed_file_gets_a_new_url(tmp_path: Path) -> None:
    (tmp_path / "a.css").write_text("a{}")
    before = StaticAssets(tmp_path, max_age_s=1).url("a.css")
    (tmp_path / "a.css").write_text("b{}")
    assert StaticAssets(tmp_path, max_age_s=1).url("a.css") != before


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)", re.IGNORECASE)
INLINE_ATTRIBUTE = re.compile(r"<[a-zA-Z][^<>]*\s(?:style|on[a-z]+)\s*=", re.IGNORECASE)


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    """The CSP would block them anyway; this finds them before a browser does."""
    templates = Path(STATIC_DIR).parent / "templates"
    for template in templates.rglob("*.html"):
        text = template.read_text()
        assert not INLINE_SCRIPT.search(text), template
        assert not INLINE_ATTRIBUTE.search(text), template
