"""The hash-chained audit log: every privileged action, written in the caller's transaction.

``chain.py`` appends, queries and verifies entries; ``tables.py`` holds the entries and the head
row. Other packages append through this face (``audit.append(session, ...)``), last in their
transaction.
"""

from cardsvc.audit.chain import (
    DETAILS_BYTES_MAX,
    DETAILS_DEPTH_MAX,
    FIELD_LEN_MAX,
    GENESIS_HASH,
    QUERY_LIMIT_MAX,
    ChainCheck,
    append,
    canonical_json,
    chain_hash,
    list_entries,
    query,
    record,
    verify,
    verify_log,
)
from cardsvc.audit.tables import AUDIT_HEAD_ID, AuditEntry, AuditHead

__all__ = [
    "AUDIT_HEAD_ID",
    "DETAILS_BYTES_MAX",
    "DETAILS_DEPTH_MAX",
    "FIELD_LEN_MAX",
    "GENESIS_HASH",
    "QUERY_LIMIT_MAX",
    "AuditEntry",
    "AuditHead",
    "ChainCheck",
    "append",
    "canonical_json",
    "chain_hash",
    "list_entries",
    "query",
    "record",
    "verify",
    "verify_log",
]
