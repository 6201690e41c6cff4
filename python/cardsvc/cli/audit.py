"""``cardsvc audit``: ``verify`` checks the hash chain and exits 1 naming the first broken entry;
``list`` shows entries (never a code: details hold masked forms). Both read the SQL store only,
so they work beside a running server.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from cardsvc import audit
from cardsvc.cli.database import add_database_arguments
from cardsvc.db import Database
from cardsvc.times import iso

EXIT_BROKEN_CHAIN = 1


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
        add_database_arguments(sub)


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
