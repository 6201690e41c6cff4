"""The app factory: ``create_app(settings)`` builds the FastAPI application.

The app owns the service's parts (``cardsvc.services.Runtime``: the durable store, the SQL
database, keys, risk state): its lifespan opens them (locking the data directory, recovering the
core, migrating the database, finishing interrupted batches and orders) before the first request,
runs the recovery timer for orders left pending, and closes them (flushing the journal) after
the last. ``cardsvc serve`` opens the store itself, so that a
refusal such as ``DATA_DIR_LOCKED`` is reported before the server starts, and hands it over with
``store=``; the app still closes it at shutdown, because uvicorn ends the process by re-raising
the stop signal right after its graceful shutdown, before the caller's own clean-up could run.

Every response that is not a 2xx is the error envelope of ``api.errors``. Routes declare response
models, which FastAPI serialises straight to JSON bytes with pydantic; the envelopes, built from
dicts, are rendered with orjson.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

import cardsvc
from api import lean
from api.deps import CONTROL_SCOPE_KEY
from api.errors import EXCEPTION_HANDLERS, ErrorEnvelope, log_unexpected
from api.routes import API_PREFIX, RESOURCE_ROUTERS, docs, health, notify
from cardsvc.access import csrf_binding
from cardsvc.engine import Store
from cardsvc.runtime import Runtime
from server.middleware import BodySizeLimitMiddleware, InternalErrorMiddleware
from server.settings import Settings
from web import WebHooks, WebSettings, create_web, mail_composer, store_routes
from web.pages import site

log = logging.getLogger("cardsvc.api")

DESCRIPTION = """\
Sell and redeem digital codes (card keys, vouchers, gift codes).

Every error is `{"error": {"code", "message", "details"}}` with a stable `code`; statuses: 400 bad
input, 401/403 authentication, 404 unknown, 409 state conflict, 422 validation, 429 rate limited,
503 unavailable (retry), 500 internal (reveals nothing). Resource endpoints live under `/v1`.
"""


def create_app(settings: Settings, *, store: Store | None = None,
               on_close: Callable[[], None] | None = None) -> FastAPI:
    """The application for ``settings``.

    Without ``store`` the lifespan opens one from ``settings.store_config()``; start-up then
    fails with DATA_DIR_LOCKED, JOURNAL_CORRUPT, SNAPSHOT_CORRUPT or JOURNAL_UNAVAILABLE as
    ``Store.open`` does. With ``store`` that already open store is used. Either way the lifespan
    closes the store at shutdown (closing twice is harmless, so the caller may close it too),
    then calls ``on_close`` (``cardsvc serve``: remove the control socket), since uvicorn ends the
    process on SIGTERM before its caller's own clean-up could run.
    """

    web = create_web(WebSettings.from_env(settings.data_dir, demo_pages=False),
                     WebHooks(context=site.CONTEXT_HOOKS),
                     routes=[*store_routes(), *site.ROUTES], session_binding=csrf_binding,
                     upload_paths=site.UPLOAD_PATHS)
    config = settings.service_config(composer=mail_composer(web))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Recovery reads the whole journal and closing joins threads: keep the loop free.
        try:
            runtime = await asyncio.to_thread(Runtime.open, config, store=store)
        except BaseException:
            if store is not None:
                await asyncio.to_thread(store.close)
            raise
        app.state.runtime = runtime
        app.state.web.state.runtime = runtime
        if settings.gc_tuning:
            tune_collector()
        timer = asyncio.create_task(_recovery_timer(runtime, settings.recovery_interval_s))
        readers = asyncio.create_task(_reports_timer(runtime, settings.reports_interval_s))
        mailer = asyncio.create_task(_mail_timer(runtime, settings.mail_interval_s))
        try:
            yield
        finally:
            timer.cancel()
            readers.cancel()
            mailer.cancel()
            await asyncio.to_thread(runtime.close)
            if on_close is not None:
                on_close()

    app = FastAPI(
        title="cardsvc",
        version=cardsvc.__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # api.routes.docs serves /docs with its assets from this process
        redoc_url=None,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        # Outermost first: the error net wraps everything, including the body bound.
        # The lean path of the hot routes (api.lean) is innermost: inside both.
        middleware=[
            Middleware(InternalErrorMiddleware),
            Middleware(BodySizeLimitMiddleware, max_bytes=settings.request_body_bytes_max,
                       path_limits={f"{API_PREFIX}/batches/upload": settings.upload_bytes_max}),
            *([Middleware(lean.LeanRoutes)] if settings.lean_routes else []),
        ],
        # Documents the envelope for every error status, replacing FastAPI's own 422 schema.
        responses={"default": {"model": ErrorEnvelope, "description": "Error envelope"}},
    )
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(notify.router)
    for router in RESOURCE_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    app.state.web = web
    """The web pages (the storefront, the login pages, the console and the portal), served
    beside the API by :func:`create_asgi` (their runtime is set by the lifespan)."""
    return app


GC_THRESHOLDS = (50_000, 20, 100)
"""The collector's thresholds while serving (Python's are 700, 10, 10). A young collection
walks every container allocated since the last one that is still alive, which under load is
mostly the requests in flight; every 700 allocations it walked them again and again and moved
them to the older generations, whose collections then walked the whole heap (SQLAlchemy's
metadata, FastAPI's models, the caches): ~21 % of the event loop's samples in issue 12's
profile, and the p99. 50,000 young allocations is a few hundred requests; the older
generations are collected 20 and 2,000 times less often than the young one."""


def tune_collector() -> None:
    """Collect once, freeze what survives (everything start-up built: it lives as long as the
    process, so no collection needs to look at it again: ``gc.freeze``) and set
    :data:`GC_THRESHOLDS`. Called by the lifespan once the service is open, when
    ``Settings.gc_tuning``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


API_PATHS = ("/v1", "/healthz", "/readyz", "/openapi.json", "/docs", "/pay/notify")
"""Paths (and the paths below them) that belong to the JSON application; the rest is the web's."""


class Composed:
    """The ASGI application of the whole service: the lifespan and the API's paths go to the
    JSON application, every other path to the web pages. ``control`` is the bound name of the
    control socket (``server.control``), None when there is none: a request whose scope's
    ``server`` is that socket (uvicorn takes it from the listening socket, never from the
    request) is marked with :data:`CONTROL_SCOPE_KEY`; every other request has the mark removed,
    whatever it claims."""

    def __init__(self, api: FastAPI, web: ASGIApp, control: str | None = None) -> None:
        self.api = api
        self.web = web
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            server = scope.get("server")
            on_control = self.control is not None and server is not None and (
                tuple(server) == (self.control, None))
            scope = {**scope, CONTROL_SCOPE_KEY: on_control}
        path = str(scope.get("path", ""))
        if scope["type"] == "lifespan" or any(
            path == prefix or path.startswith(prefix + "/") for prefix in API_PATHS
        ):
            await self.api(scope, receive, send)
        else:
            await self.web(scope, receive, send)


def create_asgi(settings: Settings, *, store: Store | None = None,
                control: str | None = None,
                on_close: Callable[[], None] | None = None) -> Composed:
    """The service as ``cardsvc serve`` runs it: :func:`create_app` and its web pages, and the
    control socket's requests told apart when ``control`` names it."""
    app = create_app(settings, store=store, on_close=on_close)
    return Composed(app, app.state.web, control)


async def _recovery_timer(runtime: Runtime, interval_s: float) -> None:
    """Re-drives orders a transient failure left pending (``Runtime.recover_pending``)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            counts = await runtime.recover_pending()
        except Exception as error:  # logged and retried next round; never fatal to serving
            log_unexpected(error)
            continue
        if any(counts.values()):
            log.info("recovery timer: %s", counts)


async def _reports_timer(runtime: Runtime, interval_s: float) -> None:
    """The readers' round (``Runtime.reports_round``): roll-ups, approvals' expiry, alerts."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            counts = await asyncio.to_thread(runtime.reports_round)
        except Exception as error:  # logged and retried next round; never fatal to serving
            log_unexpected(error)
            continue
        if any(counts.values()):
            log.debug("reports timer: %s", counts)


async def _mail_timer(runtime: Runtime, interval_s: float) -> None:
    """Sends the outbox's mails every few seconds (``Runtime.deliver_mail``)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await runtime.deliver_mail()
        except Exception as error:  # logged and retried next round
            log_unexpected(error)


def create_app_from_env() -> Composed:
    """``create_asgi(Settings.from_env())``, for
    ``uvicorn --factory server.app:create_app_from_env``. Run one worker only: the store locks
    its data directory."""
    return create_asgi(Settings.from_env())
