"""Delivery's tables: the export log (who took which codes out in the clear, when, how many),
and the retail deliveries: one record per order and channel, its attempts, the claim links."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
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
    # A batch export withdraws its codes from sale first. ``withdrawing`` until the
    # withdrawal is durable, then ``written``; ``withdrawn`` counts the codes this export took out
    # of sale, ``refused`` the codes it left (``by_state`` counts, ``listed`` [code_id, state]
    # pairs, bounded), ``code_ranges`` the written ids as [first, last] runs (for a restore).
    status: Mapped[str] = mapped_column(String(16), server_default="written")
    withdrawn: Mapped[int | None] = mapped_column(Integer)
    refused: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    code_ranges: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    restored_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    restored_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))


class Delivery(Base):
    """One delivery of a retail order on one channel (``page``, ``email``, ``claim``, ``api``):
    its state (``queued`` -> ``sent`` | ``failed`` for mail; ``ready`` -> ``viewed`` for the
    page and the API; ``ready`` -> ``claimed`` for the claim link), its attempts and the address
    it goes to. Unique per (order, channel, template, seq): a mail is written once per template
    and resend number, whoever drives the order."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("order_id", "channel", "template", "seq"),)

    delivery_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                             primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(254))
    locale: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    done_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class DeliveryAttempt(Base):
    """One try of a delivery: when, the outcome (``sent``, ``failed``, ``viewed``, ``revealed``,
    ``claimed``) and a short detail (an SMTP reply code, a masked address; never a code)."""

    __tablename__ = "delivery_attempts"

    attempt_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                            primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("deliveries.delivery_id"),
                                             index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(200))


class ClaimLink(Base):
    """A one-time claim link of an order: a 128-bit random token stored as its SHA-256, with an
    expiry. Opening the link (GET) reveals nothing; the first POST reveals the codes and records
    when, from which address and with which browser."""

    __tablename__ = "claim_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), index=True)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    claimed_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    claimed_ip: Mapped[str | None] = mapped_column(String(64))
    claimed_ua: Mapped[str | None] = mapped_column(String(200))


Index("ix_deliveries_channel_state", Delivery.channel, Delivery.state, Delivery.updated_at_ms)
"""Mails by state, latest first (the alerts' stuck-delivery condition: mails failed for good)."""
