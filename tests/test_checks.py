"""Goal: the shared money and text rules of issue 10 (items 3, 8 and 11): products checked
before SQL, unit prices bounded so every allowed order fits, currencies real ISO 4217 codes,
code text printable ASCII. Method: the pure checks directly."""

from __future__ import annotations

import pytest

from cardsvc.checks import (
    MONEY_MINOR_MAX,
    ORDER_QTY_MAX,
    PRICE_MINOR_MAX,
    check_code_text,
    check_currency,
    check_money_product,
    check_price,
)
from cardsvc.errors import CardsvcError, ErrorCode


def test_money_products_beyond_the_bound_are_limit_exceeded() -> None:
    assert check_money_product("total", PRICE_MINOR_MAX, ORDER_QTY_MAX) == MONEY_MINOR_MAX
    with pytest.raises(CardsvcError) as refused:
        check_money_product("total", 10**15, 10_000)  # beyond int64: was an SQL OverflowError
    assert refused.value.code is ErrorCode.LIMIT_EXCEEDED
    with pytest.raises(CardsvcError):
        check_price("price_minor", PRICE_MINOR_MAX + 1)


@pytest.mark.parametrize(("value", "ok"), [("CNY", True), ("USD", True), ("EUR", True),
                                           ("XXX", False), ("XAU", False), ("ABC", False),
                                           ("cny", False)])
def test_currencies_are_iso_4217_codes_in_circulation(value: str, ok: bool) -> None:
    if ok:
        assert check_currency("currency", value) == value
    else:
        with pytest.raises(CardsvcError) as refused:
            check_currency("currency", value)
        assert refused.value.code is ErrorCode.INVALID_ARGUMENT


def test_code_text_is_printable_ascii() -> None:
    check_code_text("code", "=ABC-123 x")
    for bad in ("\tABC", "AB\nC", "卡密", "A\x00"):
        with pytest.raises(CardsvcError) as refused:
            check_code_text("code", bad, 3)
        assert refused.value.code is ErrorCode.INVALID_CODE and refused.value.details["index"] == 3
