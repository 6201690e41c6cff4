"""The security headers of every response of the web layer, set in one pure-ASGI middleware.

The Content-Security-Policy allows nothing but our own origin, and no inline script or style
at all (no nonces, no hashes): every script is a file under ``/static/js``, every style under
``/static/css``, and HTML attributes like ``onclick`` or ``style`` simply do not work. That
turns most HTML-injection bugs into inert text. ``require-trusted-types-for 'script'`` with no
policy allowed also makes DOM sinks such as ``innerHTML`` refuse strings in browsers that
support Trusted Types, so our scripts write text with ``textContent`` only.

The camera is allowed for our own origin only: the terminal's web redemption page will scan
codes with it. HTML is never cached (``no-store``): pages show balances, orders and codes.
HSTS is sent only on secure transport, where it can mean something.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.security.cookies import secure_transport

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
))
PERMISSIONS_POLICY = ", ".join((
    "camera=(self)",
    "microphone=()",
    "geolocation=()",
    "payment=()",
    "usb=()",
    "serial=()",
    "bluetooth=()",
))
HSTS = "max-age=31536000"
"""A year, without includeSubDomains: other hosts of the deployment's domain are not ours to
bind to HTTPS."""

BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"permissions-policy", PERMISSIONS_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds :data:`BASE_HEADERS` (each unless the response set its own), ``Cache-Control:
    no-store`` to HTML without a Cache-Control of its own, and HSTS on secure transport."""

    def __init__(self, app: ASGIApp, *, tls_terminated: bool) -> None:
        self.app = app
        self.tls_terminated = tls_terminated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = secure_transport(scope, tls_terminated=self.tls_terminated)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_security_headers(
                    list(message.get("headers", [])), secure=secure)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_security_headers(headers: list[tuple[bytes, bytes]], *,
                           secure: bool) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    for name, value in BASE_HEADERS:
        if name not in present:
            headers.append((name, value))
    content_type = next((value for name, value in headers if name.lower() == b"content-type"),
                        b"")
    if content_type.startswith(b"text/html") and b"cache-control" not in present:
        headers.append((b"cache-control", b"no-store"))
    if secure and b"strict-transport-security" not in present:
        headers.append((b"strict-transport-security", HSTS.encode()))
    return headers
