"""The figures of the console's dashboard, read from the roll-ups (``reports.rollups``) and the
core's stock counters, never from a scan of orders: a page costs O(days x channels x SKUs) rows
of ``sales_daily``, O(hours) of the hourly tables and one counter read per SKU and pool.

* :meth:`Dashboards.overview`: GMV, agents' commissions, cost, gross profit and margin for a range
  of local days, in total (per currency: money is never added across currencies) and by channel
  (``retail``, each top-level agent) and by SKU. It is the ledger folded, so it reconciles to
  the cent with the platform's revenue and cost-of-goods accounts (``Rollups.check``).
* :meth:`Dashboards.per_hour`: orders, codes sold and redemptions per UTC hour.
* :meth:`Dashboards.stock`: per SKU and pool, what is available, the average daily sales over
  the last 7 days and the days of cover (available / that average), with the SKU's low-stock
  threshold.

Who may read what: money figures need ``reconciliation`` (finance, owners); counts per hour
``masked_views``; stock ``catalog``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from cardsvc.access import Principal
from cardsvc.agents import Agent
from cardsvc.catalog import STAGING_POOL_MIN, Pool, Sku
from cardsvc.db import Database
from cardsvc.engine import Store
from cardsvc.errors import ErrorCode, invalid, make_error
from cardsvc.reports.rollups import HOUR_MS, RETAIL, Rollups
from cardsvc.reports.tables import RedemptionsHourly, SalesDaily, SalesHourly

RANGE_DAYS_MAX = 400
"""A custom range covers at most this many days (about 13 months: a year against the last)."""
HOURS_MAX = 31 * 24
"""Points of a per-hour series: a month of hours (the chart's bound is 2,000)."""
COVER_DAYS = 7
"""Days of sales averaged for the days of cover."""
BREAKDOWN_ROWS_MAX = 60
"""Channels or SKUs shown by name (a bar chart's categories); the rest are summed as "other"."""


@dataclass(frozen=True)
class Figures:
    """Money of one currency over a range (minor units): gmv = commission + cost + profit."""

    currency: str
    orders: int = 0
    refunds: int = 0
    quantity: int = 0
    gmv_minor: int = 0
    commission_minor: int = 0
    cost_minor: int = 0
    profit_minor: int = 0

    @property
    def margin(self) -> Decimal | None:
        """Gross profit / GMV, or None without sales."""
        if self.gmv_minor == 0:
            return None
        return (Decimal(self.profit_minor) / Decimal(self.gmv_minor)).quantize(Decimal("0.0001"))

    def plus(self, row: Any) -> Figures:
        return Figures(self.currency, self.orders + int(row.orders or 0),
                       self.refunds + int(row.refunds or 0),
                       self.quantity + int(row.quantity or 0),
                       self.gmv_minor + int(row.gmv_minor or 0),
                       self.commission_minor + int(row.commission_minor or 0),
                       self.cost_minor + int(row.cost_minor or 0),
                       self.profit_minor + int(row.profit_minor or 0))


@dataclass(frozen=True)
class Slice:
    """One channel's or SKU's figures (``key`` its id, ``name`` what people call it)."""

    key: str
    name: str
    figures: Figures


@dataclass(frozen=True)
class Overview:
    since: date
    until: date
    totals: list[Figures]
    by_channel: list[Slice]
    by_sku: list[Slice]
    folded_until_ms: int | None


@dataclass(frozen=True)
class HourPoint:
    hour_ms: int
    orders: int
    quantity: int
    redemptions: int


@dataclass(frozen=True)
class StockRow:
    """A SKU's stock in one pool: sellable now, sold per day lately, days it lasts."""

    sku: str
    name: str
    pool_id: int
    pool: str
    available: int
    sold_7d: int
    per_day: Decimal
    days_of_cover: Decimal | None
    threshold: int | None
    low: bool
    on_sale: bool = True
    extra: dict[str, int] = field(default_factory=dict)


def check_range(since: date, until: date) -> None:
    """Raises INVALID_ARGUMENT (``since`` after ``until``) or LIMIT_EXCEEDED (too long)."""
    if since > until:
        raise invalid("since", "since is after until")
    if (until - since).days + 1 > RANGE_DAYS_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "the range is too long",
                         {"field": "since", "max": RANGE_DAYS_MAX})


class Dashboards:
    """Reads over the roll-ups, the catalog and the core's counters."""

    def __init__(self, db: Database, store: Store, rollups: Rollups,
                 clock: Callable[[], int]) -> None:
        self.db = db
        self.store = store
        self.rollups = rollups
        self.clock = clock

    def today(self) -> date:
        """The local date now (the dashboards' "today")."""
        return date.fromisoformat(self.rollups.day_of(self.clock()))

    def overview(self, principal: Principal, since: date, until: date) -> Overview:
        """Money figures of the local days ``since``..``until`` (both included). Raises
        FORBIDDEN without ``reconciliation``, INVALID_ARGUMENT, LIMIT_EXCEEDED."""
        principal.require("reconciliation")
        check_range(since, until)
        sums = [func.sum(getattr(SalesDaily, name)).label(name)
                for name in ("orders", "refunds", "quantity", "gmv_minor", "commission_minor",
                             "cost_minor", "profit_minor")]
        window = (SalesDaily.day >= since.isoformat(), SalesDaily.day <= until.isoformat())
        with self.db.read() as session:
            totals = [Figures(row.currency).plus(row) for row in session.execute(
                select(SalesDaily.currency, *sums).where(*window)
                .group_by(SalesDaily.currency).order_by(SalesDaily.currency))]
            channels = session.execute(
                select(SalesDaily.channel, SalesDaily.currency, *sums).where(*window)
                .group_by(SalesDaily.channel, SalesDaily.currency)).all()
            skus = session.execute(
                select(SalesDaily.sku, SalesDaily.currency, *sums).where(*window)
                .group_by(SalesDaily.sku, SalesDaily.currency)).all()
            agent_names = dict(session.execute(
                select(Agent.agent_id, Agent.name)
                .where(Agent.agent_id.in_({row.channel for row in channels}))).all())
            sku_names = dict(session.execute(
                select(Sku.sku, Sku.name).where(Sku.sku.in_({row.sku for row in skus}))).all())
        by_channel = _slices(channels, "channel",
                             lambda key: "retail" if key == RETAIL else agent_names.get(key, key))
        by_sku = _slices(skus, "sku", lambda key: sku_names.get(key, key))
        return Overview(since, until, totals, by_channel, by_sku,
                        self.rollups.folded_until_ms())

    def per_hour(self, principal: Principal, since_ms: int, until_ms: int) -> list[HourPoint]:
        """Orders, codes sold and redemptions per UTC hour of ``[since_ms, until_ms)``, every
        hour present (zeros included). Raises FORBIDDEN without ``masked_views``,
        INVALID_ARGUMENT, LIMIT_EXCEEDED (more than a month of hours)."""
        principal.require("masked_views")
        start, end = since_ms // HOUR_MS * HOUR_MS, -(-until_ms // HOUR_MS) * HOUR_MS
        if end <= start:
            raise invalid("since", "since is not before until")
        if (end - start) // HOUR_MS > HOURS_MAX:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "too many hours",
                             {"field": "since", "max": HOURS_MAX})
        with self.db.read() as session:
            sales = {row.hour_ms: row for row in session.execute(
                select(SalesHourly.hour_ms, func.sum(SalesHourly.orders).label("orders"),
                       func.sum(SalesHourly.quantity).label("quantity"))
                .where(SalesHourly.hour_ms >= start, SalesHourly.hour_ms < end)
                .group_by(SalesHourly.hour_ms))}
            redeemed = dict(session.execute(
                select(RedemptionsHourly.hour_ms,
                       func.sum(RedemptionsHourly.redemptions - RedemptionsHourly.rollbacks))
                .where(RedemptionsHourly.hour_ms >= start, RedemptionsHourly.hour_ms < end)
                .group_by(RedemptionsHourly.hour_ms)).all())
        points = []
        for hour_ms in range(start, end, HOUR_MS):
            row = sales.get(hour_ms)
            points.append(HourPoint(hour_ms, int(row.orders or 0) if row else 0,
                                    int(row.quantity or 0) if row else 0,
                                    int(redeemed.get(hour_ms) or 0)))
        return points

    def stock(self, principal: Principal) -> list[StockRow]:
        """Stock per SKU and pool (pools holding none and never sold from are left out), with
        days of cover; low when the SKU's sellable total is at or below its threshold. Raises
        FORBIDDEN without ``catalog``."""
        principal.require("catalog")
        today = self.today()
        first = (today - timedelta(days=COVER_DAYS - 1)).isoformat()
        with self.db.read() as session:
            skus = session.execute(select(Sku.sku, Sku.name, Sku.low_stock_threshold,
                                          Sku.on_sale).order_by(Sku.sku)).all()
            pools = dict(session.execute(select(Pool.pool_id, Pool.name)).all())
            sold: dict[tuple[str, int], int] = defaultdict(int)
            for row in session.execute(
                    select(SalesDaily.sku, SalesDaily.pool_id,
                           func.sum(SalesDaily.quantity).label("quantity"))
                    .where(SalesDaily.day >= first, SalesDaily.day <= today.isoformat())
                    .group_by(SalesDaily.sku, SalesDaily.pool_id)):
                sold[(row.sku, row.pool_id)] += int(row.quantity or 0)
        self.store.wait_visible()
        pools[0] = "shared"
        rows: list[StockRow] = []
        for sku in skus:
            by_pool = {pool_id: counts for pool_id, counts in
                       self.store.engine.stock_by_pool(sku.sku).items()
                       if pool_id < STAGING_POOL_MIN}
            total = sum(counts.get("available", 0) for counts in by_pool.values())
            low = sku.low_stock_threshold is not None and total <= sku.low_stock_threshold
            for pool_id in sorted(set(by_pool) | {p for s, p in sold if s == sku.sku}):
                available = int(by_pool.get(pool_id, {}).get("available", 0))
                quantity = sold.get((sku.sku, pool_id), 0)
                if available == 0 and quantity == 0:
                    continue
                rows.append(_stock_row(sku, pool_id, pools.get(pool_id, str(pool_id)),
                                       available, quantity, low))
        return rows


def _stock_row(sku: Any, pool_id: int, pool: str, available: int, sold_7d: int,
               low: bool) -> StockRow:
    per_day = (Decimal(max(sold_7d, 0)) / COVER_DAYS).quantize(Decimal("0.01"))
    cover = None if per_day == 0 else (Decimal(available) / per_day).quantize(Decimal("0.1"))
    return StockRow(sku=sku.sku, name=sku.name, pool_id=pool_id, pool=pool, available=available,
                    sold_7d=sold_7d, per_day=per_day, days_of_cover=cover,
                    threshold=sku.low_stock_threshold, low=low, on_sale=bool(sku.on_sale))


def _slices(rows: Sequence[Any], key: str, name_of: Callable[[str], str]) -> list[Slice]:
    """Figures per key and currency, biggest GMV first; beyond BREAKDOWN_ROWS_MAX per currency
    the rest become one ``other`` slice, so every total still adds up."""
    by_currency: dict[str, list[Slice]] = defaultdict(list)
    for row in rows:
        value = str(getattr(row, key))
        by_currency[row.currency].append(Slice(value, name_of(value),
                                               Figures(row.currency).plus(row)))
    out: list[Slice] = []
    for currency in sorted(by_currency):
        ranked = sorted(by_currency[currency], key=lambda s: (-s.figures.gmv_minor, s.key))
        shown, rest = ranked[:BREAKDOWN_ROWS_MAX - 1], ranked[BREAKDOWN_ROWS_MAX - 1:]
        if len(rest) > 1:
            other = Figures(currency)
            for item in rest:
                other = other.plus(item.figures)
            shown.append(Slice("other", "other", other))
        else:
            shown += rest
        out += shown
    return out
