"""``cardsvc channels``: payment channels from the host's command line (beside a running server,
like ``cardsvc keys``: it opens only the SQL database and the master key; the server sees a
change within ``CHANNELS_CACHE_TTL_S``).

``list`` shows each channel with its notify URL and the names of its secrets (never their
values). ``create`` and ``update`` take ``--secret NAME=VALUE``, ``--verify-key ID=VALUE`` and
``--option NAME=VALUE`` (repeatable); a value ``@path`` is read from that file (PEM keys), so
secrets need not appear on the command line. ``enable`` and ``disable`` switch a channel. Every
change is audited as ``cli``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cardsvc import crypto
from cardsvc.db import Database
from cardsvc.errors import invalid
from cardsvc.payments import Channels

ACTOR = "cli"


def add_channels_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list channels with their notify URLs (never secrets)")
    create = actions.add_parser("create", help="create a channel")
    create.add_argument("--id", required=True, dest="channel_id")
    create.add_argument("--provider", required=True,
                        choices=("sandbox", "epay", "alipay", "wechatpay", "stripe"))
    create.add_argument("--name", required=True)
    create.add_argument("--merchant-id", default="")
    create.add_argument("--disabled", action="store_true")
    update = actions.add_parser("update", help="change a channel (secrets replaced whole)")
    update.add_argument("--id", required=True, dest="channel_id")
    update.add_argument("--name", default=None)
    update.add_argument("--merchant-id", default=None)
    for name in ("enable", "disable"):
        actions.add_parser(name, help=f"{name} a channel").add_argument(
            "--id", required=True, dest="channel_id")
    for sub in (create, update):
        sub.add_argument("--secret", action="append", default=None, metavar="NAME=VALUE")
        sub.add_argument("--verify-key", action="append", default=None, metavar="ID=VALUE")
        sub.add_argument("--option", action="append", default=None, metavar="NAME=VALUE")
    for sub in actions.choices.values():
        sub.add_argument("--data-dir", type=Path,
                         default=Path(os.environ.get("CARDSVC_DATA_DIR", "data")))
        sub.add_argument("--database-url", default=None)
        sub.add_argument("--public-url", default=os.environ.get("CARDSVC_PUBLIC_URL",
                                                                "http://127.0.0.1:8000"))


def _pairs(items: list[str] | None, field: str) -> dict[str, str] | None:
    if items is None:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise invalid(field, f"--{field.replace('_', '-')} takes NAME=VALUE")
        out[name] = Path(value[1:]).read_text() if value.startswith("@") else value
    return out


def run_channels(args: argparse.Namespace, console: Console) -> int:
    database = Database.open(args.data_dir, args.database_url)
    try:
        keyring = crypto.load_keyring(args.data_dir)
        channels = Channels(database, keyring, public_url=args.public_url,
                            clock_ms=lambda: time.time_ns() // 1_000_000)
        if args.action == "list":
            table = Table("channel", "provider", "name", "enabled", "notify URL", "secrets")
            for view in channels.all():
                table.add_row(view.channel_id, view.provider, view.display_name,
                              "yes" if view.enabled else "no", view.notify_url,
                              ", ".join(view.secret_names))
            console.print(table)
            return 0
        if args.action == "create":
            view = channels.create(
                args.channel_id, args.provider, display_name=args.name,
                merchant_id=args.merchant_id, secrets_=_pairs(args.secret, "secret") or {},
                verify_keys=_pairs(args.verify_key, "verify_key") or {},
                options=_pairs(args.option, "option") or {}, enabled=not args.disabled,
                actor=ACTOR)
        else:
            changes: dict[str, object] = {}
            if args.action in ("enable", "disable"):
                changes["enabled"] = args.action == "enable"
            else:
                for name, value in (("display_name", args.name),
                                    ("merchant_id", args.merchant_id),
                                    ("secrets", _pairs(args.secret, "secret")),
                                    ("verify_keys", _pairs(args.verify_key, "verify_key")),
                                    ("options", _pairs(args.option, "option"))):
                    if value is not None:
                        changes[name] = value
            view = channels.update(args.channel_id, changes, actor=ACTOR)
        console.print(f"channel {view.channel_id} ({view.provider}), "
                      f"{'enabled' if view.enabled else 'disabled'}", highlight=False)
        console.print(f"notify URL: {view.notify_url}", highlight=False, soft_wrap=True)
        return 0
    finally:
        database.close()
