"""``cardsvc export``: a batch's or an order's codes as watermarked CSV.

An order's export reads the SQL store (and the master key) only, so it works beside a running
server. A batch's export withdraws the batch's unsold codes from sale first, which needs the
store: it opens the data directory and so refuses (DATA_DIR_LOCKED) while the server runs (use
``POST /v1/exports`` then). The export is recorded and audited, and a batch's withdrawal made
durable, before its first code is written (``cardsvc.delivery.exports``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from cardsvc import crypto
from cardsvc.cli.database import add_database_arguments
from cardsvc.db import Database
from cardsvc.delivery import Exports, Revealer
from cardsvc.engine import Store, StoreConfig
from cardsvc.sales import delivered_code_ids


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--batch", type=int,
                        help="export (and withdraw from sale) the unsold codes of this batch; "
                             "needs the server stopped")
    target.add_argument("--order", help="export the codes of this order")
    parser.add_argument("--out", type=Path, required=True,
                        help="CSV file to write (created 0600; refuses to overwrite)")
    parser.add_argument("--actor", default="cli", help="who is exporting (for the audit log)")
    add_database_arguments(parser)


def run_export(args: argparse.Namespace, console: Console) -> int:
    store = None
    if args.batch is not None:
        store = Store.open(StoreConfig(data_dir=args.data_dir,
                                       sink=os.environ.get("CARDSVC_JOURNAL", "file"),
                                       redis_url=os.environ.get("CARDSVC_REDIS_URL")))
    try:
        db = Database.open(args.data_dir, args.database_url)
    except BaseException:
        if store is not None:
            store.close()
        raise
    try:
        keyring = crypto.load_keyring(args.data_dir, create=False)
        exports = Exports(db, Revealer(db, keyring), delivered_code_ids, store)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            result = exports.export_codes(out, actor=args.actor, batch_id=args.batch,
                                          order_id=args.order)
    finally:
        db.close()
        if store is not None:
            store.close()
    console.print(f"export {result.export_id}: {result.codes} codes of {result.object_type} "
                  f"{result.object_id} written to {args.out} (recorded in the audit log)",
                  highlight=False)
    return 0
