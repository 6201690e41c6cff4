"""The header of the console and the portal: who is logged in, and the menu of the pages their
scopes open (a link the visitor could not use is not shown; the page checks again anyway).

``page_context`` is the page context hook ``server/`` gives ``create_web``: on ``/console``,
``/portal`` and ``/auth`` pages it looks the session up (once per request, cached) and returns
``user`` and ``nav``; other pages (the storefront) get nothing from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from web.hooks import NavItem
from web.i18n import N_, gettext
from web.sessions import Visitor, shown_user, visitor_of

AREAS = ("/console", "/portal", "/auth")


@dataclass(frozen=True)
class MenuEntry:
    """A menu link: path, label, and the scopes of which the visitor needs one (none: any)."""

    path: str
    label: str
    scopes: tuple[str, ...] = ()


CONSOLE_MENU: tuple[MenuEntry, ...] = (
    MenuEntry("/console", N_("Dashboard")),
    MenuEntry("/console/skus", N_("Catalog"), ("catalog",)),
    MenuEntry("/console/batches", N_("Batches"), ("stock",)),
    MenuEntry("/console/codes", N_("Codes"), ("trace",)),
    MenuEntry("/console/orders", N_("Orders"), ("masked_views",)),
    MenuEntry("/console/holds", N_("Holds"), ("holds",)),
    MenuEntry("/console/agents", N_("Agents"), ("masked_views", "ledger")),
    MenuEntry("/console/withdrawals", N_("Withdrawals"), ("withdrawals",)),
    MenuEntry("/console/money", N_("Money"), ("reconciliation",)),
    MenuEntry("/console/approvals", N_("Approvals"),
              ("withdrawals", "ledger", "export", "stock")),
    MenuEntry("/console/alerts", N_("Alerts"), ("catalog", "ledger", "withdrawals", "stock")),
    MenuEntry("/console/risk", N_("Risk"), ("admin",)),
    MenuEntry("/console/channels", N_("Payment channels"), ("admin",)),
    MenuEntry("/console/keys", N_("API keys"), ("admin",)),
    MenuEntry("/console/users", N_("Users"), ("users",)),
    MenuEntry("/console/audit", N_("Audit log"), ("audit",)),
    MenuEntry("/console/terminal", N_("Terminal"), ("verify",)),
)
PORTAL_MENU: tuple[MenuEntry, ...] = (
    MenuEntry("/portal", N_("Overview")),
    MenuEntry("/portal/buy", N_("Buy"), ("orders",)),
    MenuEntry("/portal/orders", N_("Orders"), ("orders",)),
    MenuEntry("/portal/holds", N_("Holds"), ("holds",)),
    MenuEntry("/portal/prices", N_("Prices"), ("orders",)),
    MenuEntry("/portal/agents", N_("Sub-agents"), ("sub_agents",)),
    MenuEntry("/portal/commissions", N_("Commissions")),
    MenuEntry("/portal/withdrawals", N_("Withdrawals")),
    MenuEntry("/portal/keys", N_("API keys"), ("sub_agents",)),
    MenuEntry("/portal/users", N_("People"), ("sub_agents",)),
    MenuEntry("/portal/alerts", N_("Alerts")),
)


def _current(path: str, entry: MenuEntry) -> bool:
    if entry.path in ("/console", "/portal"):
        return path == entry.path
    return path == entry.path or path.startswith(entry.path + "/")


def menu(visitor: Visitor, path: str, root: str = "") -> list[NavItem]:
    """The menu for ``visitor`` on ``path``: the console's for platform users, the portal's for
    agents' users."""
    entries = PORTAL_MENU if visitor.agent_id is not None else CONSOLE_MENU
    if visitor.role == "terminal":
        entries = tuple(entry for entry in CONSOLE_MENU if entry.path == "/console/terminal")
    return [NavItem(root + entry.path, gettext(entry.label), _current(path, entry))
            for entry in entries
            if not entry.scopes or any(visitor.may(scope) for scope in entry.scopes)]


async def page_context(request: Request) -> Mapping[str, Any]:
    """``user`` and ``nav`` for pages of the console, the portal and the login pages."""
    path = request.url.path
    root = str(request.scope.get("root_path", ""))
    local = path[len(root):] if root and path.startswith(root) else path
    if not any(local == area or local.startswith(area + "/") for area in AREAS):
        return {}
    visitor = await visitor_of(request)
    if visitor is None or visitor.info.stage != "full":
        return {"user": None, "nav": ()}
    return {"user": shown_user(visitor), "nav": menu(visitor, local, root)}
