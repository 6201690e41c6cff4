"""Request and response model conventions and field types shared by the routers."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from cardsvc.checks import (
    CURRENCY_PATTERN,
    ID_LEN_MAX,
    ID_PATTERN,
    MONEY_MINOR_MAX,
    NAME_LEN_MAX,
    TIME_TEXT_LEN_MAX,
    parse_time_ms,
)
from cardsvc.paging import CURSOR_LEN_MAX, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX

__all__ = [
    "CURRENCY_RE",
    "DEFAULT_LIMIT",
    "MONEY_MINOR_MAX",
    "Currency",
    "CursorQuery",
    "Id",
    "LimitQuery",
    "Money",
    "Name",
    "PageOut",
    "Strict",
    "TimeQuery",
    "time_ms",
]

T = TypeVar("T")


class Strict(BaseModel):
    """A request body: types are not coerced (``"2"`` is not a number) and unknown fields are
    refused, so a typo such as ``"pinn"`` is a VALIDATION_ERROR instead of being ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


Id = Annotated[str, Field(min_length=1, max_length=ID_LEN_MAX, pattern=f"^{ID_PATTERN}$")]
"""An identifier chosen by people (SKU, agent, pool, grade): letters, digits, ., _ and -."""
Name = Annotated[str, Field(min_length=1, max_length=NAME_LEN_MAX)]
Money = Annotated[int, Field(ge=0, le=MONEY_MINOR_MAX, description="integer minor units")]
"""An amount of money: integer minor units (never a float), bounded far above any real sum."""
CURRENCY_RE = f"^{CURRENCY_PATTERN}$"
"""The request pattern of a currency (``cardsvc.checks.CURRENCY_PATTERN``, anchored)."""
Currency = Annotated[str, Field(pattern=CURRENCY_RE, description="ISO 4217")]


class PageOut(BaseModel, Generic[T]):
    """One page of a list (``cardsvc.paging``): its items and the cursor of the next page."""

    items: list[T]
    next: str | None = Field(description="pass as cursor for the next page; null on the last")


CursorQuery = Annotated[str | None, Query(min_length=1, max_length=CURSOR_LEN_MAX,
                                          description="the next cursor of the previous page")]
LimitQuery = Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description="items per page")]
DEFAULT_LIMIT = PAGE_SIZE_DEFAULT
"""Every list's default page size (``limit`` 1..PAGE_SIZE_MAX)."""
TimeQuery = Annotated[str | None, Query(
    min_length=10, max_length=TIME_TEXT_LEN_MAX, examples=["2026-11-01", "2026-11-01T08:00:00Z"],
    description="an ISO date (its UTC midnight) or an RFC 3339 date-time")]


def time_ms(field: str, text: str | None) -> int | None:
    """Unix ms of a :data:`TimeQuery` value (None stays None). Raises INVALID_ARGUMENT."""
    return None if text is None else parse_time_ms(field, text)
