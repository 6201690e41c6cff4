"""Damaged journals and snapshots: a correct recovery or a refusal that names the damage.

Goal: prove the recovery rules of DESIGN.md and docs/durability.md. Recovery starts from the latest
valid snapshot and replays the journal after it. A torn or corrupt tail is cut at the last whole
record and reported. A corrupt snapshot falls back to the previous one. A bad record with records
after it, or a missing range of records, stops start-up with JOURNAL_CORRUPT naming the segment (or
stream entry) and the offset or missing range. ``recover_check`` and ``cardsvc recover --check``
report the same and change no byte. A locked data directory refuses a second opener with
DATA_DIR_LOCKED. Never may recovery silently produce a state that differs from what was
acknowledged.

Method: ``build`` runs a fixed, seeded history through a real ``Store``: SKUs, imports,
allocations, holds, redemptions and rollbacks, two snapshots, then more traffic. It uses small
journal segments (``SEGMENT_BYTES``), so several segments follow the newest snapshot. After every
operation it waits for durability and records ``state_digest()`` under the last sequence number,
which gives the exact expected state of every acknowledged prefix. The test then damages the
stored bytes: it truncates a frame, flips a byte in a frame's length, sequence number, checksum or
payload, flips a byte in a snapshot, or deletes a segment or stream entry. It reopens and compares
the outcome with the digests and with the consistency checks of ``checks``. Frames are parsed here
independently of the core (``[len u32][seq u64][crc32 u32][payload]``). The Redis variants make
the same damage in the journal stream of a private Redis (the session ``redis_server``, one
namespace per test).
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
import redis
from rich.console import Console

from cardsvc import cli
from cardsvc.engine import Engine
from cardsvc.engine.store import RecoveryReport, Store, StoreConfig, recover_check
from cardsvc.errors import CardsvcError, ErrorCode

from .checks import check_consistency

REPO_ROOT = Path(__file__).resolve().parents[2]
SEGMENT_BYTES = 1024
"""Small segments: the history below spreads over a dozen of them."""
FRAME_HEADER = struct.Struct("<IQI")
USES_BY_SKU = {"ONE": 1, "MULTI": 3, "FREE": 1}

pytestmark = pytest.mark.timeout(60)


class _Server(Protocol):
    # The shape of conftest.RedisServer (conftest modules are not imported by name).
    @property
    def url(self) -> str: ...


# ----- building a data directory with a known history ------------------------------------------


@dataclass
class Built:
    """A closed data directory and the exact state after every acknowledged operation."""

    config: StoreConfig
    digests: dict[int, bytes]
    snapshot_seqs: list[int]
    last_seq: int

    @property
    def final_digest(self) -> bytes:
        return self.digests[self.last_seq]


def store_config(
    data_dir: Path, sink: str = "file", redis_url: str | None = None, namespace: str = "t"
) -> StoreConfig:
    return StoreConfig(
        data_dir=data_dir,
        sink=sink,
        redis_url=redis_url,
        redis_namespace=namespace,
        snapshot_every_records=1 << 40,
        snapshot_every_seconds=1e9,
        segment_bytes_max=SEGMENT_BYTES,
    )


class History:
    """Seeded operations on an open store; each waits for durability and records the digest."""

    def __init__(self, store: Store, seed: int) -> None:
        self.store = store
        self.engine = store.engine
        self.rng = random.Random(seed)
        self.digests: dict[int, bytes] = {}
        self.sold: list[str] = []
        self.redemptions: list[int] = []
        self.n = 0

    def step(self, operation: Callable[[], object]) -> None:
        operation()
        self.store.wait_last()
        self.digests[self.engine.next_seq() - 1] = self.engine.state_digest()

    def setup(self) -> None:
        for sku, uses in USES_BY_SKU.items():
            codes = [f"{sku}-{i:04d}" for i in range(120)]
            self.step(partial(self.engine.create_sku, sku, uses, sku != "FREE"))
            self.step(partial(self.engine.import_codes, sku, codes))
        self.sold += [f"FREE-{i:04d}" for i in range(120)]

    def allocate(self) -> None:
        sku = self.rng.choice(("ONE", "MULTI"))
        ids = self.engine.allocate(sku, self.rng.randint(1, 2), f"o-{self.n}")
        self.sold += [self.text_of(code_id) for code_id in ids]

    def text_of(self, code_id: int) -> str:
        info = self.engine.code_info(code_id)
        return f"{info.sku}-{code_id % 4096:04d}"

    def redeem(self) -> None:
        code = self.rng.choice(self.sold)
        try:
            redemption = self.engine.redeem(code, f"r-{self.n}", "t-1")
        except CardsvcError as error:
            assert error.code is ErrorCode.ALREADY_REDEEMED, error
            return
        self.redemptions.append(redemption.redemption_id)

    def hold(self) -> None:
        hold = self.engine.hold("ONE", 1, hold_ref=f"h-{self.n}", ttl_seconds=3600)
        if self.rng.random() < 0.5:
            self.engine.confirm_hold(hold.hold_ref, f"c-{self.n}")
        else:
            self.engine.release_hold(hold.hold_ref)

    def rollback(self) -> None:
        if self.redemptions:
            self.engine.rollback(self.redemptions.pop(0), "test")

    def traffic(self, ops: int) -> None:
        choices = (self.allocate, self.allocate, self.redeem, self.redeem, self.hold, self.rollback)
        for _ in range(ops):
            self.n += 1
            self.step(self.rng.choice(choices))

    def end_with_single_record(self) -> None:
        """A final allocation: exactly one record, so cutting it leaves an acknowledged prefix."""
        self.n += 1
        self.step(self.allocate)


def build(config: StoreConfig, seed: int = 7) -> Built:
    """Runs the history: set-up, traffic, snapshot, traffic, snapshot, traffic."""
    with Store.open(config) as store:
        history = History(store, seed)
        history.setup()
        history.traffic(40)
        first = store.snapshot_now()
        history.traffic(40)
        second = store.snapshot_now()
        history.traffic(60)
        history.end_with_single_record()
        last_seq = store.engine.next_seq() - 1
    assert first < second < last_seq
    return Built(config, history.digests, [first, second], last_seq)


# ----- the file sink's bytes ----------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    offset: int
    size: int
    seq: int


def parse_frames(data: bytes) -> list[Frame]:
    """The frames of a whole segment, checked against the documented layout."""
    frames: list[Frame] = []
    offset = 0
    while offset < len(data):
        length, seq, _ = FRAME_HEADER.unpack_from(data, offset)
        size = FRAME_HEADER.size + length
        assert offset + size <= len(data), "the built journal must be whole"
        frames.append(Frame(offset, size, seq))
        offset += size
    return frames


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "journal").glob("*.seg"))


def segments_after_snapshot(built: Built) -> list[Path]:
    """Segments holding only records after the newest snapshot."""
    newest = built.snapshot_seqs[-1]
    after = [p for p in segments(built.config.data_dir) if int(p.stem) > newest]
    assert len(after) >= 3, f"the history must span several segments after the snapshot: {after}"
    return after


def stored_bytes(data_dir: Path) -> dict[str, bytes]:
    """Every stored file except the lock file (which records the opener's pid)."""
    return {
        str(p.relative_to(data_dir)): p.read_bytes()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and p.name != "LOCK"
    }


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def open_error(config: StoreConfig) -> CardsvcError:
    with pytest.raises(CardsvcError) as caught:
        Store.open(config).close()
    return caught.value


def check_error(config: StoreConfig) -> CardsvcError:
    with pytest.raises(CardsvcError) as caught:
        recover_check(config)
    return caught.value


def assert_recovers_exactly(config: StoreConfig, digest: bytes) -> RecoveryReport:
    with Store.open(config) as store:
        assert store.engine.state_digest() == digest
        check_consistency(store.engine, USES_BY_SKU)
        return store.recovery


@pytest.fixture
def built(tmp_path: Path) -> Built:
    return build(store_config(tmp_path / "data"))


# ----- (a) a torn tail is cut at the last whole record and reported -------------------------


@pytest.mark.parametrize("kept", ["header", "payload"])
def test_truncated_last_record_is_cut_reported_and_leaves_the_acknowledged_prefix(
    built: Built, kept: str
) -> None:
    data_dir = built.config.data_dir
    last = segments(data_dir)[-1]
    frame = parse_frames(last.read_bytes())[-1]
    keep = 7 if kept == "header" else frame.size - 3
    os.truncate(last, frame.offset + keep)
    expected_tail = {"source": last.name, "offset": frame.offset, "bytes_cut": keep}

    before = stored_bytes(data_dir)
    report = recover_check(built.config)
    assert stored_bytes(data_dir) == before, "recover_check changed stored bytes"
    assert report.torn_tail is not None
    assert {k: report.torn_tail[k] for k in expected_tail} == expected_tail
    assert report.torn_tail["cut"] is False

    assert frame.seq == built.last_seq and frame.seq - 1 in built.digests
    report = assert_recovers_exactly(built.config, built.digests[frame.seq - 1])
    assert report.torn_tail is not None and report.torn_tail["cut"] is True
    assert report.last_seq == frame.seq - 1
    assert last.stat().st_size == frame.offset if last.exists() else frame.offset == 0

    # The cut journal takes new records, and the next start finds nothing to cut.
    with Store.open(built.config) as store:
        store.engine.allocate("ONE", 1, "after-cut")
        store.wait_last()
        digest = store.engine.state_digest()
    report = assert_recovers_exactly(built.config, digest)
    assert report.torn_tail is None and report.last_seq == frame.seq


# ----- (b) a bad record with records after it stops start-up, naming segment and offset ------

FIELD_OFFSETS = {"len": 1, "seq": 4, "crc": 13, "payload": FRAME_HEADER.size + 1}
"""Where in a frame the flipped byte lands (``len`` is its second byte, which keeps the length
within ``PAYLOAD_MAX`` but past the end of the segment)."""


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("middle segment", "payload"),
        ("middle segment", "len"),
        ("last segment", "payload"),
        ("last segment", "seq"),
        ("last segment", "crc"),
    ],
)
def test_flipped_byte_in_a_record_with_records_after_it_refuses_start_naming_segment_and_offset(
    built: Built, where: str, field: str
) -> None:
    after = segments_after_snapshot(built)
    segment = after[1] if where == "middle segment" else after[-1]
    frames = parse_frames(segment.read_bytes())
    assert len(frames) >= 2
    frame = frames[len(frames) // 2 - 1]  # never the segment's last frame
    flip_byte(segment, frame.offset + FIELD_OFFSETS[field])
    assert_refused_naming(built.config, segment.name, frame.offset)


def assert_refused_naming(config: StoreConfig, source: str, offset: int) -> None:
    """Start-up and ``recover_check`` both refuse with JOURNAL_CORRUPT at ``source``/``offset``,
    and neither changes a stored byte."""
    before = stored_bytes(config.data_dir)
    for error in (open_error(config), check_error(config)):
        assert error.code is ErrorCode.JOURNAL_CORRUPT, error
        assert (error.details["source"], error.details["offset"]) == (source, offset), error
        assert error.details["reason"], error
        assert stored_bytes(config.data_dir) == before, "a refused recovery changed stored bytes"


def test_corrupt_length_of_a_record_with_records_after_it_in_the_last_segment_is_refused(
    built: Built,
) -> None:
    last = segments_after_snapshot(built)[-1]
    frames = parse_frames(last.read_bytes())
    assert len(frames) >= 2
    frame = frames[-2]
    flip_byte(last, frame.offset + FIELD_OFFSETS["len"])
    assert_refused_naming(built.config, last.name, frame.offset)


# ----- (c) a corrupt snapshot falls back to the previous one ---------------------------------


@pytest.mark.parametrize("position", ["magic", "middle", "trailer"])
def test_flipped_byte_in_newest_snapshot_falls_back_to_previous_with_exact_state(
    built: Built, position: str
) -> None:
    older, newest = built.snapshot_seqs
    path = built.config.data_dir / "snapshots" / f"{newest:020d}.snap"
    size = path.stat().st_size
    flip_byte(path, {"magic": 0, "middle": size // 2, "trailer": size - 1}[position])

    before = stored_bytes(built.config.data_dir)
    checked = recover_check(built.config)
    assert stored_bytes(built.config.data_dir) == before
    for report in (checked, assert_recovers_exactly(built.config, built.final_digest)):
        assert report.snapshot_seq == older
        assert [r["seq"] for r in report.snapshots_rejected] == [newest]
        assert report.snapshots_rejected[0]["reason"]
        assert report.last_seq == built.last_seq


def test_both_snapshots_corrupt_refuses_start_instead_of_replaying_a_trimmed_journal(
    built: Built,
) -> None:
    for seq in built.snapshot_seqs:
        path = built.config.data_dir / "snapshots" / f"{seq:020d}.snap"
        flip_byte(path, path.stat().st_size // 2)
    error = open_error(built.config)
    assert error.code in (ErrorCode.JOURNAL_CORRUPT, ErrorCode.SNAPSHOT_CORRUPT), error


def test_snapshot_temp_file_left_by_a_crash_does_not_outlive_the_next_snapshot(
    built: Built,
) -> None:
    snapshots = built.config.data_dir / "snapshots"
    stale = snapshots / f"{built.snapshot_seqs[-1] + 1:020d}.snap.tmp"
    stale.write_bytes(b"half a snapshot")
    with Store.open(built.config) as store:
        store.engine.allocate("ONE", 1, "after-crash")
        store.wait_last()
        store.snapshot_now()
    assert not stale.exists(), sorted(p.name for p in snapshots.iterdir())


# ----- (d) a missing segment stops start-up, naming the missing range ------------------------


def test_missing_middle_segment_refuses_start_naming_the_missing_range(built: Built) -> None:
    after = segments_after_snapshot(built)
    missing, following = after[1], after[2]
    missing.unlink()
    before = stored_bytes(built.config.data_dir)
    for error in (open_error(built.config), check_error(built.config)):
        assert error.code is ErrorCode.JOURNAL_CORRUPT, error
        got = (error.details["missing_from"], error.details["missing_to"], error.details["source"])
        assert got == (int(missing.stem), int(following.stem) - 1, following.name), error
        assert stored_bytes(built.config.data_dir) == before


# ----- (e) the data directory lock ---------------------------------------------------------


def test_second_open_of_an_open_data_dir_is_refused_with_data_dir_locked(built: Built) -> None:
    with Store.open(built.config) as store:
        for error in (open_error(built.config), check_error(built.config)):
            assert error.code is ErrorCode.DATA_DIR_LOCKED, error
            assert error.details["holder_pid"] == str(os.getpid())
        assert store.engine.state_digest() == built.final_digest
    assert_recovers_exactly(built.config, built.final_digest)


CHILD_HOLDS_LOCK = """
import sys, time
from pathlib import Path
from cardsvc.engine.store import Store, StoreConfig
store = Store.open(StoreConfig(data_dir=Path(sys.argv[1])))
print("ready", flush=True)
time.sleep(60)
"""


def test_lock_of_another_process_refuses_open_and_is_freed_by_its_kill_9(built: Built) -> None:
    data_dir = built.config.data_dir
    args = [sys.executable, "-c", CHILD_HOLDS_LOCK, str(data_dir)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            error = open_error(built.config)
            assert error.code is ErrorCode.DATA_DIR_LOCKED, error
            assert error.details["holder_pid"] == str(child.pid)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    assert_recovers_exactly(built.config, built.final_digest)


# ----- (f) the command line --------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = cli.main(list(argv), console=Console(file=out, width=400, highlight=False))
    return status, out.getvalue()


def leading_json(text: str) -> dict[str, Any]:
    """The JSON document a command prints first (pretty-printed, so it ends at a bare ``}``)."""
    lines = text.splitlines()
    end = lines.index("}")
    parsed: dict[str, Any] = json.loads("\n".join(lines[: end + 1]))
    return parsed


def test_cli_recover_check_prints_the_torn_tail_and_changes_nothing(built: Built) -> None:
    data_dir = built.config.data_dir
    last = segments(data_dir)[-1]
    frame = parse_frames(last.read_bytes())[-1]
    os.truncate(last, frame.offset + 5)
    before = stored_bytes(data_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "cardsvc", "recover", "--check", "--data-dir", str(data_dir)],
        capture_output=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = leading_json(proc.stdout.decode())
    assert report["torn_tail"]["source"] == last.name
    assert report["torn_tail"]["offset"] == frame.offset
    assert report["torn_tail"]["cut"] is False
    assert report["last_seq"] == frame.seq - 1
    assert "would be cut" in proc.stdout.decode()
    assert stored_bytes(data_dir) == before

    status, out = run_cli("recover", "--data-dir", str(data_dir))
    assert status == 0 and leading_json(out)["torn_tail"]["cut"] is True
    assert last.stat().st_size == frame.offset


def test_cli_recover_on_a_corrupt_journal_exits_1_naming_journal_corrupt(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    segment = segments_after_snapshot(built)[1]
    flip_byte(segment, FRAME_HEADER.size + 1)
    before = stored_bytes(built.config.data_dir)
    status, _ = run_cli("recover", "--check", "--data-dir", str(built.config.data_dir))
    assert status == cli.EXIT_ERROR
    assert "JOURNAL_CORRUPT" in capsys.readouterr().err
    assert stored_bytes(built.config.data_dir) == before


def test_cli_journal_stats_counts_segments_and_snapshots(built: Built) -> None:
    data_dir = built.config.data_dir
    status, out = run_cli("journal", "stats", "--data-dir", str(data_dir))
    assert status == 0
    stats = leading_json(out)
    assert stats["sink"] == "file" and stats["guarantee"]["level"] == "no_loss"
    assert stats["journal_chunks"] == len(segments(data_dir))
    assert stats["journal_bytes"] == sum(p.stat().st_size for p in segments(data_dir))
    assert [s["seq"] for s in stats["snapshots"]] == built.snapshot_seqs


def test_cli_snapshot_writes_a_snapshot_at_the_last_record_and_trims_the_journal(
    built: Built,
) -> None:
    data_dir = built.config.data_dir
    segments_before = len(segments(data_dir))
    status, out = run_cli("snapshot", "--data-dir", str(data_dir))
    assert status == 0 and str(built.last_seq) in out
    snapshots = sorted(int(p.stem) for p in (data_dir / "snapshots").glob("*.snap"))
    assert snapshots == [built.snapshot_seqs[-1], built.last_seq]
    assert len(segments(data_dir)) < segments_before
    report = assert_recovers_exactly(built.config, built.final_digest)
    assert report.snapshot_seq == built.last_seq and report.records_replayed == 0


def test_cli_on_a_locked_data_dir_exits_1_naming_data_dir_locked(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(built.config):
        for argv in (["recover", "--check"], ["snapshot"]):
            status, _ = run_cli(*argv, "--data-dir", str(built.config.data_dir))
            assert status == cli.EXIT_ERROR
            assert "DATA_DIR_LOCKED" in capsys.readouterr().err


# ----- the Redis sink: the same damage in the journal stream ------------------------------


@pytest.fixture
def redis_built(tmp_path: Path, redis_server: _Server, request: pytest.FixtureRequest) -> Built:
    namespace = f"corrupt-{request.node.name}-{time.monotonic_ns()}"
    return build(store_config(tmp_path / "data", "redis", redis_server.url, namespace))


@dataclass
class Stream:
    """The journal stream of a Redis-backed store, for damaging it."""

    client: redis.Redis
    key: str
    snapshots_key: str
    snapshot_prefix: str

    @classmethod
    def of(cls, config: StoreConfig) -> Stream:
        assert config.redis_url is not None
        tag = "{" + config.redis_namespace + "}"
        client = redis.Redis.from_url(config.redis_url)
        return cls(client, f"{tag}:journal", f"{tag}:snaps", f"{tag}:snap:")

    def entries(self) -> list[tuple[str, bytes]]:
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], self.client.xrange(self.key, "-", "+"))
        return [(entry_id.decode(), fields[b"f"]) for entry_id, fields in raw]

    def rewrite(self, entries: list[tuple[str, bytes]]) -> None:
        """Replaces the stream by ``entries`` (a stream entry cannot be changed in place)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key)
        for entry_id, data in entries:
            pipe.xadd(self.key, {"f": data}, id=entry_id)
        pipe.execute()

    def after_snapshot(self, newest: int) -> list[tuple[str, bytes]]:
        after = [(i, d) for i, d in self.entries() if int(i.split("-")[0]) > newest]
        assert len(after) >= 3
        return after


@pytest.fixture
def stream(redis_built: Built) -> Iterator[Stream]:
    stream = Stream.of(redis_built.config)
    try:
        yield stream
    finally:
        stream.client.close()


def replace_entry(stream: Stream, entry_id: str, data: bytes) -> None:
    stream.rewrite([(i, data if i == entry_id else d) for i, d in stream.entries()])


def flipped(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x5A
    return bytes(out)


@pytest.mark.redis
def test_redis_flipped_byte_in_an_entry_with_entries_after_it_refuses_naming_entry_and_offset(
    redis_built: Built, stream: Stream
) -> None:
    entry_id, data = stream.after_snapshot(redis_built.snapshot_seqs[-1])[1]
    replace_entry(stream, entry_id, flipped(data, FRAME_HEADER.size + 1))
    for error in (open_error(redis_built.config), check_error(redis_built.config)):
        assert error.code is ErrorCode.JOURNAL_CORRUPT, error
        assert (error.details["source"], error.details["offset"]) == (entry_id, 0), error
    assert stream.entries()[-1][0] == f"{redis_built.last_seq}-1", "refusal changed the stream"


@pytest.mark.redis
def test_redis_missing_entry_refuses_start_naming_the_missing_range(
    redis_built: Built, stream: Stream
) -> None:
    after = stream.after_snapshot(redis_built.snapshot_seqs[-1])
    (missing_id, _), (following_id, _) = after[1], after[2]
    stream.client.xdel(stream.key, missing_id)
    error = open_error(redis_built.config)
    assert error.code is ErrorCode.JOURNAL_CORRUPT, error
    missing_seq = int(missing_id.split("-")[0])  # one record per entry in this history
    got = (error.details["missing_from"], error.details["missing_to"], error.details["source"])
    assert got == (missing_seq, missing_seq, following_id), error


@pytest.mark.redis
def test_redis_flipped_byte_in_newest_snapshot_falls_back_to_previous_with_exact_state(
    redis_built: Built, stream: Stream
) -> None:
    older, newest = redis_built.snapshot_seqs
    chunk_key = f"{stream.snapshot_prefix}{newest}:0"
    data = stream.client.get(chunk_key)
    assert isinstance(data, bytes)
    stream.client.set(chunk_key, flipped(data, len(data) // 2))
    report = assert_recovers_exactly(redis_built.config, redis_built.final_digest)
    assert report.snapshot_seq == older
    assert [r["seq"] for r in report.snapshots_rejected] == [newest]
    assert report.last_seq == redis_built.last_seq


@pytest.mark.redis
@pytest.mark.parametrize("kept", ["nothing", "first record"])
def test_redis_truncated_final_entry_is_cut_reported_and_the_journal_stays_appendable(
    redis_built: Built, stream: Stream, kept: str
) -> None:
    entries = stream.entries()
    if kept == "first record":
        # One entry holding the last two records, as a group commit writes them.
        (_, second_last), (last_id, last) = entries[-2:]
        entries[-2:] = [(last_id, second_last + last)]
    entry_id, data = entries[-1]
    entries[-1] = (entry_id, data[:-3])
    stream.rewrite(entries)
    assert redis_built.last_seq - 1 in redis_built.digests
    report = assert_recovers_exactly(
        redis_built.config, redis_built.digests[redis_built.last_seq - 1]
    )
    assert report.torn_tail is not None
    assert report.torn_tail["source"] == entry_id
    with Store.open(redis_built.config) as store:
        store.engine.allocate("ONE", 1, "after-cut")
        store.wait_last(timeout=2.0)
        digest = store.engine.state_digest()
    assert assert_recovers_exactly(redis_built.config, digest).torn_tail is None


def test_state_digest_changes_with_every_acknowledged_operation(built: Built) -> None:
    """The digests the corruption tests compare against tell every prefix apart."""
    assert len(set(built.digests.values())) == len(built.digests)
    engine = Engine(bytes(32))
    assert engine.state_digest() not in built.digests.values()
