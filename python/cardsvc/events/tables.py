"""The outbox: domain events written in the same transaction as the change they report, read
by the workers that act on them (the delivery worker sends the mail an event asks for)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, REF_LEN_MAX, Base


class OutboxEvent(Base):
    """One event: ``kind`` (``mail.send``...), the object it is about (``subject``), its
    ``payload`` and where its worker stands: ``pending`` (due at ``next_attempt_at_ms``),
    ``done``, or ``failed`` after its last attempt. ``dedupe`` is unique: writing the same
    event twice (a retried transaction, a second driver) is a no-op."""

    __tablename__ = "outbox_events"

    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                          primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    dedupe: Mapped[str] = mapped_column(String(REF_LEN_MAX * 2), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


Index("ix_outbox_due", OutboxEvent.state, OutboxEvent.kind, OutboxEvent.next_attempt_at_ms)
