"""Journal sinks: where journal records and snapshots are made durable.

A sink stores two things:

* the **journal**: batches of framed records (``[len u32][seq u64][crc32 u32][payload]``, see
  docs/engine.md) appended in sequence order by the one journal writer;
* **snapshots**: whole-engine images, each named by the last sequence number it covers.

``FileSink`` (the embedded default) keeps both in the data directory: append-only segment files
named by their first sequence number, ``fdatasync`` once per appended batch (group commit), and
snapshot files written atomically. ``RedisSink`` keeps the journal in a Redis stream (one entry
per batch, entry id = the batch's last sequence number) and snapshots in chunked keys; what an
acknowledgement is worth then depends on the server's ``appendonly``/``appendfsync`` settings,
which :meth:`RedisSink.guarantee` reads and states.
"""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardsvc.datadir import fsync_dir, write_file_durably
from cardsvc.engine import scan_journal
from cardsvc.errors import ErrorCode, make_error

SEGMENT_BYTES_MAX = 64 << 20
"""Rotate journal segments at 64 MiB: recovery reads one segment at a time into memory."""
SNAPSHOT_CHUNK_BYTES = 4 << 20
"""Redis snapshot chunk size: well under Redis's 512 MB value limit, small enough to stream."""
SNAPSHOTS_KEPT = 2
"""Keep the newest two snapshots: if the newest turns out corrupt, recovery falls back to the
other, and the journal is kept from the older one on."""


@dataclass(frozen=True)
class Guarantee:
    """What an acknowledged effect is worth with this sink and its settings."""

    sink: str
    level: str  # "no_loss" | "bounded_loss" | "unprotected"
    description: str
    settings: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "level": self.level,
            "description": self.description,
            "settings": dict(self.settings),
        }


@dataclass(frozen=True)
class JournalChunk:
    """One stored unit of journal (a segment file, a stream entry) in sequence order."""

    source: str
    data: bytes
    final: bool


@dataclass
class SinkStats:
    chunks: int = 0
    journal_bytes: int = 0
    snapshots: list[tuple[int, int]] = field(default_factory=list)  # (seq, bytes)


class JournalSink(ABC):
    """Where the journal and snapshots live. One writer thread calls ``append``; recovery and
    the snapshotter call the rest. Every method raises a ``CardsvcError`` on failure."""

    name: str

    @abstractmethod
    def guarantee(self) -> Guarantee: ...

    @abstractmethod
    def append(self, frames: bytes, first_seq: int, last_seq: int) -> None:
        """Stores a batch of framed records; durable (per ``guarantee``) when it returns."""

    @abstractmethod
    def journal_chunks(self) -> Iterator[JournalChunk]:
        """Every stored journal chunk, in sequence order."""

    @abstractmethod
    def cut_tail(self, chunk: JournalChunk, valid_len: int) -> None:
        """Cuts a torn tail: keeps only the first ``valid_len`` bytes of the final chunk."""

    @abstractmethod
    def write_snapshot(self, seq: int, data: bytes | memoryview) -> None: ...

    @abstractmethod
    def snapshot_seqs(self) -> list[int]:
        """Sequence numbers of the stored snapshots, oldest first."""

    @abstractmethod
    def read_snapshot(self, seq: int) -> bytes: ...

    @abstractmethod
    def drop_snapshot(self, seq: int) -> None: ...

    @abstractmethod
    def quarantine_snapshot(self, seq: int) -> None:
        """Sets a snapshot that failed its checks aside (kept for inspection, never loaded or
        counted again)."""

    @abstractmethod
    def trim_journal(self, upto_seq: int) -> int:
        """Removes whole chunks whose records all have seq <= ``upto_seq``; returns how many."""

    @abstractmethod
    def stats(self) -> SinkStats: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Releases the sink's resources."""


def _unavailable(sink: str, what: str, error: BaseException) -> Exception:
    return make_error(
        ErrorCode.JOURNAL_UNAVAILABLE,
        f"the {sink} journal sink could not {what}",
        {"sink": sink, "reason": type(error).__name__},
    )


class FileSink(JournalSink):
    """Segment files ``DIR/journal/<first seq>.seg`` and ``DIR/snapshots/<seq>.snap``."""

    name = "file"

    def __init__(self, data_dir: Path, segment_bytes_max: int = SEGMENT_BYTES_MAX) -> None:
        self.journal_dir = data_dir / "journal"
        self.snapshot_dir = data_dir / "snapshots"
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes_max = segment_bytes_max
        self._fd = -1
        self._size = 0
        # A crash while writing a snapshot leaves its temporary file; it was never renamed into
        # place, so it holds nothing recovery needs.
        for leftover in self.snapshot_dir.glob("*.tmp"):
            leftover.unlink()

    def guarantee(self) -> Guarantee:
        return Guarantee(
            "file",
            "no_loss",
            "every acknowledged effect was fdatasync'ed to the journal before the response",
            {"fsync": "per group commit", "path": str(self.journal_dir)},
        )

    def _segments(self) -> list[Path]:
        return sorted(self.journal_dir.glob("*.seg"))

    def _open_segment(self, first_seq: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = self.journal_dir / f"{first_seq:020d}.seg"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        fsync_dir(self.journal_dir)

    def append(self, frames: bytes, first_seq: int, last_seq: int) -> None:
        del last_seq
        try:
            if self._fd < 0 or self._size >= self.segment_bytes_max:
                self._open_segment(first_seq)
            view = memoryview(frames)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
            self._size += len(frames)
        except OSError as error:
            # The segment may now end in a partial batch: start a fresh segment next time so the
            # retry does not follow garbage (recovery would refuse a bad frame mid-journal).
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            raise _unavailable("file", "append to the journal", error) from error

    def journal_chunks(self) -> Iterator[JournalChunk]:
        segments = self._segments()
        for i, path in enumerate(segments):
            yield JournalChunk(path.name, path.read_bytes(), i == len(segments) - 1)

    def cut_tail(self, chunk: JournalChunk, valid_len: int) -> None:
        path = self.journal_dir / chunk.source
        if valid_len == 0:
            path.unlink()
        else:
            os.truncate(path, valid_len)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.journal_dir)

    def write_snapshot(self, seq: int, data: bytes | memoryview) -> None:
        try:
            write_file_durably(self.snapshot_dir / f"{seq:020d}.snap", data)
        except OSError as error:
            raise _unavailable("file", "write a snapshot", error) from error

    def snapshot_seqs(self) -> list[int]:
        return sorted(int(p.stem) for p in self.snapshot_dir.glob("*.snap") if p.stem.isdigit())

    def read_snapshot(self, seq: int) -> bytes:
        return (self.snapshot_dir / f"{seq:020d}.snap").read_bytes()

    def drop_snapshot(self, seq: int) -> None:
        (self.snapshot_dir / f"{seq:020d}.snap").unlink(missing_ok=True)
        fsync_dir(self.snapshot_dir)

    def quarantine_snapshot(self, seq: int) -> None:
        path = self.snapshot_dir / f"{seq:020d}.snap"
        if path.exists():
            path.rename(path.with_suffix(".corrupt"))
            fsync_dir(self.snapshot_dir)

    def trim_journal(self, upto_seq: int) -> int:
        segments = self._segments()
        removed = 0
        # Segment i holds seqs [first_i, first_{i+1} - 1]; the last segment is never removed.
        for path, following in itertools.pairwise(segments):
            if int(following.stem) - 1 <= upto_seq:
                path.unlink()
                removed += 1
        if removed:
            fsync_dir(self.journal_dir)
        return removed

    def stats(self) -> SinkStats:
        segments = self._segments()
        return SinkStats(
            chunks=len(segments),
            journal_bytes=sum(p.stat().st_size for p in segments),
            snapshots=[
                (seq, (self.snapshot_dir / f"{seq:020d}.snap").stat().st_size)
                for seq in self.snapshot_seqs()
            ],
        )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class RedisSink(JournalSink):
    """A Redis stream ``<ns>:journal`` (entry id ``<last seq>-1``, field ``f`` = the batch) and
    snapshot chunks ``<ns>:snap:<seq>:<i>`` indexed by the sorted set ``<ns>:snaps``. Keys share
    the hash tag ``{<ns>}`` so one Redis Cluster slot holds a shard's journal."""

    name = "redis"

    def __init__(self, url: str, namespace: str = "cardsvc", owner: str = "") -> None:
        import redis  # imported here: the file sink needs no Redis client

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=3, health_check_interval=0
        )
        tag = "{" + namespace + "}"
        self._journal = f"{tag}:journal"
        self._snaps = f"{tag}:snaps"
        self._snap_prefix = f"{tag}:snap:"
        self._owner_key = f"{tag}:owner"
        self._corrupt_snaps = f"{tag}:snaps:corrupt"
        self.namespace = namespace
        self.url_for_display = url.split("@")[-1]
        if owner:
            self._claim(owner)

    def _claim(self, owner: str) -> None:
        """Binds the namespace to one data directory (its instance id): a second store from
        another directory would interleave journals and lose acknowledged effects, so it is
        refused. The same directory may reopen it at once after a crash."""
        self._call("claim the namespace", lambda: self._client.set(self._owner_key, owner, nx=True))
        holder = self._call("claim the namespace", self._client.get, self._owner_key)
        if holder is not None and holder.decode() != owner:
            raise make_error(
                ErrorCode.DATA_DIR_LOCKED,
                f"Redis namespace {self.namespace!r} belongs to another data directory",
                {"sink": "redis", "namespace": self.namespace, "owner": holder.decode()},
            )

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._redis_errors as error:
            raise _unavailable("redis", what, error) from error

    def guarantee(self) -> Guarantee:
        config = self._call("read its configuration", self._client.config_get, "append*")
        settings = {
            str(k.decode() if isinstance(k, bytes) else k): str(
                v.decode() if isinstance(v, bytes) else v
            )
            for k, v in config.items()
            if k in (b"appendonly", b"appendfsync", "appendonly", "appendfsync")
        }
        aof, fsync = settings.get("appendonly", "no"), settings.get("appendfsync", "everysec")
        if aof != "yes":
            return Guarantee(
                "redis",
                "unprotected",
                "Redis has appendonly off: a Redis restart loses acknowledged effects since its "
                "last RDB save. Set appendonly yes and appendfsync always.",
                settings,
            )
        if fsync == "always":
            return Guarantee(
                "redis",
                "no_loss",
                "appendonly yes, appendfsync always: Redis fsyncs each journal write before "
                "replying, so nothing acknowledged is lost",
                settings,
            )
        return Guarantee(
            "redis",
            "bounded_loss",
            f"appendonly yes, appendfsync {fsync}: a crash of the Redis host may lose about the "
            "last second of acknowledged effects. Use appendfsync always for no loss.",
            settings,
        )

    def append(self, frames: bytes, first_seq: int, last_seq: int) -> None:
        del first_seq
        import redis

        try:
            self._client.xadd(self._journal, {"f": frames}, id=f"{last_seq}-1")
        except redis.ResponseError as error:
            # A retry of a batch whose reply was lost: the very same entry is already there.
            entry_id = f"{last_seq}-1"
            same = self._call(
                "read the journal", self._client.xrange, self._journal, entry_id, entry_id
            )
            if same and same[0][1].get(b"f") == frames:
                return
            raise _unavailable("redis", "append to the journal", error) from error
        except self._redis_errors as error:
            raise _unavailable("redis", "append to the journal", error) from error

    def journal_chunks(self) -> Iterator[JournalChunk]:
        start = "-"
        pending: tuple[bytes, bytes] | None = None
        while True:
            batch = self._call(
                "read the journal", self._client.xrange, self._journal, start, "+", 256
            )
            for entry_id, fields in batch:
                if pending is not None:
                    yield JournalChunk(pending[0].decode(), pending[1], False)
                pending = (entry_id, fields[b"f"])
            if len(batch) < 256:
                break
            start = "(" + batch[-1][0].decode()
        if pending is not None:
            yield JournalChunk(pending[0].decode(), pending[1], True)

    def cut_tail(self, chunk: JournalChunk, valid_len: int) -> None:
        # Redis stores each batch atomically, so a bad final entry is dropped or rewritten whole.
        # A stream remembers its highest id even after XDEL and would refuse to re-add it (or any
        # later batch numbered at or below it), so its last id is set back to the entry before.
        self._call("cut the journal tail", self._client.xdel, self._journal, chunk.source)
        top = self._call("read the journal", self._client.xrevrange, self._journal, "+", "-", 1)
        previous = top[0][0].decode() if top else "0-1"
        self._call(
            "cut the journal tail",
            self._client.execute_command,
            "XSETID",
            self._journal,
            previous,
            "MAXDELETEDID",
            previous,
        )
        if valid_len:
            # The kept part is re-added under its own last sequence number, so the batches that
            # follow it (numbered from there on) are accepted.
            kept = chunk.data[:valid_len]
            kept_last = scan_journal(kept)[3]
            self._call(
                "cut the journal tail",
                self._client.xadd,
                self._journal,
                {"f": kept},
                f"{kept_last}-1",
            )

    def write_snapshot(self, seq: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        starts = range(0, len(view), SNAPSHOT_CHUNK_BYTES)
        # Four chunks (16 MiB) per round trip: bounded client memory, few round trips.
        for first in range(0, len(starts), 4):
            pipe = self._client.pipeline(transaction=False)
            for i in range(first, min(first + 4, len(starts))):
                part = bytes(view[starts[i] : starts[i] + SNAPSHOT_CHUNK_BYTES])
                pipe.set(f"{self._snap_prefix}{seq}:{i}", part)
            self._call("write a snapshot", pipe.execute)
        self._call("write a snapshot", self._client.set, f"{self._snap_prefix}{seq}:n", len(starts))
        # Listed only once every chunk is stored, so recovery never sees half a snapshot.
        self._call("write a snapshot", self._client.zadd, self._snaps, {str(seq): seq})

    def snapshot_seqs(self) -> list[int]:
        members = self._call("list snapshots", self._client.zrange, self._snaps, 0, -1)
        return sorted(int(m) for m in members)

    def read_snapshot(self, seq: int) -> bytes:
        n = int(self._call("read a snapshot", self._client.get, f"{self._snap_prefix}{seq}:n") or 0)
        keys = [f"{self._snap_prefix}{seq}:{i}" for i in range(n)]
        parts = self._call("read a snapshot", self._client.mget, keys) if keys else []
        return b"".join(p or b"" for p in parts)

    def quarantine_snapshot(self, seq: int) -> None:
        self._call("set a snapshot aside", self._client.zrem, self._snaps, str(seq))
        self._call("set a snapshot aside", self._client.zadd, self._corrupt_snaps, {str(seq): seq})

    def drop_snapshot(self, seq: int) -> None:
        n = int(self._call("drop a snapshot", self._client.get, f"{self._snap_prefix}{seq}:n") or 0)
        self._call("drop a snapshot", self._client.zrem, self._snaps, str(seq))
        keys = [f"{self._snap_prefix}{seq}:{i}" for i in range(n)] + [f"{self._snap_prefix}{seq}:n"]
        self._call("drop a snapshot", self._client.delete, *keys)

    def trim_journal(self, upto_seq: int) -> int:
        removed = self._call(
            "trim the journal",
            lambda: self._client.xtrim(self._journal, minid=f"{upto_seq + 1}-0", approximate=False),
        )
        return int(removed or 0)

    def stats(self) -> SinkStats:
        length = self._call("read the journal", self._client.xlen, self._journal)
        usage = self._call("read the journal", self._client.memory_usage, self._journal) or 0
        return SinkStats(
            chunks=int(length),
            journal_bytes=int(usage),
            snapshots=[(seq, 0) for seq in self.snapshot_seqs()],
        )

    def close(self) -> None:
        self._client.close()
