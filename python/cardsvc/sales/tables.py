"""The sales tables: orders, the saga records that bind an agent's ``client_order_id`` to the
core's allocation and to the ledger's debit and settlement; retail orders and their tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, REF_LEN_MAX, Base


class Order(Base):
    """An agent's order: the saga record (DESIGN.md, Order saga). The core's allocation is keyed
    by ``order_id``; ``(agent_id, client_order_id)`` is the agent's idempotency key."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("agent_id", "client_order_id"),)

    order_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("agents.agent_id"))
    client_order_id: Mapped[str] = mapped_column(String(REF_LEN_MAX))
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("skus.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    pool_id: Mapped[int] = mapped_column(Integer)
    hold_id: Mapped[str | None] = mapped_column(String(REF_LEN_MAX))
    # pending -> fulfilled, or pending -> failed (error_code says why; nothing was allocated).
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    code_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    # What the agent pays (fixed when the order is placed) and the ledger transactions
    # of the saga: the debit into escrow (step 1) and the settlement or the refund (step 3).
    unit_price_minor: Mapped[int | None] = mapped_column(BigInteger)
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    debit_txn_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    settle_txn_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    pools: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    # [[agent_id, unit price], ...] from the buyer up to the top agent, fixed at step 1 so that
    # step 3 shares out exactly what step 1 debited, whatever prices do in between.
    price_chain: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


Index("ix_orders_status_pending", Order.status, Order.created_at_ms)


class HoldRecord(Base):
    """A hold's money: what the holder reserved for its codes at hold time (its
    price chain x quantity, in escrow through ``hold:<hold_ref>:reserve``), and how the hold
    ended. The core owns the hold's codes and deadline; this row owns its money, so a hold can
    never reserve more stock than its holder can pay for.

    ``status``: ``open`` (reserved), then ``confirmed`` (the reservation became ``order_id``'s
    debit, ``hold:<hold_ref>:consume``), ``released`` or ``expired`` (given back,
    ``hold:<hold_ref>:release``)."""

    __tablename__ = "holds"

    hold_ref: Mapped[str] = mapped_column(String(REF_LEN_MAX), primary_key=True)
    hold_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), index=True)
    agent_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("agents.agent_id"))
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("skus.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    buyer_id: Mapped[str | None] = mapped_column(String(REF_LEN_MAX))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    price_chain: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))


Index("ix_holds_status_expiry", HoldRecord.status, HoldRecord.expires_at_ms)
Index("ix_holds_agent_created", HoldRecord.agent_id, HoldRecord.created_at_ms)
Index("ix_holds_created", HoldRecord.created_at_ms, HoldRecord.hold_ref)
Index("ix_orders_created", Order.created_at_ms, Order.order_id)
"""The order list, newest first (``Orders.list``)."""
Index("ix_orders_agent_created", Order.agent_id, Order.created_at_ms, Order.order_id)
"""An agent's orders, newest first (its own list, an admin's filter by agent)."""
class RetailOrder(Base):
    """A retail (storefront) order, the checkout saga's record: ``pending`` (a core hold under
    ``hold_ref`` and a payment attempt) -> ``paid`` (a verified payment) -> ``delivered`` (the
    hold confirmed into an allocation, the sale posted, the delivery records written); or
    ``expired`` (the hold lapsed unpaid), ``failed`` (the payment failed), ``paid_unfulfillable``
    (paid late with no stock left: refunded through the provider or flagged for an admin),
    ``refunded``. The line snapshots the product name, unit price, unit cost and currency at
    checkout. The buyer's order password is stored as an argon2id hash only."""

    __tablename__ = "retail_orders"

    order_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    status: Mapped[str] = mapped_column(String(24))
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("skus.sku"))
    product_name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    pool_id: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    unit_cost_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    email: Mapped[str] = mapped_column(String(254), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    locale: Mapped[str] = mapped_column(String(8))
    channel_id: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    attempt_id: Mapped[str] = mapped_column(String(32))
    hold_ref: Mapped[str] = mapped_column(String(REF_LEN_MAX))
    hold_expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    code_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    receipt_txn_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    sale_txn_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    refund_txn_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    refund_ref: Mapped[str | None] = mapped_column(String(REF_LEN_MAX))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    paid_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    delivered_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class OrderToken(Base):
    """A bearer token of a retail order (the guest's key to it), stored as its SHA-256 only:
    the checkout's (cookie and mail link) and those an order lookup issues."""

    __tablename__ = "retail_order_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("retail_orders.order_id"),
                                          index=True)
    source: Mapped[str] = mapped_column(String(16))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


Index("ix_retail_orders_status", RetailOrder.status, RetailOrder.updated_at_ms)
Index("ix_retail_orders_created", RetailOrder.created_at_ms, RetailOrder.order_id)
Index("ix_retail_orders_status_created", RetailOrder.status, RetailOrder.created_at_ms,
      RetailOrder.order_id)
"""One state's retail orders newest first (the console's list by state: a keyset page, not a
sort of every order in that state)."""
