"""The append-only, hash-chained audit log (table ``audit_log``, head row ``audit_head``).

Each entry ``seq`` (1, 2, 3, ...) stores ``prev_hash`` (the previous entry's hash; 32 zero bytes
for entry 1) and ``entry_hash = SHA-256(prev_hash || canonical JSON)``, where the canonical JSON
is the object ``{"action", "actor", "at_ms", "details", "object_id", "object_type", "seq"}`` with
keys sorted, no spaces, UTF-8, non-finite floats refused. Changing, removing or reordering any
entry therefore breaks the chain from that entry on, and ``audit_head`` (the last entry's seq and
hash, advanced in the same transaction as every append) catches entries cut from the tail.

Appends run inside the caller's write transaction, so an audited change and its entry commit or
roll back together. They take turns on the head row: SQLite's single writer serialises them, and
on PostgreSQL ``append`` locks the head row (``SELECT ... FOR UPDATE``) until the transaction
ends, so two transactions can never both extend the same entry. Call ``append`` last in a
transaction: the lock is held to the end, and taking it last keeps lock order the same everywhere.

Details must never hold a plaintext code or PIN: pass ``cardsvc.masking.mask_code`` forms.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cardsvc.audit.tables import AUDIT_HEAD_ID, AuditEntry, AuditHead
from cardsvc.db import Database
from cardsvc.db.base import ID_LEN_MAX, REF_LEN_MAX
from cardsvc.errors import ErrorCode, make_error

GENESIS_HASH = bytes(32)
"""``prev_hash`` of the first entry, and the head's hash while the log is empty."""
QUERY_LIMIT_MAX = 1000
"""Entries one ``query`` returns at most (page with ``after_seq``); ~1 KB each in memory."""
DETAILS_BYTES_MAX = 16 * 1024
"""An entry's details, as canonical JSON: room for ids, counts and masked codes, not bulk data."""
DETAILS_DEPTH_MAX = 16
"""Nesting depth of details (deeper structures are data, not an audit record)."""
VERIFY_PAGE_SIZE = 1000
"""Entries ``verify`` reads per query, keyset-paginated, so its memory stays flat."""
FIELD_LEN_MAX = {
    "actor": ID_LEN_MAX,
    "action": 64,
    "object_type": 32,
    "object_id": REF_LEN_MAX,
}
"""The column widths of ``audit_log`` (cardsvc.db.models.AuditEntry)."""


@dataclass(frozen=True)
class ChainCheck:
    """The result of ``verify``: ``ok``, how many entries were found intact, and for a broken
    chain the first entry that is wrong (or missing) and why."""

    ok: bool
    entries_checked: int
    first_broken_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
        }


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any],
    at_ms: int | None = None,
) -> AuditEntry:
    """Appends one entry to the chain in ``session``'s transaction (it commits with it) and
    returns it. ``at_ms`` defaults to now.

    Precondition: ``session`` is in a write transaction (``Database.write()``). Effects: inserts
    the entry and advances the head row, which stays locked until the transaction ends. Raises
    INVALID_ARGUMENT for an empty or non-text field, a negative time, or details that are not
    JSON-safe (a dict with text keys holding dicts, lists, text, ints, finite floats, booleans
    and None); LIMIT_EXCEEDED for a field longer than its column or details over 16 KiB.
    """
    fields = {"actor": actor, "action": action, "object_type": object_type, "object_id": object_id}
    for name, value in fields.items():
        _check_field(name, value)
    when_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    if isinstance(when_ms, bool) or not isinstance(when_ms, int) or when_ms < 0:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "at_ms must be a non-negative integer",
            {"field": "at_ms"},
        )
    stored_details = _json_safe_copy(details)

    head_seq, head_hash = session.execute(
        select(AuditHead.seq, AuditHead.entry_hash)
        .where(AuditHead.head_id == AUDIT_HEAD_ID)
        .with_for_update()
    ).one()
    seq = head_seq + 1
    entry_hash = chain_hash(head_hash, seq, when_ms, fields, stored_details)
    entry = AuditEntry(
        seq=seq,
        at_ms=when_ms,
        details=stored_details,
        prev_hash=head_hash,
        entry_hash=entry_hash,
        **fields,
    )
    session.add(entry)
    session.execute(
        update(AuditHead)
        .where(AuditHead.head_id == AUDIT_HEAD_ID)
        .values(seq=seq, entry_hash=entry_hash)
    )
    session.flush()
    return entry


def record(
    db: Database, *, actor: str, action: str, object_type: str, object_id: str,
    details: dict[str, Any], at_ms: int,
) -> None:
    """Appends one entry in a transaction of its own: for events of the hot path (a rollback, a
    lockout) whose effect is already journaled in the core. Raises as :func:`append`."""
    with db.write() as session:
        append(session, actor=actor, action=action, object_type=object_type,
               object_id=object_id, details=details, at_ms=at_ms)


def list_entries(db: Database, **filters: Any) -> list[AuditEntry]:
    """:func:`query` in a read transaction of its own (``filters`` as there)."""
    with db.read() as session:
        return query(session, **filters)


def verify_log(db: Database) -> ChainCheck:
    """:func:`verify` in a read transaction of its own."""
    with db.read() as session:
        return verify(session)


def chain_hash(
    prev_hash: bytes, seq: int, at_ms: int, fields: dict[str, str], details: dict[str, Any]
) -> bytes:
    """``SHA-256(prev_hash || canonical JSON)`` of an entry (the format in the module doc).
    ``fields`` holds actor, action, object_type and object_id. Pure."""
    document = {"seq": seq, "at_ms": at_ms, "details": details, **fields}
    return hashlib.sha256(prev_hash + canonical_json(document)).digest()


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that entry hashes cover: keys sorted, no whitespace,
    UTF-8. Raises ValueError for NaN or infinity, UnicodeEncodeError for lone surrogates."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    after_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries matching every given filter, oldest first: ``since_ms <= at_ms < until_ms``,
    ``seq > after_seq`` (pass the last seq of a page to get the next), at most ``limit``.
    Reads only. Raises INVALID_ARGUMENT for ``limit < 1``, LIMIT_EXCEEDED above 1000.
    """
    if limit < 1:
        raise make_error(ErrorCode.INVALID_ARGUMENT, "limit must be at least 1", {"field": "limit"})
    if limit > QUERY_LIMIT_MAX:
        raise make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"limit may be at most {QUERY_LIMIT_MAX}",
            {"field": "limit", "max": QUERY_LIMIT_MAX},
        )
    statement = select(AuditEntry).order_by(AuditEntry.seq).limit(limit)
    equal = {
        AuditEntry.actor: actor,
        AuditEntry.action: action,
        AuditEntry.object_type: object_type,
        AuditEntry.object_id: object_id,
    }
    for column, value in equal.items():
        if value is not None:
            statement = statement.where(column == value)
    if since_ms is not None:
        statement = statement.where(AuditEntry.at_ms >= since_ms)
    if until_ms is not None:
        statement = statement.where(AuditEntry.at_ms < until_ms)
    if after_seq is not None:
        statement = statement.where(AuditEntry.seq > after_seq)
    return list(session.scalars(statement))


def verify(session: Session, *, page_size: int = VERIFY_PAGE_SIZE) -> ChainCheck:
    """Walks the whole chain in seq order and checks every link: seqs are 1, 2, 3, ... with no
    gap, each ``prev_hash`` is the previous entry's hash, each ``entry_hash`` matches the
    entry's contents, and the last entry is the head row. Reads only, ``page_size`` entries at a
    time. Entries appended while it runs are outside the head it read first, and not checked.

    Returns a ``ChainCheck`` naming the first broken (or missing) seq; raises nothing of its own.
    """
    head = session.execute(
        select(
            AuditHead.seq,
            AuditHead.entry_hash,
            select(func.max(AuditEntry.seq)).scalar_subquery(),
        ).where(AuditHead.head_id == AUDIT_HEAD_ID)
    ).one_or_none()
    if head is None:
        return ChainCheck(False, 0, 1, "the audit_head row is missing")
    head_seq, head_hash, max_seq = head
    prev_hash, checked = GENESIS_HASH, 0
    columns = (
        AuditEntry.seq,
        AuditEntry.at_ms,
        AuditEntry.actor,
        AuditEntry.action,
        AuditEntry.object_type,
        AuditEntry.object_id,
        AuditEntry.details,
        AuditEntry.prev_hash,
        AuditEntry.entry_hash,
    )
    while checked < head_seq:
        # Keyset pagination: rows without ORM identity tracking, one page in memory at a time.
        rows = session.execute(
            select(*columns)
            .where(AuditEntry.seq > checked, AuditEntry.seq <= head_seq)
            .order_by(AuditEntry.seq)
            .limit(page_size)
        ).all()
        if not rows:
            break
        for row in rows:
            problem = _link_problem(row, checked + 1, prev_hash)
            if problem is not None:
                return ChainCheck(False, checked, checked + 1, problem)
            prev_hash, checked = row.entry_hash, checked + 1
    if checked < head_seq:
        return ChainCheck(
            False, checked, checked + 1, f"entries {checked + 1}..{head_seq} are missing"
        )
    if prev_hash != head_hash:
        return ChainCheck(
            False, checked, head_seq, f"entry {head_seq} does not match the chain head"
        )
    if max_seq is not None and max_seq > head_seq:
        return ChainCheck(
            False, checked, head_seq + 1, f"entries after the chain head (seq {head_seq}) exist"
        )
    return ChainCheck(True, checked)


def _link_problem(row: Any, expected_seq: int, prev_hash: bytes) -> str | None:
    """Why entry ``row`` does not continue the chain at ``expected_seq`` after ``prev_hash``,
    or None when it does."""
    if row.seq != expected_seq:
        return f"entry {expected_seq} is missing (the next entry is {row.seq})"
    if bytes(row.prev_hash) != prev_hash:
        return f"entry {row.seq}: prev_hash is not the hash of entry {row.seq - 1}"
    fields = {
        "actor": row.actor,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
    }
    try:
        expected_hash = chain_hash(prev_hash, row.seq, row.at_ms, fields, row.details)
    except (TypeError, ValueError):
        return f"entry {row.seq}: its details are not canonical JSON"
    if bytes(row.entry_hash) != expected_hash:
        return f"entry {row.seq}: entry_hash does not match its contents"
    return None


def _check_field(name: str, value: object) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"{name} must be non-empty text without NUL characters",
            {"field": name},
        )
    if len(value) > FIELD_LEN_MAX[name]:
        raise make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"{name} may be at most {FIELD_LEN_MAX[name]} characters",
            {"field": name, "max": FIELD_LEN_MAX[name]},
        )


def _json_safe_copy(details: object) -> dict[str, Any]:
    """A fresh copy of ``details`` as it will read back from the database (so the stored value
    is exactly what was hashed, whatever the caller does with its dict afterwards)."""
    if not isinstance(details, dict):
        raise make_error(
            ErrorCode.INVALID_ARGUMENT, "details must be a JSON object", {"field": "details"}
        )
    _check_json_safe(details, 0)
    try:
        encoded = canonical_json(details)
    except (ValueError, UnicodeEncodeError):
        raise make_error(
            ErrorCode.INVALID_ARGUMENT, "details must be valid JSON text", {"field": "details"}
        ) from None
    if len(encoded) > DETAILS_BYTES_MAX:
        raise make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"details may be at most {DETAILS_BYTES_MAX} bytes of JSON",
            {"field": "details", "max": DETAILS_BYTES_MAX},
        )
    copy: dict[str, Any] = json.loads(encoded)
    return copy


def _check_json_safe(value: object, depth: int) -> None:
    """Raises INVALID_ARGUMENT unless ``value`` is JSON that reads back as itself. Messages name
    types, never values (which could be secrets)."""
    if depth > DETAILS_DEPTH_MAX:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"details may nest at most {DETAILS_DEPTH_MAX} levels",
            {"field": "details"},
        )
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    if isinstance(value, list):
        for item in value:
            _check_json_safe(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise make_error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"details keys must be text, not {type(key).__name__}",
                    {"field": "details", "type": type(key).__name__},
                )
            _check_json_safe(item, depth + 1)
        return
    raise make_error(
        ErrorCode.INVALID_ARGUMENT,
        f"details hold a value that is not JSON-safe ({type(value).__name__})",
        {"field": "details", "type": type(value).__name__},
    )
