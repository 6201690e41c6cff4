"""Templates: the Jinja2 environment and the renderer that turns a template into a page.

The environment is strict on purpose:

* ``autoescape=True`` for *every* template, ``.html`` and the ``.txt`` mail bodies to come
  alike: a value is text unless the code marks it ``Markup`` (only :mod:`web.charts` does, for
  SVG it built with every value escaped). Escaping plain-text mail too costs a ``|safe``-free
  ``&amp;`` at worst; forgetting to escape HTML costs an injection.
* ``StrictUndefined``: a misspelt variable is an error at render time (and so in tests), not an
  empty string on a customer's page.
* The i18n extension with *new-style* gettext: ``_("Hello %(name)s", name=user)`` formats inside
  the translation and escapes ``name``; ``gettext`` and ``ngettext`` read the locale that
  :class:`web.i18n.LocaleMiddleware` activated, so imported macros translate too.

Template globals that need the request (``static_url``, ``page_href``, ``lang_href``) read it
from a context variable the renderer sets around each render, so macros imported without
context can use them as well.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from web import formatting
from web.flash import FLASH_COOKIE, take_flashes
from web.hooks import DEFAULT_CONTEXT, WebHooks
from web.i18n import LANG_PARAM, LANGUAGE_NAMES, LANGUAGE_TAGS, active, gettext, ngettext
from web.labels import TEMPLATE_GLOBALS
from web.security.cookies import CookiePolicy
from web.security.csrf import csrf_token
from web.security.signing import Signer
from web.settings import SUPPORTED_LOCALES, WebSettings
from web.static import StaticAssets

TEMPLATES_DIR = Path(__file__).parent / "templates"
QUERY_PARAMS_MAX = 32
"""``page_href`` keeps at most this many of the current query's parameters."""

_request: contextvars.ContextVar[Request] = contextvars.ContextVar("cardsvc_web_request")


def _current_request() -> Request:
    try:
        return _request.get()
    except LookupError:
        raise LookupError("this template global works only inside Renderer.render") from None


def href(path: str) -> str:
    """``path`` (absolute within the web app, ``/orders``) under the app's mount point."""
    return str(_current_request().scope.get("root_path", "")) + path


def page_href(**changes: str | None) -> str:
    """The current page's path and query with ``changes`` applied (None removes a parameter):
    ``page_href(cursor=next_cursor)`` for the next page of a list, keeping its filters."""
    request = _current_request()
    params = dict(parse_qsl(request.url.query, max_num_fields=QUERY_PARAMS_MAX))
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    query = urlencode(params)
    # The path already includes the mount point (Starlette keeps the full path in the scope).
    return request.url.path + ("?" + query if query else "")


def request_path() -> str:
    """The current page's path (without its query), for a form that posts back to it."""
    return _current_request().url.path


def lang_href(tag: str) -> str:
    """The current page in the language ``tag`` (the ``?lang=`` switch)."""
    return page_href(**{LANG_PARAM: tag})


def language_choices() -> list[dict[str, Any]]:
    """The languages of the footer switcher, each with its tag, its own name and whether it is
    the current one."""
    current = active().locale
    return [{"tag": LANGUAGE_TAGS[loc], "name": LANGUAGE_NAMES[loc], "current": loc == current}
            for loc in SUPPORTED_LOCALES]


def create_environment(assets: StaticAssets, timezone: str,
                       directory: Path = TEMPLATES_DIR) -> Environment:
    """The Jinja2 environment of every page and mail body (see the module text)."""
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        keep_trailing_newline=True,
    )
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(
        money=formatting.money,
        major=formatting.major_units,
        number=formatting.number,
        datetime=lambda ms, style="medium": formatting.datetime_ms(ms, timezone, style),
        iso=formatting.iso_ms,
        masked=formatting.masked,
    )
    env.globals.update(
        static_url=lambda path: assets.url(path, href("")),
        csrf_token=csrf_token,
        href=href,
        page_href=page_href,
        lang_href=lang_href,
        languages=language_choices,
        html_lang=lambda: active().tag,
        request_path=request_path,
        **TEMPLATE_GLOBALS,
    )
    return env


class Renderer:
    """Renders pages: template, hooks' context, flash messages, one HTML response."""

    def __init__(self, *, env: Environment, settings: WebSettings, hooks: WebHooks,
                 signer: Signer, cookies: CookiePolicy) -> None:
        self.env = env
        self.settings = settings
        self.hooks = hooks
        self.signer = signer
        self.cookies = cookies

    def render(self, request: Request, template: str, context: Mapping[str, Any]) -> str:
        """The text of ``template`` with ``context`` for ``request`` (no hooks, no flashes)."""
        token = _request.set(request)
        try:
            return str(self.env.get_template(template).render(context))
        finally:
            _request.reset(token)

    async def page(self, request: Request, template: str,
                   context: Mapping[str, Any] | None = None, *, status: int = 200,
                   headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """The page ``template`` as a response: the defaults, then every hook's variables, then
        ``context``; the queued flash messages are shown and their cookie deleted."""
        variables: dict[str, Any] = dict(DEFAULT_CONTEXT)
        for hook in self.hooks.context:
            variables.update(await hook(request))
        flashes = take_flashes(request, signer=self.signer, cookies=self.cookies)
        variables["flashes"] = flashes
        variables.update(context or {})
        response = HTMLResponse(self.render(request, template, variables), status_code=status,
                                headers=dict(headers or {}))
        if flashes:
            response.headers.append("set-cookie",
                                    self.cookies.delete_header(request.scope, FLASH_COOKIE))
        return response


def renderer_of(request: Request) -> Renderer:
    """The renderer of the web app serving ``request`` (set by :func:`web.create_web`)."""
    renderer = request.app.state.renderer
    assert isinstance(renderer, Renderer), "the request did not come through create_web's app"
    return renderer


async def render_page(request: Request, template: str,
                      context: Mapping[str, Any] | None = None, *, status: int = 200,
                      headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """:meth:`Renderer.page` of the app serving ``request``: what a page route returns."""
    return await renderer_of(request).page(request, template, context, status=status,
                                           headers=headers)
