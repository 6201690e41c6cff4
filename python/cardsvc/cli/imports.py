"""``cardsvc import FILE --sku SKU``: import a CSV or XLSX file of codes as one batch, with a
progress bar, memory flat (``cardsvc.catalog.file_import``).

When a server runs on the data directory, the file goes to it through its control socket
(``cardsvc.cli.control``: the upload of ``POST /v1/batches/upload``, then the batch polled until
it is done), so importing needs no downtime; otherwise the command opens the data directory as
the service does (taking its lock). Either way it prints the batch id and the counts, writes the
report of skipped rows and duplicates with ``--report``, and exits 0 when the batch is ready, 1
when it was rejected or failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cardsvc.catalog import codefile
from cardsvc.catalog.batches import BatchMeta
from cardsvc.catalog.file_import import import_file
from cardsvc.cli.control import ControlClient, connect
from cardsvc.cli.store import add_store_arguments, store_config
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.runtime import Runtime, ServiceConfig

POLL_INTERVAL_S = 0.2
"""How often the batch is asked for while the running server imports it."""


def _unix_seconds(text: str) -> int:
    """A date (end of that day, UTC), a date-time, or Unix seconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected YYYY-MM-DD, an ISO date-time or Unix seconds") from None
    if len(text) == 10:
        moment = moment.replace(hour=23, minute=59, second=59)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="CSV or XLSX with a header row (code, pin, ...)")
    parser.add_argument("--sku", required=True)
    parser.add_argument("--pool", help="named pool (default: shared)")
    parser.add_argument("--mode", choices=[m.value for m in codefile.ImportMode],
                        default=codefile.ImportMode.ALL_OR_NOTHING.value,
                        help="all_or_nothing (default): any bad row rejects the file; "
                             "per_row: bad rows are skipped and reported")
    parser.add_argument("--encoding", choices=[e.value for e in codefile.FileEncoding],
                        default=codefile.FileEncoding.UTF8.value,
                        help="CSV only: utf-8 (default; UTF-16 with a byte order mark is "
                             "recognised) or gb18030 (GBK files from Chinese Excel)")
    parser.add_argument("--supplier")
    parser.add_argument("--unit-cost", type=int, help="unit cost in minor units")
    parser.add_argument("--currency", help="ISO 4217 code of the unit cost")
    parser.add_argument("--purchase-date", help="YYYY-MM-DD")
    parser.add_argument("--valid-from", type=_unix_seconds)
    parser.add_argument("--valid-until", type=_unix_seconds)
    parser.add_argument("--report", type=Path, help="write the batch report (CSV) here")
    parser.add_argument("--database-url", default=None)
    add_store_arguments(parser)


def run_import(args: argparse.Namespace, console: Console) -> int:
    if not args.file.is_file():
        raise make_error(ErrorCode.INVALID_ARGUMENT, "no such file", {"field": "file"})
    server = connect(args.data_dir)
    if server is not None:
        with server:
            return _import_through(server, args, console)
    meta = BatchMeta(sku=args.sku, pool=args.pool, valid_from=args.valid_from,
                     valid_until=args.valid_until, source="import", supplier=args.supplier,
                     unit_cost_minor=args.unit_cost, currency=args.currency,
                     purchase_date=args.purchase_date, source_name=args.file.name)
    services = Runtime.open(ServiceConfig(store=store_config(args),
                                           database_url=args.database_url))
    try:
        columns = (TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed:,} rows"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, rows: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task("checking" if phase == "check" else "importing",
                                                total=None)
                bar.update(tasks[phase], completed=rows)

            failure: CardsvcError | None = None
            try:
                result = import_file(services.batches, args.file, meta, actor="cli",
                                     mode=args.mode, progress=progress, encoding=args.encoding)
            except CardsvcError as error:
                if "batch_id" not in error.details:
                    raise  # nothing was created (an unknown SKU): cli.main prints it
                failure = error
        if failure is not None:
            batch_id = int(failure.details["batch_id"])
            _print_error(failure.code.value, failure.details, failure.message,
                         services.batches.get(batch_id))
            if args.report is not None:
                _write_report(args.report, services.batches.report_csv(batch_id))
                console.print(f"report written to {args.report}", highlight=False)
            return 1
        batch = services.batches.get(result.batch_id)
        if batch["status"] != "ready":
            _print_batch_error(batch)
        if args.report is not None:
            _write_report(args.report, services.batches.report_csv(result.batch_id))
        return _summary(batch, args, console)
    finally:
        services.close()


def _print_batch_error(batch: dict[str, Any]) -> None:
    """:func:`_print_error` of the error a batch ended with."""
    _print_error(str(batch.get("error_code")), batch.get("error_details") or {},
                 str(batch.get("error_message") or ""), batch)


def _print_error(code: str, details: dict[str, Any], message: str,
                 batch: dict[str, Any]) -> None:
    """One line on stderr: the code, the reason and line, the message and the batch's fate, e.g.
    ``error: INVALID_ARGUMENT (not_utf8, line 3): line 3 is not UTF-8 text: ...; batch 4
    rejected``. Never a code or PIN (messages and details hold none)."""
    where = [str(details["reason"])] if "reason" in details else []
    if details.get("field") and "reason" not in details:
        where.append(f"field {details['field']}")
    line = details.get("line", details.get("first_line"))
    if line is not None:
        where.append(f"line {line}")
    said = f" ({', '.join(where)})" if where else ""
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    err.print(f"[bold red]error:[/] {code}{escape(said)}: {escape(message)}; "
              f"batch {batch['batch_id']} {batch['status']}")


def _import_through(server: ControlClient, args: argparse.Namespace, console: Console) -> int:
    """The import as the running server does it: upload, then poll the batch until done."""
    fields = {"sku": args.sku, "pool": args.pool, "mode": args.mode, "supplier": args.supplier,
              "unit_cost_minor": args.unit_cost, "currency": args.currency,
              "purchase_date": args.purchase_date, "valid_from": args.valid_from,
              "valid_until": args.valid_until}
    form = {name: str(value) for name, value in fields.items() if value is not None}
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,} rows"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("uploading", total=None)
        with args.file.open("rb") as upload:
            batch = server.json("POST", "/v1/batches/upload", data=form,
                                files={"file": (args.file.name, upload)})
        bar.update(task, description="importing")
        while batch["status"] == "importing":
            time.sleep(POLL_INTERVAL_S)
            batch = server.json("GET", f"/v1/batches/{batch['batch_id']}")
            bar.update(task, completed=batch["processed"])
    if batch["status"] != "ready":
        _print_batch_error(batch)
    if args.report is not None:
        report = server.call("GET", f"/v1/batches/{batch['batch_id']}/report")
        _write_report(args.report, [report.text])
    return _summary(batch, args, console)


def _write_report(path: Path, chunks: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        for chunk in chunks:
            out.write(chunk)


def _summary(batch: dict[str, Any], args: argparse.Namespace, console: Console) -> int:
    console.print(f"batch {batch['batch_id']}: {batch['status']}; {batch['imported']:,} "
                  f"imported, {batch['duplicates']:,} duplicates, "
                  f"{batch['submitted']:,} rows", highlight=False)
    if args.report is not None:
        console.print(f"report written to {args.report}", highlight=False)
    return 0 if batch["status"] == "ready" else 1
