"""Error pages: every failure of the web layer is a styled HTML page with a stable code.

* A ``CardsvcError`` raised by a domain call gets the HTTP status of its class (the same table
  as ``api/errors.py``, derived here from ``cardsvc.errors.error_class`` because web may not
  import api; ``tests/web/test_errors.py`` checks that both agree for every code).
* Starlette's ``HTTPException`` (unknown route, wrong method, malformed form) maps its status
  to a code, as the JSON API does.
* Anything else is a 500 ``INTERNAL_ERROR`` page rendered by :class:`InternalErrorMiddleware`;
  the log gets the exception's type and code locations only, since its message may hold
  request data (a code, a PIN).

The page shows a translated title and sentence chosen by status (and by ``details.reason`` for
CSRF refusals), the code, and a way back. It never shows the exception's message, details or
any internals: domain messages are English sentences for API clients and logs, not for pages.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsvc.errors import (
    BadInput,
    CardsvcError,
    Conflict,
    Corruption,
    ErrorCode,
    Forbidden,
    InternalError,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
    error_class,
)
from web.i18n import N_, gettext

log = logging.getLogger("cardsvc.web")

_STATUS_OF_CLASS: dict[type[CardsvcError], int] = {
    BadInput: 400,
    NotFound: 404,
    Conflict: 409,
    Corruption: 500,
    Unavailable: 503,
    InternalError: 500,
    Unauthenticated: 401,
    Forbidden: 403,
    RateLimited: 429,
}
_STATUS_OF_CODE: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
}
"""The two codes whose status is not their class's (both ``BadInput``), as in api/errors.py."""
_CODE_OF_STATUS: dict[int, ErrorCode] = {
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.ROUTE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
}

_TEXTS: dict[int, tuple[str, str]] = {
    400: (N_("The request could not be handled"),
          N_("Something in the request was not right. Go back, check it and try again.")),
    401: (N_("Please sign in"), N_("This page needs you to be signed in.")),
    403: (N_("Not allowed"), N_("You are not allowed to do this.")),
    404: (N_("Page not found"), N_("There is no page at this address.")),
    405: (N_("Not allowed"), N_("This page cannot be used this way.")),
    409: (N_("This cannot be done now"),
          N_("The current state does not allow this. Reload the page to see the latest.")),
    422: (N_("The request could not be handled"),
          N_("Something in the request was not right. Go back, check it and try again.")),
    429: (N_("Too many requests"), N_("Please wait a moment and try again.")),
    500: (N_("Something went wrong"),
          N_("We could not handle this request. The problem has been logged.")),
    503: (N_("Temporarily unavailable"),
          N_("The service cannot handle this right now. Please try again in a moment.")),
}
_REASON_TEXTS: dict[str, str] = {
    "csrf": N_("This form has expired or was not sent from this site. Go back, reload the page "
               "and try again."),
    "form_too_large": N_("The form sent was too large."),
    "body_too_large": N_("The request was too large."),
}


def status_of(code: ErrorCode) -> int:
    """The HTTP status of ``code`` (the same as the JSON API's)."""
    return _STATUS_OF_CODE.get(code) or _STATUS_OF_CLASS[error_class(code)]


def code_of_status(status: int) -> ErrorCode:
    """The code of a bare HTTP status (from Starlette's ``HTTPException``)."""
    if status in _CODE_OF_STATUS:
        return _CODE_OF_STATUS[status]
    return ErrorCode.INVALID_ARGUMENT if status < 500 else ErrorCode.INTERNAL_ERROR


def _texts(status: int, reason: str | None) -> tuple[str, str]:
    """The translated (title, sentence) of an error page: by status, then by reason (every
    403 with a reason is a CSRF refusal, whose sentence says how to recover)."""
    title, text = _TEXTS.get(status) or _TEXTS[500 if status >= 500 else 400]
    if reason in _REASON_TEXTS:
        text = _REASON_TEXTS[reason]
    elif reason is not None and status == 403:
        text = _REASON_TEXTS["csrf"]
    return gettext(title), gettext(text)


class ErrorPages:
    """Renders the error page of a code (see the module text). ``render`` is the renderer's
    template function, so error pages share the base layout but not the page hooks."""

    def __init__(self, render: Callable[[Request, str, Mapping[str, Any]], str]) -> None:
        self._render = render

    def response(self, request: Request, code: ErrorCode, *, status: int | None = None,
                 reason: str | None = None,
                 headers: Mapping[str, str] | None = None) -> Response:
        """The error page of ``code``, with its status unless ``status`` says otherwise."""
        status = status_of(code) if status is None else status
        title, text = _texts(status, reason)
        context = {"title": title, "text": text, "code": code.value, "reason": reason,
                   "status": status, "user": None, "nav": (), "flashes": ()}
        try:
            html = self._render(request, "errors/error.html", context)
        except Exception:  # the error page itself failed: a bug, but answer anyway
            log.exception("the error page failed to render")
            html = _BARE_ERROR_PAGE.format(status=status, code=code.value)
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))

    async def asgi(self, scope: Scope, receive: Receive, send: Send, code: ErrorCode,
                   details: dict[str, Any]) -> None:
        """Answers a raw ASGI request with the error page (for middleware refusals)."""
        reason = details.get("reason")
        response = self.response(Request(scope, receive), code,
                                 reason=reason if isinstance(reason, str) else None)
        await response(scope, receive, send)

    async def cardsvc_error(self, request: Request, exc: Exception) -> Response:
        """Exception handler: a domain error raised by a page's domain call."""
        assert isinstance(exc, CardsvcError)
        if status_of(exc.code) >= 500:
            log.error("page failed with %s", exc.code.value)
        return self.response(request, exc.code)

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        """Exception handler: Starlette's HTTPException (404, 405, a malformed form)."""
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        return self.response(request, code_of_status(exc.status_code), status=exc.status_code,
                             headers=headers)


_BARE_ERROR_PAGE = (
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>{status}</title></head>"
    "<body><main data-error-code=\"{code}\"><h1>{status}</h1><p>{code}</p></main></body></html>"
)


class InternalErrorMiddleware:
    """Turns any exception that escaped the app into the 500 page, logging only the
    exception's type and where it was raised; nothing is re-raised, so the server never logs
    the message either."""

    def __init__(self, app: ASGIApp, *, pages: ErrorPages) -> None:
        self.app = app
        self.pages = pages

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
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = "; ".join(f"{frame.filename}:{frame.lineno}" for frame in frames[-8:])
            log.error("unexpected %s in a page at %s", type(exc).__name__, where)
            if not started:
                await self.pages.asgi(scope, receive, send, ErrorCode.INTERNAL_ERROR, {})


class _BodyTooLarge(Exception):
    """Raised into the app by the counting ``receive`` once the bound is crossed."""


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with the ``LIMIT_EXCEEDED`` page: at once for a
    declared ``Content-Length`` over the bound, else as soon as the counted body crosses it.
    ``path_limits`` gives some exact paths (file uploads, spooled to disk) their own bound."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, pages: ErrorPages,
                 path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.pages = pages
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(str(scope.get("path", "")), self.max_bytes)
        await self._bounded(scope, receive, send, limit)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send)
            return
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.pages.asgi(scope, receive, send, ErrorCode.LIMIT_EXCEEDED,
                              {"reason": "body_too_large", "max": self.max_bytes})
