"""``cardsvc keys``: create, list and revoke API keys in a data directory's SQL store, and rotate
the master key.

``create``, ``list`` and ``revoke`` open only the SQL database (not the core's store, whose lock
the running service holds), so they work beside a live ``cardsvc serve``: a key created here is
accepted by the server at once, a key revoked here is refused within
``cardsvc.access.apikeys.CACHE_TTL_S`` seconds.

``rotate-master`` (``cardsvc.catalog.key_rotation``) re-wraps every batch's data key under a new
master key. It opens the SQL database *and* takes the data directory's lock, so it refuses with
DATA_DIR_LOCKED beside a running server; it prints key ids and counts, never key material.

``keys create`` prints the new key as the *last line* of its output, alone, so scripts can take
it with ``tail -n 1``; the key is shown only this once.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cardsvc import agents
from cardsvc.access import apikeys
from cardsvc.catalog import key_rotation as master_keys
from cardsvc.db import Database


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    """``keys create|list|revoke|rotate-master`` with ``--data-dir`` and ``--database-url``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key and print it (last line)")
    create.add_argument("--role", required=True, choices=apikeys.ROLES)
    create.add_argument("--agent", dest="agent_id", help="the agent an agent key acts for")
    create.add_argument("--name", default="", help="a label (who or what uses the key)")
    create.add_argument("--scope", dest="scopes", action="append",
                        help="a scope (repeatable; default: the role's scopes)")
    create.add_argument("--sku", dest="skus", action="append",
                        help="limit a terminal key to this SKU (repeatable)")
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    rotate = actions.add_parser(
        "rotate-master",
        help="re-wrap every batch's data key under a new master key (stop the server first)")
    for sub in (create, listing, revoke, rotate):
        sub.add_argument("--data-dir", type=Path,
                         default=Path(os.environ.get("CARDSVC_DATA_DIR", "data")))
        sub.add_argument("--database-url", default=None,
                         help="SQL database URL (default: CARDSVC_DATABASE_URL, else "
                              "DATA_DIR/cardsvc.db)")


def run_keys(args: argparse.Namespace, console: Console) -> int:
    db = Database.open(args.data_dir, args.database_url)
    try:
        if args.action == "create":
            principal, text = agents.create_key(
                db, role=args.role, agent_id=args.agent_id, name=args.name, scopes=args.scopes,
                skus=args.skus, created_by="cli")
            console.print(f"created {principal.role} key {principal.key_id} "
                          f"(scopes: {', '.join(sorted(principal.scopes))}); it is shown once:",
                          highlight=False)
            console.print(text, highlight=False, soft_wrap=True)
        elif args.action == "list":
            table = Table("key_id", "role", "agent", "scopes", "name", "revoked")
            for key in apikeys.list_keys(db, include_revoked=args.all):
                table.add_row(key.key_id, key.role, key.agent_id or "", ",".join(key.scopes),
                              key.name, "yes" if key.revoked_at_ms else "")
            console.print(table)
        elif args.action == "rotate-master":
            _print_rotation(master_keys.rotate_master_key(args.data_dir, db, actor="cli"),
                            args.data_dir, console)
        else:
            changed = apikeys.revoke_key(db, args.key_id, actor="cli")
            console.print(f"key {args.key_id} {'revoked' if changed else 'was already revoked'}",
                          highlight=False)
    finally:
        db.close()
    return 0


def _print_rotation(result: master_keys.RotationResult, data_dir: Path, console: Console) -> None:
    """The outcome of ``keys rotate-master``: key ids and counts only, never key material."""
    if result.resumed:
        console.print("finished a master-key rotation that had been interrupted", highlight=False)
    console.print(f"master key rotated: {result.old_key_id or '(none)'} -> {result.new_key_id}; "
                  f"{result.batches_rewrapped} data keys re-wrapped (codes not re-encrypted)",
                  highlight=False)
    if result.retired_file is not None:
        retired = escape(str(data_dir / result.retired_file))
        console.print(f"the old key is kept as {retired} until you delete "
                      "it (database backups from before now still need it)", highlight=False)
