"""Cursor pagination, one convention for every list of the API and the console.

A list is read in a stable order (newest first unless the list says otherwise: a time and a
unique id, so ties never reorder) a page at a time. A page is at most ``limit`` items (1 to
PAGE_SIZE_MAX, PAGE_SIZE_DEFAULT when not given) and a ``next`` cursor, None on the last page.
The cursor is opaque to callers: the sort key of the page's last item, as URL-safe base64 of
compact JSON. It is not a secret and needs no signature: whatever a caller puts in it, the
list's filters (whose items the caller may see) are applied again, so a forged cursor can only
move where a page starts. A malformed cursor is INVALID_ARGUMENT (``field`` cursor).

Floor 0: stdlib only. Use::

    limit = check_page_size(limit)
    after = decode_cursor(cursor, (int, str))      # None for the first page
    rows = ...query ordered by (created_at_ms desc, id desc), after ``after``, limit + 1...
    return page_of(rows, limit, key=lambda row: (row.created_at_ms, row.order_id))
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from cardsvc.errors import ErrorCode, invalid, make_error

T = TypeVar("T")

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200
"""Items one page holds at most: a console table's worth, and a bound on what one request reads
(a few hundred rows, well under a millisecond of SQL each)."""
CURSOR_LEN_MAX = 512
"""Characters of a cursor: a time and an id (ids are at most 128 printable ASCII characters,
about 220 characters as a cursor), with room to spare."""

CURSOR_INT_MIN = -(2**63)
CURSOR_INT_MAX = 2**63 - 1
"""A cursor's ints are SQL BIGINTs (times in ms, ids): a forged one outside that range is
refused here, where the database would fail on it."""

CursorKey = tuple[int | str, ...]
"""A cursor's sort key: ints (64-bit) and strings (a time in ms, an id)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next one (None: this is the last)."""

    items: list[T]
    next: str | None


def check_page_size(limit: int | None) -> int:
    """``limit`` checked (None: PAGE_SIZE_DEFAULT). Raises INVALID_ARGUMENT below 1 or for a
    non-integer, LIMIT_EXCEEDED above PAGE_SIZE_MAX."""
    if limit is None:
        return PAGE_SIZE_DEFAULT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise invalid("limit", "limit must be a positive integer")
    if limit > PAGE_SIZE_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"limit may be at most {PAGE_SIZE_MAX}",
                         {"field": "limit", "max": PAGE_SIZE_MAX})
    return limit


def encode_cursor(key: CursorKey) -> str:
    """The opaque cursor of ``key``. Pure. A key too long for CURSOR_LEN_MAX is a bug of the
    list that made it (its ids are bounded)."""
    text = json.dumps(list(key), separators=(",", ":"), ensure_ascii=True)
    cursor = base64.urlsafe_b64encode(text.encode("ascii")).rstrip(b"=").decode("ascii")
    if len(cursor) > CURSOR_LEN_MAX:
        raise AssertionError(f"a cursor key of {len(text)} characters is longer than any id")
    return cursor


def decode_cursor(cursor: str | None, types: Sequence[type]) -> CursorKey | None:
    """The sort key in ``cursor`` (None: the first page), whose items must have ``types`` in
    order (``int``, within 64 bits, or ``str``). Raises INVALID_ARGUMENT (``field`` cursor) for
    anything else."""
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not 0 < len(cursor) <= CURSOR_LEN_MAX:
        raise invalid("cursor", "cursor is not one this list gave out")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid("cursor", "cursor is not one this list gave out") from None
    if not isinstance(values, list) or len(values) != len(types) or not all(
        type(value) is kind and (not isinstance(value, int)
                                 or CURSOR_INT_MIN <= value <= CURSOR_INT_MAX)
        for value, kind in zip(values, types, strict=True)
    ):
        raise invalid("cursor", "cursor is not one this list gave out")
    return tuple(values)


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], CursorKey]) -> Page[T]:
    """The page of ``rows`` read with ``limit + 1`` (one more than the page shows, so the last
    page is known without a second query): at most ``limit`` items and the next cursor."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items, encode_cursor(key(items[-1])) if more and items else None)
