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

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cardsvc.errors import ErrorCode, make_error

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


def unavailable(sink: str, what: str, error: BaseException) -> Exception:
    return make_error(
        ErrorCode.JOURNAL_UNAVAILABLE,
        f"the {sink} journal sink could not {what}",
        {"sink": sink, "reason": type(error).__name__},
    )

