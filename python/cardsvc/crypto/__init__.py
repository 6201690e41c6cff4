"""Encryption of codes and PINs at rest: master keys, data keys, sealing.

The face exports the sealing side and the master keys. Opening a sealed payload is
``cardsvc.crypto.opening``, which an import contract allows only the one plaintext exit
(``cardsvc.delivery.reveal``) and master-key rotation to import.
"""

from cardsvc.crypto.envelope import (
    CODE_BYTES_MAX,
    CODE_ID_MAX,
    DATA_KEY_CACHE_MAX,
    new_data_key,
    seal_code,
    wrap_data_key,
)
from cardsvc.crypto.links import LINK_KEY_FILE, derive_token, load_link_key, token_hash
from cardsvc.crypto.master_keys import (
    KEY_LEN,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    MASTER_KEY_FILE_ENV,
    NEXT_MASTER_KEY_FILE,
    RETIRED_MASTER_KEY_GLOB,
    MasterKey,
    MasterKeyring,
    MasterKeys,
    load_keyring,
    master_key_source,
    read_master_key_file,
)
from cardsvc.crypto.public_ids import PUBLIC_ID_KEY_FILE, PublicIds, load_public_ids
from cardsvc.crypto.secret_box import SealedSecret, open_secret, seal_secret

__all__ = [
    "CODE_BYTES_MAX",
    "CODE_ID_MAX",
    "DATA_KEY_CACHE_MAX",
    "KEY_LEN",
    "LINK_KEY_FILE",
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE",
    "MASTER_KEY_FILE_ENV",
    "NEXT_MASTER_KEY_FILE",
    "PUBLIC_ID_KEY_FILE",
    "RETIRED_MASTER_KEY_GLOB",
    "MasterKey",
    "MasterKeyring",
    "MasterKeys",
    "PublicIds",
    "SealedSecret",
    "derive_token",
    "load_keyring",
    "load_link_key",
    "load_public_ids",
    "master_key_source",
    "new_data_key",
    "open_secret",
    "read_master_key_file",
    "seal_code",
    "seal_secret",
    "token_hash",
    "wrap_data_key",
]
