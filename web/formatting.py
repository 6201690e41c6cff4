"""Money, dates and codes as people read them, in the active locale.

Money is integer minor units everywhere (STYLE.md); only here does it become text, through a
``Decimal`` so no float ever touches it. zh-CN shows the symbol (``¥12.50``), en the ISO code
(``CNY 12.50``, with a no-break space so the two never wrap apart on a phone), because an
English reader on this platform may deal in several currencies where ``¥`` is ambiguous (CNY
and JPY share it). Dates are Unix milliseconds shown in the deployment's time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal, get_currency_precision

from cardsvc.masking import mask_code
from cardsvc.times import iso
from web.i18n import active

MONEY_MINOR_ABS_MAX = 10**15
"""Far above any real amount (10^13 yuan), so a garbage value fails loudly instead of
printing a 30-digit price."""
DATE_FORMATS = ("short", "medium", "long")


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def money(amount_minor: int, currency: str) -> str:
    """``amount_minor`` of ``currency`` (ISO 4217, e.g. ``CNY``) as text in the active locale:
    ``¥12.50`` in zh-CN, ``CNY 12.50`` in en; the currency's own number of decimals (JPY has
    none). Raises ValueError for a non-integer amount, one beyond 10^15 minor units, or a
    currency code that is not three capital letters."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ValueError("money amounts are integers of minor units")
    if abs(amount_minor) > MONEY_MINOR_ABS_MAX:
        raise ValueError("money amount out of range")
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        raise ValueError("currencies are ISO 4217 codes")
    digits = get_currency_precision(currency)
    amount = Decimal(amount_minor).scaleb(-digits)
    locale = active().locale
    if locale == "en":
        pattern = "¤¤\u00a0#,##0" + ("." + "0" * digits if digits else "")
        return format_currency(amount, currency, format=pattern, locale=locale,
                               currency_digits=False)
    return format_currency(amount, currency, locale=locale)


def major_units(amount_minor: int | None, currency: str) -> str:
    """``amount_minor`` as the plain decimal a form field holds (``1250`` CNY -> ``12.50``), no
    symbol and no grouping; "" for None."""
    if amount_minor is None:
        return ""
    digits = get_currency_precision(currency)
    return str(Decimal(int(amount_minor)).scaleb(-digits).quantize(Decimal(1).scaleb(-digits)))


def number(value: int) -> str:
    """An integer with the active locale's digit grouping (``12,345``)."""
    return format_decimal(value, locale=active().locale)


def datetime_ms(ms: int, timezone: str, style: str = "medium") -> str:
    """A time in Unix milliseconds as local text in ``timezone`` (``2026年1月1日 08:00:00`` /
    ``Jan 1, 2026, 8:00:00 AM``); ``style`` is short, medium or long. Raises ValueError for an
    unknown style."""
    if style not in DATE_FORMATS:
        raise ValueError(f"style must be one of {DATE_FORMATS}")
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return format_datetime(moment, style, tzinfo=_zone(timezone), locale=active().locale)


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC text of a time in Unix milliseconds, for ``<time datetime>``."""
    text = iso(ms)
    assert text is not None  # iso() maps only None to None
    return text


def masked(code_text: str) -> str:
    """The masked form of a code or PIN (all but the last four characters hidden): the only
    form a template may show outside the audited reveal page (DESIGN.md invariant 5)."""
    return mask_code(code_text)
