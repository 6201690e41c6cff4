"""``cardsvc export`` and ``cardsvc audit``: the records side of the command line.

Both read the SQL store (and, for export, the master key) only, so they work beside a running
server. ``export`` writes watermarked CSV and is recorded and audited before its first code is
written (``cardsvc.exports``); ``audit verify`` checks the hash chain and exits 1 naming the
first broken entry; ``audit list`` shows entries (never a code: details hold masked forms).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cardsvc import audit, crypto, exports
from cardsvc.db import Database
from cardsvc.times import iso

EXIT_BROKEN_CHAIN = 1


def _add_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("CARDSVC_DATA_DIR", "data")))
    parser.add_argument("--database-url", default=None,
                        help="SQL database URL (default: CARDSVC_DATABASE_URL, else "
                             "DATA_DIR/cardsvc.db)")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--batch", type=int, help="export every code of this batch")
    target.add_argument("--order", help="export the codes of this order")
    parser.add_argument("--out", type=Path, required=True,
                        help="CSV file to write (created 0600; refuses to overwrite)")
    parser.add_argument("--actor", default="cli", help="who is exporting (for the audit log)")
    _add_database(parser)


def run_export(args: argparse.Namespace, console: Console) -> int:
    db = Database.open(args.data_dir, args.database_url)
    try:
        keyring = crypto.load_keyring(args.data_dir, create=False)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            result = exports.export_codes(db, keyring, out, actor=args.actor,
                                          batch_id=args.batch, order_id=args.order)
    finally:
        db.close()
    console.print(f"export {result.export_id}: {result.codes} codes of {result.object_type} "
                  f"{result.object_id} written to {args.out} (recorded in the audit log)",
                  highlight=False)
    return 0


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="check the hash chain; exit 1 if broken")
    listing = actions.add_parser("list", help="show entries, oldest first")
    listing.add_argument("--actor")
    listing.add_argument("--audit-action", dest="audit_action", help="e.g. code.export")
    listing.add_argument("--object-type")
    listing.add_argument("--object-id")
    listing.add_argument("--after-seq", type=int)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    for sub in (verify, listing):
        _add_database(sub)


def run_audit(args: argparse.Namespace, console: Console) -> int:
    db = Database.open(args.data_dir, args.database_url)
    try:
        with db.read() as session:
            if args.action == "verify":
                check = audit.verify(session)
                if check.ok:
                    console.print(f"audit chain intact: {check.entries_checked} entries",
                                  highlight=False)
                    return 0
                Console(file=sys.stderr, highlight=False).print(
                    f"[bold red]audit chain broken[/] at entry {check.first_broken_seq}: "
                    f"{check.reason} ({check.entries_checked} entries intact before it)")
                return EXIT_BROKEN_CHAIN
            entries = audit.query(session, actor=args.actor, action=args.audit_action,
                                  object_type=args.object_type, object_id=args.object_id,
                                  after_seq=args.after_seq, limit=args.limit)
            if args.json:
                for e in entries:
                    console.print(json.dumps({"seq": e.seq, "at": iso(e.at_ms), "actor": e.actor,
                                              "action": e.action, "object_type": e.object_type,
                                              "object_id": e.object_id, "details": e.details}),
                                  highlight=False, soft_wrap=True)
                return 0
            table = Table("seq", "at", "actor", "action", "object", "details")
            for e in entries:
                table.add_row(str(e.seq), iso(e.at_ms) or "", e.actor, e.action,
                              f"{e.object_type}:{e.object_id}", json.dumps(e.details)[:80])
            console.print(table)
            return 0
    finally:
        db.close()
