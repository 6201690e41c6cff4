"""Every page route of the service's own areas (login, console, portal), their context hook and
upload paths, for ``server/`` to hand to :func:`web.create_web` beside the storefront's."""

from __future__ import annotations

from web.hooks import ContextHook
from web.pages import auth, console, nav, portal

ROUTES = [*auth.ROUTES, *console.ROUTES, *portal.ROUTES]
CONTEXT_HOOKS: tuple[ContextHook, ...] = (nav.page_context,)
UPLOAD_PATHS: tuple[str, ...] = console.UPLOAD_PATHS
