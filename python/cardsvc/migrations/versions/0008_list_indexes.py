"""Indexes for the admins' and agents' lists

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Every list reads newest first by (time, id) a page at a time (``cardsvc.paging``): batches (all,
or one SKU's), named pools, orders (all, or one agent's), withdrawals (all, by status: finance's
queue, or one agent's). Each index is the list's order, with its filter column first, so a page
is one index range scan whatever the table's size.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_batches_created", "batches", ["created_at_ms", "batch_id"]),
    ("ix_batches_sku_created", "batches", ["sku", "created_at_ms", "batch_id"]),
    ("ix_pools_created", "pools", ["created_at_ms", "pool_id"]),
    ("ix_orders_created", "orders", ["created_at_ms", "order_id"]),
    ("ix_orders_agent_created", "orders", ["agent_id", "created_at_ms", "order_id"]),
    ("ix_withdrawals_created", "withdrawals", ["created_at_ms", "withdrawal_id"]),
    ("ix_withdrawals_status_created", "withdrawals",
     ["status", "created_at_ms", "withdrawal_id"]),
    ("ix_withdrawals_agent_created", "withdrawals",
     ["agent_id", "created_at_ms", "withdrawal_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
