"""The audit log's tables: the hash-chained entries and the head row (see cardsvc.audit.chain)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, REF_LEN_MAX, Base


class AuditEntry(Base):
    """One entry of the append-only, hash-chained audit log (``cardsvc.audit``):
    ``entry_hash = SHA-256(prev_hash || canonical JSON of the entry's fields)``."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(ID_LEN_MAX), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(REF_LEN_MAX))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


Index("ix_audit_log_object", AuditEntry.object_type, AuditEntry.object_id)


AUDIT_HEAD_ID = 1
"""The primary key of the one ``audit_head`` row."""


class AuditHead(Base):
    """The head of the audit chain: the last entry's ``seq`` and ``entry_hash`` (``seq`` 0 and 32
    zero bytes before the first entry; the initial migration inserts that row).

    One row, updated in the same transaction as each append. Appending locks it first
    (``SELECT ... FOR UPDATE`` on PostgreSQL), so concurrent transactions take turns and the chain
    cannot fork; verification compares the chain's last entry with it, so deleting entries from
    the tail is detected too."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint(f"head_id = {AUDIT_HEAD_ID}", name="single_row"),)

    head_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
