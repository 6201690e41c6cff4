"""``cardsvc serve``: run the HTTP API on uvicorn (uvloop event loop, httptools parser).

The domain's command line (``cardsvc.cli``) never imports ``api``; it finds :data:`SERVE`
through the entry-point group ``cardsvc.commands`` declared in ``pyproject.toml``.
``python -m server`` runs the same command line with ``serve`` included explicitly, for checkouts
whose installed metadata is stale.

This module imports only the command line's own pieces at import time, so listing commands stays
cheap; uvicorn and the app are imported when ``serve`` runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from cardsvc.cli import EXIT_ERROR, EXIT_OK, Command
from cardsvc.engine import Store
from cardsvc.files import STATE_UMASK
from cardsvc.runtime import check_modes
from server.settings import JOURNAL_SINKS, Settings

SERVE_HELP = "run the HTTP API (uvicorn, one process) over a data directory"
EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C (128 + SIGINT)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--host``, ``--port``, ``--journal``, ``--redis-url``, ``--database-url``;
    each defaults to its ``CARDSVC_*`` variable, then to the embedded defaults
    (``server.settings``)."""
    parser.add_argument("--data-dir", type=Path, help="data directory (default data)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
    parser.add_argument("--journal", choices=JOURNAL_SINKS, help="journal sink (default file)")
    parser.add_argument("--redis-url", help="Redis URL for --journal redis")
    parser.add_argument(
        "--database-url",
        help="SQL database URL, e.g. postgresql://user@host/db (default: a SQLite file in the "
        "data directory)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The environment's settings with the given options on top. Raises INVALID_ARGUMENT."""
    return Settings.from_env(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        journal=args.journal,
        redis_url=args.redis_url,
        database_url=args.database_url,
    )


def print_banner(console: Console, settings: Settings, store: Store) -> None:
    """What a person starting the service needs: where it listens, where its data is, what an
    acknowledgement is worth, and how to check it. Lines are never wrapped, so URLs stay whole."""
    guarantee = store.guarantee
    url = settings.base_url
    lines = [
        f"cardsvc starting on {url}",
        f"  data directory: {settings.data_dir.resolve()}",
        f"  journal: {guarantee.sink}, guarantee {guarantee.level}: {guarantee.description}",
        f"  recovered {store.recovery.codes} codes up to journal record {store.recovery.last_seq}",
        f"  health: {url}/healthz   readiness: {url}/readyz",
        f"  API docs: {url}/docs   OpenAPI: {url}/openapi.json",
        "  every /v1 request needs an API key (Authorization: Bearer <key>); create the first",
        f"  admin key with: cardsvc keys create --data-dir {settings.data_dir} --role admin",
        "  Stop with Ctrl-C.",
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def serve(settings: Settings, console: Console) -> int:
    """Opens the store, prints the banner and runs uvicorn until SIGINT or SIGTERM; the app's
    lifespan closes the store (flushing the journal) during the graceful shutdown.

    Raises DATA_DIR_LOCKED, JOURNAL_CORRUPT, SNAPSHOT_CORRUPT or JOURNAL_UNAVAILABLE from
    opening the store, before anything listens. Returns 1 if the server did not start and 130
    after Ctrl-C. After SIGTERM uvicorn re-raises the signal once it has shut down, so the
    process ends as killed by SIGTERM, as a supervisor expects."""
    import uvicorn

    from server.app import create_asgi

    os.umask(STATE_UMASK)  # every state file private from its first byte (docs/security.md)
    check_modes(settings.data_dir)
    store = Store.open(settings.store_config())
    try:
        config = uvicorn.Config(
            create_asgi(settings, store=store),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            workers=1,
            lifespan="on",
            # The access log would print request paths, which may hold a code (DESIGN.md
            # invariant 5); a masked access log comes with the endpoints that need it.
            access_log=False,
            server_header=False,
            log_level="info",
        )
        server = uvicorn.Server(config)
        print_banner(console, settings, store)
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its graceful shutdown
            return EXIT_INTERRUPTED
        return EXIT_OK if server.started else EXIT_ERROR
    finally:
        store.close()  # already closed by the app's lifespan if the server started


def run_serve(args: argparse.Namespace, console: Console) -> int:
    return serve(settings_from_args(args), console)


SERVE = Command("serve", SERVE_HELP, add_serve_arguments, run_serve)
