"""Delivery's tables: the export log (who took which codes out in the clear, when, how many)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, Base


class Export(Base):
    """One export of plaintext codes (``cardsvc export``, ``POST /v1/exports``): who, when, what,
    how many. The CSV carries ``export_id`` as its watermark."""

    __tablename__ = "exports"

    export_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    actor: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    object_type: Mapped[str] = mapped_column(String(16))  # batch | order
    object_id: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    codes: Mapped[int] = mapped_column(Integer)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    # Issue 10: a batch export withdraws its codes from sale first. ``withdrawing`` until the
    # withdrawal is durable, then ``written``; ``withdrawn`` counts the codes this export took out
    # of sale, ``refused`` the codes it left (``by_state`` counts, ``listed`` [code_id, state]
    # pairs, bounded), ``code_ranges`` the written ids as [first, last] runs (for a restore).
    status: Mapped[str] = mapped_column(String(16), server_default="written")
    withdrawn: Mapped[int | None] = mapped_column(Integer)
    refused: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    code_ranges: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    restored_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    restored_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
