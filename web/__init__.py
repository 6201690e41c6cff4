"""The HTML layer of cardsvc: server-rendered pages for the storefront, the staff console, the
agent portal and the claim and terminal pages (DESIGN.md, Web).

Its face: :func:`create_web` (the Starlette app ``server/`` mounts at ``/``),
:class:`WebSettings` and :func:`load_secret_key`, :class:`WebHooks` and :class:`NavItem` for
what a deployment adds to every page, and :func:`render_page` for page routes. docs/web.md
says how to add a page. Like ``api/``, this package calls the domain through package faces
only; it never imports ``api``, ``cardsvc.engine`` or SQLAlchemy.
"""

from __future__ import annotations

from web.app import create_web
from web.hooks import ContextHook, NavItem, WebHooks
from web.mail import MailComposer, mail_composer
from web.pages.store import store_routes
from web.render import render_page, renderer_of
from web.settings import WebSettings, load_secret_key

__all__ = [
    "ContextHook",
    "MailComposer",
    "NavItem",
    "WebHooks",
    "WebSettings",
    "create_web",
    "load_secret_key",
    "mail_composer",
    "render_page",
    "renderer_of",
    "store_routes",
]
