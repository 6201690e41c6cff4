"""Importing a CSV or XLSX file of codes as one batch: check the whole file, then stream it
through the import saga (``cardsvc.catalog.batches``), memory flat.

Two modes (``cardsvc.catalog.codefile.ImportMode``):

* ``all_or_nothing`` (the default): any malformed row rejects the whole file before anything is
  imported; the batch is ``rejected`` and its report lists every problem by line.
* ``per_row``: malformed rows are skipped and listed in the report; the rest is one batch.

Either way duplicates (of earlier batches or within the file) are skipped and listed, and the
batch is all or nothing once loading starts: a failure voids whatever it had imported.

The file should be a private copy (an upload saved by the server, or a file the operator owns):
it is read twice, and a file changed between the check and the load fails the batch.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from cardsvc.catalog import codefile
from cardsvc.catalog.batches import Batches, BatchMeta, BatchResult, CodeInput
from cardsvc.errors import CardsvcError

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
) -> BatchResult:
    """Imports ``path`` into a new batch (or the ``importing`` batch ``batch_id`` that the
    caller began, e.g. to answer an upload with its id at once). ``progress(phase, rows)`` is
    called during the check (``"check"``) and the load (``"load"``).

    Returns the result; a file with problems in ``all_or_nothing`` mode returns status
    ``rejected`` (the report says why). Raises SKU_NOT_FOUND, POOL_NOT_FOUND, INVALID_ARGUMENT
    (an unreadable file or header), LIMIT_EXCEEDED (too many rows, a line too long), and what
    loading raises (the batch is then failed and nothing of it is sellable).
    """
    meta = replace(meta, source_name=meta.source_name or path.name)

    def checking(rows: int) -> None:
        if progress is not None:
            progress("check", rows)

    if batch_id is None:
        batch_id = batches.begin(meta, actor=actor)
    try:
        report = codefile.scan(path, progress=checking)
        problems = [{"line": p.line, "field": p.field, "reason": p.reason}
                    for p in report.problems]
        try:
            report.check(mode)
        except CardsvcError as error:
            batches.reject(batch_id, problems, actor=actor, error_code=error.code.value)
            return BatchResult(batch_id, 0, status="rejected")
        batches.note(batch_id, submitted=report.rows, problems=problems)
    except BaseException as error:
        batches.fail(batch_id, error)
        raise

    def loading(rows: int) -> None:
        if progress is not None:
            progress("load", rows)

    return batches.load(batch_id, _inputs(path, mode), actor=actor, progress=loading)


def _inputs(path: Path, mode: str) -> Iterator[list[CodeInput]]:
    for chunk in codefile.read_codes(path, mode=mode):
        yield [CodeInput(row.code, row.pin, row.line, row.valid_until) for row in chunk]


class FileImports:
    """Uploaded files imported in the background, one job at a time, off the request path.

    :meth:`start` begins the batch (so the caller can answer with its id at once), saves the
    upload privately (mode 0600 in ``uploads_dir``, itself 0700) and queues the import; the job
    deletes the file when it ends. A job's failure ends its batch ``failed`` with the error's
    code (``import_file`` does that); only its type is logged, never its message.
    """

    def __init__(self, batches: Batches, uploads_dir: Path, jobs: Executor) -> None:
        self.batches = batches
        self.uploads_dir = uploads_dir
        self.jobs = jobs

    def start(self, meta: BatchMeta, source: BinaryIO, *, actor: str,
              mode: str) -> dict[str, Any]:
        """Begins an upload's batch and queues its import; returns the batch (``importing``).
        Blocks on file I/O: call it off the event loop. Raises SKU_NOT_FOUND, POOL_NOT_FOUND,
        INVALID_ARGUMENT (before anything is queued)."""
        batch_id = self.batches.begin(meta, actor=actor)
        name = meta.source_name or "upload.csv"
        target = self.uploads_dir / f"batch-{batch_id}{Path(name).suffix.lower()[:8]}"
        _save_upload(source, target)
        self.jobs.submit(self._job, target, meta, actor, mode, batch_id)
        return self.batches.get(batch_id)

    def _job(self, target: Path, meta: BatchMeta, actor: str, mode: str,
             batch_id: int) -> None:
        try:
            import_file(self.batches, target, meta, actor=actor, mode=mode, batch_id=batch_id)
        except Exception as error:  # the batch is failed and says why; the log gets the type
            if not isinstance(error, CardsvcError):
                log.error("upload import of batch %s failed: %s", batch_id,
                          type(error).__name__)
        finally:
            target.unlink(missing_ok=True)


def _save_upload(source: BinaryIO, target: Path) -> None:
    target.parent.mkdir(mode=0o700, exist_ok=True)
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    os.chmod(target, 0o600)
