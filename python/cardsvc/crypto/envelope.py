"""Envelope encryption of codes and PINs at rest (DESIGN.md invariant 5): the sealed formats and
data keys (wrapping, unwrapping, a cache). Opening a code's payload is ``cardsvc.crypto.opening``,
which only the one plaintext exit (``cardsvc.delivery.reveal``) may import.

Three layers, each AES-256-GCM:

* the **master key** (``cardsvc.crypto.master_keys``) wraps
* one **data key** per batch (32 random bytes, stored wrapped in ``batches.data_key_wrapped`` with
  the master key's id in ``batches.master_key_id``), which seals
* each code's **payload** (``code_payloads.sealed``: the code text and PIN), with the code id as
  associated data, so a payload copied onto another code's row fails to open.

Sealed layouts: ``nonce (12 random bytes) || ciphertext || tag (16 bytes)``. Associated data:
``b"cardsvc:data-key:v1"`` for a wrapped data key, ``b"cardsvc:code:v1:" + code_id (8 bytes, big
endian)`` for a payload. Payload plaintext: ``flags (1 byte: 1 = has a PIN) || code length
(2 bytes, big endian) || code (UTF-8) || PIN (UTF-8)``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardsvc.crypto.master_keys import KEY_LEN, MasterKey, MasterKeyring, MasterKeys
from cardsvc.errors import ErrorCode, make_error

NONCE_LEN = 12
TAG_LEN = 16
DATA_KEY_AAD = b"cardsvc:data-key:v1"
CODE_AAD_PREFIX = b"cardsvc:code:v1:"
CODE_ID_MAX = (1 << 63) - 1
"""Code ids are the core's non-negative 64-bit ids (``BIGINT`` in SQL)."""
CODE_BYTES_MAX = 0xFFFF
"""The payload stores the code's UTF-8 length in 2 bytes (the core allows far shorter codes)."""
AEADS_CACHED_MAX = 1024
"""AESGCM objects kept for reuse, one per recently used data key (a few hundred bytes each)."""
DATA_KEY_CACHE_MAX = 1024
"""Unwrapped data keys a ``DataKeyCache`` keeps by default: 1024 batches, about 100 KB."""

FLAG_HAS_PIN = 1


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
    flags = FLAG_HAS_PIN if pin is not None else 0
    plaintext = bytes((flags,)) + len(code_bytes).to_bytes(2, "big") + code_bytes + pin_bytes
    nonce = os.urandom(NONCE_LEN)
    return nonce + aead_for(data_key).encrypt(nonce, plaintext, code_aad(code_id))


@functools.lru_cache(maxsize=AEADS_CACHED_MAX)
def aead_for(data_key: bytes) -> AESGCM:
    """One AESGCM object per data key, reused: building one costs about as much as sealing a
    code. Raises INVALID_ARGUMENT unless the key is 32 bytes."""
    if len(data_key) != KEY_LEN:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"a data key must be {KEY_LEN} bytes",
            {"field": "data_key", "length": len(data_key)},
        )
    return AESGCM(data_key)


def code_aad(code_id: int) -> bytes:
    if not 0 <= code_id <= CODE_ID_MAX:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "a code id must be between 0 and 2**63-1",
            {"field": "code_id", "value": code_id},
        )
    return CODE_AAD_PREFIX + code_id.to_bytes(8, "big")


def unwrap_data_key(master_keys: MasterKeys, master_key_id: str, wrapped: bytes) -> bytes:
    """The data key that ``wrap_data_key`` sealed under the master key ``master_key_id``, found
    in ``master_keys`` (a keyring, whose ``by_id`` is searched; a mapping by key id; or a
    single key).

    Raises PAYLOAD_CORRUPT when that master key is not loaded, or the wrapped key fails
    authentication (altered, or sealed under another key).
    """
    if isinstance(master_keys, MasterKey):
        master = master_keys if master_keys.key_id == master_key_id else None
    elif isinstance(master_keys, MasterKeyring):
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
