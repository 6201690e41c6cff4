"""The keyed hash of a code's last four characters, stored with its payload so that support
can find a code by "last 4 + SKU" (what a customer reads off a masked receipt) without any
plaintext in SQL and without scanning or opening payloads.

``suffix_digest(key, sku, code)`` is the first 16 bytes of HMAC-SHA256 under a key derived from
the data directory's lookup key (the same secret that keys the core's code lookup, kept outside
the database), over the SKU and the last four characters of the code's canonical form (the
core's normalisation: separators removed, letters upper case).

What it leaks, stated plainly:

* To someone holding **only the database**: which codes of one SKU share their last four
  characters (equal digests), nothing about the characters themselves. With ~1.7 million
  possible suffixes (36^4) and 10 million codes, a digest matches about six codes of a SKU.
* To someone holding **the database and the lookup key** (the data directory): the last four
  characters of every code, by trying all 36^4 suffixes per SKU. That is exactly what a masked
  code shows anyway (``cardsvc.masking``: the last four stay readable), and the rest of a code
  (12 or more random characters in the default format, 60+ bits) stays as hard to guess.

The alternative, a bounded scan that opens a SKU's payloads and masks them, leaks nothing more
but costs O(codes of the SKU) decryptions per search (seconds at a million codes), so it is not
what the console does.
"""

from __future__ import annotations

import hashlib
import hmac

from cardsvc.engine import normalise_code
from cardsvc.errors import CardsvcError, invalid

SUFFIX_CHARS = 4
DIGEST_BYTES = 16
KEY_LABEL = b"cardsvc:code-suffix:v1"


def suffix_key(lookup_key: bytes) -> bytes:
    """The key of suffix digests, derived from the data directory's lookup key."""
    return hmac.new(lookup_key, KEY_LABEL, hashlib.sha256).digest()


def suffix_of(code: str) -> str | None:
    """The last four characters of ``code`` in canonical form, or None when it has fewer
    (or is not a code the core would accept)."""
    try:
        body = normalise_code(code)
    except CardsvcError:
        return None
    return body[-SUFFIX_CHARS:] if len(body) >= SUFFIX_CHARS else None


def suffix_digest(key: bytes, sku: str, suffix: str) -> bytes:
    """The digest of ``suffix`` (four canonical characters) for ``sku``. Pure."""
    message = sku.encode("utf-8") + b"\x00" + suffix.encode("ascii")
    return hmac.new(key, message, hashlib.sha256).digest()[:DIGEST_BYTES]


def typed_suffix(text: str) -> str:
    """The four characters a person typed for a search, canonical (``ab-12`` -> ``AB12``).
    Raises INVALID_ARGUMENT (field ``last4``) for anything else."""
    cleaned = "".join(ch for ch in text if ch not in " -").upper()
    if len(cleaned) != SUFFIX_CHARS or not cleaned.isascii() or not cleaned.isalnum():
        raise invalid("last4", "give the last 4 letters or digits of the code")
    return cleaned
