"""``/docs``: the OpenAPI browser (Swagger UI) served from this process, never from a CDN, so it
works offline and behind a strict network policy.

Swagger UI's files come from the ``swagger-ui-bundle-v2`` wheel (Apache-2.0, Swagger UI 5.31,
which reads OpenAPI 3.1), served under ``/docs/assets/`` from a fixed list of names. The page is
FastAPI's ``get_swagger_ui_html`` pointed at those files, sent with a Content-Security-Policy
that allows scripts from this origin and the page's one inline script (by its SHA-256), and
nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Annotated

import swagger_ui_bundle
from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from cardsvc.errors import ErrorCode, make_error

router = APIRouter(include_in_schema=False)

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
"""The files the page loads; any other name is ROUTE_NOT_FOUND."""
ASSET_DIR = Path(str(swagger_ui_bundle.swagger_ui_path))
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_page(openapi_url: str, title: str) -> tuple[str, str]:
    """The page's HTML and its Content-Security-Policy. Pure."""
    html = bytes(get_swagger_ui_html(
        openapi_url=openapi_url, title=title, oauth2_redirect_url=None,
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png").body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html))
    policy = (f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' "
              "'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
              "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, policy


HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@router.get(DOCS_PATH)
async def docs() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``, with everything it loads from this origin."""
    html, policy = _PAGE
    return HTMLResponse(html, headers={**HEADERS, "content-security-policy": policy})


@router.get(f"{ASSETS_PATH}/{{name}}")
async def docs_asset(name: Annotated[str, PathParam(max_length=64)]) -> FileResponse:
    """One of Swagger UI's files (ASSETS). Errors: ROUTE_NOT_FOUND for any other name."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise make_error(ErrorCode.ROUTE_NOT_FOUND, "no endpoint has this path")
    return FileResponse(ASSET_DIR / name, media_type=media_type,
                        headers={**HEADERS, "cache-control": "public, max-age=86400"})


_PAGE = docs_page("/openapi.json", "cardsvc - API docs")
