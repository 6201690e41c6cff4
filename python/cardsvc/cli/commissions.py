"""``cardsvc commissions release-due``: releases every commission whose cooling period has
ended, now (what the server's timer does every 30 s). It works on the SQL store only, so it runs
beside a running server (the release is idempotent and safe from several processes at once).
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console

from cardsvc.cli.database import add_database_arguments
from cardsvc.db import Database
from cardsvc.money import AgentMoney


def add_commissions_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    release = actions.add_parser("release-due",
                                 help="release every commission whose cooling period has ended")
    release.add_argument("--actor", default="cli", help="who releases (for the ledger)")
    add_database_arguments(release)


def run_commissions(args: argparse.Namespace, console: Console) -> int:
    db = Database.open(args.data_dir, args.database_url)
    try:
        money = AgentMoney(db, lambda: int(time.time() * 1000))
        released = money.release_due_commissions(actor=args.actor)
    finally:
        db.close()
    console.print(f"{released} commissions released", highlight=False)
    return 0
