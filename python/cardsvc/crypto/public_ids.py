"""Opaque public ids: the ids terminals and agents see, which reveal nothing of volume.

The core numbers redemptions 0, 1, 2...: handing those numbers out would tell any terminal how
many redemptions the platform makes (two redemptions a day apart give the rate), and invite
walking the sequence. A public id is instead the internal number encrypted under a key of the
data directory: AES-256 of one block (a kind tag byte, the 64-bit number, seven zero bytes),
written as ``<prefix>_`` + 26 base32 characters. It maps back without any table, and a forged or
mistyped id decrypts to a block whose tag or zero bytes do not match (a chance of 2^-64), so it
is simply unknown. Ids of different kinds never decode as each other.

The key (``DIR/public-ids.key``, 32 random bytes, mode 0600, made on first start) never
rotates: rotating it would change every id already handed out. It is not a secret that guards
codes; it only keeps counts private. Stdlib and ``cryptography`` only (floor 1).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cardsvc.errors import ErrorCode, make_error
from cardsvc.files import load_random_key

PUBLIC_ID_KEY_FILE = "public-ids.key"
PUBLIC_ID_KEY_LEN = 32
KINDS = {"rdm": 1}
"""Kinds of public ids and their tag byte: ``rdm`` for redemptions."""
ID_TEXT_LEN = 26
"""Base32 characters of one encrypted block (16 bytes) without padding."""


_BASE32_LOWER = bytes(b"abcdefghijklmnopqrstuvwxyz234567"[i] if i < 32 else 0 for i in range(256))
"""``bytes.translate`` table: a 5-bit value (0..31) to its lower-case base32 character."""


def _base32_blocks(sealed: bytes) -> list[str]:
    """The lower-case, unpadded base32 text (26 characters) of each 16-byte block of
    ``sealed``, as ``base64.b32encode`` gives it, without a Python step per 5 bytes: each block
    is padded to 20 bytes (4 groups of 40 bits, the last group's 8 bits then zeros), each group
    placed in the low 5 bytes of its own 64-bit slot (strided slice copies), the 8 five-bit
    fields of every slot moved to a byte each by 8 mask-and-shift operations on one integer,
    and the bytes translated to characters. Characters 27..32 of a block (the padding's) are
    dropped."""
    count = len(sealed) // 16
    padded = bytearray(count * 20)
    for j in range(16):
        padded[j::20] = sealed[j::16]
    slots = bytearray(count * 32)
    for j in range(5):
        slots[3 + j::8] = padded[j::5]
    value = int.from_bytes(slots, "big")
    spread = 0
    for k in range(8):
        mask = int.from_bytes((31 << (5 * k)).to_bytes(8, "big") * (count * 4), "big")
        spread |= (value & mask) << (3 * k)
    text = spread.to_bytes(count * 32, "big").translate(_BASE32_LOWER).decode("ascii")
    return [text[32 * i:32 * i + ID_TEXT_LEN] for i in range(count)]


class PublicIds:
    """Encodes and decodes the public ids of one data directory. Thread-safe: each thread keeps
    its own AES-ECB encryptor (ECB carries no state from block to block, so one context encrypts
    any number of blocks; making a context costs ~5 µs, more than the block itself)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != PUBLIC_ID_KEY_LEN:
            raise ValueError(f"a public id key is {PUBLIC_ID_KEY_LEN} bytes")
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())
        self._local = threading.local()

    def _encryptor(self) -> Any:
        encryptor = getattr(self._local, "encryptor", None)
        if encryptor is None:
            encryptor = self._local.encryptor = self._cipher.encryptor()
        return encryptor

    def encode(self, kind: str, number: int) -> str:
        """The public id of internal ``number`` (0..2^64-1) of ``kind``. Pure."""
        block = bytes([KINDS[kind]]) + number.to_bytes(8, "big") + bytes(7)
        sealed = self._encryptor().update(block)
        return f"{kind}_" + base64.b32encode(sealed).decode("ascii").rstrip("=").lower()

    def encode_many(self, kind: str, numbers: Sequence[int]) -> list[str]:
        """``[encode(kind, n) for n in numbers]``, with one cipher call for all of them and a
        base32 done by whole-buffer operations (:func:`_base32_blocks`)."""
        tag = bytes([KINDS[kind]])
        tail = bytes(7)
        blocks = b"".join([tag + number.to_bytes(8, "big") + tail for number in numbers])
        sealed = self._encryptor().update(blocks)
        prefix = f"{kind}_"
        return [prefix + text for text in _base32_blocks(sealed)]

    def decode(self, kind: str, text: str) -> int | None:
        """The internal number of a public id of ``kind``, or None when ``text`` is not one
        (malformed, forged, another kind). Pure; never raises for bad input."""
        prefix = f"{kind}_"
        if not isinstance(text, str) or not text.startswith(prefix):
            return None
        body = text[len(prefix):]
        if len(body) != ID_TEXT_LEN or not body.isascii():
            return None
        try:
            sealed = base64.b32decode(body.upper() + "======")
        except (binascii.Error, ValueError):
            return None
        decryptor = self._cipher.decryptor()
        block = decryptor.update(sealed) + decryptor.finalize()
        if block[0] != KINDS[kind] or block[9:] != bytes(7):
            return None
        return int.from_bytes(block[1:9], "big")


def load_public_ids(data_dir: Path) -> PublicIds:
    """The data directory's public-id key (``DIR/public-ids.key``, created with 32 random bytes
    and mode 0600 on first use). Raises INVALID_ARGUMENT when the file holds another length."""
    path = data_dir / PUBLIC_ID_KEY_FILE
    try:
        key = load_random_key(data_dir, PUBLIC_ID_KEY_FILE, PUBLIC_ID_KEY_LEN)
    except ValueError:
        key = b""  # too short: refused below like any other wrong length
    if len(key) != PUBLIC_ID_KEY_LEN:
        raise make_error(ErrorCode.INVALID_ARGUMENT,
                         f"the public id key must hold exactly {PUBLIC_ID_KEY_LEN} bytes",
                         {"field": "public_id_key", "path": str(path)})
    return PublicIds(key)
