"""``cardsvc export``: a batch's or an order's codes as watermarked CSV.

It reads the SQL store (and the master key) only, so it works beside a running server. The
export is recorded and audited before its first code is written (``cardsvc.delivery.exports``).
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
from cardsvc.sales import delivered_code_ids


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--batch", type=int, help="export every code of this batch")
    target.add_argument("--order", help="export the codes of this order")
    parser.add_argument("--out", type=Path, required=True,
                        help="CSV file to write (created 0600; refuses to overwrite)")
    parser.add_argument("--actor", default="cli", help="who is exporting (for the audit log)")
    add_database_arguments(parser)


def run_export(args: argparse.Namespace, console: Console) -> int:
    db = Database.open(args.data_dir, args.database_url)
    try:
        keyring = crypto.load_keyring(args.data_dir, create=False)
        exports = Exports(db, Revealer(db, keyring), delivered_code_ids)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            result = exports.export_codes(out, actor=args.actor, batch_id=args.batch,
                                          order_id=args.order)
    finally:
        db.close()
    console.print(f"export {result.export_id}: {result.codes} codes of {result.object_type} "
                  f"{result.object_id} written to {args.out} (recorded in the audit log)",
                  highlight=False)
    return 0
