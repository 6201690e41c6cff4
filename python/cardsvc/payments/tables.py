"""The payments tables: channels (one configured account at one provider, its secrets sealed),
payment attempts (recorded before the buyer is sent away), the callback inbox (unique on the
channel and the provider's event id) and the refused callbacks (bounded)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, REF_LEN_MAX, Base


class PaymentChannel(Base):
    """A payment channel as an admin configured it. ``secrets_sealed`` holds the provider's
    secrets (JSON of name -> base64) sealed with AES-256-GCM under the channel's own data key,
    itself wrapped by the master key (``cardsvc.crypto``), with the channel id as associated
    data; only their names are ever shown. ``notify_token`` is the unguessable path segment of
    the channel's notify URL."""

    __tablename__ = "payment_channels"

    channel_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    merchant_id: Mapped[str] = mapped_column(String(REF_LEN_MAX))
    enabled: Mapped[bool] = mapped_column(Boolean)
    notify_token: Mapped[str] = mapped_column(String(64), unique=True)
    master_key_id: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    data_key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    secrets_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    secret_names: Mapped[list[str]] = mapped_column(JSON)
    verify_keys: Mapped[dict[str, Any]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret_version: Mapped[int] = mapped_column(Integer)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(ID_LEN_MAX))


class PaymentAttempt(Base):
    """One try at paying one retail order: recorded (``pending``) before the buyer leaves, then
    ``paid``, ``failed`` or ``expired`` by ``cardsvc.payments.state.transition``.
    ``out_trade_no`` is ours, sent to the provider; ``next_query_at_ms`` schedules the query of
    an attempt still pending (1, 5, 15 min and at expiry)."""

    __tablename__ = "payment_attempts"

    out_trade_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), index=True)
    channel_id: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    provider: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16))
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    secret_version: Mapped[int] = mapped_column(Integer)
    provider_ref: Mapped[str | None] = mapped_column(String(REF_LEN_MAX))
    provider_trade_no: Mapped[str | None] = mapped_column(String(REF_LEN_MAX))
    fee_minor: Mapped[int | None] = mapped_column(BigInteger)
    paid_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    queries: Mapped[int] = mapped_column(Integer, default=0)
    next_query_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class PaymentInbox(Base):
    """Every verified callback, stored before it changes anything, unique on (channel,
    provider event id): a retry of the same notification finds its row and changes nothing.
    ``verdict``: ``applied`` (changed the attempt), ``duplicate``, ``refused`` (the state
    machine's refusal, ``reason`` says why), ``mismatch`` (the binding check failed: another
    order, amount or currency), ``unknown_attempt``."""

    __tablename__ = "payment_inbox"
    __table_args__ = (UniqueConstraint("channel_id", "event_id"),)

    inbox_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                          primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    event_id: Mapped[str] = mapped_column(String(REF_LEN_MAX))
    out_trade_no: Mapped[str] = mapped_column(String(REF_LEN_MAX), index=True)
    status: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at_ms: Mapped[int] = mapped_column(BigInteger)


class NotifyRefusal(Base):
    """A callback that failed verification (bad signature, malformed, too large): what and when,
    never its body (only its size and SHA-256). Kept bounded (the oldest are pruned), so a
    forger cannot fill the database."""

    __tablename__ = "payment_notify_refusals"

    refusal_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                            primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), index=True)
    code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(64))
    body_bytes: Mapped[int] = mapped_column(Integer)
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at_ms: Mapped[int] = mapped_column(BigInteger)


Index("ix_payment_attempts_due", PaymentAttempt.state, PaymentAttempt.next_query_at_ms)
Index("ix_payment_attempts_state_expires", PaymentAttempt.state, PaymentAttempt.expires_at_ms)
"""Attempts still pending after their deadline (the alerts' stuck-payment condition)."""
