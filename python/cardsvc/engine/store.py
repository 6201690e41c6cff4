"""A durable engine: recovery on open, the group-commit journal writer, periodic snapshots, and
the waiting side of "ack after durable".

Every engine mutation appends a journal record and takes a *ticket* (``Engine.last_ticket()``
right after the call). A caller that reports the effect waits until the journal writer has made
that ticket durable: ``store.wait(ticket)`` blocks, ``await store.wait_async(ticket)`` suspends.
Waiting signals the writer, which drains every pending record, appends them to the sink in one
batch (one ``fdatasync`` or one Redis write) and wakes every caller the batch covers. Reads that
report state wait for ``engine.appended()`` at read time (``store.wait_visible()``), so they never
report an effect a crash could undo.

Recovery (``Store.open``): lock the data directory; load the newest snapshot that passes its
checks (falling back to older ones); replay the journal after it, cutting a torn tail (a final
batch cut short by a crash) and refusing to start on anything else (a bad frame with records after
it, a missing range of records), naming the file and offset. ``recover_check`` does the same
reads and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardsvc.engine.core import Engine, scan_journal
from cardsvc.engine.datadir import DataDirLock, instance_id, load_lookup_key
from cardsvc.engine.sinks import SNAPSHOTS_KEPT, FileSink, Guarantee, JournalSink, RedisSink
from cardsvc.errors import CardsvcError, ErrorCode, make_error

log = logging.getLogger("cardsvc.store")

WAIT_TIMEOUT_S = 10.0
"""How long a caller waits for durability before JOURNAL_UNAVAILABLE (the sink is down)."""
IDLE_FLUSH_MS = 50
"""With nobody waiting, pending records are still written this often (bounds memory and loss
of unacknowledged work)."""
SNAPSHOT_HEADER_SEQ = slice(20, 28)
"""Where a snapshot stores the last sequence number it covers (after magic, version, key
fingerprint)."""


@dataclass
class StoreConfig:
    """How a store is opened. ``sink`` is ``"file"`` or ``"redis"``."""

    data_dir: Path
    sink: str = "file"
    redis_url: str | None = None
    redis_namespace: str = "cardsvc"
    snapshot_every_records: int = 1_000_000
    snapshot_every_seconds: float = 300.0
    segment_bytes_max: int = 64 << 20


@dataclass
class RecoveryReport:
    """What recovery found and did; logged at start-up and served by the health endpoint."""

    snapshot_seq: int = 0
    snapshots_rejected: list[dict[str, Any]] = field(default_factory=list)
    journal_chunks: int = 0
    records_replayed: int = 0
    last_seq: int = 0
    torn_tail: dict[str, Any] | None = None
    seconds: float = 0.0
    codes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot_seq": self.snapshot_seq,
            "snapshots_rejected": self.snapshots_rejected,
            "journal_chunks": self.journal_chunks,
            "records_replayed": self.records_replayed,
            "last_seq": self.last_seq,
            "torn_tail": self.torn_tail,
            "seconds": round(self.seconds, 3),
            "codes": self.codes,
        }


def make_sink(config: StoreConfig) -> JournalSink:
    """The configured sink. Raises INVALID_ARGUMENT for an unknown sink or a missing URL."""
    if config.sink == "file":
        return FileSink(config.data_dir, config.segment_bytes_max)
    if config.sink == "redis":
        if not config.redis_url:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                "the redis sink needs a Redis URL",
                {"field": "redis_url"},
            )
        return RedisSink(config.redis_url, config.redis_namespace, instance_id(config.data_dir))
    raise make_error(
        ErrorCode.INVALID_ARGUMENT, "journal sink must be file or redis", {"field": "journal"}
    )


def snapshot_seq(data: bytes | memoryview) -> int:
    """The last sequence number a snapshot covers (read from its header)."""
    return int.from_bytes(bytes(data[SNAPSHOT_HEADER_SEQ]), "little")


def _corrupt(message: str, **details: Any) -> CardsvcError:
    return make_error(ErrorCode.JOURNAL_CORRUPT, message, details)


def recover(sink: JournalSink, lookup_key: bytes, *, repair: bool) -> tuple[Engine, RecoveryReport]:
    """Rebuilds the engine from ``sink``. With ``repair`` a torn tail is cut from the sink;
    without it nothing is changed. Raises JOURNAL_CORRUPT or SNAPSHOT_CORRUPT, naming the
    problem, when the stored state cannot be recovered exactly."""
    started = time.monotonic()
    report = RecoveryReport()
    engine: Engine | None = None
    for seq in reversed(sink.snapshot_seqs()):
        try:
            engine = Engine(lookup_key, sink.read_snapshot(seq))
            report.snapshot_seq = seq
            break
        except CardsvcError as error:
            if error.code is not ErrorCode.SNAPSHOT_CORRUPT:
                raise
            report.snapshots_rejected.append({"seq": seq, "reason": error.details.get("reason")})
            log.error("snapshot %d rejected: %s", seq, error.message)
            if repair:
                sink.quarantine_snapshot(seq)
    if engine is None:
        engine = Engine(lookup_key)
    expected = report.snapshot_seq + 1
    for chunk in sink.journal_chunks():
        report.journal_chunks += 1
        valid_len, records, first, last, scan_error, torn = scan_journal(chunk.data)
        if records and first > expected and report.snapshots_rejected and not report.snapshot_seq:
            raise make_error(
                ErrorCode.SNAPSHOT_CORRUPT,
                "every snapshot is corrupt and the journal before them was trimmed",
                {"rejected": report.snapshots_rejected, "journal_starts_at": first},
            )
        if records and first > expected:
            raise _corrupt(
                f"journal records {expected}..{first - 1} are missing before {chunk.source}",
                missing_from=expected,
                missing_to=first - 1,
                source=chunk.source,
            )
        if records and last >= expected:
            report.records_replayed += engine.apply_journal(chunk.data[:valid_len])
            expected = last + 1
        if scan_error is None:
            continue
        if not (chunk.final and torn):
            raise _corrupt(
                f"journal {chunk.source} is corrupt at byte {valid_len}: {scan_error}",
                source=chunk.source,
                offset=valid_len,
                reason=scan_error,
            )
        report.torn_tail = {
            "source": chunk.source,
            "offset": valid_len,
            "bytes_cut": len(chunk.data) - valid_len,
            "reason": scan_error,
            "cut": repair,
        }
        log.warning(
            "journal %s has a torn tail at byte %d (%d bytes, %s)%s",
            chunk.source,
            valid_len,
            len(chunk.data) - valid_len,
            scan_error,
            "; cut" if repair else "",
        )
        if repair:
            sink.cut_tail(chunk, valid_len)
    report.last_seq = engine.next_seq() - 1
    report.codes = engine.code_count()
    report.seconds = time.monotonic() - started
    return engine, report


class Store:
    """An engine made durable by a sink. Use :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        config: StoreConfig,
        engine: Engine,
        sink: JournalSink,
        lock: DataDirLock,
        report: RecoveryReport,
    ) -> None:
        self.config = config
        self.engine = engine
        self.sink = sink
        self.recovery = report
        self._lock = lock
        self._stop = threading.Event()
        self._pending = b""
        self._pending_first = 0
        self._pending_last = 0
        self.last_error: str | None = None
        self.flushes = 0
        self.last_snapshot_seq = report.snapshot_seq
        self.last_snapshot_time = time.monotonic()
        self.last_snapshot_pause_ms = 0.0
        self.last_snapshot_encode_ms = 0.0
        self._snapshot_lock = threading.Lock()
        self._loop_futures: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}
        self._async_lock = threading.Lock()
        self._requested = 0
        self.guarantee: Guarantee = sink.guarantee()
        self._writer = threading.Thread(
            target=self._write_loop, name="cardsvc-journal", daemon=True
        )
        self._snapshotter = threading.Thread(
            target=self._snapshot_loop, name="cardsvc-snapshots", daemon=True
        )
        self._notifier: threading.Thread | None = None
        self._writer.start()
        self._snapshotter.start()

    @classmethod
    def open(cls, config: StoreConfig) -> Store:
        """Locks the data directory, recovers, and starts the writer and snapshotter.
        Raises DATA_DIR_LOCKED, JOURNAL_CORRUPT, SNAPSHOT_CORRUPT, JOURNAL_UNAVAILABLE."""
        lock = DataDirLock(config.data_dir)
        try:
            sink = make_sink(config)
            engine, report = recover(sink, load_lookup_key(config.data_dir), repair=True)
        except BaseException:
            lock.close()
            raise
        store = cls(config, engine, sink, lock, report)
        log.info("recovered: %s", report.to_dict())
        log.info("journal sink %s: %s", sink.name, store.guarantee.description)
        return store

    # ----- waiting (ack after durable) -----

    def wait(self, ticket: int, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Blocks until ``ticket`` is durable. Raises JOURNAL_UNAVAILABLE on timeout."""
        if not self.engine.wait_durable(ticket, int(timeout * 1000)):
            raise self._unavailable(ticket)

    def wait_last(self, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Waits for the last record the calling thread appended."""
        self.wait(Engine.last_ticket(), timeout)

    def wait_visible(self, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Waits for every record appended so far (for reads that report state)."""
        self.wait(self.engine.appended(), timeout)

    async def wait_async(self, ticket: int, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Suspends until ``ticket`` is durable. Raises JOURNAL_UNAVAILABLE on timeout.

        Waiters share one future per event loop that the notifier thread completes after every
        flush (and at least every 200 ms), so a wait costs no timer or future of its own.
        """
        engine = self.engine
        if engine.durable() >= ticket:
            return
        if ticket > self._requested:
            self._requested = ticket
            engine.request_durable(ticket)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self._shared_future(loop)
            if engine.durable() >= ticket:
                return
            if loop.time() >= deadline:
                raise self._unavailable(ticket)
            engine.request_durable(ticket)

    def _shared_future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future = self._loop_futures.get(loop)
        if future is None or future.done():
            future = loop.create_future()
            self._loop_futures[loop] = future
        if self._notifier is None:
            with self._async_lock:
                if self._notifier is None:
                    self._notifier = threading.Thread(
                        target=self._notify_loop, name="cardsvc-durable-notify", daemon=True
                    )
                    self._notifier.start()
        return future

    def _notify_loop(self) -> None:
        seen = self.engine.durable()
        while not self._stop.is_set():
            seen = self.engine.wait_durable_change(seen, 200)
            for loop in list(self._loop_futures):
                try:
                    loop.call_soon_threadsafe(self._wake, loop)
                except RuntimeError:  # that event loop is closed
                    self._loop_futures.pop(loop, None)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        future = self._loop_futures.pop(loop, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _unavailable(self, ticket: int) -> CardsvcError:
        return make_error(
            ErrorCode.JOURNAL_UNAVAILABLE,
            "the journal could not confirm durability in time; the effect may not be kept",
            {"ticket": ticket, "sink": self.sink.name, "last_error": self.last_error},
        )

    # ----- the journal writer (group commit) -----

    def _write_loop(self) -> None:
        backoff = 0.01
        while not self._stop.is_set():
            self.engine.wait_for_demand(IDLE_FLUSH_MS)
            try:
                self.flush()
                backoff = 0.01
            except CardsvcError as error:
                self.last_error = f"{error.code.value}: {error.message}"
                log.error("journal write failed, retrying: %s", self.last_error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
        try:
            self.flush()
        except CardsvcError as error:
            log.error("final journal flush failed: %s", error.message)

    def flush(self) -> None:
        """Drains pending records, appends them in one batch and marks them durable. Records
        that could not be written are kept and retried first next time."""
        data, covered, first, last = self.engine.drain()
        if data:
            if not self._pending:
                self._pending_first = first
            self._pending += data
            self._pending_last = last
        if self._pending:
            self.sink.append(self._pending, self._pending_first, self._pending_last)
            self._pending = b""
            self.flushes += 1
        self.last_error = None
        self.engine.mark_durable(covered)

    # ----- snapshots -----

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(0.5):
            due_records = self.engine.next_seq() - 1 - self.last_snapshot_seq
            due_time = time.monotonic() - self.last_snapshot_time
            if due_records >= self.config.snapshot_every_records or (
                due_records > 0 and due_time >= self.config.snapshot_every_seconds
            ):
                try:
                    self.snapshot_now()
                except CardsvcError as error:
                    log.error("snapshot failed: %s", error.message)

    def snapshot_now(self) -> int:
        """Takes a snapshot, stores it, keeps the newest two and trims the journal before the
        older one. Returns the snapshot's sequence number."""
        with self._snapshot_lock:
            started = time.monotonic()
            data = memoryview(self.engine.snapshot_data())
            # The pause callers can see: how long the engine held its locks to capture the
            # state (encoding and writing run after they are released).
            self.last_snapshot_pause_ms = self.engine.last_snapshot_capture_us() / 1000
            self.last_snapshot_encode_ms = (time.monotonic() - started) * 1000
            seq = snapshot_seq(data)
            self.sink.write_snapshot(seq, data)
            kept = self.sink.snapshot_seqs()
            for old in kept[:-SNAPSHOTS_KEPT]:
                self.sink.drop_snapshot(old)
            kept = kept[-SNAPSHOTS_KEPT:]
            trimmed = self.sink.trim_journal(kept[0]) if kept else 0
            self.last_snapshot_seq = seq
            self.last_snapshot_time = time.monotonic()
            log.info(
                "snapshot %d written (%d bytes), %d journal chunks trimmed", seq, len(data), trimmed
            )
            return seq

    # ----- status and shutdown -----

    def status(self) -> dict[str, Any]:
        """Health information: durability guarantee, watermarks, recovery, last error."""
        return {
            "sink": self.sink.name,
            "guarantee": self.guarantee.to_dict(),
            "appended": self.engine.appended(),
            "durable": self.engine.durable(),
            "next_seq": self.engine.next_seq(),
            "last_snapshot_seq": self.last_snapshot_seq,
            "last_snapshot_pause_ms": round(self.last_snapshot_pause_ms, 3),
            "journal_writable": self.last_error is None,
            "last_error": self.last_error,
            "recovery": self.recovery.to_dict(),
        }

    def close(self) -> None:
        """Flushes, stops the threads, closes the sink and releases the data directory."""
        self._stop.set()
        self.engine.request_durable(self.engine.appended())
        self._writer.join(timeout=30)
        self._snapshotter.join(timeout=30)
        if self._notifier is not None:
            self._notifier.join(timeout=5)
        self.sink.close()
        self._lock.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recover_check(config: StoreConfig) -> RecoveryReport:
    """Reads everything recovery would read and reports; changes nothing. Raises like open."""
    lock = DataDirLock(config.data_dir)
    try:
        sink = make_sink(config)
        try:
            _, report = recover(sink, load_lookup_key(config.data_dir), repair=False)
        finally:
            sink.close()
    finally:
        lock.close()
    return report
