"""The Redis sink: the journal in a Redis stream, snapshots in chunked keys.

One stream entry per batch (entry id = the batch's last sequence number); what an acknowledgement
is worth depends on the server's ``appendonly``/``appendfsync`` settings, which
:meth:`RedisSink.guarantee` reads and states.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cardsvc.engine.core import scan_journal
from cardsvc.engine.sinks.base import Guarantee, JournalChunk, JournalSink, SinkStats, unavailable
from cardsvc.errors import ErrorCode, make_error

SNAPSHOT_CHUNK_BYTES = 4 << 20
"""Redis snapshot chunk size: well under Redis's 512 MB value limit, small enough to stream."""


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
            raise unavailable("redis", what, error) from error

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
            raise unavailable("redis", "append to the journal", error) from error
        except self._redis_errors as error:
            raise unavailable("redis", "append to the journal", error) from error

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
