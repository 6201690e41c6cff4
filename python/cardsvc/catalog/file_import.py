"""Importing a CSV or XLSX file of codes as one batch: check the whole file, then stream it
through the import saga (``cardsvc.catalog.batches``), memory flat.

Two modes (``cardsvc.catalog.codefile.ImportMode``):

* ``all_or_nothing`` (the default): any malformed row rejects the whole file before anything is
  imported; the batch is ``rejected`` and its report lists every problem by line.
* ``per_row``: malformed rows are skipped and listed in the report; the rest is one batch.

Either way duplicates (of earlier batches or within the file) are skipped and listed, and the
batch is all or nothing once loading starts: a failure voids whatever it had imported.

A file refused before anything is imported (it cannot be read, has no header, is empty, has
problems in all_or_nothing mode, exceeds a bound) ends ``rejected``; a failure while loading
ends ``failed``. Either way the batch keeps the error's code, details (``reason``, ``line``) and
message (``error_code``, ``error_details``, ``error_message``) and its report says why
(docs/import.md lists the reasons).

The file should be a private copy (an upload saved by the server, or a file the operator owns):
it is read twice, and a file changed between the check and the load fails the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from cardsvc.catalog import codefile
from cardsvc.catalog.batches import Batches, BatchMeta, BatchResult, CodeInput
from cardsvc.errors import BadInput, CardsvcError

LOAD_CHUNK_ROWS = codefile.CHUNK_ROWS_DEFAULT
"""Rows per chunk of the load: one core import call and one SQL transaction each; a cancel is
checked between two."""

log = logging.getLogger("cardsvc.imports")


def import_file(
    batches: Batches,
    path: Path,
    meta: BatchMeta,
    *,
    actor: str,
    mode: str = codefile.ImportMode.ALL_OR_NOTHING,
    batch_id: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    encoding: str = codefile.FileEncoding.UTF8,
    limits: codefile.CodeFileLimits = codefile.DEFAULT_LIMITS,
    interrupt: Callable[[], None] | None = None,
) -> BatchResult:
    """Imports ``path`` into a new batch (or the ``importing`` batch ``batch_id`` that the
    caller began, e.g. to answer an upload with its id at once). ``progress(phase, rows)`` is
    called during the check (``"check"``) and the load (``"load"``). ``encoding`` (CSV only):
    ``utf-8`` (the default; a UTF-16 byte order mark is honoured) or ``gb18030``. ``limits``
    bound the file (``codefile.CodeFileLimits``); its CPU budget covers the check and the load
    together. ``interrupt`` (a job's cancellation check) is called between chunks and every few
    thousand rows while reading; what it raises stops the import like any failure (IMPORT_CANCELLED
    ends the batch ``cancelled``, its codes voided).

    Returns the result: status ``ready``, or ``rejected`` when the check refused the file
    (problems in ``all_or_nothing`` mode, nothing to import; the report says why). Raises
    SKU_NOT_FOUND, POOL_NOT_FOUND (nothing created), INVALID_ARGUMENT (an unreadable, empty or
    header-less file; the batch is ``rejected`` first), LIMIT_EXCEEDED (too many rows, a line
    too long; likewise) and what loading raises (the batch is then ``failed`` and nothing of it
    is sellable). A raised error's details name the batch (``batch_id``).
    """
    meta = replace(meta, source_name=meta.source_name or path.name)

    def checking(rows: int) -> None:
        if progress is not None:
            progress("check", rows)

    if batch_id is None:
        batch_id = batches.begin(meta, actor=actor)
    # One CPU budget for both passes, on this thread (codefile.values.CPU_SECONDS_MAX).
    budget = codefile.Budget(limits.cpu_seconds_max, interrupt)
    try:
        report = codefile.scan(path, progress=checking, encoding=encoding, limits=limits,
                               budget=budget)
        problems = [{"line": p.line, "field": p.field, "reason": p.reason}
                    for p in report.problems]
        try:
            report.check(mode)
        except CardsvcError as error:
            batches.reject(batch_id, problems, actor=actor, error=error)
            return BatchResult(batch_id, 0, status="rejected")
        batches.note(batch_id, submitted=report.rows, problems=problems)
    except BadInput as error:  # the file was refused before anything was imported
        batches.reject(batch_id, (), actor=actor, error=error)
        _name_batch(error, batch_id)
        raise
    except BaseException as error:
        batches.fail(batch_id, error)
        _name_batch(error, batch_id)
        raise

    def loading(rows: int) -> None:
        if progress is not None:
            progress("load", rows)

    try:
        chunks = _inputs(path, mode, encoding, limits, budget, interrupt)
        return batches.load(batch_id, chunks, actor=actor, progress=loading)
    except BaseException as error:
        _name_batch(error, batch_id)
        raise


def _name_batch(error: BaseException, batch_id: int) -> None:
    """Adds the batch id to a raised error's details (after the batch stored them), so the CLI
    can say which batch failed."""
    if isinstance(error, CardsvcError):
        error.details.setdefault("batch_id", batch_id)


def _inputs(path: Path, mode: str, encoding: str, limits: codefile.CodeFileLimits,
            budget: codefile.Budget,
            interrupt: Callable[[], None] | None) -> Iterator[list[CodeInput]]:
    """The file's valid rows in chunks of LOAD_CHUNK_ROWS, ``interrupt`` called before each."""
    for chunk in codefile.read_codes(path, mode=mode, encoding=encoding, limits=limits,
                                     budget=budget, chunk_rows=LOAD_CHUNK_ROWS):
        if interrupt is not None:
            interrupt()
        yield [CodeInput(row.code, row.pin, row.line, row.valid_until) for row in chunk]
