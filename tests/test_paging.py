"""Goal: cursors round-trip, a page knows whether another follows, and every malformed cursor or
page size is refused with a stable code.

Method: pure functions over lists; hypothesis for round trips of any key.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.paging import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    check_page_size,
    decode_cursor,
    encode_cursor,
    page_of,
)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1),
       st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=128))
def test_a_cursor_round_trips(at_ms: int, key_id: str) -> None:
    assert decode_cursor(encode_cursor((at_ms, key_id)), (int, str)) == (at_ms, key_id)


def test_page_of_gives_a_cursor_only_when_more_rows_follow() -> None:
    rows = [(10, "c"), (9, "b"), (8, "a")]
    first = page_of(rows, 2, key=lambda row: row)
    assert first.items == [(10, "c"), (9, "b")]
    assert decode_cursor(first.next, (int, str)) == (9, "b")
    assert page_of(rows[:2], 2, key=lambda row: row).next is None
    assert page_of([], 2, key=lambda row: row) == page_of([], 5, key=lambda row: row)


@pytest.mark.parametrize("cursor", ["", "!!!", "x" * 600, encode_cursor((1,)),
                                    encode_cursor(("1", "a")), encode_cursor((True, "a")),
                                    encode_cursor((2**63, "a")), encode_cursor((-(2**63) - 1, "a")),
                                    encode_cursor((10**30, "a")), "bnVsbA"])
def test_a_malformed_cursor_is_invalid_argument(cursor: str) -> None:
    with pytest.raises(CardsvcError) as caught:
        decode_cursor(cursor, (int, str))
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    assert caught.value.details["field"] == "cursor"


def test_page_sizes_are_bounded() -> None:
    assert check_page_size(None) == PAGE_SIZE_DEFAULT
    assert check_page_size(PAGE_SIZE_MAX) == PAGE_SIZE_MAX
    with pytest.raises(CardsvcError) as too_big:
        check_page_size(PAGE_SIZE_MAX + 1)
    assert too_big.value.code == ErrorCode.LIMIT_EXCEEDED
    for bad in (0, -1, True):
        with pytest.raises(CardsvcError) as caught:
            check_page_size(bad)
        assert caught.value.code == ErrorCode.INVALID_ARGUMENT
