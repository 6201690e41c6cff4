"""The console: approvals, roll-ups, reconciliation runs, alerts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Tables of the staff console and the agents' portal (docs/console.md): ``approvals``
(maker-checker requests of guarded actions, at most one open per action and object: a partial
unique index) and ``approval_settings`` (the owner's waivers); the readers' roll-ups folded from
the ledger (``sales_daily``, ``sales_hourly``, ``redemptions_hourly``, ``rollup_state``), stored
``reconciliation_runs``, and alerts (``alert_subscriptions``, ``alert_states``,
``alert_events``). ``down_revision`` is 0009 (main's storefront) as merged into the console
branch."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("notice", sa.String(length=16), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("mailed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_alert_events")),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alert_events_agent_time", ["agent_id", "at_ms", "event_id"], unique=False
        )
        batch_op.create_index("ix_alert_events_time", ["at_ms", "event_id"], unique=False)

    op.create_table(
        "alert_states",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("firing", sa.Boolean(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_notified_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_alert_states")),
    )
    with op.batch_alter_table("alert_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_states_agent_id"), ["agent_id"], unique=False)

    op.create_table(
        "alert_subscriptions",
        sa.Column("subscription_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("threshold_minor", sa.BigInteger(), nullable=True),
        sa.Column("skus", sa.JSON(), nullable=True),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_alert_subscriptions")),
    )
    with op.batch_alter_table("alert_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_subscriptions_agent_id"), ["agent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_alert_subscriptions_user_id"), ["user_id"], unique=False
        )

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

    op.create_table(
        "reconciliation_runs",
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("differences", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_reconciliation_runs")),
    )
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_runs_started_at_ms"), ["started_at_ms"], unique=False
        )

    op.create_table(
        "redemptions_hourly",
        sa.Column("hour_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("redemptions", sa.BigInteger(), nullable=False),
        sa.Column("rollbacks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour_ms", "sku", name=op.f("pk_redemptions_hourly")),
    )
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("folded_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_state")),
    )
    op.create_table(
        "sales_daily",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("pool_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("gmv_minor", sa.BigInteger(), nullable=False),
        sa.Column("commission_minor", sa.BigInteger(), nullable=False),
        sa.Column("cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("profit_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "channel", "sku", "pool_id", "currency", name=op.f("pk_sales_daily")
        ),
    )
    with op.batch_alter_table("sales_daily", schema=None) as batch_op:
        batch_op.create_index("ix_sales_daily_day_sku", ["day", "sku"], unique=False)

    op.create_table(
        "sales_hourly",
        sa.Column("hour_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("gmv_minor", sa.BigInteger(), nullable=False),
        sa.Column("profit_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour_ms", "sku", "currency", name=op.f("pk_sales_hourly")),
    )
    with op.batch_alter_table("code_payloads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suffix_digest", sa.LargeBinary(length=16), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_code_payloads_suffix_digest"), ["suffix_digest"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("code_payloads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_code_payloads_suffix_digest"))
        batch_op.drop_column("suffix_digest")

    op.drop_table("sales_hourly")
    with op.batch_alter_table("sales_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_sales_daily_day_sku")

    op.drop_table("sales_daily")
    op.drop_table("rollup_state")
    op.drop_table("redemptions_hourly")
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_runs_started_at_ms"))

    op.drop_table("reconciliation_runs")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_approvals_open_object",
            sqlite_where=sa.text("status IN ('pending', 'approved')"),
            postgresql_where=sa.text("status IN ('pending', 'approved')"),
        )
        batch_op.drop_index("ix_approvals_status_requested")

    op.drop_table("approvals")
    op.drop_table("approval_settings")
    with op.batch_alter_table("alert_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_subscriptions_user_id"))
        batch_op.drop_index(batch_op.f("ix_alert_subscriptions_agent_id"))

    op.drop_table("alert_subscriptions")
    with op.batch_alter_table("alert_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_states_agent_id"))

    op.drop_table("alert_states")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_events_time")
        batch_op.drop_index("ix_alert_events_agent_time")

    op.drop_table("alert_events")
