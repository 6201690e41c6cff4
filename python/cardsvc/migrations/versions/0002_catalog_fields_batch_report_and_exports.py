"""Catalog fields, batch report and exports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

SKU kind, prices, purchase limit, low-stock threshold and on-sale flag; batch supplier,
cost, purchase date, source, progress and code format; the batch report (``batch_issues``) and
the export log (``exports``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("export_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("codes", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("export_id", name=op.f("pk_exports")),
    )
    op.create_table(
        "batch_issues",
        sa.Column("batch_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("masked", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.batch_id"], name=op.f("fk_batch_issues_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("batch_id", "line", name=op.f("pk_batch_issues")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("supplier", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("unit_cost_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("purchase_date", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("source_name", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("processed", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("code_format", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("error_code", sa.String(length=64), nullable=True))

    with op.batch_alter_table("skus", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="card_key", nullable=False)
        )
        batch_op.add_column(
            sa.Column("currency", sa.String(length=3), server_default="CNY", nullable=False)
        )
        batch_op.add_column(sa.Column("face_value_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("cost_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("retail_price_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("purchase_limit_per_buyer", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("low_stock_threshold", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("on_sale", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column("updated_at_ms", sa.BigInteger(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table("skus", schema=None) as batch_op:
        batch_op.drop_column("updated_at_ms")
        batch_op.drop_column("on_sale")
        batch_op.drop_column("low_stock_threshold")
        batch_op.drop_column("purchase_limit_per_buyer")
        batch_op.drop_column("retail_price_minor")
        batch_op.drop_column("cost_minor")
        batch_op.drop_column("face_value_minor")
        batch_op.drop_column("currency")
        batch_op.drop_column("kind")

    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("error_code")
        batch_op.drop_column("code_format")
        batch_op.drop_column("processed")
        batch_op.drop_column("source_name")
        batch_op.drop_column("purchase_date")
        batch_op.drop_column("currency")
        batch_op.drop_column("unit_cost_minor")
        batch_op.drop_column("supplier")

    op.drop_table("batch_issues")
    op.drop_table("exports")
