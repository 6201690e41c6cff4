"""Sealing small configuration secrets (payment channels' keys) with the same envelope as codes:
a data key per object, wrapped by the current master key, seals the secret with AES-256-GCM and
associated data naming the object, so a sealed blob copied onto another row fails to open.

This is not the plaintext exit of codes (``cardsvc.crypto.opening``, importable only by
``cardsvc.delivery.reveal``): it opens what :func:`seal_secret` sealed, whose associated data
starts with ``cardsvc:secret:v1:``, which no code payload's does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardsvc.crypto.envelope import NONCE_LEN, new_data_key, unwrap_data_key, wrap_data_key
from cardsvc.crypto.master_keys import MasterKeyring
from cardsvc.errors import ErrorCode, make_error

SECRET_AAD_PREFIX = b"cardsvc:secret:v1:"
SECRET_BYTES_MAX = 64 * 1024
"""A channel's secrets (a few PEM keys) are well under this."""


@dataclass(frozen=True)
class SealedSecret:
    """What to store: the master key's id, the wrapped data key and the sealed bytes."""

    master_key_id: str
    data_key_wrapped: bytes
    sealed: bytes


def seal_secret(keyring: MasterKeyring, subject: str, plaintext: bytes) -> SealedSecret:
    """``plaintext`` sealed under a new data key wrapped by the current master key; ``subject``
    (the row's id) is bound as associated data. Raises LIMIT_EXCEEDED over SECRET_BYTES_MAX."""
    if len(plaintext) > SECRET_BYTES_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "the secrets are too large",
                         {"field": "secrets", "max": SECRET_BYTES_MAX})
    data_key = new_data_key()
    nonce = os.urandom(NONCE_LEN)
    sealed = nonce + AESGCM(data_key).encrypt(nonce, plaintext, _aad(subject))
    return SealedSecret(keyring.current.key_id, wrap_data_key(keyring.current, data_key), sealed)


def open_secret(keyring: MasterKeyring, subject: str, secret: SealedSecret) -> bytes:
    """The plaintext :func:`seal_secret` sealed for ``subject``. Raises PAYLOAD_CORRUPT when the
    master key is not loaded or the blob fails authentication (altered, or another row's)."""
    data_key = unwrap_data_key(keyring, secret.master_key_id, secret.data_key_wrapped)
    try:
        return AESGCM(data_key).decrypt(secret.sealed[:NONCE_LEN], secret.sealed[NONCE_LEN:],
                                        _aad(subject))
    except (InvalidTag, ValueError):
        raise make_error(ErrorCode.PAYLOAD_CORRUPT, "a sealed secret failed to open",
                         {"subject": subject[:64]}) from None


def _aad(subject: str) -> bytes:
    return SECRET_AAD_PREFIX + subject.encode("utf-8")
