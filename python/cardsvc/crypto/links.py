"""Tokens of the links the storefront mails (order links, one-time claim links): 128 bits
derived with HMAC-SHA256 from a secret key kept in the data directory, so the server can put the
same link in a mail and on the order page without ever storing the token itself; the database
holds only its SHA-256. Without the key the tokens are as unguessable as random ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from cardsvc import files

LINK_KEY_FILE = "link-secret.key"
LINK_KEY_BYTES = 32
TOKEN_BYTES = 16
"""128 bits, 22 characters of base64url."""


def load_link_key(data_dir: Path) -> bytes:
    """The link key of ``data_dir`` (created on first use: 32 random bytes, mode 0600)."""
    return files.load_random_key(data_dir, LINK_KEY_FILE, LINK_KEY_BYTES)


def derive_token(key: bytes, purpose: str, subject: str) -> str:
    """The token of ``purpose`` (``order-mail``, ``claim``) for ``subject`` (an order id and
    a number). Pure."""
    mac = hmac.new(key, f"{purpose}\0{subject}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:TOKEN_BYTES]).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """What the database stores of a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
