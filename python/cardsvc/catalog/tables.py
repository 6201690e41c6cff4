"""The catalog's tables: SKUs, named pools, batches with their wrapped data keys, the batches'
reports, and each code's sealed payload."""

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
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false as sa_false
from sqlalchemy.sql.expression import true as sa_true

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, Base

ERROR_MESSAGE_LEN_MAX = 500
"""Characters of a batch's error message kept (longer ones are cut): messages are one sentence."""


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
    # The storefront: what the shop shows and how retail sells the SKU.
    category: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))
    description: Mapped[str | None] = mapped_column(Text)
    usage_instructions: Mapped[str | None] = mapped_column(Text)
    validity_text: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))
    retail_quantity_min: Mapped[int | None] = mapped_column(Integer)
    retail_quantity_max: Mapped[int | None] = mapped_column(Integer)
    show_exact_stock: Mapped[bool] = mapped_column(Boolean, default=False,
                                                   server_default=sa_false())
    retail_pool: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    """The named pool retail draws from (None: the shared pool)."""
    codes_in_mail: Mapped[bool] = mapped_column(Boolean, default=False,
                                                server_default=sa_false())
    """Whether the delivery mail carries the codes themselves (default: the claim link only)."""


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
    # importing -> ready; importing -> rejected (a file refused before anything was imported);
    # importing -> failed (recovery voids a batch that never finished); importing -> cancelled
    # (an admin stopped its import; what it had imported is voided).
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
    # Where the codes came from, what they cost, how far an import has got.
    supplier: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))
    unit_cost_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    purchase_date: Mapped[str | None] = mapped_column(String(10))  # ISO date
    source_name: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))  # file name
    processed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    code_format: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    # Why a batch was refused or failed, as the error said it (``details`` and the
    # message; never a code or PIN, by the errors' contract).
    error_details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(ERROR_MESSAGE_LEN_MAX))


class BatchIssue(Base):
    """One line of a batch's downloadable report: a problem of a rejected row, a duplicate (by
    input line or index; the code only masked), or the refusal of the whole file (``field``
    ``file``; ``line`` 0 when the refusal names no line). A line may carry any number of
    problems (``,1,extra`` is an empty code and an extra column), so the key is the
    issue's own id, which also keeps the problems of one line in the order they were found."""

    __tablename__ = "batch_issues"
    __table_args__ = (Index("ix_batch_issues_batch_id_line", "batch_id", "line", "issue_id"),)

    issue_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    batch_id: Mapped[int] = mapped_column(Integer, ForeignKey("batches.batch_id"))
    line: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    masked: Mapped[str | None] = mapped_column(String(ID_LEN_MAX * 4))


class CodePayload(Base):
    """A code's text and PIN, sealed with its batch's data key (AES-256-GCM, the code id as
    associated data, so a payload copied onto another code's row fails to open).

    ``suffix_digest`` is a keyed hash of the SKU and the code's last four characters
    (``cardsvc.catalog.code_index``), for support's "last 4 + SKU" search without plaintext in
    SQL; None for codes imported before it existed."""

    __tablename__ = "code_payloads"

    code_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[int] = mapped_column(Integer, ForeignKey("batches.batch_id"))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    suffix_digest: Mapped[bytes | None] = mapped_column(LargeBinary(16), index=True)


Index("ix_code_payloads_batch_code", CodePayload.batch_id, CodePayload.code_id)
"""A batch's codes in id order: its code list is a keyset page (``reports.CodeSearch``)."""
Index("ix_batches_created", Batch.created_at_ms, Batch.batch_id)
"""The batch list, newest first (``Batches.list_batches``)."""
Index("ix_batches_sku_created", Batch.sku, Batch.created_at_ms, Batch.batch_id)
"""One SKU's batches, newest first."""
Index("ix_pools_created", Pool.created_at_ms, Pool.pool_id)
"""The pool list, newest first (``Catalog.list_pools``)."""
