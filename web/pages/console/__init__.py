"""The staff console (``/console/...``): dashboard, catalog, batches, codes, orders, agents,
money, approvals, alerts, risk, keys, users, audit and the terminal page. Every page goes
through ``web.sessions.console_page`` with the scope its work needs."""

from __future__ import annotations

from starlette.routing import BaseRoute

from web.pages.console import (
    agents,
    alerts,
    approvals,
    audit,
    batches,
    catalog,
    channels,
    codes,
    dashboard,
    holds,
    keys,
    money,
    orders,
    retail,
    risk,
    terminal,
    users,
    withdrawals,
)

ROUTES: list[BaseRoute] = [*dashboard.ROUTES, *catalog.ROUTES, *batches.ROUTES,
                          *approvals.ROUTES, *codes.ROUTES,
                          *terminal.ROUTES, *agents.ROUTES, *holds.ROUTES, *audit.ROUTES,
                          *money.ROUTES, *keys.ROUTES, *alerts.ROUTES,
                          *orders.ROUTES, *withdrawals.ROUTES, *risk.ROUTES,
                          *users.ROUTES, *channels.ROUTES, *retail.ROUTES]
UPLOAD_PATHS: tuple[str, ...] = batches.UPLOAD_PATHS
