"""The data directory: its exclusive lock and the engine's lookup-hash key file.

Layout (file sink)::

    DIR/LOCK            held with flock(LOCK_EX) by the one process that has the directory open
    DIR/lookup.key      32 random bytes (mode 0600) keying the engine's code lookup hash
    DIR/journal/        journal segment files (see cardsvc.engine.sinks.FileSink)
    DIR/snapshots/      snapshot files
    DIR/control.sock    the running server's control socket (mode 0600: only the directory's
                        owner may connect), through which the command line reaches it

The lookup key is separate from any encryption key: it only makes code lookup keys unguessable.
Production may supply it through ``CARDSVC_LOOKUP_KEY_FILE`` instead of the data directory.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from cardsvc.engine.core import LOOKUP_KEY_LEN
from cardsvc.errors import ErrorCode, make_error
from cardsvc.files import make_private_dir, write_file_durably

LOOKUP_KEY_ENV = "CARDSVC_LOOKUP_KEY_FILE"
CONTROL_SOCKET_NAME = "control.sock"
"""The running server's control socket in its data directory (docs/security.md)."""


class DataDirLock:
    """An exclusive, process-lifetime lock on a data directory (released on close or exit,
    including kill -9, because the kernel drops flock locks with the file descriptor)."""

    def __init__(self, data_dir: Path) -> None:
        make_private_dir(data_dir)
        self.path = data_dir / "LOCK"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            raise make_error(
                ErrorCode.DATA_DIR_LOCKED,
                f"data directory {data_dir} is in use by another process",
                {"data_dir": str(data_dir), "holder_pid": holder},
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def instance_id(data_dir: Path) -> str:
    """A random id for this data directory (``DIR/instance.id``, created on first use). A Redis
    namespace is bound to the directory that first used it (see ``RedisSink``)."""
    path = data_dir / "instance.id"
    if not path.exists():
        write_file_durably(path, os.urandom(16).hex().encode(), 0o600)
    return path.read_text().strip()


def load_lookup_key(data_dir: Path) -> bytes:
    """The engine's lookup key: from ``$CARDSVC_LOOKUP_KEY_FILE`` if set, else
    ``DIR/lookup.key``, created with 32 random bytes on first start.

    Raises INVALID_ARGUMENT when the file exists but does not hold exactly 32 bytes.
    """
    configured = os.environ.get(LOOKUP_KEY_ENV)
    path = Path(configured) if configured else data_dir / "lookup.key"
    if not path.exists():
        if configured:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"{LOOKUP_KEY_ENV} names a missing file",
                {"field": LOOKUP_KEY_ENV},
            )
        write_file_durably(path, os.urandom(LOOKUP_KEY_LEN))
    key = path.read_bytes()
    if len(key) != LOOKUP_KEY_LEN:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"lookup key file must hold exactly {LOOKUP_KEY_LEN} bytes",
            {"field": "lookup_key", "path": str(path)},
        )
    return key
