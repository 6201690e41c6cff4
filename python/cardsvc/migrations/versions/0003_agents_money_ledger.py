"""Agents, prices and the double-entry ledger

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Agent grade, currency, credit limit, daily quota, channel pool and pool policy; grades
(``standard`` seeded) and price lists; accounts, ledger transactions and postings; commissions in
their cooling period; withdrawals; the money facts of orders (cardsvc.money.tables).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grades",
        sa.Column("grade", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grade", name=op.f("pk_grades")),
    )
    grades = sa.table("grades", sa.column("grade"), sa.column("name"), sa.column("created_at_ms"))
    op.bulk_insert(grades, [{"grade": "standard", "name": "Standard", "created_at_ms": 0}])
    op.create_table(
        "ledger_transactions",
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("txn_id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("reference", name=op.f("uq_ledger_transactions_reference")),
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_created_at_ms"), ["created_at_ms"], unique=False
        )

    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("floor_minor", sa.BigInteger(), nullable=True),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_accounts_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_agent_id"), ["agent_id"], unique=False)

    op.create_table(
        "prices",
        sa.Column("price_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("grade", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("visible", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_prices_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(["grade"], ["grades.grade"], name=op.f("fk_prices_grade_grades")),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name=op.f("fk_prices_sku_skus")),
        sa.PrimaryKeyConstraint("price_id", name=op.f("pk_prices")),
    )
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.create_index(
            "ux_prices_sku_agent",
            ["sku", "agent_id"],
            unique=True,
            sqlite_where=sa.text("agent_id IS NOT NULL"),
            postgresql_where=sa.text("agent_id IS NOT NULL"),
        )
        batch_op.create_index(
            "ux_prices_sku_grade",
            ["sku", "grade"],
            unique=True,
            sqlite_where=sa.text("grade IS NOT NULL"),
            postgresql_where=sa.text("grade IS NOT NULL"),
        )

    op.create_table(
        "withdrawals",
        sa.Column("withdrawal_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_withdrawals_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("withdrawal_id", name=op.f("pk_withdrawals")),
    )
    with op.batch_alter_table("withdrawals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_withdrawals_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(
            "ux_withdrawals_agent_reference", ["agent_id", "reference"], unique=True
        )

    op.create_table(
        "commissions",
        sa.Column("commission_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("release_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("txn_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.agent_id"], name=op.f("fk_commissions_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.order_id"], name=op.f("fk_commissions_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("commission_id", name=op.f("pk_commissions")),
    )
    with op.batch_alter_table("commissions", schema=None) as batch_op:
        batch_op.create_index("ix_commissions_due", ["status", "release_at_ms"], unique=False)
        batch_op.create_index(batch_op.f("ix_commissions_order_id"), ["order_id"], unique=False)

    op.create_table(
        "postings",
        sa.Column(
            "posting_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name=op.f("fk_postings_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"],
            ["ledger_transactions.txn_id"],
            name=op.f("fk_postings_txn_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("posting_id", name=op.f("pk_postings")),
    )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_postings_account_time", ["account_id", "posting_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_postings_txn_id"), ["txn_id"], unique=False)

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("grade", sa.String(length=64), server_default="standard", nullable=False)
        )
        batch_op.add_column(
            sa.Column("currency", sa.String(length=3), server_default="CNY", nullable=False)
        )
        batch_op.add_column(
            sa.Column("credit_limit_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("daily_order_quota", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pool_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "pool_policy",
                sa.String(length=16),
                server_default="own_then_shared",
                nullable=False,
            )
        )

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unit_price_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("total_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("debit_txn_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("settle_txn_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pools", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("pools")
        batch_op.drop_column("settle_txn_id")
        batch_op.drop_column("debit_txn_id")
        batch_op.drop_column("currency")
        batch_op.drop_column("total_minor")
        batch_op.drop_column("unit_price_minor")

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("pool_policy")
        batch_op.drop_column("pool_id")
        batch_op.drop_column("daily_order_quota")
        batch_op.drop_column("credit_limit_minor")
        batch_op.drop_column("currency")
        batch_op.drop_column("grade")

    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postings_txn_id"))
        batch_op.drop_index("ix_postings_account_time")

    op.drop_table("postings")
    with op.batch_alter_table("commissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_commissions_order_id"))
        batch_op.drop_index("ix_commissions_due")

    op.drop_table("commissions")
    with op.batch_alter_table("withdrawals", schema=None) as batch_op:
        batch_op.drop_index("ux_withdrawals_agent_reference")
        batch_op.drop_index(batch_op.f("ix_withdrawals_agent_id"))

    op.drop_table("withdrawals")
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_prices_sku_grade",
            sqlite_where=sa.text("grade IS NOT NULL"),
            postgresql_where=sa.text("grade IS NOT NULL"),
        )
        batch_op.drop_index(
            "ux_prices_sku_agent",
            sqlite_where=sa.text("agent_id IS NOT NULL"),
            postgresql_where=sa.text("agent_id IS NOT NULL"),
        )

    op.drop_table("prices")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_agent_id"))

    op.drop_table("accounts")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_created_at_ms"))

    op.drop_table("ledger_transactions")
    op.drop_table("grades")
