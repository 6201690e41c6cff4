"""The one list of stable error codes, and the exception classes that carry them.

Every failure anywhere in cardsvc, core or domain, is a ``CardsvcError`` subclass carrying:

* ``code``: an UPPER_SNAKE statement about the request, never renamed or reused once shipped;
* ``message``: a human sentence that never contains a full code or PIN;
* ``details``: a JSON-safe dict (masked values only).

The Rust core raises these same classes: ``core/src/py/error.rs`` converts each ``CoreError``
variant by calling :func:`from_core`, and the drift test checks that ``_core.error_codes()`` is a
subset of :class:`ErrorCode`. The HTTP status of each code lives in ``api/errors.py`` alone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every stable error code, core and domain. Append only."""

    # Bad input (the request is malformed whatever the state).
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_CODE = "INVALID_CODE"
    INVALID_PIN = "INVALID_PIN"
    QUANTITY_MUST_BE_POSITIVE = "QUANTITY_MUST_BE_POSITIVE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    # Unknown objects.
    SKU_NOT_FOUND = "SKU_NOT_FOUND"
    CODE_NOT_FOUND = "CODE_NOT_FOUND"
    HOLD_NOT_FOUND = "HOLD_NOT_FOUND"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    REDEMPTION_NOT_FOUND = "REDEMPTION_NOT_FOUND"
    # State conflicts.
    SKU_EXISTS = "SKU_EXISTS"
    PIN_MISMATCH = "PIN_MISMATCH"
    ALREADY_REDEEMED = "ALREADY_REDEEMED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    FROZEN = "FROZEN"
    VOID = "VOID"
    NOT_SOLD = "NOT_SOLD"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    HOLD_RELEASED = "HOLD_RELEASED"
    HOLD_ALREADY_CONFIRMED = "HOLD_ALREADY_CONFIRMED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    # Persistence.
    SNAPSHOT_CORRUPT = "SNAPSHOT_CORRUPT"
    JOURNAL_CORRUPT = "JOURNAL_CORRUPT"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
    DATA_DIR_LOCKED = "DATA_DIR_LOCKED"
    # The SQL store cannot be reached, or could not finish a transaction; retry later.
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    # A sealed code payload or wrapped data key failed authentication (corrupt, moved to another
    # row, or sealed under a master key that is not loaded).
    PAYLOAD_CORRUPT = "PAYLOAD_CORRUPT"
    # Anything unexpected; reveals no internals.
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # The HTTP layer: requests that never reach an operation.
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    # Catalog, agents and keys (the SQL store).
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    AGENT_EXISTS = "AGENT_EXISTS"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"
    POOL_NOT_FOUND = "POOL_NOT_FOUND"
    POOL_EXISTS = "POOL_EXISTS"
    BATCH_NOT_FOUND = "BATCH_NOT_FOUND"
    # Agents, prices and money.
    GRADE_NOT_FOUND = "GRADE_NOT_FOUND"
    GRADE_EXISTS = "GRADE_EXISTS"
    AGENT_CYCLE = "AGENT_CYCLE"
    AGENT_SUSPENDED = "AGENT_SUSPENDED"
    NOT_FOR_SALE = "NOT_FOR_SALE"
    PRICE_BELOW_PARENT = "PRICE_BELOW_PARENT"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    AMOUNT_MUST_BE_POSITIVE = "AMOUNT_MUST_BE_POSITIVE"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    WITHDRAWAL_NOT_FOUND = "WITHDRAWAL_NOT_FOUND"
    WITHDRAWAL_NOT_PENDING = "WITHDRAWAL_NOT_PENDING"
    ORDER_NOT_REFUNDABLE = "ORDER_NOT_REFUNDABLE"
    # The core: rollback replays and PIN lockout.
    # A replayed request id names a redemption that was rolled back since: the use was given
    # back, so the caller must not hand out value for it (details: redemption_id,
    # rolled_back_at_ms).
    REDEMPTION_ROLLED_BACK = "REDEMPTION_ROLLED_BACK"
    # Too many wrong PINs for this code: PIN checks are refused until the lockout ends (details:
    # retry_after_s, locked_until_ms, locked = true on the call that started it).
    CODE_LOCKED = "CODE_LOCKED"
    # Payment providers (payments/providers): callbacks, outbound calls and channel settings.
    # A callback whose signature (or AEAD tag, or timestamp window) does not verify.
    PAYMENT_SIGNATURE_INVALID = "PAYMENT_SIGNATURE_INVALID"
    # A callback that is not the provider's documented shape (missing field, array, bad money).
    PAYMENT_NOTIFY_INVALID = "PAYMENT_NOTIFY_INVALID"
    # A verified callback that names another order, amount or currency than our attempt.
    PAYMENT_MISMATCH = "PAYMENT_MISMATCH"
    # The provider could not be reached or gave an unusable answer; retry later.
    PAYMENT_PROVIDER_UNAVAILABLE = "PAYMENT_PROVIDER_UNAVAILABLE"
    # The provider answered and refused the operation (unknown order, refund declined).
    PAYMENT_PROVIDER_REJECTED = "PAYMENT_PROVIDER_REJECTED"
    # The provider's protocol has no such operation (e.g. query on the sandbox).
    PAYMENT_OPERATION_UNSUPPORTED = "PAYMENT_OPERATION_UNSUPPORTED"
    # A payment channel's settings are incomplete or malformed (missing key, bad PEM, bad URL).
    PAYMENT_CONFIG_INVALID = "PAYMENT_CONFIG_INVALID"
    # The provider (or our mapping to it) cannot charge in this currency.
    PAYMENT_CURRENCY_UNSUPPORTED = "PAYMENT_CURRENCY_UNSUPPORTED"
    # Console users and sessions (cardsvc.access.users, cardsvc.access.sessions).
    USER_NOT_FOUND = "USER_NOT_FOUND"
    USER_EXISTS = "USER_EXISTS"
    PASSWORD_REJECTED = "PASSWORD_REJECTED"
    LOGIN_FAILED = "LOGIN_FAILED"
    LOGIN_LOCKED = "LOGIN_LOCKED"
    TOTP_INVALID = "TOTP_INVALID"
    ENROLMENT_REQUIRED = "ENROLMENT_REQUIRED"
    INVITATION_INVALID = "INVITATION_INVALID"
    LAST_OWNER = "LAST_OWNER"
    # File imports: an import stopped by an admin's cancel (the batch's error code;
    # what it had imported is voided), and a cancel of a batch that is not an import running
    # or waiting in the import queue.
    IMPORT_CANCELLED = "IMPORT_CANCELLED"
    BATCH_NOT_CANCELLABLE = "BATCH_NOT_CANCELLABLE"
    # Issue 10 (plaintext, money and codes).
    # No export with that id (restoring an export's codes to sale).
    EXPORT_NOT_FOUND = "EXPORT_NOT_FOUND"
    # A file of the data directory that holds a secret (lookup key, master keys) is readable or
    # writable by others than its owner: the service refuses to start (details: path, mode).
    FILE_MODE_INSECURE = "FILE_MODE_INSECURE"
    # Lifting a brute-force lockout (cardsvc.access.gate) of a subject that is not locked out.
    LOCKOUT_NOT_FOUND = "LOCKOUT_NOT_FOUND"
    # The operating system refused a file or socket operation (a file that exists or does not,
    # a permission, a port in use); the message names it. Reported by the command line.
    IO_ERROR = "IO_ERROR"
    # The storefront: payment channels, checkouts and retail orders.
    # No payment channel with that id (or notify token).
    CHANNEL_NOT_FOUND = "CHANNEL_NOT_FOUND"
    CHANNEL_EXISTS = "CHANNEL_EXISTS"
    # The channel is switched off: no checkout may use it (callbacks of its attempts still count).
    CHANNEL_DISABLED = "CHANNEL_DISABLED"
    # A sandbox channel (anyone can "pay") while the production settings are on.
    SANDBOX_IN_PRODUCTION = "SANDBOX_IN_PRODUCTION"
    # The checkout's anti-bot challenge is missing, wrong, expired or used before.
    CHALLENGE_FAILED = "CHALLENGE_FAILED"
    # The quantity is outside the SKU's per-order limits (details: min, max).
    QUANTITY_NOT_ALLOWED = "QUANTITY_NOT_ALLOWED"
    # The order is not waiting for a payment (paid, expired, failed...): details.status.
    ORDER_NOT_PAYABLE = "ORDER_NOT_PAYABLE"
    # The order's codes are not delivered (yet): nothing to reveal or resend.
    ORDER_NOT_DELIVERED = "ORDER_NOT_DELIVERED"
    # Maker-checker approvals (cardsvc.access.approvals).
    # The action needs a second person's approval first (details: action, object_id).
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    APPROVAL_NOT_FOUND = "APPROVAL_NOT_FOUND"
    # The approval is not in a state that allows this (details: status, expected).
    APPROVAL_NOT_PENDING = "APPROVAL_NOT_PENDING"
    # The maker cannot be its own checker, and only maker or checker execute (details: reason).
    APPROVAL_SELF = "APPROVAL_SELF"
    # The approval is for another action or object than the one being executed.
    APPROVAL_MISMATCH = "APPROVAL_MISMATCH"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    # A waiver of maker-checker while a second person could check (details: checkers).
    APPROVAL_WAIVER_REFUSED = "APPROVAL_WAIVER_REFUSED"


class CardsvcError(Exception):
    """Base of every cardsvc error. ``code`` is stable; ``message`` is for humans."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details: dict[str, Any] = details if details is not None else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, details={self.details!r})"

    def to_dict(self) -> dict[str, Any]:
        """The error envelope body of DESIGN.md: ``{"code", "message", "details"}``."""
        return {"code": self.code.value, "message": self.message, "details": self.details}


class BadInput(CardsvcError, ValueError):
    """The request is malformed or out of bounds; nothing was changed."""


class NotFound(CardsvcError, LookupError):
    """The request names something that does not exist."""


class Conflict(CardsvcError):
    """The request is well formed but the current state forbids it."""


class Corruption(CardsvcError):
    """Persisted state failed its checksum or structure checks."""


class Unavailable(CardsvcError):
    """A dependency (the journal sink, the SQL database) cannot confirm durability right now;
    retry later."""


class InternalError(CardsvcError):
    """A failure that is not the caller's fault."""


class Unauthenticated(CardsvcError):
    """The request carries no credentials, or credentials that are not valid."""


class Forbidden(CardsvcError):
    """The credentials are valid but do not allow this request."""


class RateLimited(CardsvcError):
    """The caller sent too many requests; retry later."""


_CLASS_OF: dict[ErrorCode, type[CardsvcError]] = {
    ErrorCode.INVALID_ARGUMENT: BadInput,
    ErrorCode.INVALID_CODE: BadInput,
    ErrorCode.INVALID_PIN: BadInput,
    ErrorCode.QUANTITY_MUST_BE_POSITIVE: BadInput,
    ErrorCode.LIMIT_EXCEEDED: BadInput,
    ErrorCode.SKU_NOT_FOUND: NotFound,
    ErrorCode.CODE_NOT_FOUND: NotFound,
    ErrorCode.HOLD_NOT_FOUND: NotFound,
    ErrorCode.ORDER_NOT_FOUND: NotFound,
    ErrorCode.REDEMPTION_NOT_FOUND: NotFound,
    ErrorCode.SKU_EXISTS: Conflict,
    ErrorCode.PIN_MISMATCH: Conflict,
    ErrorCode.ALREADY_REDEEMED: Conflict,
    ErrorCode.EXPIRED: Conflict,
    ErrorCode.NOT_YET_VALID: Conflict,
    ErrorCode.FROZEN: Conflict,
    ErrorCode.VOID: Conflict,
    ErrorCode.NOT_SOLD: Conflict,
    ErrorCode.OUT_OF_STOCK: Conflict,
    ErrorCode.HOLD_EXPIRED: Conflict,
    ErrorCode.HOLD_RELEASED: Conflict,
    ErrorCode.HOLD_ALREADY_CONFIRMED: Conflict,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: Conflict,
    ErrorCode.SNAPSHOT_CORRUPT: Corruption,
    ErrorCode.JOURNAL_CORRUPT: Corruption,
    ErrorCode.JOURNAL_UNAVAILABLE: Unavailable,
    ErrorCode.DATA_DIR_LOCKED: Conflict,
    ErrorCode.DATABASE_UNAVAILABLE: Unavailable,
    ErrorCode.PAYLOAD_CORRUPT: Corruption,
    ErrorCode.INTERNAL_ERROR: InternalError,
    ErrorCode.VALIDATION_ERROR: BadInput,
    ErrorCode.UNAUTHENTICATED: Unauthenticated,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.ROUTE_NOT_FOUND: NotFound,
    ErrorCode.METHOD_NOT_ALLOWED: BadInput,
    ErrorCode.AGENT_NOT_FOUND: NotFound,
    ErrorCode.AGENT_EXISTS: Conflict,
    ErrorCode.KEY_NOT_FOUND: NotFound,
    ErrorCode.POOL_NOT_FOUND: NotFound,
    ErrorCode.POOL_EXISTS: Conflict,
    ErrorCode.BATCH_NOT_FOUND: NotFound,
    ErrorCode.GRADE_NOT_FOUND: NotFound,
    ErrorCode.GRADE_EXISTS: Conflict,
    ErrorCode.AGENT_CYCLE: Conflict,
    ErrorCode.AGENT_SUSPENDED: Conflict,
    ErrorCode.NOT_FOR_SALE: Conflict,
    ErrorCode.PRICE_BELOW_PARENT: Conflict,
    ErrorCode.CURRENCY_MISMATCH: BadInput,
    ErrorCode.AMOUNT_MUST_BE_POSITIVE: BadInput,
    ErrorCode.INSUFFICIENT_BALANCE: Conflict,
    ErrorCode.ACCOUNT_NOT_FOUND: NotFound,
    ErrorCode.WITHDRAWAL_NOT_FOUND: NotFound,
    ErrorCode.WITHDRAWAL_NOT_PENDING: Conflict,
    ErrorCode.ORDER_NOT_REFUNDABLE: Conflict,
    ErrorCode.REDEMPTION_ROLLED_BACK: Conflict,
    ErrorCode.CODE_LOCKED: RateLimited,
    ErrorCode.PAYMENT_SIGNATURE_INVALID: Unauthenticated,
    ErrorCode.PAYMENT_NOTIFY_INVALID: BadInput,
    ErrorCode.PAYMENT_MISMATCH: Conflict,
    ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE: Unavailable,
    ErrorCode.PAYMENT_PROVIDER_REJECTED: Conflict,
    ErrorCode.PAYMENT_OPERATION_UNSUPPORTED: BadInput,
    ErrorCode.PAYMENT_CONFIG_INVALID: BadInput,
    ErrorCode.PAYMENT_CURRENCY_UNSUPPORTED: BadInput,
    ErrorCode.USER_NOT_FOUND: NotFound,
    ErrorCode.USER_EXISTS: Conflict,
    ErrorCode.PASSWORD_REJECTED: BadInput,
    ErrorCode.LOGIN_FAILED: Unauthenticated,
    ErrorCode.LOGIN_LOCKED: RateLimited,
    ErrorCode.TOTP_INVALID: BadInput,
    ErrorCode.ENROLMENT_REQUIRED: Forbidden,
    ErrorCode.INVITATION_INVALID: NotFound,
    ErrorCode.LAST_OWNER: Conflict,
    ErrorCode.IMPORT_CANCELLED: Conflict,
    ErrorCode.BATCH_NOT_CANCELLABLE: Conflict,
    ErrorCode.EXPORT_NOT_FOUND: NotFound,
    ErrorCode.FILE_MODE_INSECURE: Corruption,
    ErrorCode.LOCKOUT_NOT_FOUND: NotFound,
    ErrorCode.IO_ERROR: InternalError,
    ErrorCode.CHANNEL_NOT_FOUND: NotFound,
    ErrorCode.CHANNEL_EXISTS: Conflict,
    ErrorCode.CHANNEL_DISABLED: Conflict,
    ErrorCode.SANDBOX_IN_PRODUCTION: Conflict,
    ErrorCode.CHALLENGE_FAILED: BadInput,
    ErrorCode.QUANTITY_NOT_ALLOWED: BadInput,
    ErrorCode.ORDER_NOT_PAYABLE: Conflict,
    ErrorCode.ORDER_NOT_DELIVERED: Conflict,
    ErrorCode.APPROVAL_REQUIRED: Conflict,
    ErrorCode.APPROVAL_NOT_FOUND: NotFound,
    ErrorCode.APPROVAL_NOT_PENDING: Conflict,
    ErrorCode.APPROVAL_SELF: Forbidden,
    ErrorCode.APPROVAL_MISMATCH: Conflict,
    ErrorCode.APPROVAL_EXPIRED: Conflict,
    ErrorCode.APPROVAL_WAIVER_REFUSED: Conflict,
}


def error_class(code: ErrorCode) -> type[CardsvcError]:
    """The exception class that carries ``code``."""
    return _CLASS_OF[code]


def make_error(code: str, message: str, details: dict[str, Any] | None = None) -> CardsvcError:
    """Build the exception for a stable ``code`` (raises KeyError-free: unknown codes are a bug)."""
    error_code = ErrorCode(code)
    return _CLASS_OF[error_code](message, code=error_code, details=details)


def invalid(field: str, message: str, **details: Any) -> CardsvcError:
    """INVALID_ARGUMENT naming ``field`` (plus any other ``details``): the one helper for the
    commonest refusal. ``message`` and ``details`` never hold a code or PIN."""
    return make_error(ErrorCode.INVALID_ARGUMENT, message, {"field": field, **details})


def from_core(code: str, message: str, details: dict[str, Any]) -> CardsvcError:
    """Called by the Rust binding to turn a ``CoreError`` into its Python exception."""
    return make_error(code, message, details)
