"""Durable file writes: what the data directory's files need to survive a crash whole.

Stdlib only (floor 0): the engine's snapshots and key files, the master keys, the database
file, and the start-up check of the data directory's modes use it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
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


# ----- the data directory's modes -------------------------------------------------------------

STATE_UMASK = 0o077
"""The umask of every process that writes the data directory (``cardsvc serve`` and the command
line set it at start): files are created 0600 and directories 0700 from the first byte, including
those that third-party code creates (SQLite's WAL and SHM files, uploads)."""
DIR_MODE = 0o700
FILE_MODE = 0o600
KEY_FILE_NAMES = ("lookup.key", "public-ids.key", "link-secret.key", "web-secret.key")
"""Files of the data directory that hold keys (with every ``master.key*``): loosened modes
refuse the start (FILE_MODE_INSECURE)."""
MODE_CHECK_DIRS = ("journal", "snapshots", "uploads")
"""Subdirectories whose files :func:`check_data_dir_modes` checks (one level each)."""
MODE_CHECK_FILES_MAX = 100_000
"""Files checked at most (a journal holds a few hundred segments; bounded start-up time)."""


def make_private_dir(path: Path) -> None:
    """Creates ``path`` (and its parents) with mode 0700, or narrows an existing one that this
    process owns to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, DIR_MODE)
    except PermissionError:  # not ours to change: check_data_dir_modes warns
        pass


def create_private_file(path: Path) -> None:
    """Creates ``path`` empty with mode 0600 if it does not exist (so a library that opens it
    later, such as SQLite, keeps that mode and gives its WAL/SHM files the same)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)


def load_random_key(data_dir: Path, name: str, size: int) -> bytes:
    """The key kept in ``data_dir/name``, created when missing: ``size`` random bytes, mode
    0600, fsynced. It is written aside and hard-linked into place, so a racing process sees
    either no file or a whole one, and both racers end with the winner's bytes. Raises
    ValueError when the file holds fewer than ``size`` bytes (a truncated copy)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / name
    if not path.exists():
        aside = data_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.write(fd, secrets.token_bytes(size))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
        fsync_dir(data_dir)
    key = path.read_bytes()
    if len(key) < size:
        raise ValueError(f"{name} holds fewer than {size} bytes")
    return key


def is_key_file(path: Path) -> bool:
    return path.name in KEY_FILE_NAMES or path.name.startswith("master.key")


@dataclass
class ModeReport:
    """What :func:`check_data_dir_modes` found: key files others may read (``refuse``: the
    caller refuses to start) and other loosened files and directories (``warn``: logged)."""

    refuse: list[tuple[str, str]] = field(default_factory=list)  # (path, mode)
    warn: list[str] = field(default_factory=list)


def check_data_dir_modes(data_dir: Path) -> ModeReport:
    """Checks the data directory's modes at start-up. A key file (KEY_FILE_NAMES, ``master.key*``)
    that its group or others may read or write goes in ``refuse``: a copy of it opens every code
    (or every lookup), so the service must not start. Any other state file or directory with
    group/other bits goes in ``warn``: the database, journal and snapshots hold only sealed codes
    and hashes, so a loosened mode weakens defence in depth without disclosing plaintext by
    itself. Reads only; bounded (MODE_CHECK_FILES_MAX)."""
    report = ModeReport()
    if not data_dir.exists():
        return report
    if data_dir.stat().st_mode & 0o077:
        report.warn.append(f"data directory {data_dir} has mode {_mode(data_dir)}; "
                           "expected 0700")
    paths = list(data_dir.iterdir())
    for sub in MODE_CHECK_DIRS:
        folder = data_dir / sub
        if folder.is_dir():
            paths += list(folder.iterdir())[:MODE_CHECK_FILES_MAX]
    for path in paths[:MODE_CHECK_FILES_MAX]:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:  # removed meanwhile (a trimmed segment)
            continue
        if not mode & 0o077:
            continue
        if path.is_file() and is_key_file(path):
            report.refuse.append((str(path), _mode(path)))
            continue
        kind = "directory" if path.is_dir() else "file"
        report.warn.append(f"{kind} {path} has mode {_mode(path)}; expected "
                           f"{'0700' if path.is_dir() else '0600'}")
    return report


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777).replace("0o", "0")
