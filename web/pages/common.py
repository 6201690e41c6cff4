"""What the console, portal and login pages share: redirects with a flash message, the text
shown for a domain refusal inside a form, the query and form readers of list pages, and the
time ranges of the dashboards' and statements' filters.

No business rule lives here: the texts only say, in the visitor's language, what a stable
error code means; the codes themselves come from the domain use case a page called.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.paging import CURSOR_LEN_MAX
from web.flash import Level, add_flash
from web.i18n import N_, gettext
from web.render import renderer_of

ERROR_TEXTS: Mapping[ErrorCode, str] = {
    ErrorCode.LOGIN_FAILED: N_("The login, password or code is not right."),
    ErrorCode.LOGIN_LOCKED: N_("Too many failed logins. Wait a while, or log in from a place "
                               "you used before."),
    ErrorCode.RATE_LIMITED: N_("Too many attempts. Please wait a moment and try again."),
    ErrorCode.TOTP_INVALID: N_("That code does not match. Check the time on your phone and "
                               "use the newest code."),
    ErrorCode.INVITATION_INVALID: N_("This invitation link is not valid any more. Ask for a "
                                     "new one."),
    ErrorCode.USER_EXISTS: N_("That login is taken."),
    ErrorCode.LAST_OWNER: N_("The last owner cannot be demoted or disabled."),
    ErrorCode.FORBIDDEN: N_("You are not allowed to do this."),
    ErrorCode.INVALID_ARGUMENT: N_("Check this value."),
    ErrorCode.LIMIT_EXCEEDED: N_("This value is too large."),
    ErrorCode.VALIDATION_ERROR: N_("Check this value."),
    ErrorCode.SKU_EXISTS: N_("A SKU with this id exists already."),
    ErrorCode.SKU_NOT_FOUND: N_("There is no such SKU."),
    ErrorCode.POOL_EXISTS: N_("A pool with this name exists already."),
    ErrorCode.POOL_NOT_FOUND: N_("There is no such pool."),
    ErrorCode.AGENT_EXISTS: N_("An agent with this id exists already."),
    ErrorCode.AGENT_NOT_FOUND: N_("There is no such agent."),
    ErrorCode.AGENT_SUSPENDED: N_("This agent (or one above it) is suspended."),
    ErrorCode.OUT_OF_STOCK: N_("There is not enough stock."),
    ErrorCode.INSUFFICIENT_BALANCE: N_("The balance is not enough for this."),
    ErrorCode.NOT_FOR_SALE: N_("This product is not for sale to this agent."),
    ErrorCode.PRICE_BELOW_PARENT: N_("A price may not be below the parent agent's price."),
    ErrorCode.CURRENCY_MISMATCH: N_("The currency does not match."),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: N_("This reference was already used for something "
                                         "else."),
    ErrorCode.CODE_NOT_FOUND: N_("No code matches."),
    ErrorCode.INVALID_CODE: N_("This is not a valid code."),
    ErrorCode.ORDER_NOT_FOUND: N_("There is no such order."),
    ErrorCode.ORDER_NOT_REFUNDABLE: N_("This order cannot be refunded (not fulfilled, or a "
                                       "code was redeemed)."),
    ErrorCode.BATCH_NOT_FOUND: N_("There is no such batch."),
    ErrorCode.WITHDRAWAL_NOT_PENDING: N_("The withdrawal is not in a state that allows this."),
    ErrorCode.APPROVAL_REQUIRED: N_("This needs a second person's approval first."),
    ErrorCode.APPROVAL_NOT_PENDING: N_("The approval is not in a state that allows this."),
    ErrorCode.APPROVAL_SELF: N_("You asked for this yourself: someone else must approve it."),
    ErrorCode.APPROVAL_EXPIRED: N_("The approval expired. Ask again."),
    ErrorCode.APPROVAL_MISMATCH: N_("The approval is for something else."),
    ErrorCode.APPROVAL_WAIVER_REFUSED: N_("Someone else can check this action, so it cannot be "
                                          "waived."),
    ErrorCode.HOLD_NOT_FOUND: N_("There is no such hold."),
    ErrorCode.HOLD_ALREADY_CONFIRMED: N_("This hold became an order already."),
    ErrorCode.KEY_NOT_FOUND: N_("There is no such key."),
    ErrorCode.GRADE_NOT_FOUND: N_("There is no such grade."),
    ErrorCode.GRADE_EXISTS: N_("A grade with this id exists already."),
    ErrorCode.AGENT_CYCLE: N_("An agent cannot move under itself."),
    ErrorCode.USER_NOT_FOUND: N_("There is no such user."),
}
PASSWORD_TEXTS: Mapping[str, str] = {
    "too_short": N_("Use at least 12 characters."),
    "too_long": N_("Use at most 256 characters."),
    "login_name": N_("The password must not be your login name."),
    "common": N_("This password is too common. Choose another."),
}


def error_text(error: CardsvcError) -> str:
    """The visitor's-language sentence for a refusal shown inside a page (never the domain's
    English message, which is for API clients and logs)."""
    if error.code == ErrorCode.PASSWORD_REJECTED:
        reason = str(error.details.get("reason", ""))
        return gettext(PASSWORD_TEXTS.get(reason, PASSWORD_TEXTS["too_short"]))
    text = ERROR_TEXTS.get(error.code)
    if text is None:
        return gettext("This could not be done (%(code)s).") % {"code": error.code.value}
    return gettext(text)


def refusal_text(error: CardsvcError) -> str:
    """:func:`error_text` with the stable code after it, for a refusal the visitor may quote
    to support (the code reads the same in every language)."""
    if error.code not in ERROR_TEXTS or error.code == ErrorCode.PASSWORD_REJECTED:
        return error_text(error)
    return f"{error_text(error)} ({error.code.value})"


def redirect(request: Request, path: str, *, flash: str | None = None,
             level: Level = "success") -> Response:
    """A 303 to ``path`` (under the app's mount point), with an optional flash message."""
    response = RedirectResponse(str(request.scope.get("root_path", "")) + path,
                                status_code=303)
    if flash is not None:
        renderer = renderer_of(request)
        add_flash(response, request, signer=renderer.signer, cookies=renderer.cookies,
                  text=flash, level=level)
    return response


def safe_next(value: str | None, default: str) -> str:
    """A ``next`` path after login that stays on this site: absolute path, no scheme, no
    ``//`` or backslash (which browsers read as another host)."""
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or len(value) > 512 or not value.isascii() or not value.isprintable()):
        return default
    return value


def query_text(request: Request, name: str, max_chars: int = 128) -> str | None:
    """A query parameter, stripped; None when absent, empty or longer than ``max_chars``."""
    value = request.query_params.get(name, "").strip()
    return value if value and len(value) <= max_chars else None


def query_cursor(request: Request) -> str | None:
    """The page's ``cursor`` (the domain list checks it; an over-long one is dropped here)."""
    return query_text(request, "cursor", CURSOR_LEN_MAX)


def path_int(request: Request, name: str, *, maximum: int = (1 << 63) - 1) -> int:
    """A whole-number path parameter (an id); the 404 page for anything else."""
    value = int_field(str(request.path_params.get(name, "")), minimum=0, maximum=maximum)
    if value is None:
        raise HTTPException(404)
    return value


def sku_options(skus: list[dict[str, object]]) -> list[tuple[str, str]]:
    """The (value, label) options of a product select: none, then each SKU by name."""
    return [("", "—"), *((str(s["sku"]), f"{s['name']} · {s['sku']}") for s in skus)]


def form_token() -> str:
    """A fresh idempotency key for a form (an order's ``client_order_id``, a redemption's
    ``request_id``): rendered into the form, so a double submit repeats the same key."""
    return "web-" + secrets.token_urlsafe(12)


def day_range_ms(start: date, end: date, timezone: str) -> tuple[int, int]:
    """``[start 00:00, end + 1 day 00:00)`` in ``timezone`` as Unix ms."""
    zone = ZoneInfo(timezone)
    since = datetime(start.year, start.month, start.day, tzinfo=zone)
    until = datetime(end.year, end.month, end.day, tzinfo=zone) + timedelta(days=1)
    return int(since.timestamp() * 1000), int(until.timestamp() * 1000)


def parse_date(text: str | None) -> date | None:
    """``YYYY-MM-DD`` or None (also for text that is not a date)."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def int_field(text: str, *, minimum: int = 0, maximum: int = 10**15) -> int | None:
    """A whole number typed in a form (``1 000`` and ``1,000`` allowed), or None."""
    cleaned = text.replace(",", "").replace(" ", "").replace("\u00a0", "")
    if not cleaned or not cleaned.lstrip("-").isdigit() or len(cleaned) > 20:
        return None
    value = int(cleaned)
    return value if minimum <= value <= maximum else None


def money_field(text: str, *, digits: int = 2) -> int | None:
    """An amount typed in major units (``12.50``) as integer minor units, or None; at most
    ``digits`` decimals, never negative, never through a float."""
    cleaned = text.replace(",", "").replace(" ", "").replace("\u00a0", "")
    if not cleaned or cleaned.count(".") > 1 or len(cleaned) > 24:
        return None
    whole, _, fraction = cleaned.partition(".")
    if not whole:
        whole = "0"
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > digits:
        return None
    value = int(whole) * 10**digits + int((fraction or "0").ljust(digits, "0")[:digits] or 0)
    return value if value <= 10**15 else None
