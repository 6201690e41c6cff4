"""Errors over HTTP: the one code-to-status table and the handlers that render the envelope.

Every error response, whoever produced it, has DESIGN.md's shape::

    {"error": {"code": "ALREADY_REDEEMED", "message": "...", "details": {...}}}

* A ``CardsvcError`` gets ``STATUS_OF[error.code]``, its message and its details (both safe by
  contract: they never hold a full code or PIN). A code whose status is 500 (``INTERNAL_ERROR``,
  ``JOURNAL_CORRUPT``, ``SNAPSHOT_CORRUPT``) keeps its code but gets a fixed message and no
  details, because those describe the server's files, not the request; the server logs them.
* FastAPI's ``RequestValidationError`` is ``VALIDATION_ERROR`` (422); its details list where each
  problem is (``loc``) and pydantic's error ``type``, never the input value, which may be a code.
* Starlette's ``HTTPException`` (unknown route, wrong method) maps its status to a code with a
  fixed message; the path is never echoed, since it may hold a code.
* Anything else is a 500 ``INTERNAL_ERROR`` with a fixed message, rendered by
  ``api.middleware.InternalErrorMiddleware``; the log gets the exception's type and code
  locations only, since its message may hold request data.

Statuses are chosen by what a client should do next: fix the request (400/422), authenticate
(401/403), stop asking for something that does not exist (404), re-read the state (409), slow down
(429), retry later (503), or report a bug (500).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.masking import mask_code
from cardsvc.times import iso

log = logging.getLogger("cardsvc.api")

STATUS_OF: dict[ErrorCode, int] = {
    # Bad input: the request is malformed whatever the state; fix it, do not retry as is.
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.INVALID_CODE: 400,
    ErrorCode.INVALID_PIN: 400,
    ErrorCode.QUANTITY_MUST_BE_POSITIVE: 400,
    # 400, not 413: the code covers every bound (quantity, ref length, batch size, body size),
    # and one code has one status. 413 would describe only the body-size case, and its details
    # (``field``, ``max``, ``got``) already say which bound was hit.
    ErrorCode.LIMIT_EXCEEDED: 400,
    # Unknown objects.
    ErrorCode.SKU_NOT_FOUND: 404,
    ErrorCode.CODE_NOT_FOUND: 404,
    ErrorCode.HOLD_NOT_FOUND: 404,
    ErrorCode.ORDER_NOT_FOUND: 404,
    ErrorCode.REDEMPTION_NOT_FOUND: 404,
    # State conflicts: well formed, but the current state forbids it.
    ErrorCode.SKU_EXISTS: 409,
    # 409, not 403: a wrong PIN is about the code being redeemed, not the caller's credentials.
    # 401/403 stay reserved for API keys and scopes, so a terminal can tell "my key may not do
    # this" from "the customer typed the wrong PIN". Guessing is throttled with 429.
    ErrorCode.PIN_MISMATCH: 409,
    ErrorCode.ALREADY_REDEEMED: 409,
    ErrorCode.EXPIRED: 409,
    ErrorCode.NOT_YET_VALID: 409,
    ErrorCode.FROZEN: 409,
    ErrorCode.VOID: 409,
    ErrorCode.NOT_SOLD: 409,
    ErrorCode.OUT_OF_STOCK: 409,
    ErrorCode.HOLD_EXPIRED: 409,
    ErrorCode.HOLD_RELEASED: 409,
    ErrorCode.HOLD_ALREADY_CONFIRMED: 409,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 409,
    # Persistence. Corruption stops recovery at start-up, so it should never reach a request; if
    # it does, retrying will not help (500, not 503) and its details (file names, offsets) are
    # the server's business, so they are concealed.
    ErrorCode.SNAPSHOT_CORRUPT: 500,
    ErrorCode.JOURNAL_CORRUPT: 500,
    # The journal sink cannot confirm durability now; the same request may succeed later.
    ErrorCode.JOURNAL_UNAVAILABLE: 503,
    # Another process holds the data directory: a conflict with the state of the host.
    ErrorCode.DATA_DIR_LOCKED: 409,
    ErrorCode.INTERNAL_ERROR: 500,
    # The HTTP layer.
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.ROUTE_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    # Catalog, agents and keys.
    ErrorCode.AGENT_NOT_FOUND: 404,
    ErrorCode.AGENT_EXISTS: 409,
    ErrorCode.KEY_NOT_FOUND: 404,
    ErrorCode.POOL_NOT_FOUND: 404,
    ErrorCode.POOL_EXISTS: 409,
    ErrorCode.BATCH_NOT_FOUND: 404,
    # Agents, prices and money.
    ErrorCode.GRADE_NOT_FOUND: 404,
    ErrorCode.GRADE_EXISTS: 409,
    ErrorCode.AGENT_CYCLE: 409,
    ErrorCode.AGENT_SUSPENDED: 409,
    ErrorCode.NOT_FOR_SALE: 409,
    ErrorCode.PRICE_BELOW_PARENT: 409,
    ErrorCode.CURRENCY_MISMATCH: 400,
    ErrorCode.AMOUNT_MUST_BE_POSITIVE: 400,
    ErrorCode.INSUFFICIENT_BALANCE: 409,
    ErrorCode.ACCOUNT_NOT_FOUND: 404,
    ErrorCode.WITHDRAWAL_NOT_FOUND: 404,
    ErrorCode.WITHDRAWAL_NOT_PENDING: 409,
    ErrorCode.ORDER_NOT_REFUNDABLE: 409,
    # The SQL database cannot be reached or refused the operation; retrying later may work.
    ErrorCode.DATABASE_UNAVAILABLE: 503,
    # A sealed code payload or wrapped data key failed authentication: tampering or the wrong
    # master key. Retrying will not help, and which key or row failed is the server's business.
    ErrorCode.PAYLOAD_CORRUPT: 500,
    # A replay of a redemption that was rolled back since: the state changed under the request.
    ErrorCode.REDEMPTION_ROLLED_BACK: 409,
    # Too many wrong PINs for the code: slow down (Retry-After from details.retry_after_s).
    ErrorCode.CODE_LOCKED: 429,
    # Payment providers. A callback whose signature fails carries credentials that are not
    # valid (401); a malformed callback is bad input (400); a verified callback for another
    # order, amount or currency conflicts with the attempt (409). The notify routes answer the
    # provider with its own tokens, not this envelope; these statuses serve the staff console
    # and the API that start, query and refund payments.
    ErrorCode.PAYMENT_SIGNATURE_INVALID: 401,
    ErrorCode.PAYMENT_NOTIFY_INVALID: 400,
    ErrorCode.PAYMENT_MISMATCH: 409,
    # The provider timed out, failed or answered with something unusable; retry later.
    ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE: 503,
    # The provider answered and refused (unknown order, refund over the paid amount).
    ErrorCode.PAYMENT_PROVIDER_REJECTED: 409,
    ErrorCode.PAYMENT_OPERATION_UNSUPPORTED: 400,
    ErrorCode.PAYMENT_CONFIG_INVALID: 400,
    ErrorCode.PAYMENT_CURRENCY_UNSUPPORTED: 400,
    # Console users and sessions. LOGIN_FAILED is one answer for an unknown login, a wrong
    # password and a wrong TOTP code, so it cannot tell which logins exist; LOGIN_LOCKED carries
    # details.retry_after_s (sent as Retry-After).
    ErrorCode.USER_NOT_FOUND: 404,
    ErrorCode.USER_EXISTS: 409,
    ErrorCode.PASSWORD_REJECTED: 400,
    ErrorCode.LOGIN_FAILED: 401,
    ErrorCode.LOGIN_LOCKED: 429,
    ErrorCode.TOTP_INVALID: 400,
    ErrorCode.ENROLMENT_REQUIRED: 403,
    # Unknown, used and expired invitations look alike: nothing to learn by probing tokens.
    ErrorCode.INVITATION_INVALID: 404,
    # Demoting or disabling the last active owner would leave nobody able to manage users.
    ErrorCode.LAST_OWNER: 409,
    # File imports: the state of the batch (cancelled, or not an import that can be cancelled).
    ErrorCode.IMPORT_CANCELLED: 409,
    ErrorCode.BATCH_NOT_CANCELLABLE: 409,
    # Issue 10.
    ErrorCode.EXPORT_NOT_FOUND: 404,
    # A start-up refusal (a key file others can read); never a request's fault.
    ErrorCode.FILE_MODE_INSECURE: 500,
    # A lockout that is not in force (never started, ended, or lifted already).
    ErrorCode.LOCKOUT_NOT_FOUND: 404,
    # A file or socket the server itself could not use: its business, concealed like a 500.
    ErrorCode.IO_ERROR: 500,
    # The storefront: payment channels, checkouts and retail orders.
    ErrorCode.CHANNEL_NOT_FOUND: 404,
    ErrorCode.CHANNEL_EXISTS: 409,
    ErrorCode.CHANNEL_DISABLED: 409,
    ErrorCode.SANDBOX_IN_PRODUCTION: 409,
    # A missing or wrong proof of work is bad input: solve the challenge and send it again.
    ErrorCode.CHALLENGE_FAILED: 400,
    ErrorCode.QUANTITY_NOT_ALLOWED: 400,
    ErrorCode.ORDER_NOT_PAYABLE: 409,
    ErrorCode.ORDER_NOT_DELIVERED: 409,
    ErrorCode.APPROVAL_REQUIRED: 409,
    ErrorCode.APPROVAL_NOT_FOUND: 404,
    ErrorCode.APPROVAL_NOT_PENDING: 409,
    ErrorCode.APPROVAL_SELF: 403,
    ErrorCode.APPROVAL_MISMATCH: 409,
    ErrorCode.APPROVAL_EXPIRED: 409,
    ErrorCode.APPROVAL_WAIVER_REFUSED: 409,
}

CONCEALED_MESSAGE = "the server failed to handle this request; the failure has been logged"
RETRY_AFTER_S: dict[ErrorCode, int] = {
    ErrorCode.JOURNAL_UNAVAILABLE: 1,
    ErrorCode.DATABASE_UNAVAILABLE: 1,
}
"""``Retry-After`` seconds sent with these codes: the journal writer retries within a second."""
VALIDATION_ERRORS_SHOWN_MAX = 50
"""A body with thousands of bad items would otherwise make an error as large as itself."""
_FIELD_NAME = re.compile(r"[a-z_][a-z_-]{0,63}")
"""A ``loc`` part shown as is: lower-case letters, ``_`` and ``-`` (field, query and header
names). Anything else (it may be a dictionary key taken from the input) is masked."""

_CODE_OF_HTTP_STATUS: dict[int, ErrorCode] = {
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.ROUTE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
}
_FIXED_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.UNAUTHENTICATED: "the request needs valid credentials",
    ErrorCode.FORBIDDEN: "these credentials do not allow this request",
    ErrorCode.ROUTE_NOT_FOUND: "no endpoint has this path",
    ErrorCode.METHOD_NOT_ALLOWED: "this endpoint does not accept this method",
    ErrorCode.VALIDATION_ERROR: "the request is not valid; details.errors says where",
    ErrorCode.RATE_LIMITED: "too many requests; retry later",
    ErrorCode.INVALID_ARGUMENT: "the request is malformed",
    ErrorCode.INTERNAL_ERROR: CONCEALED_MESSAGE,
}


class ErrorBody(BaseModel):
    """The inside of the error envelope."""

    code: ErrorCode
    message: str
    details: dict[str, Any]


class ErrorEnvelope(BaseModel):
    """Every non-2xx response: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorBody


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson, for the envelopes built here from plain dicts. (FastAPI's own
    ``ORJSONResponse`` is deprecated: routes declare response models instead, which pydantic
    serialises straight to bytes.)"""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    code: ErrorCode,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The envelope response for ``code``, with the status from :data:`STATUS_OF`."""
    status = STATUS_OF[code]
    if status == 500:
        message, details = CONCEALED_MESSAGE, None
    all_headers = dict(headers or {})
    shown = with_iso_times(details or {})
    retry_after = shown.get("retry_after_s")
    if isinstance(retry_after, int):
        all_headers.setdefault("retry-after", str(retry_after))
    elif code in RETRY_AFTER_S:
        all_headers.setdefault("retry-after", str(RETRY_AFTER_S[code]))
    body = {"error": {"code": code.value, "message": message, "details": shown}}
    return OrjsonResponse(body, status_code=status, headers=all_headers or None)


def with_iso_times(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` with an RFC 3339 text beside every ``*_at_ms`` time (``redeemed_at`` beside
    ``redeemed_at_ms``), the form the rest of the API uses for times."""
    out = dict(details)
    for name, value in details.items():
        if name.endswith("_at_ms") and isinstance(value, int) and not isinstance(value, bool):
            out.setdefault(name[: -len("_ms")], iso(value))
    return out


def internal_error_response() -> Response:
    """The 500 ``INTERNAL_ERROR`` envelope: a fixed message and nothing about the cause."""
    return error_response(ErrorCode.INTERNAL_ERROR, CONCEALED_MESSAGE)


PROJECT_FRAMES_LOGGED_MAX = 6
"""Frames of our own code an unexpected error's log line shows, innermost first."""
_REPOSITORY = Path(__file__).resolve().parents[1]
_PROJECT_PARTS = ("api", "server", "web", "python")


def _is_project_frame(filename: str) -> bool:
    """Whether a frame's file is ours (``api/``, ``server/``, ``web/``, ``python/cardsvc``, or
    an installed ``cardsvc``), not a library's."""
    path = Path(filename)
    try:
        parts = path.resolve().relative_to(_REPOSITORY).parts
    except ValueError:
        return "cardsvc" in path.parts and "site-packages" in path.parts
    return bool(parts) and parts[0] in _PROJECT_PARTS


def _frame_text(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    try:
        shown = str(path.resolve().relative_to(_REPOSITORY))
    except ValueError:
        shown = str(path)
    return f"{shown}:{frame.lineno} in {frame.name}"


def log_unexpected(error: BaseException) -> None:
    """Logs an unexpected exception by type and code locations only: its message and the
    messages of its causes may hold request data (a code, a PIN), so they are left out.

    The line names where it was raised (often deep in a library such as SQLAlchemy), then the
    innermost frames of our own code that led there (the call that went wrong is the useful
    part, and a library's frames alone would hide it), then the types of its causes."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [frame for frame in frames if _is_project_frame(frame.filename)]
    shown = [_frame_text(frame) for frame in reversed(ours[-PROJECT_FRAMES_LOGGED_MAX:])]
    raised = _frame_text(frames[-1]) if frames else "an unknown place"
    causes: list[str] = []
    cause = error.__cause__ or error.__context__
    while cause is not None and len(causes) < 4:
        causes.append(type(cause).__qualname__)
        cause = cause.__cause__ or cause.__context__
    log.error("unexpected %s raised at %s; from %s%s", type(error).__qualname__, raised,
              " <- ".join(shown) or "no frame of ours",
              f"; caused by {', '.join(causes)}" if causes else "")


def cardsvc_error_response(error: CardsvcError) -> Response:
    """The envelope of a ``CardsvcError`` (logged when its status is 5xx): what the exception
    handler answers, for the lean routes of ``api.lean`` that render errors themselves."""
    if STATUS_OF[error.code] >= 500:
        log.error("%s: %s", error.code.value, error.message)
    return error_response(error.code, error.message, error.details)


async def _cardsvc_error(request: Request, error: CardsvcError) -> Response:
    del request
    return cardsvc_error_response(error)


def _safe_loc_part(part: Any) -> int | str:
    if isinstance(part, int):
        return part
    text = str(part)
    return text if _FIELD_NAME.fullmatch(text) else mask_code(text)


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    del request
    problems = list(error.errors())
    shown = [
        {
            "loc": [_safe_loc_part(part) for part in problem.get("loc", ())],
            "type": str(problem.get("type", "")),
        }
        for problem in problems[:VALIDATION_ERRORS_SHOWN_MAX]
    ]
    code = ErrorCode.VALIDATION_ERROR
    return error_response(code, _FIXED_MESSAGES[code], {"errors": shown, "count": len(problems)})


async def _http_exception(request: Request, error: StarletteHTTPException) -> Response:
    del request
    code = _CODE_OF_HTTP_STATUS.get(error.status_code)
    if code is None:
        code = ErrorCode.INVALID_ARGUMENT if error.status_code < 500 else ErrorCode.INTERNAL_ERROR
    return error_response(code, _FIXED_MESSAGES[code], None, error.headers)


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]

EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    CardsvcError: _cardsvc_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_exception,
}
"""Passed to ``FastAPI(exception_handlers=...)``. Everything else reaches
``InternalErrorMiddleware``."""
