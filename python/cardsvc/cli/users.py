"""``cardsvc users``: the first owner and the host's view of console users.

``create-owner`` runs on the data directory (beside a running server, like ``cardsvc keys``: it
opens only the SQL database and the master key). The password is read from the terminal (asked
twice) or, when standard input is not a terminal, from its first line; never from the command
line, where other users of the host could read it. It prints, once, the TOTP provisioning URI
with a QR code to scan and the ten recovery codes; the owner's first login needs a code from the
app. Owners invite everybody else from the console.

``reset-totp`` is the host's way back in for an owner who lost their phone and recovery codes:
the user's next login can only enrol a new authenticator. ``list`` shows users, never secrets.
"""

from __future__ import annotations

import argparse
import getpass
import io
import os
import sys
from pathlib import Path

import segno
from rich.console import Console
from rich.table import Table

from cardsvc import crypto
from cardsvc.access import HOST_PRINCIPAL, Passwords, create_owner, list_users, reset_totp
from cardsvc.access.users import normalise_login, user_by_login
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, invalid, make_error


def add_users_arguments(parser: argparse.ArgumentParser) -> None:
    """``users create-owner|list|reset-totp`` with ``--data-dir`` and ``--database-url``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create-owner", help="create the first owner (password from the terminal or stdin)")
    create.add_argument("--login", required=True)
    create.add_argument("--display-name", default=None, help="default: the login name")
    create.add_argument("--no-qr", action="store_true", help="print the URI without a QR code")
    listing = actions.add_parser("list", help="list console users (never their secrets)")
    del listing
    reset = actions.add_parser("reset-totp", help="forget a user's authenticator and recovery "
                               "codes; its next login enrols again")
    reset.add_argument("--login", required=True)
    for sub in actions.choices.values():
        sub.add_argument("--data-dir", type=Path,
                         default=Path(os.environ.get("CARDSVC_DATA_DIR", "data")))
        sub.add_argument("--database-url", default=None,
                         help="SQL database URL (default: CARDSVC_DATABASE_URL, else "
                              "DATA_DIR/cardsvc.db)")


def read_password() -> str:
    """The new password: asked twice on a terminal, else the first line of standard input.
    Raises INVALID_ARGUMENT when the two entries differ or nothing was given."""
    if sys.stdin.isatty():
        first = getpass.getpass("password for the new owner: ")
        if getpass.getpass("the same password again: ") != first:
            raise invalid("password", "the two passwords differ")
        return first
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    if not password:
        raise invalid("password", "no password on standard input")
    return password


def run_users(args: argparse.Namespace, console: Console) -> int:
    db = Database.open(args.data_dir, args.database_url)
    try:
        if args.action == "create-owner":
            _create_owner(args, db, console)
        elif args.action == "list":
            table = Table("user_id", "login", "role", "agent", "status", "totp")
            for user in list_users(db):
                table.add_row(user["user_id"], user["login"], user["role"],
                              user["agent_id"] or "", user["status"],
                              "yes" if user["totp_enrolled"] else "")
            console.print(table)
        else:
            login = normalise_login(args.login)
            with db.read() as session:
                row = user_by_login(session, login)
                user_id = None if row is None else row.user_id
            if user_id is None:
                raise make_error(ErrorCode.USER_NOT_FOUND, "no user has that login",
                                 {"login": login})
            reset_totp(db, HOST_PRINCIPAL, user_id)
            console.print(f"TOTP reset for {login}; its sessions ended and its next login "
                          "enrols a new authenticator", highlight=False)
    finally:
        db.close()
    return 0


def _create_owner(args: argparse.Namespace, db: Database, console: Console) -> None:
    keyring = crypto.load_keyring(args.data_dir)
    password = read_password()
    created = create_owner(db, keyring, Passwords(), login=args.login, password=password,
                           display_name=args.display_name or args.login, actor="cli")
    del password
    user = created.user
    console.print(f"created owner {user['login']} ({user['user_id']})", highlight=False)
    console.print("add this account to an authenticator app now; it is shown only once:",
                  highlight=False)
    if not args.no_qr:
        qr = io.StringIO()
        segno.make(created.totp.provisioning_uri, error="m").terminal(out=qr, compact=True)
        console.print(qr.getvalue(), markup=False, highlight=False, end="")
    console.print(created.totp.provisioning_uri, markup=False, highlight=False, soft_wrap=True)
    console.print(f"secret (to type in by hand): {created.totp.secret_base32}", markup=False,
                  highlight=False)
    console.print("recovery codes (each works once; keep them offline):", highlight=False)
    for code in created.recovery_codes:
        console.print(f"  {code}", markup=False, highlight=False)
