"""Delivery's tables: the export log (who took which codes out in the clear, when, how many)."""

from __future__ import annotations

from sqlalchemy import (
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
