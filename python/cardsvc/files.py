"""Durable file writes: what the data directory's files need to survive a crash whole.

Stdlib only (floor 0): the engine's snapshots and key files, and the master keys, use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Makes a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


SYNC_EVERY_BYTES = 16 << 20
"""Large files are fdatasync'ed every 16 MiB while written: one fsync of hundreds of MB at the
end makes the journal's own fdatasync wait behind it for 40-130 ms (measured), 16 MiB steps keep
that under ~10 ms at the same total write time."""


def write_file_durably(path: Path, data: bytes | memoryview, mode: int = 0o600) -> None:
    """Writes ``data`` to ``path`` atomically: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data).cast("B")
        unsynced = 0
        while view:
            written = os.write(fd, view[:SYNC_EVERY_BYTES])
            view = view[written:]
            unsynced += written
            if unsynced >= SYNC_EVERY_BYTES:
                os.fdatasync(fd)
                unsynced = 0
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
