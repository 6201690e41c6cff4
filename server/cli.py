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
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from cardsvc.cli import EXIT_ERROR, EXIT_OK, Command
from cardsvc.engine import Store
from cardsvc.files import STATE_UMASK
from cardsvc.runtime import check_modes
from server.settings import JOURNAL_SINKS, Settings

SERVE_HELP = "run the HTTP API (uvicorn, one process) over a data directory"
EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C (128 + SIGINT)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--host``, ``--port``, ``--journal``, ``--redis-url``, ``--database-url``,
    ``--trusted-proxies``; each defaults to its ``CARDSVC_*`` variable, then to the embedded
    defaults (``server.settings``)."""
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
    parser.add_argument(
        "--trusted-proxies",
        help="comma-separated addresses or CIDR networks of reverse proxies whose "
        "X-Forwarded-For is believed (default: CARDSVC_TRUSTED_PROXIES, else none)",
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
        trusted_proxies=None if args.trusted_proxies is None else tuple(
            args.trusted_proxies.split(",")),
    )


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy settings for ``settings``: ``X-Forwarded-*`` is read only when trusted
    proxies are configured, and then only from them. Passed explicitly, because uvicorn's own
    default trusts 127.0.0.1, which would let any local client name any address."""
    return {"proxy_headers": bool(settings.trusted_proxies),
            "forwarded_allow_ips": list(settings.trusted_proxies)}


def cli_command(executable: str | None = None,
                which: Callable[[str], str | None] = shutil.which,
                cwd: Path | None = None) -> str:
    """How the person who started this server runs ``cardsvc`` from where they are: ``cardsvc``
    when that name on PATH is this environment's own command; else this environment's script
    (``.venv/bin/cardsvc`` from the repository, an absolute path from elsewhere), found beside
    the interpreter; else ``python -m cardsvc`` with this interpreter."""
    python = Path(executable or sys.executable)
    script = python.parent / "cardsvc"
    found = which("cardsvc")
    if found is not None and script.exists() and Path(found).resolve() == script.resolve():
        return "cardsvc"
    if not script.exists():
        return f"{python} -m cardsvc"
    here = (cwd or Path.cwd()).absolute()
    try:
        return str(script.absolute().relative_to(here))
    except ValueError:
        return str(script.absolute())


def print_banner(console: Console, settings: Settings, store: Store,
                 cli: str | None = None) -> None:
    """What a person starting the service needs: where it listens, where its data is, what an
    acknowledgement is worth, and how to check it, with the command line as it can be typed
    from here (:func:`cli_command`). Lines are never wrapped, so URLs stay whole."""
    cli = cli_command() if cli is None else cli
    guarantee = store.guarantee
    url = settings.base_url
    payments = ("production channels only" if settings.production else
                "the sandbox channel (simulated: nothing real is charged)")
    mail = (f"SMTP {settings.smtp_host}:{settings.smtp_port}" if settings.smtp_host else
            f"{(settings.data_dir / 'mail').resolve()}/*.eml")
    lines = [
        f"cardsvc starting on {url}",
        f"  data directory: {settings.data_dir.resolve()}",
        f"  journal: {guarantee.sink}, guarantee {guarantee.level}: {guarantee.description}",
        f"  recovered {store.recovery.codes} codes up to journal record {store.recovery.last_seq}",
        f"  shop: {settings.shop_url}/   payments: {payments}",
        f"  shop mail: {mail}",
        f"  health: {url}/healthz   readiness: {url}/readyz",
        f"  API docs: {url}/docs   OpenAPI: {url}/openapi.json",
        "  every /v1 request needs an API key (Authorization: Bearer <key>); create the first",
        f"  admin key with: {cli} keys create --data-dir {settings.data_dir} --role admin",
        f"  {cli} import and reconcile reach this server through "
        f"{settings.data_dir / 'control.sock'}",
        "  Stop with Ctrl-C.",
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def serve(settings: Settings, console: Console) -> int:
    """Opens the store, prints the banner and runs uvicorn until SIGINT or SIGTERM; the app's
    lifespan closes the store (flushing the journal) during the graceful shutdown.

    Raises DATA_DIR_LOCKED, JOURNAL_CORRUPT, SNAPSHOT_CORRUPT or JOURNAL_UNAVAILABLE from
    opening the store, IO_ERROR when the address or the control socket cannot be bound
    (``server.control``), before anything listens. Returns 1 if the server did not start and 130
    after Ctrl-C. After SIGTERM uvicorn re-raises the signal once it has shut down, so the
    process ends as killed by SIGTERM, as a supervisor expects."""
    import uvicorn

    from server.app import create_asgi
    from server.control import bind_listeners

    os.umask(STATE_UMASK)  # every state file private from its first byte (docs/security.md)
    check_modes(settings.data_dir)
    store = Store.open(settings.store_config())
    listeners = None
    try:
        listeners = bind_listeners(settings.host, settings.port, settings.data_dir)
        config = uvicorn.Config(
            create_asgi(settings, store=store, control=listeners.control_name,
                        on_close=listeners.remove_control),
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
            **proxy_options(settings),
        )
        server = uvicorn.Server(config)
        print_banner(console, settings, store)
        try:
            server.run(sockets=listeners.sockets)
        except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its graceful shutdown
            return EXIT_INTERRUPTED
        return EXIT_OK if server.started else EXIT_ERROR
    finally:
        if listeners is not None:
            listeners.close()
        store.close()  # already closed by the app's lifespan if the server started


def run_serve(args: argparse.Namespace, console: Console) -> int:
    return serve(settings_from_args(args), console)


SERVE = Command("serve", SERVE_HELP, add_serve_arguments, run_serve)
