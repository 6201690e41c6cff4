"""What ``server/`` (and later the login layer) plugs into every page: the page context hooks.

The web layer knows nothing of users, sessions or menus; pages still need them in the header.
A hook is an async function of the request returning template variables; the renderer calls
every hook before each page and merges what they return over the defaults (``user`` None,
``nav`` empty), then the page's own variables over that. Hooks run for pages only, never for
error pages, so a failing hook cannot hide the error page that reports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

ContextHook = Callable[[Request], Awaitable[Mapping[str, Any]]]
"""Returns template variables for the page being rendered (``user``, ``nav``, ...)."""


@dataclass(frozen=True)
class NavItem:
    """One link of the header's navigation; ``current`` marks it ``aria-current="page"``."""

    href: str
    label: str
    current: bool = False


@dataclass(frozen=True)
class WebHooks:
    """The hooks a deployment gives :func:`web.create_web`."""

    context: Sequence[ContextHook] = ()


DEFAULT_CONTEXT: Mapping[str, Any] = {"user": None, "nav": ()}
"""The variables every page has, whatever the hooks add (StrictUndefined would otherwise turn a
missing ``nav`` into an error on pages served without hooks)."""
