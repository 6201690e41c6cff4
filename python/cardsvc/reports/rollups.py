"""Roll-ups of sales folded from the double-entry ledger, and of redemptions counted by the
terminals, so dashboards read a few hundred rows instead of every order.

**The fold.** Postings are read in ``posting_id`` order after a watermark, a bounded page per
round, and each posting is added on its own to the roll-up rows of its day and hour (so a
transaction split across two pages is still counted once). What a posting means comes from its
account and its transaction's kind:

============================ ==================================== ==========================
transaction                  posting to                           adds to
============================ ==================================== ==========================
``order_settle``             ``agent:<buyer>:escrow`` (-total)     gmv +total, orders +1,
                                                                  quantity +qty
``order_settle``             ``agent:<ancestor>:pending``          commission
``order_refund``             ``agent:<buyer>:available`` (+total)  gmv -total, refunds +1,
                                                                  quantity -qty
``order_refund``             another agent's pending/available     commission (negative)
either                       ``platform:revenue:<CUR>``            profit
either                       ``platform:cost_of_goods:<CUR>``      cost
============================ ==================================== ==========================

so for every day, channel and SKU, gmv = commission + cost + profit to the cent, and the sums of
``profit`` and ``cost`` over all rows equal the platform's revenue and cost-of-goods balances
(:meth:`Rollups.check` compares them). The SKU and pool come from the order, the channel is the
order's top-level agent (the last link of its price chain: fixed when the order was placed, so
a later move in the tree does not rewrite history) or ``retail``.

**Consistency.** Posting ids are given out in insert order; on SQLite (one writer) they also
commit in that order, so a watermark never skips one. On PostgreSQL two transactions may commit
out of id order: the fold reads only postings older than ``lag_ms`` (2 s), and :meth:`check`
(run hourly by the timer) rebuilds the roll-ups if a late commit slipped behind the watermark.

**Redemptions** are counted in memory by ``redemption.Terminals`` (a SQL write per redemption
would cost the hot path its speed) and added here each round; a crash loses at most one round
of those counts, which are statistics, not money.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.money.tables import Account, LedgerTransaction, Posting
from cardsvc.redemption import RedemptionCounts
from cardsvc.reports.tables import (
    RedemptionsHourly,
    RollupState,
    SalesDaily,
    SalesHourly,
)
from cardsvc.sales.tables import Order

HOUR_MS = 3_600_000
FOLD_POSTINGS_MAX = 2_000
"""Postings folded per round (one SQL page and one write transaction, a few hundred KB): on
SQLite a round holds the one write lock, which the order path's group commit waits for, so a
round stays at tens of milliseconds; the timer runs several rounds per tick
(``runtime.FOLD_ROUNDS_MAX``)."""
FOLD_LAG_MS = 2_000
SALES = "sales"
RETAIL = "retail"
SALE_KINDS = ("order_settle", "order_refund")
DAILY_SUMS = ("orders", "refunds", "quantity", "gmv_minor", "commission_minor", "cost_minor",
              "profit_minor")
HOURLY_SUMS = ("orders", "refunds", "quantity", "gmv_minor", "profit_minor")


def _upsert(session: Session, table: Any, rows: list[dict[str, Any]],
            keys: tuple[str, ...], sums: tuple[str, ...]) -> None:
    """Adds ``rows``' ``sums`` to the existing rows with the same ``keys`` (inserting new
    ones): one statement per call, on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: getattr(table, name) + getattr(statement.excluded, name) for name in sums})
    session.execute(statement, rows)


class _Buckets:
    """The sums one fold page adds, by day and hour keys."""

    def __init__(self) -> None:
        self.daily: dict[tuple[str, str, str, int, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(DAILY_SUMS, 0))
        self.hourly: dict[tuple[int, str, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(HOURLY_SUMS, 0))

    def add(self, day: str, hour_ms: int, channel: str, sku: str, pool_id: int, currency: str,
            **amounts: int) -> None:
        daily = self.daily[(day, channel, sku, pool_id, currency)]
        hourly = self.hourly[(hour_ms, sku, currency)]
        for name, amount in amounts.items():
            daily[name] += amount
            if name in hourly:
                hourly[name] += amount

    def write(self, session: Session) -> None:
        _upsert(session, SalesDaily, [
            {"day": k[0], "channel": k[1], "sku": k[2], "pool_id": k[3], "currency": k[4], **v}
            for k, v in self.daily.items()], ("day", "channel", "sku", "pool_id", "currency"),
            DAILY_SUMS)
        _upsert(session, SalesHourly, [
            {"hour_ms": k[0], "sku": k[1], "currency": k[2], **v}
            for k, v in self.hourly.items()], ("hour_ms", "sku", "currency"), HOURLY_SUMS)


def channel_of(order: Any) -> str:
    """The channel an order sold through: its top-level agent (the price chain's last link)."""
    chain = order.price_chain or []
    return str(chain[-1][0]) if chain else str(order.agent_id)


class Rollups:
    """The fold of the ledger into ``sales_daily``/``sales_hourly`` and of the terminals'
    counts into ``redemptions_hourly``. ``timezone`` (IANA) decides which local day a posting
    belongs to; changing it needs :meth:`rebuild`."""

    def __init__(self, db: Database, clock: Callable[[], int], timezone: str,
                 counts: RedemptionCounts | None = None, *,
                 lag_ms: int = FOLD_LAG_MS) -> None:
        self.db = db
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self.timezone = timezone
        self.counts = counts
        self.lag_ms = lag_ms

    def day_of(self, at_ms: int) -> str:
        """The local date (``YYYY-MM-DD``) of a Unix ms time."""
        return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(self.zone).date().isoformat()

    # ----- folding -----

    def refresh(self, *, postings_max: int = FOLD_POSTINGS_MAX) -> int:
        """One round: folds up to ``postings_max`` new postings (older than the lag) and the
        redemption counts; returns the postings folded. One write transaction."""
        now_ms = self.clock()
        cutoff = now_ms - self.lag_ms
        with self.db.write() as session:
            state = session.get(RollupState, SALES)
            if state is None:
                state = RollupState(name=SALES, watermark=0, folded_until_ms=0,
                                    updated_at_ms=now_ms)
                session.add(state)
            rows = session.connection().execute(  # Core rows: no ORM loading per row
                select(Posting.posting_id, Posting.account_id, Posting.amount_minor,
                       Posting.currency, Posting.created_at_ms, LedgerTransaction.kind,
                       LedgerTransaction.details)
                .join(LedgerTransaction, LedgerTransaction.txn_id == Posting.txn_id)
                .where(Posting.posting_id > state.watermark)
                .order_by(Posting.posting_id).limit(postings_max)).all()
            page = []
            for row in rows:
                if row.created_at_ms > cutoff:
                    break
                page.append(row)
            if page:
                self._fold(session, page)
                state.watermark = page[-1].posting_id
                state.folded_until_ms = page[-1].created_at_ms
            elif not rows:
                state.folded_until_ms = max(state.folded_until_ms, cutoff)
            state.updated_at_ms = now_ms
            self._add_redemptions(session)
        return len(page)

    def catch_up(self, *, rounds_max: int = 10_000) -> int:
        """Rounds of :meth:`refresh` until nothing is left (at most ``rounds_max``); returns
        the postings folded."""
        total = 0
        for _ in range(rounds_max):
            folded = self.refresh()
            total += folded
            if folded == 0:
                break
        return total

    def _fold(self, session: Session, page: list[Any]) -> None:
        order_ids = {str(row.details.get("order_id")) for row in page
                     if row.kind in SALE_KINDS and isinstance(row.details, dict)}
        orders = {order.order_id: order for order in session.connection().execute(
            select(Order.order_id, Order.agent_id, Order.sku, Order.pool_id, Order.quantity,
                   Order.price_chain).where(Order.order_id.in_(order_ids)))} if order_ids else {}
        buckets = _Buckets()
        for row in page:
            if row.kind not in SALE_KINDS:
                continue
            order = orders.get(str(row.details.get("order_id")))
            if order is None:
                continue  # a ledger transaction of an order the database no longer has
            amounts = _amounts(row.kind, row.account_id, row.amount_minor, order)
            if amounts:
                buckets.add(self.day_of(row.created_at_ms),
                            row.created_at_ms // HOUR_MS * HOUR_MS, channel_of(order),
                            order.sku, order.pool_id or 0, row.currency, **amounts)
        buckets.write(session)

    def _add_redemptions(self, session: Session) -> None:
        if self.counts is None:
            return
        drained = self.counts.drain()
        try:
            _upsert(session, RedemptionsHourly, [
                {"hour_ms": hour_ms, "sku": sku, "redemptions": done, "rollbacks": undone}
                for (hour_ms, sku), (done, undone) in drained.items()],
                ("hour_ms", "sku"), ("redemptions", "rollbacks"))
            session.flush()
        except Exception:
            self.counts.restore(drained)
            raise

    # ----- checking and rebuilding -----

    def check(self) -> list[dict[str, Any]]:
        """Differences between the roll-ups and the ledger up to the watermark: per currency,
        the sums of ``profit`` and ``cost`` against the postings to the platform's revenue and
        cost-of-goods accounts. Empty when they agree to the cent."""
        with self.db.read() as session:
            state = session.get(RollupState, SALES)
            watermark = state.watermark if state is not None else 0
            folded = {(row.currency, "profit"): int(row.profit or 0)
                      for row in session.execute(
                          select(SalesDaily.currency,
                                 func.sum(SalesDaily.profit_minor).label("profit"))
                          .group_by(SalesDaily.currency))}
            for row in session.execute(select(SalesDaily.currency,
                                              func.sum(SalesDaily.cost_minor).label("cost"))
                                       .group_by(SalesDaily.currency)):
                folded[(row.currency, "cost")] = int(row.cost or 0)
            ledger: dict[tuple[str, str], int] = {}
            for kind, label in (("revenue", "profit"), ("cost_of_goods", "cost")):
                for row in session.execute(
                        select(Account.currency, func.sum(Posting.amount_minor).label("total"))
                        .join(Account, Account.account_id == Posting.account_id)
                        .join(LedgerTransaction, LedgerTransaction.txn_id == Posting.txn_id)
                        .where(Account.kind == kind, Posting.posting_id <= watermark,
                               LedgerTransaction.kind.in_(SALE_KINDS))
                        .group_by(Account.currency)):
                    ledger[(row.currency, label)] = int(row.total or 0)
        return [{"problem": "rollup_mismatch", "currency": currency, "figure": figure,
                 "rollup_minor": folded.get((currency, figure), 0),
                 "ledger_minor": ledger.get((currency, figure), 0)}
                for currency, figure in sorted(set(folded) | set(ledger))
                if folded.get((currency, figure), 0) != ledger.get((currency, figure), 0)]

    def rebuild(self) -> int:
        """Forgets the sales roll-ups and folds the whole ledger again (redemption counts are
        kept: they are not in the ledger); returns the postings folded."""
        with self.db.write() as session:
            session.execute(delete(SalesDaily))
            session.execute(delete(SalesHourly))
            session.execute(delete(RollupState).where(RollupState.name == SALES))
        return self.catch_up()

    def folded_until_ms(self) -> int | None:
        """The time of the last posting folded (how fresh the dashboards are), or None."""
        with self.db.read() as session:
            state = session.get(RollupState, SALES)
            return None if state is None else state.folded_until_ms


def _amounts(kind: str, account_id: str, amount: int, order: Any) -> dict[str, int]:
    """What one posting adds to its roll-up rows (the table in the module text). Pure."""
    if account_id.startswith("platform:revenue:"):
        return {"profit_minor": amount}
    if account_id.startswith("platform:cost_of_goods:"):
        return {"cost_minor": amount}
    if not account_id.startswith("agent:"):
        return {}
    agent_id, _, account = account_id[len("agent:"):].rpartition(":")
    buyer = agent_id == order.agent_id
    if kind == "order_settle":
        if account == "escrow" and buyer:
            return {"gmv_minor": -amount, "orders": 1, "quantity": order.quantity}
        if account == "pending":
            return {"commission_minor": amount}
        return {}
    if account == "available" and buyer:
        return {"gmv_minor": -amount, "refunds": 1, "quantity": -order.quantity}
    if account in ("pending", "available"):
        return {"commission_minor": amount}
    return {}
