"""Local static assets (CSS, JavaScript, images, fonts) under ``/static``, with content hashes.

There is no CDN and no front-end build: the files under ``web/static`` are the assets. At start
they are read into memory once and each gets a content hash, which yields two URLs:

* ``/static/css/site.3f2a9c1b7d0e.css`` (what :meth:`StaticAssets.url` and the template global
  ``static_url`` produce): its bytes can never change, so it is cached for a year,
  ``immutable``; a new deploy with new bytes has a new URL.
* ``/static/css/site.css``: the plain path, for references a hash cannot reach (``url()`` inside
  CSS); ``no-cache`` with an ETag, so browsers revalidate and get 304 when it is unchanged.

Serving from a dictionary in memory means no path from the URL ever reaches the file system
(no traversal), no disk read per request, and a fixed, small memory cost (bounded by
``STATIC_BYTES_MAX``).
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

STATIC_DIR = Path(__file__).parent / "static"
STATIC_BYTES_MAX = 8 << 20
"""8 MiB for all assets together, held in memory; ours are tens of KiB, so a bigger tree means
something (a data file, a font family) landed there by mistake."""
STATIC_PREFIX = "/static/"
HASH_CHARS = 12
"""48 bits of SHA-256: collisions between versions of one file are not a concern at this size."""
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    """One file: its bytes, type, ETag and the Cache-Control it is served with."""

    body: bytes
    content_type: str
    etag: str
    cache_control: str


class StaticAssets:
    """Every file under ``root``, served from memory under both its hashed and plain paths."""

    def __init__(self, root: Path = STATIC_DIR, *, max_age_s: int) -> None:
        self._hashed: dict[str, str] = {}
        self._by_path: dict[str, Asset] = {}
        total = 0
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            relative = path.relative_to(root).as_posix()
            body = path.read_bytes()
            total += len(body)
            if total > STATIC_BYTES_MAX:
                raise ValueError(f"static assets exceed {STATIC_BYTES_MAX} bytes at {relative}")
            digest = hashlib.sha256(body).hexdigest()[:HASH_CHARS]
            content_type = _TYPES.get(path.suffix) or (
                mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            stem, dot, suffix = relative.rpartition(".")
            hashed = f"{stem}.{digest}.{suffix}" if dot else f"{relative}.{digest}"
            etag = f'"{digest}"'
            self._hashed[relative] = hashed
            self._by_path[hashed] = Asset(body, content_type, etag,
                                          f"public, max-age={max_age_s}, immutable")
            self._by_path[relative] = Asset(body, content_type, etag, "no-cache")

    def url(self, relative: str, root_path: str = "") -> str:
        """The hashed URL of the asset at ``relative`` (``css/site.css``). Raises KeyError for
        an asset that does not exist, so a typo in a template fails its first render."""
        return root_path + STATIC_PREFIX + self._hashed[relative]

    def paths(self) -> list[str]:
        """The plain relative path of every asset."""
        return sorted(self._hashed)

    async def endpoint(self, request: Request) -> Response:
        """``GET``/``HEAD /static/{path}``: the asset, 304 when ``If-None-Match`` matches, or a
        404 (left to the error pages) for anything else."""
        asset = self._by_path.get(request.path_params["path"])
        if asset is None:
            raise HTTPException(404)
        headers = {"etag": asset.etag, "cache-control": asset.cache_control}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)
