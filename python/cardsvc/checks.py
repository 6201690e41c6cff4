"""The shared input rules: ids, names, currencies, amounts, integers, text, client references
and quantities, each defined once.

Every check raises a CardsvcError with a stable code and ``details.field``; none ever echoes the
value (it may be a code). The patterns are exported too, so the HTTP layer's request models
(``api/models.py``) declare the same rules in the OpenAPI schema.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from cardsvc.engine import ORDER_QTY_MAX, REF_LEN_MAX
from cardsvc.errors import ErrorCode, invalid, make_error

__all__ = [
    "CODE_TEXT_ALLOWED",
    "CURRENCIES",
    "CURRENCY_PATTERN",
    "ID_LEN_MAX",
    "ID_PATTERN",
    "MONEY_MINOR_MAX",
    "NAME_LEN_MAX",
    "ORDER_QTY_MAX",
    "PRICE_MINOR_MAX",
    "REF_LEN_MAX",
    "TIME_TEXT_LEN_MAX",
    "check_amount",
    "check_client_ref",
    "check_code_text",
    "check_currency",
    "check_id",
    "check_int",
    "check_money_product",
    "check_name",
    "check_price",
    "check_quantity",
    "check_text",
    "invalid",
    "month_of",
    "parse_time_ms",
]

ID_LEN_MAX = 64
"""SKU, agent, pool, grade and key ids: short, printable, chosen by people or generated."""
NAME_LEN_MAX = 200
"""Display names of SKUs, agents, grades and suppliers."""
MONEY_MINOR_MAX = 10**15
"""Every amount of money, price, cost and credit limit, in minor units: far above any real sum
(10 trillion yuan) and far from int64's overflow even when summed over many rows."""
PRICE_MINOR_MAX = MONEY_MINOR_MAX // ORDER_QTY_MAX
"""The highest unit price (and unit cost) of a code: 10^11 minor units (a billion yuan), so that
price x the largest order (ORDER_QTY_MAX) stays within MONEY_MINOR_MAX. Bounding prices where
they are set means an agent can never price its sub-agent's orders into LIMIT_EXCEEDED."""
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
"""An identifier chosen by people: letters, digits, ``.``, ``_`` and ``-``, not starting with
punctuation."""
CURRENCY_PATTERN = r"[A-Z]{3}"
"""A currency: three capital letters (the shape of an ISO 4217 code)."""

CURRENCIES = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM",
    "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN",
    "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD",
    "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL",
    "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY",
    "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP",
    "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP",
    "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR",
    "ZMW", "ZWG",
})
"""The ISO 4217 codes of currencies in circulation (2026; funds, precious metals, test and
special codes such as XXX, XAU, XDR, BOV are left out: nothing is sold in them). A new
currency is added here, in one place."""
CODE_TEXT_ALLOWED = "printable ASCII (0x20..0x7E)"
"""What an imported code or PIN may contain, as given by the supplier: printable ASCII only.
Tabs, line breaks and other control characters are refused (the core's lookup ignores ASCII
whitespace, so ``\tABC`` would be found as ``ABC`` but delivered and exported with its tab);
non-ASCII is refused by the core. A leading ``= + - @`` is allowed (real supplier codes have
them) and made harmless on the way out by ``cardsvc.csv_safe``."""
TIME_TEXT_LEN_MAX = 40
"""An RFC 3339 date-time with fractions and an offset is at most 35 characters."""
TIME_MS_MAX = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last instant an ISO date can name."""

_ID = re.compile(ID_PATTERN)
_CURRENCY = re.compile(CURRENCY_PATTERN)


def check_id(field: str, value: object) -> str:
    """``value`` if it is an id (``ID_PATTERN``). Raises INVALID_ARGUMENT, or LIMIT_EXCEEDED
    above ID_LEN_MAX characters."""
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise invalid(field, f"{field} must be letters, digits, '.', '_' or '-'")
    if len(value) > ID_LEN_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"{field} may be at most {ID_LEN_MAX} long",
                         {"field": field, "max": ID_LEN_MAX})
    return value


def check_currency(field: str, value: object) -> str:
    """``value`` if it is the ISO 4217 code of a currency in circulation (CURRENCIES). Raises
    INVALID_ARGUMENT (details ``reason``: ``shape`` or ``unknown``)."""
    if not isinstance(value, str) or _CURRENCY.fullmatch(value) is None:
        raise invalid(field, f"{field} must be three capital letters (ISO 4217)", reason="shape")
    if value not in CURRENCIES:
        raise invalid(field, f"{field} is not an ISO 4217 currency in circulation",
                      reason="unknown")
    return value


def check_money_product(field: str, unit_minor: int, count: int) -> int:
    """``unit_minor`` x ``count``, checked before it reaches SQL (a 64-bit column): raises
    LIMIT_EXCEEDED (details ``field``, ``max``) when the product exceeds MONEY_MINOR_MAX.
    Every price x quantity and cost x count goes through here."""
    product = unit_minor * count
    if abs(product) > MONEY_MINOR_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"{field} is too large",
                         {"field": field, "max": MONEY_MINOR_MAX})
    return product


def check_price(field: str, unit_minor: int) -> int:
    """``unit_minor`` if it is at most PRICE_MINOR_MAX (a price or cost of one code). Raises
    LIMIT_EXCEEDED (details ``field``, ``max``)."""
    if unit_minor > PRICE_MINOR_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"{field} is too large for one code",
                         {"field": field, "max": PRICE_MINOR_MAX})
    return unit_minor


def check_code_text(field: str, value: str, index: int | None = None) -> None:
    """Raises INVALID_CODE (``field`` code) or INVALID_PIN (``field`` pin), with ``index`` when
    given, unless ``value`` is printable ASCII (CODE_TEXT_ALLOWED). Never echoes the value."""
    if value.isascii() and value.isprintable():
        return
    code = ErrorCode.INVALID_PIN if field == "pin" else ErrorCode.INVALID_CODE
    details: dict[str, object] = {"field": field, "reason": "characters"}
    if index is not None:
        details["index"] = index
    raise make_error(code, f"a {field} may contain only {CODE_TEXT_ALLOWED}", details)


def check_int(field: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]``. Raises INVALID_ARGUMENT."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(field, f"{field} must be an integer from {low} to {high}")
    return value


def check_name(value: object, field: str = "name") -> str:
    """``value`` if it is 1 to NAME_LEN_MAX characters. Raises INVALID_ARGUMENT."""
    if not isinstance(value, str) or not 0 < len(value) <= NAME_LEN_MAX:
        raise invalid(field, f"{field} must be 1 to {NAME_LEN_MAX} characters")
    return value


EMAIL_CHARS_MAX = 254
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
"""A mail address: RFC 5322's dot-atom characters before the ``@`` (no quoted local parts,
which carry markup), a dotted domain after it (the storefront's rule for buyers too)."""


def check_email(value: object, field: str = "email") -> str:
    """``value`` trimmed and lower-cased if it is a mail address of at most EMAIL_CHARS_MAX
    characters. Raises INVALID_ARGUMENT."""
    address = value.strip().lower() if isinstance(value, str) else ""
    if len(address) > EMAIL_CHARS_MAX or not EMAIL.fullmatch(address):
        raise invalid(field, "give a valid email address")
    return address


def check_amount(field: str, amount: object, *, positive: bool = True) -> int:
    """``amount`` if it is an int (not a bool) of at most MONEY_MINOR_MAX in magnitude and, with
    ``positive``, above zero (else at least zero). Raises AMOUNT_MUST_BE_POSITIVE (or
    INVALID_ARGUMENT for a negative amount where zero is allowed), INVALID_ARGUMENT for a
    non-integer, LIMIT_EXCEEDED above the bound."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise invalid(field, f"{field} must be an integer number of minor units")
    if positive and amount <= 0:
        raise make_error(ErrorCode.AMOUNT_MUST_BE_POSITIVE, f"{field} must be positive",
                         {"field": field})
    if not positive and amount < 0:
        raise invalid(field, f"{field} must not be negative")
    if abs(amount) > MONEY_MINOR_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"{field} is too large",
                         {"field": field, "max": MONEY_MINOR_MAX})
    return amount


def check_text(field: str, value: object, length_max: int) -> None:
    """Raises INVALID_ARGUMENT unless ``value`` is non-empty text, LIMIT_EXCEEDED beyond
    ``length_max`` characters."""
    if not isinstance(value, str) or not value:
        raise invalid(field, f"{field} must be non-empty text")
    if len(value) > length_max:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"{field} is too long",
                         {"field": field, "max": length_max})


def check_client_ref(field: str, value: str) -> None:
    """Raises INVALID_ARGUMENT unless ``value`` is 1..REF_LEN_MAX printable ASCII characters."""
    if not value or len(value) > REF_LEN_MAX or not value.isascii() or not value.isprintable():
        raise invalid(field, f"{field} must be 1 to {REF_LEN_MAX} printable ASCII characters")


def check_quantity(quantity: int) -> None:
    """Raises QUANTITY_MUST_BE_POSITIVE below 1, LIMIT_EXCEEDED above ORDER_QTY_MAX."""
    if quantity < 1:
        raise make_error(ErrorCode.QUANTITY_MUST_BE_POSITIVE, "quantity must be at least 1",
                         {"field": "quantity"})
    if quantity > ORDER_QTY_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "quantity is too large",
                         {"field": "quantity", "max": ORDER_QTY_MAX, "got": quantity})


def parse_time_ms(field: str, text: str) -> int:
    """Unix ms of ``text``: an ISO date (``2026-11-01``: its UTC midnight) or an RFC 3339
    date-time (``2026-11-01T08:00:00Z``, ``...+08:00``; without an offset, UTC). Raises
    INVALID_ARGUMENT (``field``) for anything else. Pure."""
    if not isinstance(text, str) or not 0 < len(text) <= TIME_TEXT_LEN_MAX:
        raise invalid(field, f"{field} must be an ISO date or an RFC 3339 date-time")
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise invalid(field, f"{field} must be an ISO date or an RFC 3339 date-time") from None
    ms = int(moment.timestamp() * 1000)
    if not 0 <= ms <= TIME_MS_MAX:
        raise invalid(field, f"{field} must be after 1970")
    return ms


def month_of(now_ms: int) -> tuple[int, int]:
    """``[start, end)`` in Unix ms of the UTC calendar month holding ``now_ms``. Pure."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)
