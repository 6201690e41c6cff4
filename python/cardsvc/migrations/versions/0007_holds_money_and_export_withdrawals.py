"""Holds reserve money; exports record their withdrawal from sale

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Issue 10. ``holds``: a hold's money (its price chain, the amount reserved in escrow, how the
hold ended), so a hold can never reserve more stock than its holder can pay for. ``exports``
gain the outcome of the batch export's withdrawal from sale (status, how many codes were
withdrawn, which were refused and why, the written ids as runs for a restore, and the restore).
Holds opened before this revision have no row: confirming one answers HOLD_NOT_FOUND (holds
last a day at most; deploy when none is open, or let them expire).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("hold_ref", sa.String(length=128), nullable=False),
        sa.Column("hold_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("buyer_id", sa.String(length=128), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_chain", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.agent_id"],
                                name="fk_holds_agent_id_agents"),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name="fk_holds_sku_skus"),
        sa.PrimaryKeyConstraint("hold_ref", name="pk_holds"),
    )
    op.create_index("ix_holds_hold_id", "holds", ["hold_id"])
    op.create_index("ix_holds_status_expiry", "holds", ["status", "expires_at_ms"])
    op.create_index("ix_holds_agent_created", "holds", ["agent_id", "created_at_ms"])
    op.create_index("ix_holds_created", "holds", ["created_at_ms", "hold_ref"])
    with op.batch_alter_table("exports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=False,
                                      server_default="written"))
        batch_op.add_column(sa.Column("withdrawn", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("refused", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("code_ranges", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("restored_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("restored_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exports", schema=None) as batch_op:
        for column in ("restored_by", "restored_at_ms", "code_ranges", "refused", "withdrawn",
                       "status"):
            batch_op.drop_column(column)
    for index in ("ix_holds_created", "ix_holds_agent_created", "ix_holds_status_expiry",
                  "ix_holds_hold_id"):
        op.drop_index(index, "holds")
    op.drop_table("holds")
