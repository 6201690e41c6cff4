"""The import queue: uploaded files imported by their own worker threads, bounded, cancellable.

Uploads once ran on one shared thread, one at a time: a slow file (the tester's XLSX
with cells in column XFD took 11 minutes) held every upload behind it. Now:

* ``ImportJobs`` has ``workers`` threads (2 by default, the machine's cores) that take jobs
  from one queue in order, so one slow file holds one worker, not the others; a file's own CPU
  is bounded too (``codefile.values.CPU_SECONDS_MAX``).
* The queue is bounded: at most ``depth_max`` uploads wait (16 by default). An upload beyond
  that is refused with LIMIT_EXCEEDED (``details.field`` ``import_queue``) before anything is
  created: no batch, no file kept. The slot is taken first (:meth:`ImportJobs.reserve`) and held
  while the batch begins and the file is saved.
* Each job can be cancelled (:meth:`ImportJobs.cancel`, ``POST /v1/batches/{id}/cancel``). The
  job checks between chunks (and every few thousand rows while reading): it then raises
  IMPORT_CANCELLED, the import saga voids what the batch had imported and the batch ends
  ``cancelled`` (its ``error_code`` IMPORT_CANCELLED, ``error_details.reason`` ``cancelled``).
  A job cancelled while waiting ends ``cancelled`` at once; the worker that takes it later
  only deletes its file.
* Closing the queue (the server stopping) cancels every job, waiting or running, with
  ``reason`` ``server_stopping``, and waits for the workers (bounded).

Progress is the batch's ``processed`` count. The HTTP event loop never runs any of this: the
route hands the upload to :meth:`ImportJobs.start_upload` on a thread, and the parsing runs on
the workers.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from cardsvc import audit
from cardsvc.catalog.batches import Batches, BatchMeta
from cardsvc.catalog.codefile.values import encoding_of, mode_of
from cardsvc.catalog.file_import import import_file
from cardsvc.errors import CardsvcError, ErrorCode, make_error

log = logging.getLogger("cardsvc.import_jobs")

IMPORT_WORKERS_DEFAULT = 2
"""Worker threads: the development machine's cores. More would only share the same CPU (and
the GIL) between more files; fewer would let one slow file block every upload."""
IMPORT_QUEUE_DEPTH_MAX = 16
"""Uploads waiting for a worker (the running ones not counted). Each waits as a file in the data
directory (at most the upload limit, 1 GiB) and a batch row; beyond this the caller is told to
retry later (LIMIT_EXCEEDED) rather than queue without end."""
CLOSE_WAIT_S = 30.0
"""How long closing waits for the workers after cancelling their jobs (a job stops at its next
check, within a few thousand rows)."""
UPLOAD_COPY_BYTES = 1 << 20


@dataclass
class JobControl:
    """What a job checks between chunks: whether it was cancelled, and why."""

    batch_id: int
    _cancelled: threading.Event = field(default_factory=threading.Event)
    reason: str = "cancelled"
    started: bool = False
    """Set (under the queue's lock) when a worker takes the job."""

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._cancelled.is_set():
            self.reason = reason
            self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raises IMPORT_CANCELLED (details ``reason``) once the job was cancelled."""
        if self._cancelled.is_set():
            raise make_error(ErrorCode.IMPORT_CANCELLED, f"the import of batch {self.batch_id} "
                             f"was cancelled ({self.reason.replace('_', ' ')})",
                             {"reason": self.reason})


@dataclass
class _Job:
    control: JobControl
    work: Callable[[JobControl], None]


class Reservation:
    """A slot in the queue, taken before the batch exists; ``bind`` it to the batch, then
    ``submit`` the work. Leaving the ``with`` block without submitting gives the slot back."""

    def __init__(self, jobs: ImportJobs) -> None:
        self._jobs = jobs
        self._control: JobControl | None = None
        self._done = False

    def bind(self, batch_id: int) -> JobControl:
        """Registers the batch's job, so it can be cancelled from now on."""
        self._control = self._jobs._register(batch_id)
        return self._control

    def submit(self, work: Callable[[JobControl], None]) -> None:
        """Queues ``work(control)`` for a worker. Precondition: bound."""
        if self._control is None or self._done:
            raise RuntimeError("submit needs a bound, unsubmitted reservation")
        self._done = True
        self._jobs._queue.put(_Job(self._control, work))

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._jobs._give_back(self._control)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


class ImportJobs:
    """The bounded import queue and its workers (module docstring)."""

    def __init__(self, batches: Batches, uploads_dir: Path, *, workers: int | None = None,
                 depth_max: int | None = None) -> None:
        self._batches = batches
        self.uploads_dir = uploads_dir
        """Where uploads wait for their import (0700; each file 0600, deleted when it ends)."""
        self.workers = IMPORT_WORKERS_DEFAULT if workers is None else workers
        self.depth_max = IMPORT_QUEUE_DEPTH_MAX if depth_max is None else depth_max
        if self.workers < 1 or self.depth_max < 1:
            raise make_error(ErrorCode.INVALID_ARGUMENT,
                             "the import queue needs a worker and room for one upload",
                             {"field": "workers" if self.workers < 1 else "depth_max"})
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._controls: dict[int, JobControl] = {}
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"cardsvc-import-{n}",
                                          daemon=True) for n in range(self.workers)]
        for thread in self._threads:
            thread.start()

    # ----- the queue -----

    def reserve(self) -> Reservation:
        """A slot for one more upload. Raises LIMIT_EXCEEDED (``{"field": "import_queue",
        "max": depth_max}``) when ``depth_max`` uploads already wait; RuntimeError after
        :meth:`close`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the import queue is closed")
            if self._waiting >= self.depth_max:
                raise make_error(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"{self._waiting} uploads are already waiting to be imported; retry later",
                    {"field": "import_queue", "max": self.depth_max})
            self._waiting += 1
        return Reservation(self)

    def waiting(self) -> int:
        """Uploads reserved or queued, not yet taken by a worker."""
        with self._lock:
            return self._waiting

    def _register(self, batch_id: int) -> JobControl:
        control = JobControl(batch_id)
        with self._lock:
            self._controls[batch_id] = control
            if self._closed:
                control.cancel("server_stopping")
        return control

    def _give_back(self, control: JobControl | None) -> None:
        with self._lock:
            self._waiting -= 1
            if control is not None:
                self._controls.pop(control.batch_id, None)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._lock:
                self._waiting -= 1
                job.control.started = True
            try:
                job.work(job.control)
            except Exception as error:  # a bug: the work function keeps every coded error
                _log_unexpected(error)
            finally:
                with self._lock:
                    self._controls.pop(job.control.batch_id, None)

    # ----- uploads -----

    def start_upload(self, meta: BatchMeta, source: BinaryIO, *, actor: str, mode: str,
                     encoding: str) -> dict[str, Any]:
        """Takes a slot, begins the batch (``importing``), saves ``source`` as a private file in
        the uploads directory and queues its import; returns the batch. Raises LIMIT_EXCEEDED (the
        queue is full), SKU_NOT_FOUND, POOL_NOT_FOUND, INVALID_ARGUMENT (``mode``,
        ``encoding``, the batch's facts) with nothing created; an OSError while saving fails the
        batch and is raised."""
        mode, encoding = mode_of(mode).value, encoding_of(encoding).value
        with self.reserve() as slot:
            batch_id = self._batches.begin(meta, actor=actor)
            slot.bind(batch_id)
            suffix = Path(meta.source_name or "").suffix.lower()[:8]
            target = self.uploads_dir / f"batch-{batch_id}{suffix}"
            try:
                _save_upload(source, target)
            except BaseException as error:
                self._batches.fail(batch_id, error)
                target.unlink(missing_ok=True)
                raise

            def work(control: JobControl) -> None:
                _import_upload(self._batches, target, meta, control, actor=actor, mode=mode,
                               encoding=encoding)

            slot.submit(work)
        return self._batches.get(batch_id)

    # ----- cancelling -----

    def cancel(self, batch_id: int, *, actor: str) -> dict[str, Any]:
        """Stops the import of ``batch_id`` (audited as ``batch.cancel``) and returns the batch
        as it is now: ``cancelled`` at once for a job still waiting (nothing was read), else
        ``importing`` until the running job reaches its next check (then ``cancelled``, what it
        had imported voided); a repeated cancel changes nothing. Raises
        BATCH_NOT_FOUND, or BATCH_NOT_CANCELLABLE (details ``status``) for a batch that is not
        an upload waiting or running in this queue (ready, rejected, failed, or imported by
        other means)."""
        batch = self._batches.get(batch_id)
        if batch["status"] == "cancelled":
            return batch
        waiting = False
        with self._lock:
            control = self._controls.get(batch_id)
            if control is not None:
                control.cancel()
                waiting = not control.started
        if batch["status"] != "importing" or control is None:
            raise make_error(ErrorCode.BATCH_NOT_CANCELLABLE,
                             f"batch {batch_id} is not an import that can be cancelled",
                             {"batch_id": batch_id, "status": batch["status"]})
        with self._batches.db.write() as session:
            audit.append(session, actor=actor, action="batch.cancel", object_type="batch",
                         object_id=str(batch_id), details={"waiting": waiting},
                         at_ms=self._batches.engine.now_ms())
        if waiting:  # nothing was read: end it now (the worker that takes it finds it ended)
            try:
                control.check()
            except CardsvcError as error:
                self._batches.fail(batch_id, error)
        return self._batches.get(batch_id)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stops taking uploads, cancels every waiting and running job (``server_stopping``)
        and waits up to ``wait_s`` for the workers. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            controls = list(self._controls.values())
        for control in controls:
            control.cancel("server_stopping")
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(wait_s)


def _import_upload(batches: Batches, path: Path, meta: BatchMeta, control: JobControl, *,
                   actor: str, mode: str, encoding: str) -> None:
    """One upload's job: import the file (checking ``control`` between chunks), then delete
    it. Every coded error is kept on the batch; nothing is raised for them."""
    try:
        control.check()
        import_file(batches, path, meta, actor=actor, mode=mode, batch_id=control.batch_id,
                    encoding=encoding, interrupt=control.check)
    except CardsvcError as error:
        if error.code is ErrorCode.IMPORT_CANCELLED and "batch_id" not in error.details:
            batches.fail(control.batch_id, error)  # cancelled before it began
    finally:
        path.unlink(missing_ok=True)


def _save_upload(source: BinaryIO, target: Path) -> None:
    target.parent.mkdir(mode=0o700, exist_ok=True)
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, UPLOAD_COPY_BYTES)
    os.chmod(target, 0o600)


def _log_unexpected(error: BaseException) -> None:
    """Logs an unexpected exception by type and code locations only: its message may hold data
    from the file."""
    frames = traceback.extract_tb(error.__traceback__)[-8:]
    where = " <- ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in reversed(frames))
    log.error("unexpected %s in an import job at %s", type(error).__qualname__,
              where or "an unknown place")
