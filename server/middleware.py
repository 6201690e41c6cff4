"""Pure ASGI middleware: the request body bound and the last-resort error handler.

Both are plain ASGI callables rather than ``BaseHTTPMiddleware``, which would add a task and a
stream per request; a request that passes them costs at most two closures.

* :class:`BodySizeLimitMiddleware` answers ``LIMIT_EXCEEDED`` (400, as in ``api.errors``) to a
  request whose body is larger than ``max_bytes``. A declared ``Content-Length`` over the bound
  is refused before a byte of the body is read; a chunked body is counted as it arrives and
  refused as soon as it crosses the bound, so no request makes the server buffer more than the
  bound plus one network read.
* :class:`InternalErrorMiddleware` turns any exception that escaped the app into the 500
  ``INTERNAL_ERROR`` envelope and logs its type and code locations only. It sits outside
  everything else, and unlike Starlette's ``ServerErrorMiddleware`` it does not re-raise, so the
  server never logs the exception's message (which may hold request data).
"""

from __future__ import annotations

import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, internal_error_response, log_unexpected
from cardsvc.errors import ErrorCode


class _BodyTooLarge(Exception):
    """Raised into the app by the counting ``receive`` once the bound is crossed."""


def _body_headers(scope: Scope) -> tuple[int | None, bool]:
    """(declared Content-Length or None, whether a Transfer-Encoding is present)."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked


class BodySizeLimitMiddleware:
    """Refuses request bodies larger than ``max_bytes`` with ``LIMIT_EXCEEDED``.

    A request that declares a length within the bound passes untouched: the HTTP server
    (uvicorn) never delivers more bytes than the declared length. Any other request (chunked, or
    with no declared length) has its body counted as the app reads it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})
        """Bigger bounds for exact paths (file uploads), each still finite."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        length, chunked = _body_headers(scope)
        if length is not None and length > limit:
            await self._refuse(scope, receive, send, length, limit)
            return
        if length is not None and not chunked:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        exceeded = False
        app_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal app_started
            if exceeded and not app_started:
                # The app caught the exception and answered with something of its own (FastAPI
                # turns any body-reading failure into a 400): that answer is dropped in favour of
                # the LIMIT_EXCEEDED envelope, sent once the app is done.
                return
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not app_started:
            await self._refuse(scope, receive, send, received, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, got: int,
                      limit: int) -> None:
        response = error_response(
            ErrorCode.LIMIT_EXCEEDED,
            f"the request body is larger than the limit of {limit} bytes",
            {"field": "request_body", "max": limit, "got": got},
            # The rest of the body is never read, so the connection cannot carry another request.
            {"connection": "close"},
        )
        await response(scope, receive, send)


class InternalErrorMiddleware:
    """Renders any exception that escaped the app as the 500 ``INTERNAL_ERROR`` envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            log_unexpected(error)
            if started:
                # Part of a response is already out; the server closes the connection when the
                # app returns without finishing it, which is all that can be done.
                return
            await internal_error_response()(scope, receive, send)
