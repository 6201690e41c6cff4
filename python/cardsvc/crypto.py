"""Envelope encryption of codes and PINs at rest (DESIGN.md invariant 5).

Three layers, each AES-256-GCM:

* the **master key** (32 bytes, outside the database: ``$CARDSVC_MASTER_KEY_FILE``,
  ``$CARDSVC_MASTER_KEY`` or ``DATA_DIR/master.key``) wraps
* one **data key** per batch (32 random bytes, stored wrapped in ``batches.data_key_wrapped`` with
  the master key's id in ``batches.master_key_id``), which seals
* each code's **payload** (``code_payloads.sealed``: the code text and PIN), with the code id as
  associated data, so a payload copied onto another code's row fails to open.

Sealed layouts: ``nonce (12 random bytes) || ciphertext || tag (16 bytes)``. Associated data:
``b"cardsvc:data-key:v1"`` for a wrapped data key, ``b"cardsvc:code:v1:" + code_id (8 bytes, big
endian)`` for a payload. Payload plaintext: ``flags (1 byte: 1 = has a PIN) || code length
(2 bytes, big endian) || code (UTF-8) || PIN (UTF-8)``.

Several master keys can coexist (each batch names its own), so a rotation rewraps data keys batch
by batch (``cardsvc keys rotate-master``, cardsvc.master_keys). ``load_keyring`` returns every
master key the data directory holds (``master.key``, the pending ``master.key.next`` of a rotation
that has not finished, and retired ``master.key.<key_id>.retired`` keys) with the one that wraps
new batches, so every batch opens in every state a rotation can be interrupted in. The engine's
lookup-hash key (``DATA_DIR/lookup.key``, cardsvc.datadir) is a different key with a different
job: it only makes lookup hashes unguessable.

Failures to open raise PAYLOAD_CORRUPT, whose message and details never contain code text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardsvc.datadir import fsync_dir, write_file_durably
from cardsvc.errors import CardsvcError, ErrorCode, make_error

KEY_LEN = 32
"""AES-256: master keys and data keys are 32 bytes."""
NONCE_LEN = 12
TAG_LEN = 16
MASTER_KEY_FILE = "master.key"
NEXT_MASTER_KEY_FILE = "master.key.next"
"""A rotation's new master key until it is promoted to ``master.key`` (cardsvc.master_keys)."""
RETIRED_MASTER_KEY_GLOB = "master.key.*.retired"
"""Master keys a rotation replaced: ``master.key.<key_id>.retired``, kept until the operator
deletes them (backups of the database taken before the rotation still need them)."""
MASTER_KEY_FILE_ENV = "CARDSVC_MASTER_KEY_FILE"
MASTER_KEY_ENV = "CARDSVC_MASTER_KEY"
DATA_KEY_AAD = b"cardsvc:data-key:v1"
CODE_AAD_PREFIX = b"cardsvc:code:v1:"
KEY_ID_PREFIX = b"cardsvc:master-key-id:v1:"
CODE_ID_MAX = (1 << 63) - 1
"""Code ids are the core's non-negative 64-bit ids (``BIGINT`` in SQL)."""
CODE_BYTES_MAX = 0xFFFF
"""The payload stores the code's UTF-8 length in 2 bytes (the core allows far shorter codes)."""
AEADS_CACHED_MAX = 1024
"""AESGCM objects kept for reuse, one per recently used data key (a few hundred bytes each)."""
DATA_KEY_CACHE_MAX = 1024
"""Unwrapped data keys a ``DataKeyCache`` keeps by default: 1024 batches, about 100 KB."""

_FLAG_HAS_PIN = 1


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
class Keyring:
    """Every master key loaded, by key id (``by_id``, read-only, always holding ``current``),
    and the one that wraps new batches (``current``). ``pending`` is the new key of a rotation
    that has not finished (``master.key.next``), None otherwise; ``from_environment`` says the
    key came from ``$CARDSVC_MASTER_KEY_FILE`` or ``$CARDSVC_MASTER_KEY``."""

    current: MasterKey
    by_id: Mapping[str, MasterKey]
    pending: MasterKey | None = None
    from_environment: bool = False


MasterKeys: TypeAlias = Keyring | Mapping[str, MasterKey] | MasterKey
"""What unwrapping accepts: a keyring, a mapping by key id, or a single key."""


def load_keyring(data_dir: Path, *, create: bool = True) -> Keyring:
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
        return Keyring(
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
    return Keyring(current=chosen, by_id=MappingProxyType(by_id), pending=pending)


def new_data_key() -> bytes:
    """A fresh random data key (32 bytes) for one batch."""
    return os.urandom(KEY_LEN)


def wrap_data_key(master: MasterKey, data_key: bytes) -> bytes:
    """``data_key`` sealed under ``master`` (store it with ``master.key_id``).
    Raises INVALID_ARGUMENT unless ``data_key`` is 32 bytes."""
    if len(data_key) != KEY_LEN:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"a data key must be {KEY_LEN} bytes",
            {"field": "data_key", "length": len(data_key)},
        )
    nonce = os.urandom(NONCE_LEN)
    return nonce + AESGCM(master.key).encrypt(nonce, data_key, DATA_KEY_AAD)


def unwrap_data_key(master_keys: MasterKeys, master_key_id: str, wrapped: bytes) -> bytes:
    """The data key that ``wrap_data_key`` sealed under the master key ``master_key_id``, found
    in ``master_keys`` (a keyring, whose ``by_id`` is searched; a mapping by key id; or a
    single key).

    Raises PAYLOAD_CORRUPT when that master key is not loaded, or the wrapped key fails
    authentication (altered, or sealed under another key).
    """
    if isinstance(master_keys, MasterKey):
        master = master_keys if master_keys.key_id == master_key_id else None
    elif isinstance(master_keys, Keyring):
        master = master_keys.by_id.get(master_key_id)
    else:
        master = master_keys.get(master_key_id)
    if master is None:
        raise make_error(
            ErrorCode.PAYLOAD_CORRUPT,
            f"the data key was wrapped with master key {master_key_id}, which is not loaded",
            {"master_key_id": master_key_id, "reason": "master_key_not_loaded"},
        )
    try:
        data_key = AESGCM(master.key).decrypt(
            wrapped[:NONCE_LEN], wrapped[NONCE_LEN:], DATA_KEY_AAD
        )
    except (InvalidTag, ValueError):
        data_key = b""
    if len(data_key) != KEY_LEN:
        raise make_error(
            ErrorCode.PAYLOAD_CORRUPT,
            "a wrapped data key failed to open",
            {"master_key_id": master_key_id, "reason": "authentication_failed"},
        )
    return data_key


def seal_code(data_key: bytes, code_id: int, code: str, pin: str | None) -> bytes:
    """The sealed payload of code ``code_id``: its text and PIN (None: the code has none).

    Pure apart from drawing a random nonce. Raises INVALID_ARGUMENT when ``code_id`` is outside
    0..2**63-1, the code's UTF-8 form is longer than 65535 bytes, or the text cannot be encoded
    (lone surrogates); the message never contains the code.
    """
    try:
        code_bytes = code.encode("utf-8")
        pin_bytes = b"" if pin is None else pin.encode("utf-8")
    except UnicodeEncodeError:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "the code or PIN is not valid text",
            {"field": "code", "code_id": code_id},
        ) from None
    if len(code_bytes) > CODE_BYTES_MAX:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"a code may be at most {CODE_BYTES_MAX} bytes",
            {"field": "code", "code_id": code_id},
        )
    flags = _FLAG_HAS_PIN if pin is not None else 0
    plaintext = bytes((flags,)) + len(code_bytes).to_bytes(2, "big") + code_bytes + pin_bytes
    nonce = os.urandom(NONCE_LEN)
    return nonce + _aead(data_key).encrypt(nonce, plaintext, _code_aad(code_id))


def open_code(data_key: bytes, code_id: int, sealed: bytes) -> tuple[str, str | None]:
    """``(code, pin)`` from the payload that ``seal_code`` made for ``code_id``.

    Raises PAYLOAD_CORRUPT when the payload fails authentication (altered, sealed for another
    code id or under another data key) or is malformed, INVALID_ARGUMENT for a ``code_id``
    outside 0..2**63-1. Messages and details name the code id only.
    """
    aad = _code_aad(code_id)
    try:
        plaintext = _aead(data_key).decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad)
        return _decode_payload(plaintext)
    except (InvalidTag, ValueError):
        # ValueError covers a short payload, a bad header and undecodable text. The cause is
        # dropped: decoding errors quote the bytes they failed on.
        raise _payload_corrupt(code_id) from None


class DataKeyCache:
    """A bounded LRU of unwrapped data keys by batch id, for the delivery path (each batch's
    key is unwrapped once, not once per code). Thread-safe."""

    def __init__(self, max_entries: int = DATA_KEY_CACHE_MAX) -> None:
        if max_entries < 1:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                "a data key cache needs room for at least one key",
                {"field": "max_entries", "value": max_entries},
            )
        self.max_entries = max_entries
        self._keys: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def get_or_unwrap(
        self,
        batch_id: int,
        master_keys: MasterKeys,
        master_key_id: str,
        wrapped: bytes,
    ) -> bytes:
        """Batch ``batch_id``'s data key: cached, else unwrapped (``unwrap_data_key``, whose
        errors it raises) and cached, evicting the least recently used key when full."""
        with self._lock:
            data_key = self._keys.get(batch_id)
            if data_key is not None:
                self._keys.move_to_end(batch_id)
                return data_key
        data_key = unwrap_data_key(master_keys, master_key_id, wrapped)
        with self._lock:
            self._keys[batch_id] = data_key
            self._keys.move_to_end(batch_id)
            while len(self._keys) > self.max_entries:
                self._keys.popitem(last=False)
        return data_key

    def discard(self, batch_id: int) -> None:
        """Forgets batch ``batch_id``'s key (after its data key was rewrapped or the batch
        removed)."""
        with self._lock:
            self._keys.pop(batch_id, None)


@functools.lru_cache(maxsize=AEADS_CACHED_MAX)
def _aead(data_key: bytes) -> AESGCM:
    """One AESGCM object per data key, reused: building one costs about as much as sealing a
    code. Raises INVALID_ARGUMENT unless the key is 32 bytes."""
    if len(data_key) != KEY_LEN:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"a data key must be {KEY_LEN} bytes",
            {"field": "data_key", "length": len(data_key)},
        )
    return AESGCM(data_key)


def _code_aad(code_id: int) -> bytes:
    if not 0 <= code_id <= CODE_ID_MAX:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "a code id must be between 0 and 2**63-1",
            {"field": "code_id", "value": code_id},
        )
    return CODE_AAD_PREFIX + code_id.to_bytes(8, "big")


def _decode_payload(plaintext: bytes) -> tuple[str, str | None]:
    """``(code, pin)`` from an opened payload; ValueError when it is malformed."""
    if len(plaintext) < 3 or plaintext[0] not in (0, _FLAG_HAS_PIN):
        raise ValueError("bad payload header")
    code_end = 3 + int.from_bytes(plaintext[1:3], "big")
    if len(plaintext) < code_end or (plaintext[0] == 0 and len(plaintext) > code_end):
        raise ValueError("bad payload lengths")
    code = plaintext[3:code_end].decode("utf-8")
    pin = plaintext[code_end:].decode("utf-8") if plaintext[0] == _FLAG_HAS_PIN else None
    return code, pin


def _payload_corrupt(code_id: int) -> CardsvcError:
    return make_error(
        ErrorCode.PAYLOAD_CORRUPT,
        f"the sealed payload of code id {code_id} failed to open",
        {"code_id": code_id},
    )


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
    path.parent.mkdir(parents=True, exist_ok=True)
    private = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    write_file_durably(private, os.urandom(KEY_LEN), 0o600)
    try:
        os.link(private, path)
    except FileExistsError:
        pass
    finally:
        private.unlink()
    fsync_dir(path.parent)
