"""Tokens of the links the storefront mails (order links, one-time claim links): 128 bits
derived with HMAC-SHA256 from a secret key kept in the data directory, so the server can put the
same link in a mail and on the order page without ever storing the token itself; the database
holds only its SHA-256. Without the key the tokens are as unguessable as random ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

LINK_KEY_FILE = "link-secret.key"
LINK_KEY_BYTES = 32
TOKEN_BYTES = 16
"""128 bits, 22 characters of base64url."""


def load_link_key(data_dir: Path) -> bytes:
    """The link key of ``data_dir`` (created on first use: 32 random bytes, mode 0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LINK_KEY_FILE
    if not path.exists():
        aside = data_dir / f".{LINK_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(LINK_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    key = path.read_bytes()
    if len(key) < LINK_KEY_BYTES:
        raise ValueError(f"{path} holds fewer than {LINK_KEY_BYTES} bytes")
    return key


def derive_token(key: bytes, purpose: str, subject: str) -> str:
    """The token of ``purpose`` (``order-mail``, ``claim``) for ``subject`` (an order id and
    a number). Pure."""
    mac = hmac.new(key, f"{purpose}\0{subject}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:TOKEN_BYTES]).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """What the database stores of a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
