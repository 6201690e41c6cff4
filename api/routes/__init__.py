"""The routers, one module per resource. Resource routers live under :data:`API_PREFIX`; the
health probes (``health``) are unversioned, as load balancers and orchestrators expect."""

from fastapi import APIRouter

from api.routes import (
    admin,
    agents,
    approvals,
    audit,
    catalog,
    docs,
    exports,
    health,
    money,
    notify,
    orders,
    prices,
    redemption,
    retail,
    shop,
)

API_PREFIX = "/v1"
RESOURCE_ROUTERS: tuple[APIRouter, ...] = (
    shop.router, redemption.router, orders.router, catalog.router, agents.router,
    prices.router, money.router, admin.router, audit.router, exports.router, retail.router,
    approvals.router,
)
"""Every resource router, mounted under API_PREFIX by ``server.app``. FastAPI tries routes in
order, so the hottest public paths (the shop's checkouts, then redemption) come first."""

__all__ = ["API_PREFIX", "RESOURCE_ROUTERS", "docs", "health", "notify"]
