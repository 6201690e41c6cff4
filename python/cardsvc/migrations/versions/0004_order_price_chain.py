"""Orders keep their price chain; indexes for statements and price lookups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

The buyer's and its ancestors' unit prices, fixed when the order is placed (saga step 1), so the
settlement (step 3) shares out exactly what was debited. Statements filter an account's postings
by time; catalog views and tree checks look prices up by agent or grade without a SKU.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("price_chain", sa.JSON(), nullable=True))
    op.create_index("ix_postings_account_created", "postings",
                    ["account_id", "created_at_ms", "posting_id"])
    op.create_index("ix_prices_agent_id", "prices", ["agent_id"])
    op.create_index("ix_prices_grade", "prices", ["grade"])


def downgrade() -> None:
    op.drop_index("ix_prices_grade", "prices")
    op.drop_index("ix_prices_agent_id", "prices")
    op.drop_index("ix_postings_account_created", "postings")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("price_chain")
