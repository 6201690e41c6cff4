"""Cross-site request forgery protection for every unsafe request (anything but GET, HEAD,
OPTIONS and TRACE), checked by one middleware so that no page can forget it.

Two independent checks must both pass:

1. **Where the request comes from.** ``Sec-Fetch-Site: cross-site`` is refused outright. Then
   ``Origin`` must be the request's own origin (scheme from the transport or
   ``tls_terminated``, host from ``Host``) or one of ``trusted_origins``; without ``Origin``,
   ``Referer`` must be; with neither, the request is refused (every current browser sends
   ``Origin`` on a form POST, and ``Referrer-Policy: same-origin`` keeps ``Referer`` for us).
2. **A token only our pages can know** (signed double submit). The browser holds a random
   secret in the ``csrf`` cookie (``__Host-``, HttpOnly, SameSite=Strict). Each form carries
   ``nonce.mac`` where ``mac = HMAC(key, secret, binding, nonce)``: a fresh nonce per render, so
   the token never repeats in a page (no BREACH-style guessing through compression), and a
   ``binding``: the login session's own CSRF secret when the deployment gives one
   (``session_binding``: ``cardsvc.access.csrf_binding`` derives it from the session token, as
   ``SessionInfo.csrf_token``), else a hash of the session cookie; so a token issued under one
   session never verifies under another, and logging in or out voids every token issued
   before. The token comes from the ``X-CSRF-Token`` header (scripts),
   the ``csrf_token`` field of an urlencoded form (read whole, at most ``form_bytes_max``), or
   the *first* part of a multipart form (the ``forms.form`` macro puts it first), so an upload
   is checked without buffering it.

A refusal is a 403 ``FORBIDDEN`` page whose details carry a stable ``reason``
(:data:`REASONS`); the request never reaches the route.
"""

from __future__ import annotations

import contextvars
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from python_multipart.multipart import parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsvc.errors import ErrorCode
from web.security.cookies import CookiePolicy, secure_transport
from web.security.signing import Signer, b64decode, b64encode

CSRF_COOKIE = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
SESSION_COOKIE = "session"
"""The login session cookie (of the coming console and portal) whose value binds tokens."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SECRET_BYTES = 32
NONCE_BYTES = 16
MULTIPART_PREFIX_BYTES_MAX = 8 * 1024
"""How much of a multipart body is read to find its first part, the token: its headers and a
44-character value fit in well under 1 KiB."""
TOKEN_CHARS_MAX = 128
REASONS = (
    "cross_site", "origin_mismatch", "referer_mismatch", "origin_missing",
    "csrf_cookie_missing", "csrf_token_missing", "csrf_token_invalid", "form_too_large",
)
"""Every ``details.reason`` of a refusal; stable, like error codes. All are 403 ``FORBIDDEN``
but ``form_too_large``, which is ``LIMIT_EXCEEDED``."""

Reject = Callable[[Scope, Receive, Send, ErrorCode, dict[str, Any]], Awaitable[None]]
SessionBinding = Callable[[str], bytes]
"""The CSRF binding of a login session cookie's value (the session's CSRF secret)."""


def default_binding(session: str) -> bytes:
    """A hash of the session cookie: the binding when the deployment gives none."""
    return hashlib.sha256(session.encode()).digest()
"""Answers a refused request: (scope, receive, send, code, details); a styled error page."""


@dataclass
class CsrfState:
    """The CSRF secret of one request, and whether a page used it (so it must be stored)."""

    signer: Signer
    secret: bytes
    binding: bytes
    new: bool
    issued: bool = field(default=False)

    def token(self) -> str:
        """A fresh token for a form or a script of this page (``nonce.mac``)."""
        self.issued = True
        nonce = secrets.token_bytes(NONCE_BYTES)
        mac = self.signer.mac("csrf", self.secret, self.binding, nonce)
        return f"{b64encode(nonce)}.{b64encode(mac)}"

    def verify(self, token: str) -> bool:
        """Whether ``token`` was issued for this secret and binding (constant-time compare)."""
        if len(token) > TOKEN_CHARS_MAX or token.count(".") != 1:
            return False
        nonce_text, mac_text = token.split(".")
        nonce, mac = b64decode(nonce_text), b64decode(mac_text)
        if nonce is None or mac is None or len(nonce) != NONCE_BYTES:
            return False
        return self.signer.verify_mac("csrf", mac, self.secret, self.binding, nonce)


_current: contextvars.ContextVar[CsrfState | None] = contextvars.ContextVar(
    "cardsvc_web_csrf", default=None)


def csrf_token() -> str:
    """A token for the form being rendered. Raises LookupError outside a request that passed
    through :class:`CsrfMiddleware` (a page served without it is a wiring bug)."""
    state = _current.get()
    if state is None:
        raise LookupError("csrf_token() needs the CsrfMiddleware")
    return state.token()


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {key: value for key, value in scope.get("headers", ())}


def own_origin(scope: Scope, *, tls_terminated: bool) -> str | None:
    """The origin this request was addressed to, from its transport and ``Host`` header."""
    host = _headers(scope).get(b"host")
    if not host:
        return None
    scheme = "https" if secure_transport(scope, tls_terminated=tls_terminated) else "http"
    return f"{scheme}://{host.decode('latin-1')}".lower()


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_problem(scope: Scope, allowed: Iterable[str]) -> str | None:
    """The reason the request's source is refused, or None when it is one of ``allowed``."""
    headers = _headers(scope)
    allowed_set = set(allowed)
    if headers.get(b"sec-fetch-site") == b"cross-site":
        return "cross_site"
    origin = headers.get(b"origin")
    if origin is not None:
        return None if origin.decode("latin-1").lower() in allowed_set else "origin_mismatch"
    referer = headers.get(b"referer")
    if referer is not None:
        return None if _origin_of(referer.decode("latin-1")) in allowed_set else "referer_mismatch"
    return "origin_missing"


def _urlencoded_token(body: bytes) -> str | None:
    try:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=1000)
    except ValueError:
        return None
    return next((value for key, value in pairs if key == CSRF_FIELD), None)


def _first_part_token(prefix: bytes, boundary: bytes) -> tuple[str | None, bool]:
    """(the value of the first multipart part when it is ``csrf_token``, whether ``prefix`` was
    long enough to decide)."""
    opening = b"--" + boundary + b"\r\n"
    if len(prefix) < len(opening):
        return None, False
    if not prefix.startswith(opening):
        return None, True
    head_end = prefix.find(b"\r\n\r\n", len(opening))
    if head_end < 0:
        return None, False
    head = prefix[len(opening):head_end].lower()
    value_end = prefix.find(b"\r\n--" + boundary, head_end + 4)
    if value_end < 0:
        return None, False
    if b'name="' + CSRF_FIELD.encode() + b'"' not in head:
        return None, True
    return prefix[head_end + 4:value_end].decode("latin-1"), True


class _Replay:
    """A ``receive`` that first hands back the body chunks already read, then the rest."""

    def __init__(self, receive: Receive, chunks: list[bytes], more_body: bool) -> None:
        self._receive = receive
        self._pending: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": more_body}]

    async def __call__(self) -> Message:
        if self._pending:
            return self._pending.pop()
        return await self._receive()


class CsrfMiddleware:
    """Refuses unsafe requests that fail the origin or token check (see the module text)."""

    def __init__(self, app: ASGIApp, *, signer: Signer, cookies: CookiePolicy,
                 trusted_origins: Iterable[str], tls_terminated: bool, form_bytes_max: int,
                 reject: Reject, session_binding: SessionBinding | None = None) -> None:
        self.app = app
        self.session_binding = session_binding or default_binding
        self.signer = signer
        self.cookies = cookies
        self.trusted_origins = tuple(trusted_origins)
        self.tls_terminated = tls_terminated
        self.form_bytes_max = form_bytes_max
        self.reject = reject

    def _state(self, scope: Scope) -> CsrfState:
        stored = b64decode(self.cookies.read(scope, CSRF_COOKIE) or "")
        session = self.cookies.read(scope, SESSION_COOKIE)
        binding = self.session_binding(session) if session else b""
        if stored is not None and len(stored) == SECRET_BYTES:
            return CsrfState(self.signer, stored, binding, new=False)
        return CsrfState(self.signer, secrets.token_bytes(SECRET_BYTES), binding, new=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self._state(scope)
        if scope["method"] not in SAFE_METHODS:
            refusal, receive = await self._check(scope, receive, state)
            if refusal is not None:
                code, details = refusal
                await self.reject(scope, receive, send, code, details)
                return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and state.new and state.issued:
                cookie = self.cookies.header(scope, CSRF_COOKIE, b64encode(state.secret))
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        token = _current.set(state)
        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            _current.reset(token)

    async def _check(self, scope: Scope, receive: Receive,
                     state: CsrfState) -> tuple[tuple[ErrorCode, dict[str, Any]] | None, Receive]:
        """(None or the refusal's code and details, the ``receive`` the app must read from)."""
        allowed = [*self.trusted_origins]
        own = own_origin(scope, tls_terminated=self.tls_terminated)
        if own is not None:
            allowed.append(own)
        problem = origin_problem(scope, allowed)
        if problem is not None:
            return (ErrorCode.FORBIDDEN, {"reason": problem}), receive
        if state.new:
            return (ErrorCode.FORBIDDEN, {"reason": "csrf_cookie_missing"}), receive
        token, receive, too_large = await self._token(scope, receive)
        if too_large:
            details = {"reason": "form_too_large", "field": "request_body",
                       "max": self.form_bytes_max}
            return (ErrorCode.LIMIT_EXCEEDED, details), receive
        if token is None:
            return (ErrorCode.FORBIDDEN, {"reason": "csrf_token_missing"}), receive
        if not state.verify(token):
            return (ErrorCode.FORBIDDEN, {"reason": "csrf_token_invalid"}), receive
        return None, receive

    async def _token(self, scope: Scope, receive: Receive) -> tuple[str | None, Receive, bool]:
        """(the token or None, the replaying ``receive``, whether the form was too large)."""
        headers = _headers(scope)
        if CSRF_HEADER in headers:
            return headers[CSRF_HEADER].decode("latin-1"), receive, False
        content_type, options = parse_options_header(headers.get(b"content-type", b""))
        if content_type == b"application/x-www-form-urlencoded":
            chunks, more, size = await _read(receive, self.form_bytes_max + 1, stop=None)
            if size > self.form_bytes_max:
                return None, receive, True
            return _urlencoded_token(b"".join(chunks)), _Replay(receive, chunks, more), False
        if content_type == b"multipart/form-data" and options.get(b"boundary"):
            boundary = options[b"boundary"]
            chunks, more, _ = await _read(
                receive, MULTIPART_PREFIX_BYTES_MAX,
                stop=lambda prefix: _first_part_token(prefix, boundary)[1])
            found, _ = _first_part_token(b"".join(chunks), boundary)
            return found, _Replay(receive, chunks, more), False
        return None, receive, False


async def _read(receive: Receive, limit: int,
                stop: Callable[[bytes], bool] | None) -> tuple[list[bytes], bool, int]:
    """Reads body chunks until the body ends, ``limit`` bytes are in, or ``stop(prefix)``:
    (the chunks, whether more body follows, the bytes read)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more and size < limit:
        message = await receive()
        if message["type"] != "http.request":
            more = False
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if stop is not None and stop(b"".join(chunks)):
            break
    return chunks, more, size
