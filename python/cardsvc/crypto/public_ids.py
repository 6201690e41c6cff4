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
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cardsvc.errors import ErrorCode, make_error
from cardsvc.files import write_file_durably

PUBLIC_ID_KEY_FILE = "public-ids.key"
PUBLIC_ID_KEY_LEN = 32
KINDS = {"rdm": 1}
"""Kinds of public ids and their tag byte: ``rdm`` for redemptions."""
ID_TEXT_LEN = 26
"""Base32 characters of one encrypted block (16 bytes) without padding."""


class PublicIds:
    """Encodes and decodes the public ids of one data directory. Thread-safe (no state)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != PUBLIC_ID_KEY_LEN:
            raise ValueError(f"a public id key is {PUBLIC_ID_KEY_LEN} bytes")
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())

    def encode(self, kind: str, number: int) -> str:
        """The public id of internal ``number`` (0..2^64-1) of ``kind``. Pure."""
        block = bytes([KINDS[kind]]) + number.to_bytes(8, "big") + bytes(7)
        encryptor = self._cipher.encryptor()
        sealed = encryptor.update(block) + encryptor.finalize()
        return f"{kind}_" + base64.b32encode(sealed).decode("ascii").rstrip("=").lower()

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
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_file_durably(path, os.urandom(PUBLIC_ID_KEY_LEN), 0o600)
    key = path.read_bytes()
    if len(key) != PUBLIC_ID_KEY_LEN:
        raise make_error(ErrorCode.INVALID_ARGUMENT,
                         f"the public id key must hold exactly {PUBLIC_ID_KEY_LEN} bytes",
                         {"field": "public_id_key", "path": str(path)})
    return PublicIds(key)
