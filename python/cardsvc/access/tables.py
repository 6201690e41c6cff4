"""API keys: what is stored of each key (never the secret itself, only its SHA-256)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, Base


class ApiKey(Base):
    """An API key. The key handed out is ``cs_<key_id>_<secret>``; only SHA-256 of the secret is
    kept (the secret is 256 random bits, so a fast hash is enough: nothing to brute-force)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    secret_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    role: Mapped[str] = mapped_column(String(16))  # admin | agent | terminal
    agent_id: Mapped[str | None] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("agents.agent_id"), index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LEN_MAX), default="")
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # Terminal keys may be limited to these SKUs (None: every SKU).
    skus: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Per-key overrides of the risk limits (cardsvc.access.risk.RiskLimits field names).
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)
