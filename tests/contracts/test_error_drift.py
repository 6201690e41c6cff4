"""Goal: the Rust core's error codes, ``cardsvc.errors.ErrorCode`` and the exception classes never
drift apart (STYLE.md, Errors: one list of codes).

Method: compare ``core_error_codes()`` with ``ErrorCode``; check that every code maps to a
``CardsvcError`` subclass and that ``make_error`` round-trips code, message and details; then
provoke a few errors in a real engine and check that the binding raised the class of their code.
The HTTP status table ``api.errors.STATUS_OF`` must have exactly the codes of ``ErrorCode``, and
give each exception class its family of statuses.
"""

from __future__ import annotations

import re
import secrets

import pytest

from api.errors import STATUS_OF
from cardsvc.engine import LOOKUP_KEY_LEN, Engine, core_error_codes
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
    make_error,
)

UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")


def test_core_error_codes_are_all_in_error_code() -> None:
    missing = set(core_error_codes()) - {code.value for code in ErrorCode}
    assert not missing, f"core codes missing from ErrorCode: {sorted(missing)}"


def test_core_error_codes_are_unique_and_upper_snake() -> None:
    codes = core_error_codes()
    assert codes, "the core exports no error codes"
    assert len(codes) == len(set(codes))
    assert all(UPPER_SNAKE.fullmatch(code) for code in codes), codes


def test_error_code_values_equal_their_names() -> None:
    assert all(code.name == code.value for code in ErrorCode)
    assert all(UPPER_SNAKE.fullmatch(code.value) for code in ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_has_an_exception_class(code: ErrorCode) -> None:
    cls = error_class(code)
    assert issubclass(cls, CardsvcError)
    assert cls is not CardsvcError


@pytest.mark.parametrize("code", list(ErrorCode))
def test_make_error_round_trips_code_message_and_details(code: ErrorCode) -> None:
    details = {"field": "qty", "index": 3}
    error = make_error(code.value, "a message", details)
    assert type(error) is error_class(code)
    assert error.code is code
    assert error.message == "a message"
    assert error.details == details
    assert error.to_dict() == {"code": code.value, "message": "a message", "details": details}


def test_http_status_table_has_exactly_the_error_codes() -> None:
    assert set(STATUS_OF) == set(ErrorCode)


# Which statuses each exception class may have: a new code whose class and status disagree is
# probably mis-filed in one of the two tables.
STATUSES_OF_CLASS: dict[type[CardsvcError], set[int]] = {
    BadInput: {400, 405, 422},
    NotFound: {404},
    Conflict: {409},
    Corruption: {500},
    Unavailable: {503},
    InternalError: {500},
    Unauthenticated: {401},
    Forbidden: {403},
    RateLimited: {429},
}


@pytest.mark.parametrize("code", list(ErrorCode))
def test_http_status_fits_the_class_of_the_code(code: ErrorCode) -> None:
    assert STATUS_OF[code] in STATUSES_OF_CLASS[error_class(code)]


def test_make_error_rejects_an_unknown_code() -> None:
    with pytest.raises(ValueError):
        make_error("NO_SUCH_CODE", "a message")


def _engine() -> Engine:
    return Engine(secrets.token_bytes(LOOKUP_KEY_LEN))


def test_core_raises_the_class_of_its_code_for_a_conflict() -> None:
    engine = _engine()
    engine.create_sku("SKU-A")
    with pytest.raises(CardsvcError) as caught:
        engine.create_sku("SKU-A")
    assert caught.value.code is ErrorCode.SKU_EXISTS
    assert type(caught.value) is error_class(ErrorCode.SKU_EXISTS)


def test_core_raises_the_class_of_its_code_for_unknown_and_bad_input() -> None:
    engine = _engine()
    with pytest.raises(NotFound) as not_found:
        engine.allocate("NO-SUCH-SKU", 1, "order-1")
    assert not_found.value.code is ErrorCode.SKU_NOT_FOUND
    assert isinstance(not_found.value, LookupError)

    engine.create_sku("SKU-B")
    with pytest.raises(BadInput) as bad_input:
        engine.allocate("SKU-B", 0, "order-2")
    assert bad_input.value.code is ErrorCode.QUANTITY_MUST_BE_POSITIVE
    assert isinstance(bad_input.value, ValueError)
