"""Journal sinks: where journal records and snapshots are made durable.

A sink stores two things:

* the **journal**: batches of framed records (``[len u32][seq u64][crc32 u32][payload]``, see
  docs/engine.md) appended in sequence order by the one journal writer;
* **snapshots**: whole-engine images, each named by the last sequence number it covers.

``FileSink`` (``file_sink.py``, the embedded default) keeps both in the data directory;
``RedisSink`` (``redis_sink.py``) in a Redis server. ``base.py`` is the port both implement.
"""

from cardsvc.engine.sinks.base import (
    SNAPSHOTS_KEPT,
    Guarantee,
    JournalChunk,
    JournalSink,
    SinkStats,
)
from cardsvc.engine.sinks.file_sink import SEGMENT_BYTES_MAX, FileSink
from cardsvc.engine.sinks.redis_sink import SNAPSHOT_CHUNK_BYTES, RedisSink

__all__ = [
    "SEGMENT_BYTES_MAX",
    "SNAPSHOTS_KEPT",
    "SNAPSHOT_CHUNK_BYTES",
    "FileSink",
    "Guarantee",
    "JournalChunk",
    "JournalSink",
    "RedisSink",
    "SinkStats",
]
