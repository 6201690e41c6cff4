"""Alert mail: users' addresses, the stuck-payment and stuck-delivery reads, page indexes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

``users.email`` and ``users.email_locale`` (nullable): where a user's alert mail goes and in
which language (docs/console.md, Alerts); ``alert_events.mails_queued``: the alert mails queued
for a notice (``mailed`` counts those sent).
``ix_payment_attempts_state_expires``: the attempts still pending after their deadline, read
by the alerts' stuck-payment condition without a scan. ``ix_deliveries_channel_state``: the
mails that failed for good (the stuck-delivery condition). ``ix_code_payloads_batch_code``
(batch, code id) replaces ``ix_code_payloads_batch_id``: a batch's code list is a keyset page
read from it instead of sorting the batch's ids per request; its prefix serves every lookup the
old index served. ``ix_retail_orders_status_created``: the console's retail orders of one state,
newest first, as a keyset page (they were sorted per request: 0.8 s at 1M orders)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("email_locale", sa.String(length=8), nullable=True))
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mails_queued", sa.Integer(), server_default="0",
                                      nullable=False))
    op.create_index("ix_payment_attempts_state_expires", "payment_attempts",
                    ["state", "expires_at_ms"])
    op.create_index("ix_deliveries_channel_state", "deliveries",
                    ["channel", "state", "updated_at_ms"])
    op.create_index("ix_code_payloads_batch_code", "code_payloads", ["batch_id", "code_id"])
    op.create_index("ix_retail_orders_status_created", "retail_orders",
                    ["status", "created_at_ms", "order_id"])
    op.drop_index("ix_code_payloads_batch_id", "code_payloads")


def downgrade() -> None:
    op.create_index("ix_code_payloads_batch_id", "code_payloads", ["batch_id"])
    op.drop_index("ix_retail_orders_status_created", "retail_orders")
    op.drop_index("ix_code_payloads_batch_code", "code_payloads")
    op.drop_index("ix_deliveries_channel_state", "deliveries")
    op.drop_index("ix_payment_attempts_state_expires", "payment_attempts")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_column("mails_queued")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_locale")
        batch_op.drop_column("email")
