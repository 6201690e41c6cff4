"""Opening sealed payloads: the decrypt path of codes and PINs.

Only the one plaintext exit (``cardsvc.delivery.reveal``) may import this module; an import
contract in pyproject.toml enforces it. Failures to open raise PAYLOAD_CORRUPT, whose message and
details never contain code text.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from cardsvc.crypto.envelope import FLAG_HAS_PIN, NONCE_LEN, aead_for, code_aad
from cardsvc.errors import CardsvcError, ErrorCode, make_error


def open_code(data_key: bytes, code_id: int, sealed: bytes) -> tuple[str, str | None]:
    """``(code, pin)`` from the payload that ``seal_code`` made for ``code_id``.

    Raises PAYLOAD_CORRUPT when the payload fails authentication (altered, sealed for another
    code id or under another data key) or is malformed, INVALID_ARGUMENT for a ``code_id``
    outside 0..2**63-1. Messages and details name the code id only.
    """
    aad = code_aad(code_id)
    try:
        plaintext = aead_for(data_key).decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad)
        return _decode_payload(plaintext)
    except (InvalidTag, ValueError):
        # ValueError covers a short payload, a bad header and undecodable text. The cause is
        # dropped: decoding errors quote the bytes they failed on.
        raise _payload_corrupt(code_id) from None


def _decode_payload(plaintext: bytes) -> tuple[str, str | None]:
    """``(code, pin)`` from an opened payload; ValueError when it is malformed."""
    if len(plaintext) < 3 or plaintext[0] not in (0, FLAG_HAS_PIN):
        raise ValueError("bad payload header")
    code_end = 3 + int.from_bytes(plaintext[1:3], "big")
    if len(plaintext) < code_end or (plaintext[0] == 0 and len(plaintext) > code_end):
        raise ValueError("bad payload lengths")
    code = plaintext[3:code_end].decode("utf-8")
    pin = plaintext[code_end:].decode("utf-8") if plaintext[0] == FLAG_HAS_PIN else None
    return code, pin


def _payload_corrupt(code_id: int) -> CardsvcError:
    return make_error(
        ErrorCode.PAYLOAD_CORRUPT,
        f"the sealed payload of code id {code_id} failed to open",
        {"code_id": code_id},
    )


