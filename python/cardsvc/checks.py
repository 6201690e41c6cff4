"""Small checks of request values shared by the domain modules. Each raises a CardsvcError with
a stable code and ``details.field``; none ever echoes the value (it may be a code)."""

from __future__ import annotations

from cardsvc.engine import ORDER_QTY_MAX, REF_LEN_MAX
from cardsvc.errors import CardsvcError, ErrorCode, make_error


def invalid(field: str, message: str) -> CardsvcError:
    """INVALID_ARGUMENT naming ``field``."""
    return make_error(ErrorCode.INVALID_ARGUMENT, message, {"field": field})


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
