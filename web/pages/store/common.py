"""What the store's pages share: the runtime, the buyer's order tokens in the ``orders``
cookie, the client's address, and the sandbox banner's context."""

from __future__ import annotations

import re
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response

from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.runtime import Runtime
from cardsvc.sales import RetailOrderView
from web.i18n import N_, gettext
from web.render import renderer_of

ORDERS_COOKIE = "orders"
TOKENS_KEPT_MAX = 8
"""Order tokens the cookie keeps (newest last): 8 x 43 characters, far under 4 KiB."""
COOKIE_MAX_AGE_S = 180 * 86_400
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")

ERROR_TEXTS: dict[ErrorCode, str] = {
    ErrorCode.OUT_OF_STOCK: N_("Sold out: there are not enough codes left for this order."),
    ErrorCode.QUANTITY_NOT_ALLOWED: N_("This quantity is not allowed for this product."),
    ErrorCode.RATE_LIMITED: N_("Too many orders at once. Please wait a little and try again."),
    ErrorCode.CHALLENGE_FAILED: N_("The anti-robot check did not pass. Please try again."),
    ErrorCode.CHANNEL_NOT_FOUND: N_("Choose a payment method."),
    ErrorCode.CHANNEL_DISABLED: N_("This payment method is not available now."),
    ErrorCode.SANDBOX_IN_PRODUCTION: N_("This payment method is not available now."),
    ErrorCode.SKU_NOT_FOUND: N_("This product is not on sale."),
    ErrorCode.ORDER_NOT_FOUND: N_("No order matches what you entered."),
}
FIELD_TEXTS: dict[str, str] = {
    "email": N_("Enter a valid email address."),
    "password": N_("An order password has at least 12 characters."),
}


def runtime_of(request: Request) -> Runtime:
    """The service's runtime (set on the web app by the server's lifespan)."""
    return cast(Runtime, request.app.state.runtime)


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def tokens_of(request: Request) -> list[str]:
    """The order tokens the browser holds (the ``orders`` cookie), oldest first."""
    raw = renderer_of(request).cookies.read(request.scope, ORDERS_COOKIE) or ""
    return [part for part in raw.split(".") if _TOKEN.fullmatch(part)][-TOKENS_KEPT_MAX:]


def remember_token(response: Response, request: Request, *new: str) -> None:
    """Adds the ``new`` tokens to the browser's ``orders`` cookie (``__Host-``, HttpOnly,
    Strict), the first given last (the newest)."""
    fresh = list(reversed(new))
    tokens = [t for t in tokens_of(request) if t not in fresh] + fresh
    renderer = renderer_of(request)
    response.headers.append("set-cookie", renderer.cookies.header(
        request.scope, ORDERS_COOKIE, ".".join(tokens[-TOKENS_KEPT_MAX:]),
        max_age_s=COOKIE_MAX_AGE_S))


async def open_order(request: Request, order_id: str) -> tuple[RetailOrderView, str]:
    """The order one of the browser's tokens opens, and that token. Raises ORDER_NOT_FOUND."""
    checkout = runtime_of(request).checkout
    for token in reversed(tokens_of(request)):
        try:
            return await checkout.order(order_id, token), token
        except CardsvcError as error:
            if error.code != ErrorCode.ORDER_NOT_FOUND:
                raise
    raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order", {})


def error_text(error: CardsvcError) -> str:
    """The sentence a form shows for a domain refusal."""
    field = error.details.get("field")
    if error.code == ErrorCode.INVALID_ARGUMENT and isinstance(field, str) and \
            field in FIELD_TEXTS:
        return gettext(FIELD_TEXTS[field])
    return gettext(ERROR_TEXTS.get(error.code,
                                   N_("This could not be done. Please check and try again.")))


def shop_context(request: Request) -> dict[str, Any]:
    """Variables every store page has: whether a sandbox channel takes payments here."""
    channels = runtime_of(request).channels.storefront()
    return {"sandbox_active": any(channel.sandbox for channel in channels)}
