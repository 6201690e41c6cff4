"""Cookies that only this origin can set or read: ``__Host-`` names, ``Secure``, ``HttpOnly``,
``SameSite=Strict`` and ``Path=/`` unless a caller says otherwise.

The ``__Host-`` prefix makes the browser refuse the cookie unless it is ``Secure``, has
``Path=/`` and no ``Domain``, so a sibling subdomain cannot plant or overwrite it (cookie
tossing). Browsers keep ``Secure`` cookies only from secure contexts: HTTPS, and loopback HTTP
in Chromium and Firefox. Probed with Debian's chromium 156 on ``http://127.0.0.1`` and
``http://localhost``: ``__Host-x; Secure`` is kept and sent back, ``__Host-x`` without
``Secure`` is dropped. So by default every cookie is ``__Host-`` and ``Secure``, even on plain
HTTP, which works for local development in those browsers and fails closed (no cookie, so no
form posts) on a misconfigured plain-HTTP deployment.

For clients that refuse ``Secure`` over plain HTTP (Safari, Python's ``http.cookiejar`` as used
by httpx, any non-loopback ``http://`` address), ``WebSettings.dev_plain_http_cookies`` names
the cookies of plain-HTTP requests ``dev-<name>`` without ``Secure``; HTTPS requests keep the
``__Host-`` form. The reader looks only for the name the current request's mode writes, so a
``dev-`` cookie planted over HTTP is never read on HTTPS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from starlette.requests import cookie_parser
from starlette.types import Scope

SameSite = Literal["strict", "lax"]
HOST_PREFIX = "__Host-"
DEV_PREFIX = "dev-"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9._~-]{0,3800}")
"""Values are base64url or tokens: no quoting is ever needed, and browsers cap a cookie near
4 KiB, so anything longer is a bug."""
_BASE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def secure_transport(scope: Scope, *, tls_terminated: bool) -> bool:
    """Whether the request reached the service over TLS: its scheme (which uvicorn takes from
    ``X-Forwarded-Proto`` only for trusted proxies) or a proxy we are told terminates TLS."""
    return tls_terminated or scope.get("scheme") in ("https", "wss")


@dataclass(frozen=True)
class CookiePolicy:
    """Names, writes and reads this layer's cookies for one deployment's settings."""

    tls_terminated: bool = False
    dev_plain_http: bool = False

    def secure(self, scope: Scope) -> bool:
        """Whether cookies of this request are written ``Secure`` with the ``__Host-`` name."""
        return not self.dev_plain_http or secure_transport(
            scope, tls_terminated=self.tls_terminated)

    def name(self, scope: Scope, base: str) -> str:
        """The cookie name ``base`` has in this request's mode (``__Host-base`` or
        ``dev-base``)."""
        if not _BASE_NAME.fullmatch(base):
            raise ValueError(f"cookie base names are short lower-case words, not {base!r}")
        return (HOST_PREFIX if self.secure(scope) else DEV_PREFIX) + base

    def header(self, scope: Scope, base: str, value: str, *, max_age_s: int | None = None,
               samesite: SameSite = "strict", httponly: bool = True) -> str:
        """The ``Set-Cookie`` header value that stores ``value`` under ``base`` (a session
        cookie when ``max_age_s`` is None; ``max_age_s=0`` deletes it)."""
        if not _COOKIE_VALUE.fullmatch(value):
            raise ValueError("cookie values are short base64url or token text")
        parts = [f"{self.name(scope, base)}={value}", "Path=/"]
        if max_age_s is not None:
            parts.append(f"Max-Age={max_age_s}")
        if self.secure(scope):
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        parts.append("SameSite=" + samesite.capitalize())
        return "; ".join(parts)

    def delete_header(self, scope: Scope, base: str, *, samesite: SameSite = "strict") -> str:
        """The ``Set-Cookie`` header value that deletes the cookie ``base``."""
        return self.header(scope, base, "", max_age_s=0, samesite=samesite)

    def read(self, scope: Scope, base: str) -> str | None:
        """The value of cookie ``base`` under this request's name, or None when absent."""
        wanted = self.name(scope, base)
        for key, value in scope.get("headers", ()):
            if key == b"cookie":
                found = cookie_parser(value.decode("latin-1")).get(wanted)
                if found is not None:
                    return found
        return None
