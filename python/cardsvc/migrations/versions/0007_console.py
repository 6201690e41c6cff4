"""The console: maker-checker approvals and their waivers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Tables of the staff console and the agents' portal (docs/console.md): ``approvals`` (maker-checker
requests of guarded actions, at most one open per action and object: a partial unique index)
and ``approval_settings`` (the owner's waivers). ``down_revision`` is 0006 as written on the
console branch; the lead re-chains it when merging.
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
        "approval_settings",
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("waived", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("action", name=op.f("pk_approval_settings")),
    )
    op.create_table(
        "approvals",
        sa.Column("approval_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("decision_note", sa.String(length=200), nullable=True),
        sa.Column("executed_by", sa.String(length=64), nullable=True),
        sa.Column("executed_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("approval_id", name=op.f("pk_approvals")),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approvals_status_requested",
            ["status", "requested_at_ms", "approval_id"],
            unique=False,
        )
        batch_op.create_index(
            "ux_approvals_open_object",
            ["action", "object_type", "object_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'approved')"),
            postgresql_where=sa.text("status IN ('pending', 'approved')"),
        )



def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_approvals_open_object",
            sqlite_where=sa.text("status IN ('pending', 'approved')"),
            postgresql_where=sa.text("status IN ('pending', 'approved')"),
        )
        batch_op.drop_index("ix_approvals_status_requested")

    op.drop_table("approvals")
    op.drop_table("approval_settings")
