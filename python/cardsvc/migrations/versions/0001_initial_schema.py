"""Initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Agents, API keys, SKUs, pools, batches, code payloads, orders, the audit log and its head row
(cardsvc.db.models).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = bytes(32)
"""The audit chain's head before the first entry (cardsvc.audit.GENESIS_HASH)."""


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["agents.agent_id"], name=op.f("fk_agents_parent_id_agents")
        ),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_agents")),
    )
    op.create_index(op.f("ix_agents_parent_id"), "agents", ["parent_id"])

    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("secret_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("skus", sa.JSON(), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_api_keys_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_agent_id"), "api_keys", ["agent_id"])

    op.create_table(
        "skus",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("uses_per_code", sa.Integer(), nullable=False),
        sa.Column("redeem_requires_sale", sa.Boolean(), nullable=False),
        sa.Column("validity_days_after_sale", sa.Integer(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_skus")),
    )

    op.create_table(
        "pools",
        sa.Column("pool_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_pools_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("pool_id", name=op.f("pk_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_pools_name")),
    )
    op.create_index(op.f("ix_pools_agent_id"), "pools", ["agent_id"])

    op.create_table(
        "batches",
        sa.Column("batch_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.Column("valid_from_ms", sa.BigInteger(), nullable=True),
        sa.Column("valid_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("submitted", sa.Integer(), nullable=False),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name=op.f("fk_batches_sku_skus")),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_sku"), "batches", ["sku"])

    op.create_table(
        "code_payloads",
        sa.Column("code_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.batch_id"], name=op.f("fk_code_payloads_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("code_id", name=op.f("pk_code_payloads")),
    )
    op.create_index(op.f("ix_code_payloads_batch_id"), "code_payloads", ["batch_id"])

    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("hold_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_details", sa.JSON(), nullable=True),
        sa.Column("code_ids", sa.JSON(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_orders_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name=op.f("fk_orders_sku_skus")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
        sa.UniqueConstraint(
            "agent_id", "client_order_id", name=op.f("uq_orders_agent_id_client_order_id")
        ),
    )
    op.create_index("ix_orders_status_pending", "orders", ["status", "created_at_ms"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at_ms"), "audit_log", ["at_ms"])
    op.create_index(op.f("ix_audit_log_actor"), "audit_log", ["actor"])
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("head_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(length=32), nullable=False),
        sa.CheckConstraint("head_id = 1", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("head_id", name=op.f("pk_audit_head")),
    )
    # The one head row, before any entry: every append locks and advances it.
    op.bulk_insert(audit_head, [{"head_id": 1, "seq": 0, "entry_hash": GENESIS_HASH}])


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_log",
        "orders",
        "code_payloads",
        "batches",
        "pools",
        "skus",
        "api_keys",
        "agents",
    ):
        op.drop_table(table)
