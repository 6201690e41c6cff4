"""The ``cardsvc`` command line.

Each subcommand is one :class:`Command` in :data:`COMMANDS`: a name, a one-line help, a function
that declares its arguments and a function that runs it. Later issues add ``keys``, ``import``,
``export``, ``audit`` and ``reconcile`` by appending to that tuple; ``main`` needs no change.

Commands from outside the domain are found through the entry-point group ``cardsvc.commands``
(:data:`PLUGIN_GROUP`), each entry naming a :class:`Command`. That is how the HTTP layer adds
``serve`` (``server.cli:SERVE``, registered in ``pyproject.toml``) while the domain never imports
``api`` (STYLE.md, Layout). A plugin that cannot be imported still appears, and running it
explains why it is unavailable.

Output goes through ``rich``. Codes are shown masked (:func:`cardsvc.masking.mask_code`), never in
full. Every failure is one line on stderr, ``error: CODE: message`` with a stable code, never a
traceback (:func:`main` turns an operating-system error into ``IO_ERROR`` and anything else into
``INTERNAL_ERROR``), with the command's failure status (1; ``reconcile``: 2, since its 1 means
differences found) or 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from rich.console import Console

import cardsvc
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.files import STATE_UMASK

EXIT_OK = 0
EXIT_ERROR = 1  # a CardsvcError reached the command line
EXIT_USAGE = 2  # argparse's own status for bad arguments
EXIT_RECONCILE_FAILED = 2  # reconcile could not run (its 1 means differences were found)
EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class Command:
    """One subcommand: ``run`` gets the parsed arguments and a console and returns an exit code;
    an error it raises exits with ``failure_status``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Console], int]
    failure_status: int = EXIT_ERROR


def error_line(code: str, message: str) -> str:
    """The one line a failure prints: ``error: CODE: message``, on one line whatever the
    message holds. Pure."""
    return f"error: {code}: {' '.join(message.split())}"


def fail(code: str, message: str) -> None:
    """Prints :func:`error_line` to stderr, unwrapped (rich would wrap it at the width)."""
    print(error_line(code, message), file=sys.stderr, flush=True)

def _no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def _run_version(args: argparse.Namespace, console: Console) -> int:
    del args
    console.print(f"cardsvc {cardsvc.__version__}", highlight=False)
    return EXIT_OK


def _run_demo(args: argparse.Namespace, console: Console) -> int:
    del args
    # Imported here so that commands that do not need the Rust extension (``version``) work
    # even before it is built.
    from cardsvc.cli.demo import run_demo

    run_demo(console)
    return EXIT_OK


def _store_commands() -> tuple[Command, ...]:
    from cardsvc.cli import store as cli_store

    return (
        Command(
            "snapshot",
            "write a snapshot of the data directory now and trim the journal",
            cli_store.add_store_arguments,
            cli_store.run_snapshot,
        ),
        Command(
            "recover",
            "recover the data directory and report (--check: read only)",
            cli_store.add_recover_arguments,
            cli_store.run_recover,
        ),
        Command(
            "journal",
            "journal statistics: chunks, bytes, snapshots, durability guarantee",
            cli_store.add_journal_arguments,
            cli_store.run_journal,
        ),
    )


def _keys_command() -> Command:
    from cardsvc.cli import keys as cli_keys

    return Command(
        "keys",
        "create, list or revoke API keys (beside a running server); rotate-master (stopped)",
        cli_keys.add_keys_arguments,
        cli_keys.run_keys,
    )


def _users_command() -> Command:
    from cardsvc.cli import users as cli_users

    return Command(
        "users",
        "create the first console owner, list users, reset a user's TOTP (beside a server)",
        cli_users.add_users_arguments,
        cli_users.run_users,
    )


def _channels_command() -> Command:
    from cardsvc.cli import channels as cli_channels

    return Command("channels", "list, create, update, enable or disable payment channels "
                   "(beside a server)", cli_channels.add_channels_arguments,
                   cli_channels.run_channels)


def _records_commands() -> tuple[Command, ...]:
    from cardsvc.cli import audit as cli_audit
    from cardsvc.cli import commissions as cli_commissions
    from cardsvc.cli import exports as cli_exports

    return (
        Command("commissions", "release due commissions now (beside a server)",
                cli_commissions.add_commissions_arguments, cli_commissions.run_commissions),
        Command("export", "write a batch's or an order's codes as watermarked CSV (audited)",
                cli_exports.add_export_arguments, cli_exports.run_export),
        Command("audit", "verify the audit log's hash chain, or list entries",
                cli_audit.add_audit_arguments, cli_audit.run_audit),
        Command("import", "import a CSV or XLSX file of codes as one batch (through the running "
                "server, or on the data directory)", _lazy_import_arguments, _lazy_run_import),
        Command("reconcile", "check that the ledger, orders and stock agree; exit 1 if not, 2 "
                "if it could not run", _lazy_reconcile_arguments, _lazy_run_reconcile,
                failure_status=EXIT_RECONCILE_FAILED),
    )


def _lazy_reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    from cardsvc.cli.store import add_store_arguments

    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    add_store_arguments(parser)


def _lazy_run_reconcile(args: argparse.Namespace, console: Console) -> int:
    import json

    from cardsvc.cli.control import connect
    from cardsvc.cli.store import store_config
    from cardsvc.reports import reconciliation_report
    from cardsvc.runtime import Runtime, ServiceConfig

    server = connect(args.data_dir)
    if server is not None:  # the running server reports (its state is the live one)
        with server:
            result = server.json("GET", "/v1/reconciliation")
    else:
        runtime = Runtime.open(ServiceConfig(store=store_config(args),
                                             database_url=args.database_url))
        try:
            result = reconciliation_report(runtime.store, runtime.db, runtime.catalog)
        finally:
            runtime.close()
    if args.json:
        console.print(json.dumps(result, indent=2, default=str), highlight=False, soft_wrap=True)
    if result["ok"]:
        console.print(f"reconciled: {result['orders_checked']} orders, ledger, escrow and "
                      "stock agree", highlight=False)
        return EXIT_OK
    err = Console(file=sys.stderr, highlight=False)
    err.print(f"[bold red]RECONCILIATION FAILED[/]: {result['difference_count']} differences")
    for difference in result["differences"]:
        err.print(f"  {difference['kind']} {difference['subject']}: {difference['details']}",
                  markup=False)
    return EXIT_ERROR


def _lazy_import_arguments(parser: argparse.ArgumentParser) -> None:
    from cardsvc.cli import imports as cli_import

    cli_import.add_import_arguments(parser)


def _lazy_run_import(args: argparse.Namespace, console: Console) -> int:
    from cardsvc.cli import imports as cli_import

    return cli_import.run_import(args, console)


COMMANDS: tuple[Command, ...] = (
    Command("version", "print the cardsvc version", _no_arguments, _run_version),
    Command(
        "demo",
        "walk through the engine in memory: import, allocate, hold, redeem, rollback, stock",
        _no_arguments,
        _run_demo,
    ),
    *_store_commands(),
    _keys_command(),
    _users_command(),
    _channels_command(),
    *_records_commands(),
)


PLUGIN_GROUP = "cardsvc.commands"


def _unavailable_command(name: str, target: str, error: ImportError) -> Command:
    reason = f"{type(error).__name__}: {error}"

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        # Whatever options the real command takes are accepted, so running it explains itself.
        parser.set_defaults(accepts_unknown_arguments=True)

    def run(args: argparse.Namespace, console: Console) -> int:
        del args, console
        fail(ErrorCode.INTERNAL_ERROR.value, f"{name} is unavailable: {target} cannot be "
             f"imported ({reason}); run scripts/setup.sh in the repository")
        return EXIT_ERROR

    return Command(name, f"unavailable: {target} cannot be imported", add_arguments, run)


def plugin_commands() -> tuple[Command, ...]:
    """The commands registered under the entry-point group :data:`PLUGIN_GROUP`, in name order.

    An entry that cannot be imported becomes a command that explains so when run. An entry that
    names something other than a :class:`Command` is a packaging bug and raises TypeError.
    """
    found: list[Command] = []
    for entry in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            command = entry.load()
        except ImportError as error:
            found.append(_unavailable_command(entry.name, entry.value, error))
            continue
        if not isinstance(command, Command):
            raise TypeError(f"entry point {entry.value} is not a cardsvc.cli.Command")
        found.append(command)
    return tuple(found)


def all_commands() -> tuple[Command, ...]:
    """:data:`COMMANDS` followed by the plugin commands whose names they do not already use."""
    names = {command.name for command in COMMANDS}
    return (*COMMANDS, *(command for command in plugin_commands() if command.name not in names))


class _Parser(argparse.ArgumentParser):
    """argparse with its refusal as one line (``error: INVALID_ARGUMENT: ...``, status 2)
    instead of the usage text and a second line."""

    def error(self, message: str) -> NoReturn:
        fail(ErrorCode.INVALID_ARGUMENT.value, f"{message} (see {self.prog} --help)")
        raise SystemExit(EXIT_USAGE)


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser with one subparser per command (default :func:`all_commands`)."""
    parser = _Parser(
        prog="cardsvc",
        description="cardsvc: sell and redeem digital codes (card keys, vouchers, gift codes).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in all_commands() if commands is None else commands:
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(subparser)
    return parser


def main(
    argv: Sequence[str] | None = None,
    console: Console | None = None,
    commands: Sequence[Command] | None = None,
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand and return its exit code.

    ``commands`` defaults to :func:`all_commands`. Bad arguments exit with status 2 after one
    line. A failure prints one line to stderr, ``error: CODE: message``, and gives the command's
    ``failure_status``: a ``CardsvcError`` its code, an ``OSError`` IO_ERROR (its reason and
    file), anything else INTERNAL_ERROR (its type only: a bug, whose message may hold data);
    Ctrl-C gives status 130.
    """
    available = all_commands() if commands is None else tuple(commands)
    parser = build_parser(available)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "accepts_unknown_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    out = console if console is not None else Console(highlight=False)
    by_name = {command.name: command for command in available}
    command = by_name[str(args.command)]
    # Files the command writes into the data directory are private (0600/0700) from the start.
    previous = os.umask(STATE_UMASK)
    try:
        return command.run(args, out)
    except CardsvcError as error:
        fail(error.code.value, error.message)
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        fail(ErrorCode.IO_ERROR.value, f"{error.strerror or type(error).__name__}{where}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: one line, never a traceback (its message may hold data)
        fail(ErrorCode.INTERNAL_ERROR.value, f"unexpected {type(error).__name__}; please "
             "report it")
    finally:
        os.umask(previous)
    return command.failure_status
