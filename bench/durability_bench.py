"""Issue 3's durability benchmark: acknowledged redeems/s, snapshot pause and recovery time.

Goal: measure what "ack after durable" costs, all in one run so that the ratios mean something on a
shared, noisy machine: redemptions acknowledged only once their journal record is durable, through
``cardsvc.engine.store.Store`` with the file sink and with the Redis sink (``appendfsync always``
and ``everysec``), beside three reference points measured in the same run: the raw write+fsync rate
of 4 KiB blocks, the Redis + Lua redeemer under the same ``appendfsync`` setting (redis-benchmark,
50 clients, pipeline 16) and a single-thread Python dict whose journal is group-committed every
1,024 records. Then the longest stall callers see while a snapshot of 10 million codes is taken,
and the time to recover those codes (snapshot plus 1 million journal records). Targets are printed
with PASS/MISS and the figures kept in ``bench/results/durability.json``.

Method:

* Raw fsync: append 4 KiB and ``os.fsync`` in a loop for a few seconds, in a temporary directory
  on the filesystem of the data directories.
* Redis + Lua: ``bench.redis_lua`` (a private redis-server with ``--appendonly yes
  --appendfsync always|everysec``, ``LuaBench.measure_redeem``, which checks that every EVALSHA
  ran without an error reply and that uses and redemptions changed by exactly the calls made).
* dict + journal: ``bench.baselines.DictCodeTable.redeem`` per code, each result framed like the
  engine's journal (``[len u32][seq u64][crc32 u32][payload]``) into a buffer written and fsynced
  every 1,024 records; the file is read back and every frame checked afterwards.
* Store runs: per sink and caller form, a fresh store in a temporary directory with single-use
  codes imported and sold up front; callers redeem distinct codes until the time bound (or the
  codes) run out. Forms: asyncio coroutines (``redeem`` then ``await store.wait_async(ticket)``,
  the HTTP API's form), threads (``redeem`` then ``store.wait_last()``) and asyncio batches
  (``redeem_many`` of 100 codes then one wait). Latency is per operation, from before the engine
  call to after the wait. Each result must show ``uses_left == 0``; afterwards the redeemed count
  equals the acknowledged count, and after ``close()`` a reopened store has the same state digest,
  the same count and every sampled redemption. Periodic snapshots are off in these runs (they are
  measured on their own below). One more file-sink row redeems with ``await asyncio.sleep(0)``
  instead of waiting: no acknowledgement, the event loop's ceiling for one coroutine per redeem.
  The loop thread's CPU time per operation is recorded for the asyncio forms. Every configuration
  runs ``--repeats`` times, interleaved; the sample with the best rate is reported.
* Snapshot pause: a file-sink store with ``--codes`` codes (imported in calls of 1M); two caller
  threads loop redeem + ``wait_last`` + verify, recording each call's start and end, for a second
  before, during and a second after ``store.snapshot_now()``. The figure is the longest caller
  call overlapping the snapshot; the longest outside it is the baseline noise.
* Recovery: then ``--records`` more journal records (``redeem_many`` of 10,000, waited for), close,
  and time ``Store.open`` (snapshot + journal replay); the state digest must equal the one before.

Expected cost, sketched before building: an fsync costs about 0.2 ms, so one per operation caps
at about 5,000/s; with group commit one fdatasync covers every waiting caller, and the ceiling
becomes the per-operation Python cost on the caller's side (about 1.5 µs of redeem plus a
coroutine switch and the wait, a few µs), i.e. a few hundred thousand acknowledged redeems/s.
A snapshot is about 45 bytes per code (about 450 MB at 10M codes), so its copy and its write
take hundreds of milliseconds, and recovery reads that much plus the journal.

Usage::

    python -m bench.durability_bench            # full run: 10M codes, best of 2, ~5 minutes
    python -m bench.durability_bench --quick    # small sizes, well under a minute
    python -m bench.durability_bench --codes 2000000 --no-redis
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baselines import DictCodeTable
from bench.common import code_texts, load_average, machine_description, ref_texts, timed
from bench.engine_bench import engine_identity, import_all, run_threads, sell_all
from bench.redis_lua import LuaBench, RedisServer, find_redis_benchmark, find_redis_server
from bench.run_all import RESULTS_DIR, Target, git_commit, log
from cardsvc.engine import Engine
from cardsvc.engine.store import Store, StoreConfig

TERMINAL = "T1"
SKU = "DUR"
FSYNC_BLOCK = 4096
GROUP_RECORDS = 1024
"""The dict baseline's group commit: one fsync per this many journal records (issue 3)."""
FRAME = struct.Struct("<IQI")
"""The engine's journal frame header: length, sequence number, CRC-32 (docs/engine.md)."""
SNAPSHOTS_OFF = StoreConfig(Path("."), snapshot_every_records=1 << 62, snapshot_every_seconds=1e12)
"""Store settings under which the snapshotter never fires on its own (snapshots are timed alone)."""
WAIT_LOAD_S = 300.0
"""How long loading may wait for its journal (hundreds of MB for millions of imported codes)."""
SAMPLE_CHECKS = 500
"""Redemptions per run checked one by one in the reopened store."""
RECORD_BATCH = 10_000
"""redeem_many size for the recovery test's journal records."""
SNAPSHOT_CALLERS = 2
HEADLINE = "asyncio 800"
"""The caller form compared with Redis + Lua: 800 in flight, as 50 clients x pipeline 16."""


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; see ``--help``."""

    fsync_seconds: float
    run_seconds: float
    run_codes: int
    batch_run_codes: int
    coroutines: tuple[int, ...]
    threads: int
    batch: int
    batch_callers: int
    dict_ops: int
    lua_requests: int
    lua_codes: int
    snapshot_codes: int
    caller_codes: int
    recovery_records: int
    around_snapshot_seconds: float
    repeats: int


FULL = Sizes(
    fsync_seconds=2.0,
    run_seconds=4.0,
    run_codes=2_000_000,
    batch_run_codes=4_000_000,
    coroutines=(800, 64),
    threads=16,
    batch=100,
    batch_callers=64,
    dict_ops=1_000_000,
    lua_requests=250_000,
    lua_codes=1_000_000,
    snapshot_codes=10_000_000,
    caller_codes=1_000_000,
    recovery_records=1_000_000,
    around_snapshot_seconds=1.0,
    repeats=2,
)
QUICK = Sizes(
    fsync_seconds=0.3,
    run_seconds=0.4,
    run_codes=30_000,
    batch_run_codes=60_000,
    coroutines=(800, 64),
    threads=16,
    batch=100,
    batch_callers=16,
    dict_ops=20_000,
    lua_requests=5_000,
    lua_codes=5_000,
    snapshot_codes=100_000,
    caller_codes=10_000,
    recovery_records=20_000,
    around_snapshot_seconds=0.2,
    repeats=1,
)


@dataclass(frozen=True)
class SinkSetup:
    """A store configuration measured: which sink and what its acknowledgement is worth."""

    label: str
    durability: str
    level: str
    """The guarantee level the store must report (``Guarantee.level``): proves what ran."""
    sink: str = "file"
    redis_url: str | None = None


FILE_SETUP = SinkSetup("file sink", "fdatasync per group commit", "no_loss")
LUA_CALLERS = "redis-benchmark 50 clients x P16"
NO_WAIT_IMPL = "engine in a file-sink store, no wait"


def redis_setup(persistence: str, port: int) -> SinkSetup:
    """The Redis sink on database 1 of the server on ``port`` (the Lua baseline uses 0)."""
    level = "no_loss" if persistence == "always" else "bounded_loss"
    url = f"redis://127.0.0.1:{port}/1"
    return SinkSetup("redis sink", f"appendfsync {persistence}", level, "redis", url)


@dataclass(frozen=True)
class Variant:
    """A caller form: ``kind`` is ``async``, ``threads``, ``batch`` (asyncio redeem_many) or
    ``yield`` (asyncio without waiting for durability: the event loop's ceiling, no ack)."""

    name: str
    kind: str
    callers: int
    batch: int = 1


@dataclass
class Run:
    """One measured sample of one (implementation, durability, callers) configuration."""

    impl: str
    durability: str
    callers: str
    unit: str
    rate: float
    ops: int
    seconds: float
    latency: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.impl, self.durability, self.callers)


@dataclass
class CallerRun:
    """What callers did: acknowledged operations (codes for the batch form), wall seconds,
    per-operation latencies, sampled ``(code index, redemption id)`` and any failed checks."""

    acked: int = 0
    seconds: float = 0.0
    loop_cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    samples: list[tuple[int, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# ----- helpers ---------------------------------------------------------------------------------


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000}


def filesystem_of(path: Path) -> dict[str, str]:
    """The mount point, device and type of the filesystem holding ``path`` (/proc/mounts)."""
    resolved = str(path.resolve())
    best = {"mount": "/", "device": "?", "type": "?"}
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        device, mount, fstype = line.split()[:3]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best["mount"]):
            best = {"mount": mount, "device": device, "type": fstype}
    return best


def store_config(setup: SinkSetup, data_dir: Path, namespace: str) -> StoreConfig:
    """A store with the given sink and periodic snapshots off."""
    return replace(
        SNAPSHOTS_OFF,
        data_dir=data_dir,
        sink=setup.sink,
        redis_url=setup.redis_url,
        redis_namespace=namespace,
    )


def load_codes(store: Store, sku: str, prefix: str, count: int, sold: bool) -> None:
    """Create ``sku`` with ``count`` single-use codes ``prefix + number`` (sold or not), durably."""
    store.engine.create_sku(sku, 1, True, None)
    import_all(store.engine, sku, prefix, count)
    if sold:
        sell_all(store.engine, sku)
    store.wait_visible(WAIT_LOAD_S)


@contextmanager
def redis_db_cleared(url: str | None) -> Iterator[None]:
    """Flushes the sink's Redis database afterwards, so runs do not pile up in Redis memory."""
    try:
        yield
    finally:
        if url is not None:
            import redis

            client = redis.Redis.from_url(url)
            try:
                client.flushdb()
            finally:
                client.close()


# ----- reference points ------------------------------------------------------------------------


def measure_raw_fsync(work_dir: Path, seconds: float) -> Run:
    """Append 4 KiB and fsync, in a loop, for ``seconds``; every write is checked in size."""
    block = os.urandom(FSYNC_BLOCK)
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cardsvc-fsync-", dir=work_dir) as tmp:
        path = Path(tmp) / "raw.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            start = time.perf_counter()
            deadline = start + seconds
            now = start
            while now < deadline:
                if os.write(fd, block) != FSYNC_BLOCK:
                    raise AssertionError("short write")
                os.fsync(fd)
                after = time.perf_counter()
                latencies.append(after - now)
                now = after
            elapsed = now - start
        finally:
            os.close(fd)
        size = path.stat().st_size
    ops = len(latencies)
    assert ops > 0 and size == ops * FSYNC_BLOCK, (ops, size)
    return Run(
        "raw write+fsync 4 KiB", "fsync per write", "1 thread", "ops/s", ops / elapsed, ops,
        elapsed, latency_summary(latencies), {"bytes": size},
    )  # fmt: skip


def frame(seq: int, payload: bytes) -> bytes:
    """One journal frame as the engine writes it (the CRC covers length, seq and payload)."""
    header = struct.pack("<IQ", len(payload), seq)
    crc = zlib.crc32(payload, zlib.crc32(header))
    return FRAME.pack(len(payload), seq, crc) + payload


def count_frames(data: bytes) -> int:
    """The number of valid frames in ``data``; raises on a bad one."""
    offset, seq = 0, 0
    while offset < len(data):
        length, got_seq, crc = FRAME.unpack_from(data, offset)
        payload = data[offset + FRAME.size : offset + FRAME.size + length]
        header = struct.pack("<IQ", length, got_seq)
        assert got_seq == seq + 1 and crc == zlib.crc32(payload, zlib.crc32(header)), offset
        seq, offset = got_seq, offset + FRAME.size + length
    return seq


def measure_dict_journal(work_dir: Path, ops: int) -> Run:
    """The dict baseline with a journal fsynced every ``GROUP_RECORDS`` records; ops/s counts
    redemptions acknowledged (covered by an fsync) per second, single thread."""
    table = DictCodeTable()
    codes, request_ids = code_texts("DJ", 0, ops), ref_texts("dj", 0, ops)
    table.import_codes("J", code_texts("DJ", 0, ops))
    table.allocate("J", ops, "prep")
    with tempfile.TemporaryDirectory(prefix="cardsvc-dictjournal-", dir=work_dir) as tmp:
        path = Path(tmp) / "journal.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            (starts, group_ends), seconds = timed(
                lambda: _dict_journal_loop(table, fd, codes, request_ids)
            )
        finally:
            os.close(fd)
        frames = count_frames(path.read_bytes())
    assert frames == ops and table.redemption_count == ops, (frames, table.redemption_count)
    assert table.verify(codes[-1]) == ("redeemed", 0)
    latencies = [group_ends[i // GROUP_RECORDS] - started for i, started in enumerate(starts)]
    return Run(
        "Python dict + journal", f"fsync every {GROUP_RECORDS:,} records", "1 thread", "ops/s",
        ops / seconds, ops, seconds, latency_summary(latencies), {"fsyncs": len(group_ends)},
    )  # fmt: skip


def _dict_journal_loop(
    table: DictCodeTable, fd: int, codes: list[str], request_ids: list[str]
) -> tuple[list[float], list[float]]:
    redeem, clock = table.redeem, time.perf_counter
    buffer = bytearray()
    starts: list[float] = []
    group_ends: list[float] = []
    for seq, (code, request_id) in enumerate(zip(codes, request_ids, strict=True), 1):
        starts.append(clock())
        result = redeem(code, request_id, TERMINAL)
        if result[2] != 0:
            raise AssertionError(f"uses left {result[2]}")
        payload = f"{code}|{request_id}|{TERMINAL}|{result[2]}|{result[3]}".encode()
        buffer += frame(seq, payload)
        if seq % GROUP_RECORDS == 0 or seq == len(codes):
            os.write(fd, buffer)
            os.fsync(fd)
            buffer.clear()
            group_ends.append(clock())
    return starts, group_ends


def measure_lua(lua: LuaBench, persistence: str, repeat: int) -> Run:
    """One redis-benchmark run of the redeem script (checked by ``LuaBench``)."""
    out = lua.measure_redeem(repeat)
    calls = int(out["calls"])
    rps = float(out["rps"])
    return Run(
        "Redis + Lua", f"appendfsync {persistence}", LUA_CALLERS, "ops/s",
        rps, calls, calls / rps, {}, {"redemptions": out["redemptions"]},
    )  # fmt: skip


# ----- durable redeems through the store -------------------------------------------------------


async def _async_callers(
    store: Store, variant: Variant, codes: list[str], request_ids: list[str], seconds: float
) -> CallerRun:
    """``variant.callers`` coroutines redeeming distinct codes and awaiting durability."""
    engine, out = store.engine, CallerRun()
    redeem, redeem_many = engine.redeem, engine.redeem_many
    last_ticket, wait_async, clock = Engine.last_ticket, store.wait_async, time.perf_counter
    step, total = variant.batch, len(codes)
    stride = max(1, total // step // SAMPLE_CHECKS)
    cursor = 0
    deadline = clock() + seconds

    async def single() -> None:
        nonlocal cursor
        while cursor < total and clock() < deadline:
            i = cursor
            cursor += 1
            started = clock()
            result = redeem(codes[i], request_ids[i], TERMINAL)
            if wait:
                await wait_async(last_ticket())
            else:
                await asyncio.sleep(0)
            out.latencies.append(clock() - started)
            if result.uses_left != 0:
                out.failures.append(f"{i}: uses_left {result.uses_left}")
            if i % stride == 0:
                out.samples.append((i, result.redemption_id))

    async def batch() -> None:
        nonlocal cursor
        while cursor + step <= total and clock() < deadline:
            i = cursor
            cursor += step
            started = clock()
            results = redeem_many(codes[i : i + step], request_ids[i : i + step], TERMINAL)
            await wait_async(last_ticket())
            out.latencies.append(clock() - started)
            if results.ok_count != step or any(u != 0 for u in results.uses_left()):
                out.failures.append(f"{i}: {results.ok_count} ok, {results.error_codes()[:3]}")
            if (i // step) % stride == 0:
                redemption_id = results.redemption_ids()[0]
                out.samples.append((i, redemption_id if redemption_id is not None else -1))

    body = batch if variant.kind == "batch" else single
    wait = variant.kind != "yield"
    started, cpu_started = clock(), time.thread_time()
    await asyncio.gather(*(body() for _ in range(variant.callers)))
    out.seconds = clock() - started
    out.loop_cpu_seconds = time.thread_time() - cpu_started
    out.acked = len(out.latencies) * step
    return out


def run_async(
    store: Store, variant: Variant, codes: list[str], request_ids: list[str], seconds: float
) -> CallerRun:
    """The asyncio forms, run on a fresh event loop with the collector off."""
    out, _ = timed(lambda: asyncio.run(_async_callers(store, variant, codes, request_ids, seconds)))
    return out


def run_thread_callers(
    store: Store, variant: Variant, codes: list[str], request_ids: list[str], seconds: float
) -> CallerRun:
    """``variant.callers`` threads, each redeeming then ``store.wait_last()``, in a loop."""
    engine, counter, clock = store.engine, itertools.count(), time.perf_counter
    total = len(codes)
    stride = max(1, total // SAMPLE_CHECKS)
    parts = [CallerRun() for _ in range(variant.callers)]
    deadline = [0.0]

    def work(part: CallerRun) -> Callable[[], None]:
        def body() -> None:
            redeem, wait_last = engine.redeem, store.wait_last
            # Each thread does at least one call: on a loaded machine a thread may first run
            # after the deadline, and a run with nothing acknowledged would prove nothing.
            first = True
            while first or clock() < deadline[0]:
                first = False
                i = next(counter)
                if i >= total:
                    return
                started = clock()
                result = redeem(codes[i], request_ids[i], TERMINAL)
                wait_last()
                part.latencies.append(clock() - started)
                if result.uses_left != 0:
                    part.failures.append(f"{i}: uses_left {result.uses_left}")
                if i % stride == 0:
                    part.samples.append((i, result.redemption_id))

        return body

    deadline[0] = clock() + seconds  # the threads are released together right after this
    seconds_taken = run_threads([work(part) for part in parts])
    out = CallerRun(seconds=seconds_taken)
    for part in parts:
        out.latencies += part.latencies
        out.samples += part.samples
        out.failures += part.failures
    out.acked = len(out.latencies)
    return out


RUNNERS: dict[str, Callable[[Store, Variant, list[str], list[str], float], CallerRun]] = {
    "async": run_async,
    "batch": run_async,
    "yield": run_async,
    "threads": run_thread_callers,
}


def check_reopened(
    config: StoreConfig, digest: bytes, out: CallerRun, codes: list[str], request_ids: list[str]
) -> None:
    """The reopened store holds exactly the acknowledged redemptions (raises AssertionError)."""
    with Store.open(config) as reopened:
        engine = reopened.engine
        assert engine.state_digest() == digest, "state after reopen differs"
        assert engine.stock(SKU)["redeemed"] == out.acked, (engine.stock(SKU), out.acked)
        for i, redemption_id in out.samples:
            redemption = engine.get_redemption(redemption_id)
            assert redemption.request_id == request_ids[i], (i, redemption.request_id)
            assert redemption.uses_left == 0
            info = engine.code_info(engine.lookup(codes[i]))
            assert info.state == "redeemed" and redemption_id in info.redemption_ids, i
        if out.acked < len(codes):  # the first code past the acknowledged ones is untouched
            assert engine.code_info(engine.lookup(codes[out.acked])).state == "allocated"


def measure_store(
    setup: SinkSetup, variant: Variant, codes_count: int, seconds: float, work_dir: Path
) -> Run:
    """One durable-redeem configuration on a fresh store, checked before and after reopening."""
    tag = f"{setup.sink}-{variant.kind}-{variant.callers}-{time.monotonic_ns()}"
    codes, request_ids = code_texts("DC", 0, codes_count), ref_texts(f"rq{tag}", 0, codes_count)
    with (
        tempfile.TemporaryDirectory(prefix="cardsvc-durable-", dir=work_dir) as tmp,
        redis_db_cleared(setup.redis_url),
    ):
        config = store_config(setup, Path(tmp) / "data", f"bench-{tag}")
        store = Store.open(config)
        try:
            load_codes(store, SKU, "DC", codes_count, sold=True)
            flushes_before = store.flushes
            out = RUNNERS[variant.kind](store, variant, codes, request_ids, seconds)
            flushes = store.flushes - flushes_before
            assert not out.failures, out.failures[:5]
            assert out.acked > 0 and store.engine.stock(SKU)["redeemed"] == out.acked
            store.wait_visible()
            digest = store.engine.state_digest()
            guarantee = store.guarantee.level
            assert guarantee == setup.level, (setup, store.guarantee)
        finally:
            store.close()
        check_reopened(config, digest, out, codes, request_ids)
    unit = "codes/s" if variant.kind == "batch" else "ops/s"
    waits = len(out.latencies)
    return Run(
        setup.label, setup.durability, variant.name, unit, out.acked / out.seconds, out.acked,
        out.seconds, latency_summary(out.latencies),
        {
            "flushes": flushes,
            "waits_per_flush": (
                round(waits / max(flushes, 1), 1) if variant.kind != "yield" else None
            ),
            "guarantee": guarantee,
            "codes_loaded": codes_count,
            "stopped_by": "codes" if out.acked + variant.batch > codes_count else "time",
            "checked_after_reopen": len(out.samples),
            "loop_thread_cpu_us_per_op": (
                round(out.loop_cpu_seconds * 1e6 / out.acked, 2)
                if variant.kind != "threads"
                else None
            ),
        },
    )  # fmt: skip


def variants(sizes: Sizes) -> list[Variant]:
    """The caller forms measured for every sink."""
    forms = [Variant(f"asyncio {n}", "async", n) for n in sizes.coroutines]
    forms.append(Variant(f"{sizes.threads} threads", "threads", sizes.threads))
    forms.append(
        Variant(
            f"asyncio {sizes.batch_callers} x redeem_many {sizes.batch}",
            "batch",
            sizes.batch_callers,
            sizes.batch,
        )
    )
    return forms


def measure_sink(setup: SinkSetup, sizes: Sizes, work_dir: Path) -> list[Run]:
    """Every caller form on one sink setup; for the file sink first the no-wait ceiling."""
    runs: list[Run] = []
    forms = variants(sizes)
    if setup is FILE_SETUP:
        callers = sizes.coroutines[0]
        forms.insert(0, Variant(f"asyncio {callers}", "yield", callers))
    for variant in forms:
        codes_count = sizes.batch_run_codes if variant.kind == "batch" else sizes.run_codes
        run = measure_store(setup, variant, codes_count, sizes.run_seconds, work_dir)
        if variant.kind == "yield":
            run.impl, run.durability = NO_WAIT_IMPL, "none: await asyncio.sleep(0), no ack"
        log(
            f"{run.impl} ({run.durability}) {variant.name}: {run.rate:,.0f} {run.unit}, "
            f"p50 {run.latency['p50_ms']:.2f} ms, p99 {run.latency['p99_ms']:.2f} ms, "
            f"{run.info['waits_per_flush'] or '-'} waits/flush"
        )
        runs.append(run)
    return runs


# ----- snapshot pause and recovery -------------------------------------------------------------


@dataclass
class Calls:
    """One caller thread's calls: (start, end) per engine call and per acknowledged redeem."""

    engine_calls: list[tuple[float, float]] = field(default_factory=list)
    acks: list[tuple[float, float]] = field(default_factory=list)
    redeemed: int = 0
    failures: list[str] = field(default_factory=list)


def snapshot_callers(
    store: Store, codes: list[str], stop: threading.Event
) -> tuple[list[threading.Thread], list[Calls]]:
    """Start ``SNAPSHOT_CALLERS`` threads looping redeem + wait_last + verify until ``stop``."""
    engine, counter, clock = store.engine, itertools.count(), time.perf_counter
    request_ids = ref_texts("snap", 0, len(codes))
    calls = [Calls() for _ in range(SNAPSHOT_CALLERS)]

    def body(mine: Calls) -> None:
        while not stop.is_set():
            i = next(counter)
            if i >= len(codes):
                return
            started = clock()
            result = engine.redeem(codes[i], request_ids[i], TERMINAL)
            redeemed = clock()
            store.wait_last()
            acked = clock()
            status = engine.verify(codes[(i * 7919) % len(codes)]).status
            verified = clock()
            mine.redeemed += 1
            mine.engine_calls += [(started, redeemed), (acked, verified)]
            mine.acks.append((started, acked))
            if result.uses_left != 0 or status not in ("valid", "redeemed"):
                mine.failures.append(f"{i}: uses_left {result.uses_left}, status {status}")

    threads = [
        threading.Thread(target=body, args=(mine,), name=f"snapshot-caller-{k}", daemon=True)
        for k, mine in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    return threads, calls


def window_max_ms(calls: list[tuple[float, float]], start: float, end: float) -> dict[str, float]:
    """The longest call overlapping [start, end] and the longest wholly outside it, in ms."""
    inside = [(b - a, a) for a, b in calls if b > start and a < end]
    outside = [b - a for a, b in calls if b <= start or a >= end]
    worst, worst_at = max(inside, default=(0.0, start))
    return {
        "max_in_ms": worst * 1000,
        "max_in_started_at_ms": (worst_at - start) * 1000,
        "max_out_ms": max(outside, default=0.0) * 1000,
        "calls_in": float(len(inside)),
        "p99_out_ms": latency_summary(outside).get("p99_ms", 0.0),
    }


def measure_snapshot_pause(store: Store, codes: list[str], around_s: float) -> dict[str, Any]:
    """Callers run ``around_s`` before, during and ``around_s`` after ``snapshot_now``."""
    stop = threading.Event()
    threads, calls = snapshot_callers(store, codes, stop)
    try:
        time.sleep(around_s)
        started = time.perf_counter()
        seq = store.snapshot_now()
        ended = time.perf_counter()
        time.sleep(around_s)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a snapshot caller hangs"
    failures = [f for mine in calls for f in mine.failures]
    assert not failures, failures[:5]
    engine_calls = [c for mine in calls for c in mine.engine_calls]
    acks = [c for mine in calls for c in mine.acks]
    redeemed = sum(mine.redeemed for mine in calls)
    assert store.engine.stock("LIVE")["redeemed"] == redeemed
    engine_window = window_max_ms(engine_calls, started, ended)
    ack_window = window_max_ms(acks, started, ended)
    snapshots = dict(store.sink.stats().snapshots)
    return {
        "seq": seq,
        "seconds": ended - started,
        "bytes": snapshots[seq],
        "engine_pause_ms": store.last_snapshot_pause_ms,
        "stall_ms": max(engine_window["max_in_ms"], ack_window["max_in_ms"]),
        "engine_call": engine_window,
        "ack": ack_window,
        "redeemed": redeemed,
        "callers": SNAPSHOT_CALLERS,
    }


def apply_records(store: Store, codes: list[str]) -> dict[str, float]:
    """Redeem ``codes`` with redeem_many of ``RECORD_BATCH``, each batch waited for."""
    engine = store.engine
    request_ids = ref_texts("rec", 0, len(codes))
    seq_before = engine.next_seq()
    started = time.perf_counter()
    for i in range(0, len(codes), RECORD_BATCH):
        results = engine.redeem_many(
            codes[i : i + RECORD_BATCH], request_ids[i : i + RECORD_BATCH], TERMINAL
        )
        store.wait_last(WAIT_LOAD_S)
        assert results.ok_count == len(results), results.error_codes()[:3]
    seconds = time.perf_counter() - started
    records = engine.next_seq() - seq_before
    assert records == len(codes), (records, len(codes))
    return {"records": records, "seconds": seconds, "codes_per_s": records / seconds}


def time_recovery(config: StoreConfig, digest: bytes, codes: int) -> dict[str, Any]:
    """Open (recover) the store, timed; its state must equal the one before closing."""
    started = time.perf_counter()
    store = Store.open(config)
    seconds = time.perf_counter() - started
    try:
        assert store.engine.state_digest() == digest, "recovered state differs"
        assert store.engine.code_count() == codes
        report = store.recovery.to_dict()
    finally:
        store.close()
    return {"open_seconds": seconds, **report}


def measure_snapshot_and_recovery(sizes: Sizes, work_dir: Path) -> dict[str, Any]:
    """Snapshot pause with ``snapshot_codes`` codes, then recovery after more journal records."""
    live = sizes.caller_codes + sizes.recovery_records
    bulk = sizes.snapshot_codes - live
    assert bulk > 0, "--codes must exceed the caller codes plus the journal records"
    with tempfile.TemporaryDirectory(prefix="cardsvc-snapshot-", dir=work_dir) as tmp:
        config = store_config(FILE_SETUP, Path(tmp) / "data", "snap")
        store = Store.open(config)
        try:
            started = time.perf_counter()
            load_codes(store, "BULK", "SB", bulk, sold=False)
            load_codes(store, "LIVE", "SL", live, sold=True)
            load_seconds = time.perf_counter() - started
            log(f"snapshot test: {sizes.snapshot_codes:,} codes loaded in {load_seconds:.1f} s")
            codes = code_texts("SL", 0, live)
            snapshot = measure_snapshot_pause(
                store, codes[: sizes.caller_codes], sizes.around_snapshot_seconds
            )
            log(f"snapshot: {snapshot['seconds']:.2f} s, stall {snapshot['stall_ms']:.1f} ms")
            used = snapshot["redeemed"]
            records = apply_records(store, codes[used : used + sizes.recovery_records])
            store.wait_visible(WAIT_LOAD_S)
            digest, count = store.engine.state_digest(), store.engine.code_count()
            journal_bytes = store.sink.stats().journal_bytes
        finally:
            store.close()
        assert count == sizes.snapshot_codes, count
        recovery = time_recovery(config, digest, count)
        log(f"recovery: {recovery['open_seconds']:.2f} s, {recovery['records_replayed']:,} records")
    return {
        "codes": count,
        "load_seconds": load_seconds,
        "snapshot": snapshot,
        "journal_after_snapshot": records | {"journal_bytes_on_disk": journal_bytes},
        "recovery": recovery,
    }


# ----- report ----------------------------------------------------------------------------------


def best_runs(runs: list[Run]) -> dict[tuple[str, str, str], Run]:
    """Per configuration, the sample with the highest rate (its latencies come with it)."""
    best: dict[tuple[str, str, str], Run] = {}
    for run in runs:
        if run.key not in best or run.rate > best[run.key].rate:
            best[run.key] = run
    return best


def lua_for(best: dict[tuple[str, str, str], Run], durability: str) -> Run | None:
    """The Redis + Lua figure under the same fsync setting (``always`` for the file sink)."""
    setting = durability if durability.startswith("appendfsync") else "appendfsync always"
    return best.get(("Redis + Lua", setting, LUA_CALLERS))


def targets(best: dict[tuple[str, str, str], Run], snapshot: dict[str, Any] | None) -> list[Target]:
    """Issue 3's targets that this run has figures for."""
    out: list[Target] = []
    raw = best.get(("raw write+fsync 4 KiB", "fsync per write", "1 thread"))
    lua = best.get(("Redis + Lua", "appendfsync always", LUA_CALLERS))
    file = best.get(("file sink", FILE_SETUP.durability, HEADLINE))
    redis = best.get(("redis sink", "appendfsync always", HEADLINE))
    if file and lua:
        name = f"file sink ({HEADLINE}) / Redis + Lua always"
        out.append(Target(name, file.rate / lua.rate, 5.0, "x"))
    if file and raw:
        name = f"file sink ({HEADLINE}) / raw fsync"
        out.append(Target(name, file.rate / raw.rate, 50.0, "x"))
    if redis and lua:
        name = f"redis sink always ({HEADLINE}) / Redis + Lua always"
        out.append(Target(name, redis.rate / lua.rate, 3.0, "x"))
    if snapshot is not None:
        codes = f"{snapshot['codes']:,}"
        stall = snapshot["snapshot"]["stall_ms"]
        name = f"longest caller stall during a snapshot of {codes} codes"
        out.append(Target(name, stall, 50.0, "ms", at_most=True))
        recovery = snapshot["recovery"]
        name = f"recovery (Store.open) of {codes} codes + {recovery['records_replayed']:,} records"
        out.append(Target(name, recovery["open_seconds"], 10.0, "s", at_most=True))
    return out


def fmt(value: float | None, unit: str) -> str:
    """A figure for the tables in its unit."""
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:,.2f}x"
    if unit == "ms":
        return f"{value:,.1f} ms" if value >= 10 else f"{value:,.2f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "us":
        return f"{value:,.2f} µs"
    return f"{value:,.0f}"


def figures_markdown(best: dict[tuple[str, str, str], Run]) -> list[str]:
    raw = best.get(("raw write+fsync 4 KiB", "fsync per write", "1 thread"))
    lines = [
        "| implementation | durability | callers | acknowledged | unit | p50 | p99 | max "
        "| waits / flush | loop-thread CPU / op | / Redis + Lua (same fsync) | / raw fsync |",
        "|---|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in best.values():
        lua = lua_for(best, run.durability) if run.impl in ("file sink", "redis sink") else None
        cells = [
            run.impl, run.durability, run.callers, fmt(run.rate, run.unit), run.unit,
            fmt(run.latency.get("p50_ms"), "ms"), fmt(run.latency.get("p99_ms"), "ms"),
            fmt(run.latency.get("max_ms"), "ms"), str(run.info.get("waits_per_flush") or "-"),
            fmt(run.info.get("loop_thread_cpu_us_per_op"), "us"),
            fmt(run.rate / lua.rate if lua else None, "x"),
            fmt(run.rate / raw.rate if raw and run.impl not in (raw.impl, NO_WAIT_IMPL) else None,
                "x"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def snapshot_markdown(snapshot: dict[str, Any]) -> list[str]:
    snap, rec = snapshot["snapshot"], snapshot["recovery"]
    engine, ack = snap["engine_call"], snap["ack"]
    records = snapshot["journal_after_snapshot"]
    rows = [
        ("codes in the engine", f"{snapshot['codes']:,}"),
        ("snapshot_now() total (engine snapshot + durable write + trim)",
         fmt(snap["seconds"], "s")),
        ("snapshot size", f"{snap['bytes'] / 1e6:,.1f} MB"),
        ("engine.snapshot() call (last_snapshot_pause_ms)", fmt(snap["engine_pause_ms"], "ms")),
        (f"longest engine call during the snapshot ({int(engine['calls_in']):,} calls)",
         f"{fmt(engine['max_in_ms'], 'ms')} from {fmt(engine['max_in_started_at_ms'], 'ms')} in"),
        ("longest engine call outside it / p99 outside",
         f"{fmt(engine['max_out_ms'], 'ms')} / {fmt(engine['p99_out_ms'], 'ms')}"),
        (f"longest redeem + wait_last during the snapshot ({int(ack['calls_in']):,} acks)",
         f"{fmt(ack['max_in_ms'], 'ms')} from {fmt(ack['max_in_started_at_ms'], 'ms')} in"),
        ("longest redeem + wait_last outside it / p99 outside",
         f"{fmt(ack['max_out_ms'], 'ms')} / {fmt(ack['p99_out_ms'], 'ms')}"),
        ("journal records after the snapshot (redeem_many of 10,000, waited)",
         f"{records['records']:,} in {fmt(records['seconds'], 's')}"),
        ("recovery: Store.open", fmt(rec["open_seconds"], "s")),
        ("recovery: records replayed / codes",
         f"{rec['records_replayed']:,} / {rec['codes']:,}"),
    ]  # fmt: skip
    return ["| snapshot and recovery | value |", "|---|--:|"] + [
        f"| {name} | {value} |" for name, value in rows
    ]


def targets_markdown(checks: list[Target], snapshot: dict[str, Any] | None) -> list[str]:
    lines = ["| target | measured | threshold | result |", "|---|--:|--:|---|"]
    for check in checks:
        op = "<" if check.at_most else ">="
        value = fmt(check.value, check.unit)
        if check.unit == "ms" and snapshot is not None:
            value += f" (engine.snapshot() {fmt(snapshot['snapshot']['engine_pause_ms'], 'ms')})"
        lines.append(
            f"| {check.name} | {value} | {op} {fmt(check.threshold, check.unit)} "
            f"| {'PASS' if check.passed else 'MISS'} |"
        )
    return lines


def markdown(
    best: dict[tuple[str, str, str], Run], snapshot: dict[str, Any] | None, checks: list[Target]
) -> str:
    """The figures, the snapshot and recovery figures, and the targets, as markdown."""
    lines = figures_markdown(best)
    if snapshot is not None:
        lines += ["", *snapshot_markdown(snapshot)]
    lines += ["", *targets_markdown(checks, snapshot)]
    return "\n".join(lines)


# ----- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="durable redeems, snapshot pause, recovery")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--codes", type=int, help="codes for the snapshot test (default 10M)")
    parser.add_argument("--records", type=int, help="journal records for recovery (default 1M)")
    parser.add_argument("--run-seconds", type=float, help="time bound per store configuration")
    parser.add_argument("--repeats", type=int, help="samples per configuration (best reported)")
    parser.add_argument("--no-redis", action="store_true", help="skip Redis (sink and baseline)")
    parser.add_argument("--no-snapshot", action="store_true", help="skip snapshot and recovery")
    parser.add_argument("--work-dir", type=Path, help="parent of the data directories (TMPDIR)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "durability.json")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    overrides = {
        "snapshot_codes": args.codes,
        "recovery_records": args.records,
        "run_seconds": args.run_seconds,
        "repeats": args.repeats,
    }
    return replace(sizes, **{k: v for k, v in overrides.items() if v is not None})


def measure_with_redis(sizes: Sizes, work_dir: Path, implementations: dict[str, Any]) -> list[Run]:
    """Redis + Lua and the Redis sink under appendfsync always and everysec, with the file sink
    between them, interleaved per repeat so that machine noise hits them alike."""
    server_path = find_redis_server()
    bench_path = find_redis_benchmark(server_path) if server_path else None
    if server_path is None or bench_path is None:
        raise SystemExit("redis-server/redis-benchmark not found (use --no-redis to skip)")
    runs: list[Run] = []
    with RedisServer(server_path, "always") as always, RedisServer(server_path, "everysec") as sec:
        servers = {"always": always, "everysec": sec}
        luas = {
            mode: LuaBench.prepare(
                server, bench_path, sizes.lua_requests, sizes.repeats, sizes.lua_codes
            )
            for mode, server in servers.items()
        }
        for mode, lua in luas.items():
            info = lua.server_info()
            assert info["config"]["appendonly"] == "yes", info
            assert info["config"]["appendfsync"] == mode, info
            implementations[f"redis_{mode}"] = info
        for repeat in range(sizes.repeats):
            for mode, server in servers.items():
                runs.append(measure_lua(luas[mode], mode, repeat))
                log(f"Redis + Lua appendfsync {mode}: {runs[-1].rate:,.0f} ops/s")
                if mode == "always":
                    runs += measure_sink(FILE_SETUP, sizes, work_dir)
                runs += measure_sink(redis_setup(mode, server.port), sizes, work_dir)
    return runs


def measure_all(
    args: argparse.Namespace, sizes: Sizes, work_dir: Path, implementations: dict[str, Any]
) -> tuple[list[Run], dict[str, Any] | None]:
    runs = [measure_raw_fsync(work_dir, sizes.fsync_seconds)]
    log(f"raw fsync: {runs[-1].rate:,.0f} ops/s")
    runs.append(measure_dict_journal(work_dir, sizes.dict_ops))
    log(f"dict + journal: {runs[-1].rate:,.0f} ops/s")
    if args.no_redis:
        for _ in range(sizes.repeats):
            runs += measure_sink(FILE_SETUP, sizes, work_dir)
    else:
        runs += measure_with_redis(sizes, work_dir, implementations)
    snapshot = None if args.no_snapshot else measure_snapshot_and_recovery(sizes, work_dir)
    return runs, snapshot


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    work_dir = args.work_dir or Path(tempfile.gettempdir())
    work_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_description() | {"filesystem": filesystem_of(work_dir)}
    implementations: dict[str, Any] = {
        "engine": engine_identity(),
        "python": sys.version.split()[0],
    }
    runs, snapshot = measure_all(args, sizes, work_dir, implementations)
    machine["loadavg_1min_end"] = load_average()
    best = best_runs(runs)
    checks = targets(best, snapshot)
    table = markdown(best, snapshot, checks) + (
        f"\n\nLoad average (1 min) at start / end: {machine['loadavg_1min']:.2f} / "
        f"{machine['loadavg_1min_end']:.2f} on {machine['nproc']} CPUs; data directories on "
        f"{machine['filesystem']['type']} ({machine['filesystem']['device']})."
    )
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine,
        "args": {k: str(v) for k, v in vars(args).items()},
        "sizes": asdict(sizes),
        "implementations": implementations,
        "runs": [asdict(run) for run in runs],
        "snapshot_and_recovery": snapshot,
        "targets": [asdict(t) | {"passed": t.passed} for t in checks],
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
