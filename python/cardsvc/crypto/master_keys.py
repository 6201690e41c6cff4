"""Master keys: the key-encryption keys that wrap each batch's data key, and where they live.

A master key (32 bytes) is kept outside the database: ``$CARDSVC_MASTER_KEY_FILE``,
``$CARDSVC_MASTER_KEY`` or ``DATA_DIR/master.key``. Several can coexist (each batch names the one
that wrapped its data key), so a rotation re-wraps data keys batch by batch (``cardsvc keys
rotate-master``, ``cardsvc.catalog.key_rotation``). ``load_keyring`` returns every master key the
data directory holds (``master.key``, the pending ``master.key.next`` of a rotation that has not
finished, and retired ``master.key.<key_id>.retired`` keys) with the one that wraps new batches,
so every batch opens in every state a rotation can be interrupted in. The engine's lookup-hash key
(``DATA_DIR/lookup.key``, ``cardsvc.engine.datadir``) is a different key with a different job: it
only makes lookup hashes unguessable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias

from cardsvc.errors import ErrorCode, make_error
from cardsvc.files import fsync_dir, make_private_dir, write_file_durably

KEY_LEN = 32
"""AES-256: master keys and data keys are 32 bytes."""
MASTER_KEY_FILE = "master.key"
NEXT_MASTER_KEY_FILE = "master.key.next"
"""A rotation's new master key until it is promoted to ``master.key``
(cardsvc.catalog.key_rotation)."""
RETIRED_MASTER_KEY_GLOB = "master.key.*.retired"
"""Master keys a rotation replaced: ``master.key.<key_id>.retired``, kept until the operator
deletes them (backups of the database taken before the rotation still need them)."""
MASTER_KEY_FILE_ENV = "CARDSVC_MASTER_KEY_FILE"
MASTER_KEY_ENV = "CARDSVC_MASTER_KEY"
KEY_ID_PREFIX = b"cardsvc:master-key-id:v1:"


@dataclass(frozen=True)
class MasterKey:
    """A 32-byte key-encryption key and its id (``key_id``: 8 hex digits of SHA-256 over a
    purpose prefix and the key; it names the key in ``batches.master_key_id`` without revealing
    it). The key itself is left out of ``repr``."""

    key_id: str
    key: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, key: bytes) -> MasterKey:
        """Raises INVALID_ARGUMENT unless ``key`` is 32 bytes."""
        if len(key) != KEY_LEN:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"a master key must be {KEY_LEN} bytes",
                {"field": "master_key", "length": len(key)},
            )
        return cls(key_id=hashlib.sha256(KEY_ID_PREFIX + key).hexdigest()[:8], key=key)

    @classmethod
    def load(cls, data_dir: Path) -> MasterKey:
        """The master key that wraps new batches: ``load_keyring(data_dir).current`` (see
        there for where it comes from, what is created and what is raised). Kept for callers
        that know one key only; they cannot open batches a rotation re-wrapped before it
        finished, so the service uses ``load_keyring``."""
        return load_keyring(data_dir).current


@dataclass(frozen=True)
class MasterKeyring:
    """Every master key loaded, by key id (``by_id``, read-only, always holding ``current``),
    and the one that wraps new batches (``current``). ``pending`` is the new key of a rotation
    that has not finished (``master.key.next``), None otherwise; ``from_environment`` says the
    key came from ``$CARDSVC_MASTER_KEY_FILE`` or ``$CARDSVC_MASTER_KEY``."""

    current: MasterKey
    by_id: Mapping[str, MasterKey]
    pending: MasterKey | None = None
    from_environment: bool = False


MasterKeys: TypeAlias = MasterKeyring | Mapping[str, MasterKey] | MasterKey
"""What unwrapping accepts: a keyring, a mapping by key id, or a single key."""


def load_keyring(data_dir: Path, *, create: bool = True) -> MasterKeyring:
    """The master keys, from the first of:

    1. ``$CARDSVC_MASTER_KEY_FILE``: a file holding the 32 raw bytes, or their hex or base64
       text;
    2. ``$CARDSVC_MASTER_KEY``: the key as hex (64 digits) or base64 text;
    3. the data directory: ``master.key`` (current), ``master.key.next`` (pending, while a
       rotation is unfinished) and every ``master.key.<key_id>.retired``. When neither
       ``master.key`` nor ``master.key.next`` exists and ``create`` is set, ``master.key`` is
       created with random bytes (mode 0600, written durably); two processes starting together
       end up with the same key. With no ``master.key`` but a ``master.key.next`` (a state only
       an operator's hand makes), the pending key is current.

    An environment key is the keyring's only key (the data directory's files are not read).
    The data directory's files are read pending key first, so a reader racing a rotation's
    promotion (which renames ``master.key.next`` to ``master.key``) still finds the new key.
    Raises INVALID_ARGUMENT when both variables are set, the named file is missing, a key is
    not 32 bytes, or (``create`` unset) the data directory holds no master key.
    """
    from_environment = _master_key_from_environment()
    if from_environment is not None:
        return MasterKeyring(
            current=from_environment,
            by_id=MappingProxyType({from_environment.key_id: from_environment}),
            from_environment=True,
        )
    current_path = data_dir / MASTER_KEY_FILE
    pending = read_master_key_file(data_dir / NEXT_MASTER_KEY_FILE)
    current = read_master_key_file(current_path)
    if current is None and pending is None:
        if not create:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"the data directory {data_dir} holds no master key",
                {"field": "master_key", "data_dir": str(data_dir)},
            )
        _create_key_file(current_path)
        current = MasterKey.from_bytes(_read_key_file(current_path))
    by_id: dict[str, MasterKey] = {}
    for path in sorted(data_dir.glob(RETIRED_MASTER_KEY_GLOB)):
        retired = read_master_key_file(path)
        if retired is not None:
            by_id[retired.key_id] = retired
    for key in (pending, current):
        if key is not None:
            by_id[key.key_id] = key
    chosen = current if current is not None else pending
    if chosen is None:  # one of them was read or created above
        raise AssertionError("no current master key after loading")
    return MasterKeyring(current=chosen, by_id=MappingProxyType(by_id), pending=pending)


def _master_key_from_environment() -> MasterKey | None:
    """The master key ``$CARDSVC_MASTER_KEY_FILE`` or ``$CARDSVC_MASTER_KEY`` supplies, or None
    when neither is set. Raises INVALID_ARGUMENT when both are set, the named file is missing or
    the key is not 32 bytes."""
    file_setting = os.environ.get(MASTER_KEY_FILE_ENV) or None
    text_setting = os.environ.get(MASTER_KEY_ENV) or None
    if file_setting is not None and text_setting is not None:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"set only one of {MASTER_KEY_FILE_ENV} and {MASTER_KEY_ENV}",
            {"field": "master_key"},
        )
    if text_setting is not None:
        return MasterKey.from_bytes(_decode_key_text(text_setting.encode(), MASTER_KEY_ENV))
    if file_setting is None:
        return None
    path = Path(file_setting)
    if not path.is_file():
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"{MASTER_KEY_FILE_ENV} names a missing file",
            {"field": MASTER_KEY_FILE_ENV, "path": str(path)},
        )
    return MasterKey.from_bytes(_read_key_file(path))


def master_key_source() -> str | None:
    """The environment variable the master key comes from (``CARDSVC_MASTER_KEY_FILE`` or
    ``CARDSVC_MASTER_KEY``), or None when it comes from the data directory. Reads the
    environment only; validates nothing."""
    for name in (MASTER_KEY_FILE_ENV, MASTER_KEY_ENV):
        if os.environ.get(name):
            return name
    return None


def read_master_key_file(path: Path) -> MasterKey | None:
    """The master key in ``path`` (32 raw bytes, or their hex or base64 text), or None when the
    file does not exist (or vanished while being read: a rotation renamed it). Reads only.
    Raises INVALID_ARGUMENT when it does not hold a 32-byte key."""
    try:
        return MasterKey.from_bytes(_read_key_file(path))
    except FileNotFoundError:
        return None


def _decode_key_text(text: bytes, source: str) -> bytes:
    """32 key bytes from hex (64 digits) or base64 text, surrounding whitespace ignored.
    Raises INVALID_ARGUMENT for anything else; the message never repeats the text."""
    stripped = text.strip()
    try:
        key = bytes.fromhex(stripped.decode("ascii")) if len(stripped) == 2 * KEY_LEN else b""
        if not key:
            key = base64.b64decode(stripped, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_LEN:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"{source} must hold a {KEY_LEN}-byte key as hex or base64",
            {"field": source},
        )
    return key


def _read_key_file(path: Path) -> bytes:
    """A key file holds the 32 raw bytes, or their hex or base64 text."""
    content = path.read_bytes()
    if len(content) == KEY_LEN:
        return content
    return _decode_key_text(content, str(path))


def _create_key_file(path: Path) -> None:
    """Creates ``path`` with a random key, durably, unless another process got there first:
    the key is written to a private temporary name, then hard-linked into place, which fails
    (and leaves the winner's key) if the file already exists."""
    make_private_dir(path.parent)
    private = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    write_file_durably(private, os.urandom(KEY_LEN), 0o600)
    try:
        os.link(private, path)
    except FileExistsError:
        pass
    finally:
        private.unlink()
    fsync_dir(path.parent)
