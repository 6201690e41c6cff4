"""``cardsvc import FILE --sku SKU``: import a CSV or XLSX file of codes as one batch, with a
progress bar, memory flat (``cardsvc.catalog.file_import``).

It opens the data directory as the service does (taking its lock), so it runs while the server
is stopped; beside a running server it refuses with DATA_DIR_LOCKED, and the file should be
uploaded through the API instead (``POST /v1/batches/upload``). It prints the batch id, the
counts, and where the report of skipped rows and duplicates can be written (``--report``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cardsvc.catalog import codefile
from cardsvc.catalog.batches import BatchMeta
from cardsvc.catalog.file_import import import_file
from cardsvc.cli.store import add_store_arguments, store_config
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.runtime import Runtime, ServiceConfig


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
            _write_report(services, batch_id, args.report, console)
            return 1
        batch = services.batches.get(result.batch_id)
        if batch["status"] != "ready":
            _print_error(str(batch["error_code"]), batch["error_details"] or {},
                         str(batch["error_message"]), batch)
        console.print(f"batch {result.batch_id}: {batch['status']}; {batch['imported']:,} "
                      f"imported, {batch['duplicates']:,} duplicates, "
                      f"{batch['submitted']:,} rows", highlight=False)
        _write_report(services, result.batch_id, args.report, console)
        return 0 if batch["status"] == "ready" else 1
    finally:
        services.close()


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


def _write_report(services: Runtime, batch_id: int, target: Path | None,
                  console: Console) -> None:
    if target is None:
        return
    with target.open("w", encoding="utf-8", newline="") as out:
        out.writelines(services.batches.report_csv(batch_id))
    console.print(f"report written to {target}", highlight=False)
