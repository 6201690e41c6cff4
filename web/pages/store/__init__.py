"""The storefront's pages (``shop``: home, product, checkout, payment, the sandbox's pay page;
``orders``: the order, its reveal and resend, the polled state, the lookup). :data:`ROUTES` is
what the server mounts, with the claim page (``web.pages.claim``) beside it."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from web.pages import claim
from web.pages.store import orders, shop

ROUTES: list[BaseRoute] = [
    Route("/", shop.home, methods=["GET"], name="store_home"),
    Route("/p/{sku}", shop.product, methods=["GET"], name="store_product"),
    Route("/checkout", shop.checkout, methods=["POST"], name="store_checkout"),
    Route("/pay/{order_id}", shop.pay, methods=["GET"], name="store_pay"),
    Route("/store/sandbox/pay", shop.sandbox_page, methods=["GET"], name="sandbox_pay"),
    Route("/store/sandbox/pay", shop.sandbox_submit, methods=["POST"], name="sandbox_submit"),
    Route("/orders/{order_id}", orders.order_page, methods=["GET"], name="store_order"),
    Route("/orders/{order_id}/reveal", orders.reveal, methods=["POST"], name="store_reveal"),
    Route("/orders/{order_id}/resend", orders.resend, methods=["POST"], name="store_resend"),
    Route("/orders/{order_id}/state", orders.state, methods=["GET"], name="store_state"),
    Route("/lookup", orders.lookup_page, methods=["GET"], name="store_lookup_page"),
    Route("/lookup", orders.lookup, methods=["POST"], name="store_lookup"),
]


def store_routes() -> list[BaseRoute]:
    """The store's routes and the claim page's."""
    return [*ROUTES, *claim.ROUTES]
