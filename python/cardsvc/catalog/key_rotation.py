"""Master-key rotation (``cardsvc keys rotate-master``): every batch's data key is re-wrapped
under a new master key; no code payload is touched (they stay sealed under their data keys).

The protocol, run with the data directory's lock held (``DataDirLock``: no server runs, so no
process caches data keys or wraps new batches while it works):

1. **Prepare.** Create the new key durably as ``DATA_DIR/master.key.next`` (0600; written to a
   temporary name, fsynced, renamed, directory fsynced). If ``master.key.next`` already exists,
   an earlier rotation was interrupted: this run resumes it with that key.
2. **Re-wrap.** In transactions of at most ``REWRAP_CHUNK_MAX`` batches each, in batch id order:
   unwrap each data key not yet under the new key (with every loaded key), wrap it under the new
   key, check that it opens again, store it with the new ``master_key_id``, and append one audit
   entry (``master_key.rotate``) in the same transaction. The transaction that finds the last
   batches (fewer than a chunk) marks its entry ``complete``.
3. **Promote.** Hard-link ``master.key`` to ``master.key.<old_key_id>.retired`` (fsync the
   directory), then rename ``master.key.next`` over ``master.key`` (fsync the directory).

Crash analysis (each step's effects are durable before the next starts, and ``load_keyring``
loads ``master.key``, ``master.key.next`` and every retired key, so every batch opens in every
state):

* before or during step 1: at most a stray ``master.key.next.tmp`` (ignored); no batch changed.
  A re-run creates a fresh ``master.key.next``.
* after step 1, or during step 2: some batches name the new key, which is durably on disk as
  ``master.key.next``; the rest name the old key, still ``master.key``. New batches (should a
  server start) are wrapped under ``master.key``, the current key while ``.next`` exists. A
  re-run resumes with ``master.key.next`` and re-wraps only what is not yet under it.
* after step 2, before or between the two renames of step 3: every batch names the new key;
  ``master.key`` still exists at every instant (the link keeps the old key under both names until
  the rename replaces one). A re-run re-wraps nothing and finishes the promotion.
* after step 3: ``master.key`` is the new key, the old one is retired, no ``.next``: done. A
  re-run starts a new rotation.

Why chunked transactions rather than one: the number of batches is unbounded (ids go up to
2**31), each chunk's transaction stays small and releases SQLite's single write lock often, and
any prefix of committed chunks is already a consistent state (above), so atomicity across chunks
buys nothing. A batch whose data key fails to open stops the rotation with PAYLOAD_CORRUPT
(naming the batch); the chunks before it stay committed, nothing is promoted, and a re-run after
the batch is repaired finishes the rotation.

Retired keys are kept until the operator deletes them: a database backup taken before the
rotation still names them. The keyring never needs them for the live database after a complete
rotation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cardsvc import audit, crypto
from cardsvc.catalog.tables import Batch
from cardsvc.crypto import MASTER_KEY_FILE, NEXT_MASTER_KEY_FILE, MasterKey, MasterKeyring
from cardsvc.crypto.envelope import unwrap_data_key
from cardsvc.db import Database
from cardsvc.engine.datadir import DataDirLock
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.files import fsync_dir, write_file_durably

REWRAP_CHUNK_MAX = 500
"""Batches re-wrapped per transaction: about 500 row updates of ~100 bytes each, so a chunk
commits in milliseconds and holds SQLite's write lock only that long."""
ROTATE_ACTION = "master_key.rotate"
"""The audit action of each re-wrap transaction (object: the new master key's id)."""


@dataclass(frozen=True)
class RotationResult:
    """What ``rotate_master_key`` did: the key that was current (None if ``master.key`` was
    missing), the new current key, how many data keys this run re-wrapped, whether it resumed
    an interrupted rotation, and the retired key's file name (None if nothing was retired)."""

    old_key_id: str | None
    new_key_id: str
    batches_rewrapped: int
    resumed: bool
    retired_file: str | None


def rotate_master_key(
    data_dir: Path, db: Database, *, actor: str, chunk_size: int = REWRAP_CHUNK_MAX
) -> RotationResult:
    """Rotates ``data_dir``'s master key: steps 1-3 of the module's protocol, under the data
    directory's lock, resuming an interrupted rotation if ``master.key.next`` exists.

    Preconditions: ``db`` is the database whose batches ``data_dir``'s keys wrap; every server
    sharing that database is stopped (the lock covers this data directory only). Effects: a new
    ``master.key``, the old one kept as ``master.key.<old_key_id>.retired``, every batch's data
    key re-wrapped under the new key, audit entries (``master_key.rotate``). Raises
    INVALID_ARGUMENT when the master key comes from the environment, the data directory holds no
    master key, or ``chunk_size`` is outside 1..REWRAP_CHUNK_MAX; DATA_DIR_LOCKED when another
    process (a running server) holds the data directory; PAYLOAD_CORRUPT when a batch's data key
    fails to open (nothing is promoted; re-run after repairing it); DATABASE_UNAVAILABLE.
    """
    refuse_external_master_key()
    _check_chunk_size(chunk_size)
    lock = _lock_data_dir(data_dir)
    try:
        had_master = (data_dir / MASTER_KEY_FILE).exists()
        resumed = (data_dir / NEXT_MASTER_KEY_FILE).exists()
        keyring = prepare_next_key(data_dir)
        new = keyring.pending
        if new is None:
            raise AssertionError("prepare_next_key returned no pending key")
        old_key_id = keyring.current.key_id if had_master else None
        rewrapped = rewrap_data_keys(db, keyring, actor=actor, chunk_size=chunk_size)
        retired_file = promote_next_key(data_dir)
        return RotationResult(
            old_key_id=old_key_id,
            new_key_id=new.key_id,
            batches_rewrapped=rewrapped,
            resumed=resumed,
            retired_file=retired_file,
        )
    finally:
        lock.close()


def refuse_external_master_key() -> None:
    """Raises INVALID_ARGUMENT when ``$CARDSVC_MASTER_KEY_FILE`` or ``$CARDSVC_MASTER_KEY`` is
    set: that key lives outside the data directory, where this rotation cannot keep the old and
    new keys both loadable at every step. Reads the environment only."""
    source = crypto.master_key_source()
    if source is not None:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"the master key comes from ${source}, outside the data directory; rotate-master "
            "rotates only DATA_DIR/master.key. Unset the variable and put the key in "
            "DATA_DIR/master.key (mode 0600) to rotate it here, see docs/storage.md",
            {"field": source},
        )


def prepare_next_key(data_dir: Path) -> MasterKeyring:
    """Step 1: ``data_dir``'s keyring with a pending key, creating ``master.key.next`` (32
    random bytes, 0600, durable: file and directory fsynced) unless it exists already.

    Precondition: the caller holds the data directory's lock. Raises INVALID_ARGUMENT when the
    directory holds no master key, a key file is malformed, or ``master.key.next`` holds the
    current key (an operator's copy, not a rotation's key).
    """
    keyring = crypto.load_keyring(data_dir, create=False)
    if keyring.pending is None:
        write_file_durably(data_dir / NEXT_MASTER_KEY_FILE, os.urandom(crypto.KEY_LEN), 0o600)
        keyring = crypto.load_keyring(data_dir, create=False)
        if keyring.pending is None:
            raise AssertionError("master.key.next vanished after it was written")
        return keyring
    if (data_dir / MASTER_KEY_FILE).exists() and keyring.pending.key_id == keyring.current.key_id:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"{NEXT_MASTER_KEY_FILE} holds the current master key; remove it and run again",
            {"field": NEXT_MASTER_KEY_FILE, "data_dir": str(data_dir)},
        )
    return keyring


def rewrap_data_keys(
    db: Database, keyring: MasterKeyring, *, actor: str, chunk_size: int = REWRAP_CHUNK_MAX
) -> int:
    """Step 2: re-wraps every batch's data key that is not yet under ``keyring.pending``, in
    transactions of ``chunk_size`` batches (batch id order), each with one audit entry; returns
    how many it re-wrapped. Code payloads are not read or written.

    Preconditions: ``keyring.pending`` is set and durably on disk (``prepare_next_key``); the
    caller holds the data directory's lock. Raises INVALID_ARGUMENT without a pending key or for
    a ``chunk_size`` outside 1..REWRAP_CHUNK_MAX; PAYLOAD_CORRUPT (details: ``batch_id``,
    ``master_key_id``, ``reason``) when a data key fails to open, after committing the chunks
    before it; DATABASE_UNAVAILABLE.
    """
    _check_chunk_size(chunk_size)
    new = keyring.pending
    if new is None:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "no rotation in progress: the keyring has no pending master key",
            {"field": "master_key"},
        )
    old_key_id = keyring.current.key_id if keyring.current.key_id != new.key_id else None
    total, after_batch_id = 0, -1
    while True:
        with db.write() as session:
            rows = session.scalars(
                select(Batch)
                .where(Batch.master_key_id != new.key_id, Batch.batch_id > after_batch_id)
                .order_by(Batch.batch_id)
                .limit(chunk_size)
                .with_for_update()
            ).all()
            from_key_ids = sorted({row.master_key_id for row in rows})
            for row in rows:
                row.data_key_wrapped = _rewrap(
                    keyring, new, row.batch_id, row.master_key_id, row.data_key_wrapped
                )
                row.master_key_id = new.key_id
            complete = len(rows) < chunk_size
            details: dict[str, Any] = {
                "old_key_id": old_key_id,
                "new_key_id": new.key_id,
                "batches_rewrapped": len(rows),
                "rewrapped_from_key_ids": from_key_ids,
                "batch_ids": [rows[0].batch_id, rows[-1].batch_id] if rows else None,
                "complete": complete,
            }
            audit.append(
                session,
                actor=actor,
                action=ROTATE_ACTION,
                object_type="master_key",
                object_id=new.key_id,
                details=details,
            )
            if rows:
                after_batch_id = rows[-1].batch_id
        total += len(rows)
        if complete:
            return total


def promote_next_key(data_dir: Path) -> str | None:
    """Step 3: makes ``master.key.next`` the current ``master.key``, keeping the replaced key as
    ``master.key.<key_id>.retired``; returns that file's name (None when there was no other
    ``master.key`` to retire). Idempotent after a crash part-way: an existing retired file
    holding the same key is accepted.

    Preconditions: every batch is re-wrapped under the pending key (``rewrap_data_keys``
    returned); the caller holds the data directory's lock. Effects: a hard link, a rename, a
    directory fsync after each; ``master.key`` exists at every instant. Raises INVALID_ARGUMENT
    when ``master.key.next`` is missing or a retired file of that name holds another key.
    """
    current_path = data_dir / MASTER_KEY_FILE
    next_path = data_dir / NEXT_MASTER_KEY_FILE
    new = crypto.read_master_key_file(next_path)
    if new is None:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"no rotation to finish: {NEXT_MASTER_KEY_FILE} is missing",
            {"field": NEXT_MASTER_KEY_FILE, "data_dir": str(data_dir)},
        )
    old = crypto.read_master_key_file(current_path)
    retired_name: str | None = None
    if old is not None and old.key_id != new.key_id:
        retired_name = f"{MASTER_KEY_FILE}.{old.key_id}.retired"
        retired_path = data_dir / retired_name
        try:
            os.link(current_path, retired_path)
        except FileExistsError:
            existing = crypto.read_master_key_file(retired_path)
            if existing is None or existing.key_id != old.key_id:
                raise make_error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"{retired_name} exists and does not hold master key {old.key_id}",
                    {"field": "master_key", "path": str(retired_path)},
                ) from None
        fsync_dir(data_dir)
    os.replace(next_path, current_path)
    fsync_dir(data_dir)
    return retired_name


def _rewrap(
    keyring: MasterKeyring, new: MasterKey, batch_id: int, master_key_id: str, wrapped: bytes
) -> bytes:
    """Batch ``batch_id``'s data key wrapped under ``new``, checked to open again (a write is
    verified by reading it back). Raises PAYLOAD_CORRUPT naming the batch."""
    try:
        data_key = unwrap_data_key(keyring, master_key_id, bytes(wrapped))
    except CardsvcError as error:
        raise make_error(
            ErrorCode.PAYLOAD_CORRUPT,
            f"the data key of batch {batch_id} failed to open, so the rotation stopped there; "
            "every batch still opens, re-run rotate-master once the batch is repaired",
            {**error.details, "batch_id": batch_id},
        ) from None
    rewrapped = crypto.wrap_data_key(new, data_key)
    if unwrap_data_key(new, new.key_id, rewrapped) != data_key:
        raise AssertionError(f"batch {batch_id}'s re-wrapped data key does not open")
    return rewrapped


def _lock_data_dir(data_dir: Path) -> DataDirLock:
    """The data directory's lock; DATA_DIR_LOCKED with an operator's explanation if a running
    server (or another command) holds it."""
    try:
        return DataDirLock(data_dir)
    except CardsvcError as error:
        if error.code is not ErrorCode.DATA_DIR_LOCKED:
            raise
        raise make_error(
            ErrorCode.DATA_DIR_LOCKED,
            f"{error.message}: stop the server before rotating the master key (a running "
            "server caches data keys and wraps new batches under the current key)",
            error.details,
        ) from None


def _check_chunk_size(chunk_size: int) -> None:
    if not 1 <= chunk_size <= REWRAP_CHUNK_MAX:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"chunk_size must be between 1 and {REWRAP_CHUNK_MAX}",
            {"field": "chunk_size", "value": chunk_size},
        )
