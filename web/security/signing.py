"""HMAC-SHA256 signing of small values the browser carries back to us (flash messages, CSRF
tokens), so that we can trust them without storing them.

Every signature is bound to a *purpose* (``"flash"``, ``"csrf"``): each purpose signs with its
own key derived from the secret, so a value signed for one purpose never verifies for another.
The secret is ``WebSettings.secret_key``; ``previous_secret_keys`` still verify, so rotating the
secret does not void every open form at once. The standard library's ``hmac`` does the work:
the format is small enough that a dependency (itsdangerous) would buy nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNED_CHARS_MAX = 4096
"""Longer input is refused before any work: cookies are capped near 4 KiB by browsers anyway."""
_SEP = "."


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding (cookie- and form-safe text)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes | None:
    """The bytes of :func:`b64encode` text, or None when ``text`` is not such text."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


class Signer:
    """Signs and verifies values with the first of ``keys``; verifies with any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a Signer needs at least one key")
        self._keys = tuple(keys)

    def mac(self, purpose: str, *parts: bytes, key_index: int = 0) -> bytes:
        """The HMAC-SHA256 of ``parts`` (length-prefixed, so ``("ab", "c")`` and ``("a", "bc")``
        differ) under the ``purpose`` key derived from key number ``key_index``."""
        purpose_key = hmac.new(self._keys[key_index], b"cardsvc-web:" + purpose.encode(),
                               hashlib.sha256).digest()
        mac = hmac.new(purpose_key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def verify_mac(self, purpose: str, expected: bytes, *parts: bytes) -> bool:
        """Whether ``expected`` is the :meth:`mac` of ``parts`` under any of the keys; compared
        in constant time."""
        return any(
            hmac.compare_digest(expected, self.mac(purpose, *parts, key_index=index))
            for index in range(len(self._keys))
        )

    def sign(self, purpose: str, payload: bytes, *, now_s: int | None = None) -> str:
        """``payload`` with its signing time and signature, as ``payload.time.mac`` text."""
        issued = str(int(time.time()) if now_s is None else now_s)
        body = b64encode(payload)
        mac = self.mac(purpose, body.encode(), issued.encode())
        return _SEP.join((body, issued, b64encode(mac)))

    def unsign(self, purpose: str, token: str, *, max_age_s: int,
               now_s: int | None = None) -> bytes | None:
        """The payload of a :meth:`sign` token signed for ``purpose`` no more than
        ``max_age_s`` seconds ago (and not in the future beyond a minute of clock skew), or None
        when the token is malformed, forged, for another purpose or too old."""
        if len(token) > SIGNED_CHARS_MAX:
            return None
        parts = token.split(_SEP)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        body, issued, mac_text = parts
        mac = b64decode(mac_text)
        payload = b64decode(body)
        if mac is None or payload is None:
            return None
        if not self.verify_mac(purpose, mac, body.encode(), issued.encode()):
            return None
        now = int(time.time()) if now_s is None else now_s
        if not -60 <= now - int(issued) <= max_age_s:
            return None
        return payload
