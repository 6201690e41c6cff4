"""The web application factory: ``create_web(settings, hooks)`` builds the Starlette app that
``server/`` mounts at ``/``.

Everything is built eagerly here (catalogs compiled, static assets hashed, templates' loader
ready), because Starlette does not run a mounted app's lifespan: the app needs no start-up or
shut-down of its own. The middleware stack, outermost first, and why in that order:

1. ``SecurityHeadersMiddleware``: every response, error pages included, gets the CSP and co.
2. ``LocaleMiddleware``: the language is known before anything renders, error pages included.
3. ``InternalErrorMiddleware``: an unexpected exception becomes the 500 page (in that language).
4. ``BodyLimitMiddleware``: no body larger than ``request_bytes_max`` reaches the CSRF check.
5. ``CsrfMiddleware``: unsafe requests are refused before any route runs.
6. Starlette's exception handling (``CardsvcError``, ``HTTPException``) and the routes.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from cardsvc.errors import CardsvcError
from web.errors import BodyLimitMiddleware, ErrorPages, InternalErrorMiddleware
from web.hooks import WebHooks
from web.i18n import LocaleMiddleware, load_catalogs
from web.pages import demo
from web.render import Renderer, create_environment
from web.security.cookies import CookiePolicy
from web.security.csrf import CsrfMiddleware, SessionBinding
from web.security.headers import SecurityHeadersMiddleware
from web.security.signing import Signer
from web.settings import WebSettings
from web.static import StaticAssets


def create_web(settings: WebSettings, hooks: WebHooks | None = None, *,
               routes: Sequence[BaseRoute] = (),
               session_binding: SessionBinding | None = None,
               upload_paths: Sequence[str] = ()) -> Starlette:
    """The HTML application: ``routes`` (the pages of later issues), the demo pages when
    ``settings.demo_pages``, and ``/static``; ``hooks`` add template variables to every page;
    ``session_binding`` ties CSRF tokens to the login session's CSRF secret
    (``cardsvc.access.csrf_binding``; without it, to a hash of the session cookie);
    ``upload_paths`` are the exact paths of file uploads, whose bodies may reach
    ``settings.upload_bytes_max`` instead of ``request_bytes_max``.

    ``app.state`` holds ``settings``, ``renderer``, ``signer``, ``cookies``, ``assets`` and
    ``error_pages`` for pages and tests. Raises FileNotFoundError when a catalog is missing and
    ValueError when the static tree is over its bound (both packaging bugs)."""
    signer = Signer((settings.secret_key, *settings.previous_secret_keys))
    cookies = CookiePolicy(tls_terminated=settings.tls_terminated,
                           dev_plain_http=settings.dev_plain_http_cookies)
    assets = StaticAssets(max_age_s=settings.static_max_age_s)
    env = create_environment(assets, settings.timezone)
    renderer = Renderer(env=env, settings=settings, hooks=hooks or WebHooks(), signer=signer,
                        cookies=cookies)
    pages = ErrorPages(renderer.render)
    all_routes: list[BaseRoute] = [
        Route("/static/{path:path}", assets.endpoint, methods=["GET"], name="static"),
        *routes,
    ]
    if settings.demo_pages:
        all_routes.extend(demo.ROUTES)
    middleware = [
        Middleware(SecurityHeadersMiddleware, tls_terminated=settings.tls_terminated),
        Middleware(LocaleMiddleware, catalogs=load_catalogs(), cookies=cookies,
                   default_locale=settings.default_locale),
        Middleware(InternalErrorMiddleware, pages=pages),
        Middleware(BodyLimitMiddleware, max_bytes=settings.request_bytes_max, pages=pages,
                   path_limits={path: settings.upload_bytes_max for path in upload_paths}),
        Middleware(CsrfMiddleware, signer=signer, cookies=cookies,
                   trusted_origins=settings.trusted_origins,
                   tls_terminated=settings.tls_terminated,
                   form_bytes_max=settings.form_bytes_max, reject=pages.asgi,
                   session_binding=session_binding),
    ]
    app = Starlette(
        routes=all_routes,
        middleware=middleware,
        exception_handlers={CardsvcError: pages.cardsvc_error,
                            HTTPException: pages.http_exception},
    )
    app.state.settings = settings
    app.state.renderer = renderer
    app.state.signer = signer
    app.state.cookies = cookies
    app.state.assets = assets
    app.state.error_pages = pages
    return app
