"""What the readers keep: roll-ups of sales folded from the ledger (daily by channel, SKU and
pool; hourly by SKU), hourly redemption counts, where the fold has got to, stored
reconciliation runs, and alerts (rules, subscriptions, their state and history).

Everything here is derived: the ledger, the orders and the core stay the record. A roll-up can
be rebuilt from the ledger at any time (``cardsvc.reports.rollups.Rollups.rebuild``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, Base

CHANNEL_LEN_MAX = ID_LEN_MAX
"""A channel is ``retail`` or a top-level agent's id."""


class RollupState(Base):
    """How far a fold has read: the last posting id folded (``watermark``) and when."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    watermark: Mapped[int] = mapped_column(BigInteger)
    folded_until_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class SalesDaily(Base):
    """Sales of one local day (the deployment's time zone) by channel, SKU, pool and currency,
    net of refunds (a refund counts on the day it happens). ``gmv`` is what buyers paid;
    ``commission`` what agents above them earned; ``cost`` the codes' cost; ``profit`` the
    platform's revenue account: gmv = commission + cost + profit, to the cent."""

    __tablename__ = "sales_daily"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    channel: Mapped[str] = mapped_column(String(CHANNEL_LEN_MAX), primary_key=True)
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    pool_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    refunds: Mapped[int] = mapped_column(Integer, default=0)
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    gmv_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    profit_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class SalesHourly(Base):
    """Sales of one UTC hour by SKU and currency (for the per-hour charts), net of refunds."""

    __tablename__ = "sales_hourly"

    hour_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    refunds: Mapped[int] = mapped_column(Integer, default=0)
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    gmv_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    profit_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class RedemptionsHourly(Base):
    """Redemptions and rollbacks of one UTC hour by SKU (counted by the terminals' use cases in
    memory and added here by the timer: a crash loses at most one round of these counts)."""

    __tablename__ = "redemptions_hourly"

    hour_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    sku: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    redemptions: Mapped[int] = mapped_column(BigInteger, default=0)
    rollbacks: Mapped[int] = mapped_column(BigInteger, default=0)


class ReconciliationRun(Base):
    """One stored reconciliation report (run by the timer or on request), so the console shows
    the latest without re-reading every order per page view."""

    __tablename__ = "reconciliation_runs"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    finished_at_ms: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    ok: Mapped[bool] = mapped_column(Boolean)
    differences: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


# ----- alerts (cardsvc.reports.alerts) -----------------------------------------------------------


class AlertSubscription(Base):
    """Who wants which alerts: a staff user (``agent_id`` None: the platform's alerts) or an
    agent's user (its own agent's low balance, low stock of SKUs it can buy). ``threshold_minor``
    is the low-balance line; ``skus`` the SKUs watched for low stock (None: every one)."""

    __tablename__ = "alert_subscriptions"

    subscription_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    threshold_minor: Mapped[int | None] = mapped_column(BigInteger)
    skus: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    email: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class AlertState(Base):
    """The current state of one condition (``key``: kind and subject, e.g.
    ``low_stock:VIP:0``): firing or not, since when, when last notified (the cooldown), and its
    latest facts."""

    __tablename__ = "alert_states"

    key: Mapped[str] = mapped_column(String(NAME_LEN_MAX), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX), index=True)
    firing: Mapped[bool] = mapped_column(Boolean)
    since_ms: Mapped[int] = mapped_column(BigInteger)
    last_notified_ms: Mapped[int | None] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class AlertEvent(Base):
    """The alert history: each notice (``fired``, ``repeated`` after the cooldown, ``resolved``
    when the condition cleared, or an ``event`` such as commissions released), shown in the
    console and portal and mailed through the outbox (``reports.alerts``)."""

    __tablename__ = "alert_events"

    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                          primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    kind: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    notice: Mapped[str] = mapped_column(String(16))  # fired | repeated | resolved | event
    at_ms: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    mailed: Mapped[int] = mapped_column(Integer, default=0)
    """Alert mails sent that listed this notice (the delivery worker counts them)."""
    mails_queued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Alert mails queued for it in the outbox (one per recipient, in the notice's
    transaction): ``mailed`` below it means some are still on their way or failed."""


Index("ix_sales_daily_day_sku", SalesDaily.day, SalesDaily.sku)
Index("ix_alert_events_agent_time", AlertEvent.agent_id, AlertEvent.at_ms, AlertEvent.event_id)
Index("ix_alert_events_time", AlertEvent.at_ms, AlertEvent.event_id)
