"""The agents' portal (``/portal/...``): balance and statement, prices, orders and holds,
sub-agents, commissions, withdrawals, API keys, people (inviting users) and alert
subscriptions, always of the logged-in user's own agent (``web.sessions.portal_page``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from web.pages.portal import pages, users

ROUTES: list[BaseRoute] = [*pages.ROUTES, *users.ROUTES]
