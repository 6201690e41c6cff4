"""The file sink (the embedded default): the journal and snapshots in the data directory.

Append-only segment files named by their first sequence number, ``fdatasync`` once per appended
batch (group commit), and snapshot files written atomically.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

from cardsvc.engine.sinks.base import Guarantee, JournalChunk, JournalSink, SinkStats, unavailable
from cardsvc.files import fsync_dir, make_private_dir, write_file_durably

SEGMENT_BYTES_MAX = 64 << 20
"""Rotate journal segments at 64 MiB: recovery reads one segment at a time into memory."""


class FileSink(JournalSink):
    """Segment files ``DIR/journal/<first seq>.seg`` and ``DIR/snapshots/<seq>.snap``."""

    name = "file"

    def __init__(self, data_dir: Path, segment_bytes_max: int = SEGMENT_BYTES_MAX) -> None:
        self.journal_dir = data_dir / "journal"
        self.snapshot_dir = data_dir / "snapshots"
        make_private_dir(self.journal_dir)
        make_private_dir(self.snapshot_dir)
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
            raise unavailable("file", "append to the journal", error) from error

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
            raise unavailable("file", "write a snapshot", error) from error

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

