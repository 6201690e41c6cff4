"""Goal: ``/docs`` needs nothing from outside this process: the page names only its own assets
(no CDN), the assets are served from the installed Swagger UI wheel with the right types, any
other asset name is unknown, and the page carries a Content-Security-Policy that allows scripts
from this origin and its own inline script only.

Method: the app over ASGITransport; the browser half of the proof (the page renders offline
with every outside request blocked and no CSP violation) is tests/web/test_api_docs.py.
"""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_the_docs_page_loads_only_its_own_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/docs/assets/") for source in sources), sources
    assert "cdn" not in page.text and "https://" not in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    [inline] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in policy
    for source, kind in zip(sorted(set(sources)), ("image/png", "text/javascript", "text/css"),
                            strict=True):
        asset = await client.get(source)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    assert (await client.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("name", ["index.html", "..%2Fswagger-ui.css", "swagger-ui.js.map",
                                  "%2E%2E%2F__init__.py"])
async def test_other_asset_names_are_unknown(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ROUTE_NOT_FOUND"
