"""Batch report lines keyed by their own id; the reason a batch was refused or failed

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

``batch_issues`` was keyed by (batch_id, line), so a row with two problems
(an empty code and an extra column) could not be reported and failed its whole batch. The table
is rebuilt with a surrogate key ``issue_id`` and an index on (batch_id, line, issue_id) for the
report's order; every existing line is copied. Item 17: ``batches.error_details`` (the error's
details: reason, field, line, ...) and ``batches.error_message`` say why a batch was refused or
failed.

The rebuild renames the old table aside, creates the new one and copies the rows, the same on
both dialects (SQLite cannot change a primary key in place). On PostgreSQL the old primary key's
index is renamed first, since index names are unique per schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "batch_issues_0004"
_COLUMNS = "batch_id, line, field, reason, masked"


def _report_columns() -> list[Any]:
    return [
        sa.Column("batch_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("masked", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.batch_id"], name=op.f("fk_batch_issues_batch_id_batches")
        ),
    ]


def _set_aside() -> None:
    """Renames ``batch_issues`` (and, on PostgreSQL, its primary key) out of the way."""
    op.rename_table("batch_issues", _OLD)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {_OLD} RENAME CONSTRAINT pk_batch_issues TO pk_{_OLD}")
        op.execute(f"ALTER TABLE {_OLD} RENAME CONSTRAINT fk_batch_issues_batch_id_batches "
                   f"TO fk_{_OLD}_batch_id_batches")


def upgrade() -> None:
    _set_aside()
    op.create_table(
        "batch_issues",
        sa.Column("issue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        *_report_columns(),
        sa.PrimaryKeyConstraint("issue_id", name=op.f("pk_batch_issues")),
    )
    op.create_index("ix_batch_issues_batch_id_line", "batch_issues",
                    ["batch_id", "line", "issue_id"], unique=False)
    op.execute(f"INSERT INTO batch_issues ({_COLUMNS}) "
               f"SELECT {_COLUMNS} FROM {_OLD} ORDER BY batch_id, line")
    op.drop_table(_OLD)
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_details", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("error_message", sa.String(length=500), nullable=True))


def downgrade() -> None:
    """Back to one line per (batch, line): of several problems of a line, the first is kept.
    The columns are dropped in place (SQLite 3.35+ can): batch mode would copy ``batches``,
    whose rows the report lines reference."""
    op.drop_column("batches", "error_message")
    op.drop_column("batches", "error_details")
    op.drop_index("ix_batch_issues_batch_id_line", "batch_issues")
    _set_aside()
    op.create_table(
        "batch_issues",
        *_report_columns(),
        sa.PrimaryKeyConstraint("batch_id", "line", name=op.f("pk_batch_issues")),
    )
    op.execute(f"INSERT INTO batch_issues ({_COLUMNS}) SELECT {_COLUMNS} FROM {_OLD} "
               f"WHERE issue_id IN (SELECT min(issue_id) FROM {_OLD} GROUP BY batch_id, line)")
    op.drop_table(_OLD)
