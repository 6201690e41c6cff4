"""One-time messages shown on the next page (post, redirect, get), kept in a signed cookie.

There is no server-side session for anonymous visitors (the storefront has none), so a flash
message travels in the ``flash`` cookie: JSON signed with the ``flash`` purpose, at most
:data:`FLASHES_MAX` messages of :data:`FLASH_CHARS_MAX` characters, valid for ten minutes. The
text is translated when it is flashed (the locale of the post is the locale of the page after
the redirect) and escaped when it is shown, like any other text. The renderer takes the messages
and deletes the cookie in the same response, so each is shown once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from web.security.cookies import CookiePolicy
from web.security.signing import Signer

FLASH_COOKIE = "flash"
FLASH_PURPOSE = "flash"
FLASHES_MAX = 3
FLASH_CHARS_MAX = 200
"""Three messages of 200 characters stay under 2 KiB of cookie even in Chinese (3 bytes per
character, then base64), far from the 4 KiB browsers allow per cookie."""
FLASH_MAX_AGE_S = 600
Level = Literal["info", "success", "warning", "error"]
LEVELS: tuple[Level, ...] = ("info", "success", "warning", "error")


@dataclass(frozen=True)
class Flash:
    """One message and how it looks (``info``, ``success``, ``warning``, ``error``)."""

    level: Level
    text: str


def _decode(signer: Signer, token: str | None) -> list[Flash]:
    if not token:
        return []
    payload = signer.unsign(FLASH_PURPOSE, token, max_age_s=FLASH_MAX_AGE_S)
    if payload is None:
        return []
    try:
        items = json.loads(payload)
    except ValueError:
        return []
    flashes: list[Flash] = []
    for item in items[:FLASHES_MAX] if isinstance(items, list) else []:
        if (isinstance(item, list) and len(item) == 2 and item[0] in LEVELS
                and isinstance(item[1], str)):
            flashes.append(Flash(item[0], item[1][:FLASH_CHARS_MAX]))
    return flashes


def add_flash(response: Response, request: Request, *, signer: Signer, cookies: CookiePolicy,
              text: str, level: Level = "info") -> None:
    """Queues ``text`` (cut to 200 characters) for the next page, after the messages already
    queued (the oldest are dropped beyond three), by setting the cookie on ``response``."""
    queued = _decode(signer, cookies.read(request.scope, FLASH_COOKIE))
    queued.append(Flash(level, text[:FLASH_CHARS_MAX]))
    payload = json.dumps([[f.level, f.text] for f in queued[-FLASHES_MAX:]],
                         ensure_ascii=False).encode()
    response.headers.append("set-cookie", cookies.header(
        request.scope, FLASH_COOKIE, signer.sign(FLASH_PURPOSE, payload),
        max_age_s=FLASH_MAX_AGE_S))


def take_flashes(request: Request, *, signer: Signer, cookies: CookiePolicy) -> list[Flash]:
    """The messages queued for this page (forged, stale or malformed cookies yield none)."""
    return _decode(signer, cookies.read(request.scope, FLASH_COOKIE))
