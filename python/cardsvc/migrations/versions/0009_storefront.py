"""The storefront: retail orders and tokens, payment channels, attempts and the callback inbox,
deliveries and claim links, the outbox, and the SKU's shop fields

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

The tables of ``cardsvc.sales.checkout`` and its neighbours (payments, delivery, events).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "claim_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("claimed_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("claimed_ip", sa.String(length=64), nullable=True),
        sa.Column("claimed_ua", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_claim_links")),
    )
    with op.batch_alter_table("claim_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_claim_links_order_id"), ["order_id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column(
            "delivery_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("template", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("done_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "order_id",
            "channel",
            "template",
            "seq",
            name=op.f("uq_deliveries_order_id_channel_template_seq"),
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_order_id"), ["order_id"], unique=False)

    op.create_table(
        "outbox_events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("dedupe", sa.String(length=256), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("dedupe", name=op.f("uq_outbox_events_dedupe")),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_due", ["state", "kind", "next_attempt_at_ms"], unique=False
        )

    op.create_table(
        "payment_attempts",
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("secret_version", sa.Integer(), nullable=False),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column("provider_trade_no", sa.String(length=128), nullable=True),
        sa.Column("fee_minor", sa.BigInteger(), nullable=True),
        sa.Column("paid_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("next_query_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("out_trade_no", name=op.f("pk_payment_attempts")),
    )
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_attempts_due", ["state", "next_query_at_ms"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payment_attempts_order_id"), ["order_id"], unique=False
        )

    op.create_table(
        "payment_channels",
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("merchant_id", sa.String(length=128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("notify_token", sa.String(length=64), nullable=False),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("secrets_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("secret_names", sa.JSON(), nullable=False),
        sa.Column("verify_keys", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("secret_version", sa.Integer(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_payment_channels")),
        sa.UniqueConstraint("notify_token", name=op.f("uq_payment_channels_notify_token")),
    )
    op.create_table(
        "payment_inbox",
        sa.Column(
            "inbox_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("out_trade_no", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("inbox_id", name=op.f("pk_payment_inbox")),
        sa.UniqueConstraint(
            "channel_id", "event_id", name=op.f("uq_payment_inbox_channel_id_event_id")
        ),
    )
    with op.batch_alter_table("payment_inbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_inbox_out_trade_no"), ["out_trade_no"], unique=False
        )

    op.create_table(
        "payment_notify_refusals",
        sa.Column(
            "refusal_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("refusal_id", name=op.f("pk_payment_notify_refusals")),
    )
    with op.batch_alter_table("payment_notify_refusals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_notify_refusals_channel_id"), ["channel_id"], unique=False
        )

    op.create_table(
        "delivery_attempts",
        sa.Column(
            "attempt_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.delivery_id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_delivery_id"), ["delivery_id"], unique=False
        )

    op.create_table(
        "retail_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("product_name", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("unit_cost_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("attempt_id", sa.String(length=32), nullable=False),
        sa.Column("hold_ref", sa.String(length=128), nullable=False),
        sa.Column("hold_expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("code_ids", sa.JSON(), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("receipt_txn_id", sa.String(length=64), nullable=True),
        sa.Column("sale_txn_id", sa.String(length=64), nullable=True),
        sa.Column("refund_txn_id", sa.String(length=64), nullable=True),
        sa.Column("refund_ref", sa.String(length=128), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("paid_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("delivered_at_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name=op.f("fk_retail_orders_sku_skus")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_retail_orders")),
    )
    with op.batch_alter_table("retail_orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_retail_orders_created", ["created_at_ms", "order_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_retail_orders_email"), ["email"], unique=False)
        batch_op.create_index("ix_retail_orders_status", ["status", "updated_at_ms"], unique=False)

    op.create_table(
        "retail_order_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["retail_orders.order_id"],
            name=op.f("fk_retail_order_tokens_order_id_retail_orders"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_retail_order_tokens")),
    )
    with op.batch_alter_table("retail_order_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retail_order_tokens_order_id"), ["order_id"], unique=False
        )

    # ALTER TABLE ... ADD COLUMN in place, never a rebuild of ``skus`` (see downgrade).
    with op.batch_alter_table("skus", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("category", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("usage_instructions", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("validity_text", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("retail_quantity_min", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("retail_quantity_max", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("show_exact_stock", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("retail_pool", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("codes_in_mail", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite >= 3.35), never a rebuild of ``skus``: batches,
    # orders and holds reference it, and dropping the old table inside the migration's
    # transaction would delete their parent rows (foreign keys cannot be switched off there).
    with op.batch_alter_table("skus", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("codes_in_mail")
        batch_op.drop_column("retail_pool")
        batch_op.drop_column("show_exact_stock")
        batch_op.drop_column("retail_quantity_max")
        batch_op.drop_column("retail_quantity_min")
        batch_op.drop_column("validity_text")
        batch_op.drop_column("usage_instructions")
        batch_op.drop_column("description")
        batch_op.drop_column("category")

    with op.batch_alter_table("retail_order_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retail_order_tokens_order_id"))

    op.drop_table("retail_order_tokens")
    with op.batch_alter_table("retail_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_retail_orders_status")
        batch_op.drop_index(batch_op.f("ix_retail_orders_email"))
        batch_op.drop_index("ix_retail_orders_created")

    op.drop_table("retail_orders")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_delivery_id"))

    op.drop_table("delivery_attempts")
    with op.batch_alter_table("payment_notify_refusals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_notify_refusals_channel_id"))

    op.drop_table("payment_notify_refusals")
    with op.batch_alter_table("payment_inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_inbox_out_trade_no"))

    op.drop_table("payment_inbox")
    op.drop_table("payment_channels")
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_attempts_order_id"))
        batch_op.drop_index("ix_payment_attempts_due")

    op.drop_table("payment_attempts")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")

    op.drop_table("outbox_events")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_order_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("claim_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claim_links_order_id"))

    op.drop_table("claim_links")
