"""The SQL schema: SQLAlchemy 2 declarative models for every fact the SQL store owns.

Which store owns which fact (docs/storage.md has the full table):

* The core (``cardsvc._core``, journaled) owns every code's *state*: available, held, allocated,
  redeemed, frozen, void; pools, holds, allocations by order reference, redemptions and rollbacks,
  and the idempotency of allocations (order reference) and redemptions (request id).
* SQL owns everything else: the catalog (SKUs, pools by name, batches), the *encrypted payload*
  of each code (the core keeps only a keyed hash), API keys (hashed), agents, orders (the saga
  record binding an agent's ``client_order_id`` to the core's allocation), and the audit log.

Times are integer milliseconds since the Unix epoch (``*_ms``), the core's unit, so they compare
across stores and survive every database's timestamp quirks. Money (issue 6) is integer minor
units. Columns hold no plaintext code or PIN anywhere.

Changes to these models need a new Alembic revision (``python/cardsvc/db/migrations``); a test
compares the models with the migrated schema.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import true as sa_true

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, REF_LEN_MAX, Base


class Agent(Base):
    """A reseller in the agent tree (``parent_id`` None: directly under the platform).

    ``grade`` picks its default price list; ``credit_limit_minor`` is how far its available
    balance may go below zero; ``daily_order_quota`` caps its orders per UTC day (None: the risk
    default). ``pool_id`` is its channel pool (stock reserved for it) and ``pool_policy`` where
    its orders draw from: ``own_then_shared``, ``own_only`` or ``shared_only``."""

    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    parent_id: Mapped[str | None] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("agents.agent_id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    grade: Mapped[str] = mapped_column(String(ID_LEN_MAX), default="standard",
                                       server_default="standard")
    currency: Mapped[str] = mapped_column(String(3), default="CNY", server_default="CNY")
    credit_limit_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    daily_order_quota: Mapped[int | None] = mapped_column(Integer)
    pool_id: Mapped[int | None] = mapped_column(Integer)
    pool_policy: Mapped[str] = mapped_column(String(16), default="own_then_shared",
                                             server_default="own_then_shared")


class Sku(Base):
    """A product whose codes the core holds. ``uses_per_code``, ``redeem_requires_sale`` and
    ``validity_days_after_sale`` are also the core's SKU settings and never change; the rest is
    the catalog's and may be edited (audited). Money is integer minor units of ``currency``.
    Validity: ``validity_days_after_sale`` None means each batch's fixed window
    (``valid_from``/``valid_until``); N means N days from the sale (capped by the window)."""

    __tablename__ = "skus"

    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    uses_per_code: Mapped[int] = mapped_column(Integer)
    redeem_requires_sale: Mapped[bool] = mapped_column(Boolean)
    validity_days_after_sale: Mapped[int | None] = mapped_column(Integer)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16), default="card_key", server_default="card_key")
    currency: Mapped[str] = mapped_column(String(3), default="CNY", server_default="CNY")
    face_value_minor: Mapped[int | None] = mapped_column(BigInteger)
    cost_minor: Mapped[int | None] = mapped_column(BigInteger)
    retail_price_minor: Mapped[int | None] = mapped_column(BigInteger)
    purchase_limit_per_buyer: Mapped[int | None] = mapped_column(Integer)
    low_stock_threshold: Mapped[int | None] = mapped_column(Integer)
    on_sale: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    updated_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class Pool(Base):
    """A named stock pool. The core numbers pools; pool 0 is ``shared``. Staging pools used
    while a batch imports (``cardsvc.catalog``) are never named here."""

    __tablename__ = "pools"

    pool_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(ID_LEN_MAX), unique=True)
    agent_id: Mapped[str | None] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("agents.agent_id"), index=True
    )
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Batch(Base):
    """One import or generation of codes, with its wrapped data key (envelope encryption)."""

    __tablename__ = "batches"

    batch_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("skus.sku"), index=True)
    pool_id: Mapped[int] = mapped_column(Integer)
    # importing -> ready, or importing -> failed (recovery voids a batch that never finished).
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # import | generate
    data_key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    valid_from_ms: Mapped[int | None] = mapped_column(BigInteger)
    valid_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    submitted: Mapped[int] = mapped_column(Integer, default=0)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    # Issue 5: where the codes came from, what they cost, how far an import has got.
    supplier: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))
    unit_cost_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    purchase_date: Mapped[str | None] = mapped_column(String(10))  # ISO date
    source_name: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))  # file name
    processed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    code_format: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64))


class BatchIssue(Base):
    """One line of a batch's downloadable report: a rejected row or a duplicate (by input line
    or index; the code only masked)."""

    __tablename__ = "batch_issues"

    batch_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("batches.batch_id"), primary_key=True, autoincrement=False
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    field: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    masked: Mapped[str | None] = mapped_column(String(ID_LEN_MAX * 4))


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


class CodePayload(Base):
    """A code's text and PIN, sealed with its batch's data key (AES-256-GCM, the code id as
    associated data, so a payload copied onto another code's row fails to open)."""

    __tablename__ = "code_payloads"

    code_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[int] = mapped_column(Integer, ForeignKey("batches.batch_id"), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


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
    # Issue 6: what the agent pays (fixed when the order is placed) and the ledger transactions
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


