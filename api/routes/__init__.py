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
    orders,
    prices,
    redemption,
)

API_PREFIX = "/v1"
RESOURCE_ROUTERS: tuple[APIRouter, ...] = (
    redemption.router, orders.router, catalog.router, agents.router, prices.router,
    money.router, admin.router, audit.router, exports.router, approvals.router,
)
"""Every resource router, mounted under API_PREFIX by ``server.app``."""

__all__ = ["API_PREFIX", "RESOURCE_ROUTERS", "docs", "health"]
