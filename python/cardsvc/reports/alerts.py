"""Alerts: conditions evaluated on the readers' timer, deduplicated with a cooldown, kept as a
history the console and portal show.

Conditions (each a ``key``: its kind and subject):

* ``low_stock:<sku>:<pool>``: a SKU at or below its low-stock threshold, or a pool's stock that
  lasts fewer than ``cover_days_min`` days at the last 7 days' rate (``Dashboards.stock``);
* ``low_balance:<agent>``: an agent whose available balance is below the highest threshold its
  users subscribed to (``alert_subscriptions``, kind ``low_balance``);
* ``stuck_import:<batch>``: a batch still importing ``stuck_ms`` after it began;
* ``withdrawal:<id>``: a withdrawal request waiting for finance (resolved when decided).

Each evaluation compares the conditions with the stored ``alert_states``: a new condition is
``fired``; one still true after ``cooldown_ms`` since its last notice is ``repeated``; one that
cleared is ``resolved`` (the recovery notice). Events such as ``commissions_released`` are
recorded as they happen (:meth:`Alerts.event`). Every notice is one ``alert_events`` row with
``mailed`` 0: the mail hook (the delivery outbox) picks them up. Stuck payments join the list
when the storefront's payments land. Bounded: at most CONDITIONS_MAX conditions per round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.access import Principal
from cardsvc.agents import Agent
from cardsvc.catalog import Batch
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, invalid, make_error
from cardsvc.money import Account, Withdrawal
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of
from cardsvc.reports.dashboards import Dashboards
from cardsvc.reports.tables import AlertEvent, AlertState, AlertSubscription

ALERT_KINDS = ("low_stock", "low_balance", "stuck_import", "withdrawal",
               "commissions_released")
SUBSCRIBABLE = ("low_balance", "low_stock")
COOLDOWN_MS_DEFAULT = 6 * 3_600_000
"""A condition still true is noticed again at most this often (``CARDSVC_ALERT_COOLDOWN_S``)."""
STUCK_IMPORT_MS = 30 * 60_000
COVER_DAYS_MIN = Decimal(3)
CONDITIONS_MAX = 1_000
"""Conditions evaluated per round (~300 bytes each); beyond it the rest wait for the next."""
SUBSCRIPTIONS_PER_USER_MAX = 20
SYSTEM = Principal("system", "admin", None, frozenset({"admin"}), None, {})


@dataclass(frozen=True)
class Condition:
    key: str
    kind: str
    agent_id: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class AlertsPage:
    firing: list[dict[str, Any]]
    events: Page[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    currency: str | None = None
    """The agent's currency (its thresholds are in it); None for the platform."""


class Alerts:
    """Evaluates, deduplicates and lists alerts (module docstring). Times from ``clock``."""

    def __init__(self, db: Database, dashboards: Dashboards, clock: Callable[[], int], *,
                 cooldown_ms: int = COOLDOWN_MS_DEFAULT, stuck_ms: int = STUCK_IMPORT_MS,
                 cover_days_min: Decimal = COVER_DAYS_MIN) -> None:
        self.db = db
        self.dashboards = dashboards
        self.clock = clock
        self.cooldown_ms = cooldown_ms
        self.stuck_ms = stuck_ms
        self.cover_days_min = cover_days_min

    # ----- evaluating -----

    def evaluate(self) -> dict[str, int]:
        """One round: the conditions now, compared with the stored states; returns how many
        notices of each kind (``fired``, ``repeated``, ``resolved``) it wrote."""
        now_ms = self.clock()
        conditions = {c.key: c for c in self._stock_conditions()}
        with self.db.write() as session:
            for condition in (*self._balance_conditions(session),
                              *self._import_conditions(session, now_ms),
                              *self._withdrawal_conditions(session)):
                if len(conditions) >= CONDITIONS_MAX:
                    break
                conditions.setdefault(condition.key, condition)
            return self._settle(session, conditions, now_ms)

    def _settle(self, session: Session, conditions: dict[str, Condition],
                now_ms: int) -> dict[str, int]:
        counts = {"fired": 0, "repeated": 0, "resolved": 0}
        states = {row.key: row for row in session.scalars(
            select(AlertState).where(AlertState.firing.is_(True)).limit(CONDITIONS_MAX * 2))}
        if conditions:
            states.update({row.key: row for row in session.scalars(
                select(AlertState).where(AlertState.key.in_(list(conditions))))})
        for key, condition in conditions.items():
            state = states.get(key)
            if state is None or not state.firing:
                notice = "fired"
            elif now_ms - (state.last_notified_ms or state.since_ms) >= self.cooldown_ms:
                notice = "repeated"
            else:
                state.details, state.updated_at_ms = condition.details, now_ms
                continue
            if state is None:
                state = AlertState(key=key, kind=condition.kind, agent_id=condition.agent_id,
                                   firing=True, since_ms=now_ms)
                session.add(state)
            if notice == "fired":
                state.firing, state.since_ms = True, now_ms
            state.last_notified_ms, state.updated_at_ms = now_ms, now_ms
            state.details = condition.details
            self._add_event(session, key, condition.kind, condition.agent_id, notice,
                            condition.details, now_ms)
            counts[notice] += 1
        for key, state in states.items():
            if state.firing and key not in conditions:
                state.firing, state.updated_at_ms = False, now_ms
                self._add_event(session, key, state.kind, state.agent_id, "resolved",
                                state.details, now_ms)
                counts["resolved"] += 1
        return counts

    def _stock_conditions(self) -> list[Condition]:
        found = []
        for row in self.dashboards.stock(SYSTEM):
            short = row.days_of_cover is not None and row.days_of_cover < self.cover_days_min
            if row.on_sale and (row.low or short):
                found.append(Condition(
                    f"low_stock:{row.sku}:{row.pool_id}", "low_stock", None,
                    {"sku": row.sku, "pool": row.pool, "available": row.available,
                     "threshold": row.threshold, "days_of_cover": None
                     if row.days_of_cover is None else str(row.days_of_cover)}))
        return found[:CONDITIONS_MAX]

    def _balance_conditions(self, session: Session) -> list[Condition]:
        lines = session.execute(
            select(AlertSubscription.agent_id, func.max(AlertSubscription.threshold_minor))
            .where(AlertSubscription.kind == "low_balance",
                   AlertSubscription.agent_id.is_not(None))
            .group_by(AlertSubscription.agent_id).limit(CONDITIONS_MAX)).all()
        if not lines:
            return []
        balances = dict(session.execute(
            select(Account.agent_id, Account.balance_minor)
            .where(Account.agent_id.in_([agent for agent, _ in lines]),
                   Account.kind == "available")).all())
        return [Condition(f"low_balance:{agent}", "low_balance", agent,
                          {"agent_id": agent, "available_minor": balances.get(agent, 0),
                           "threshold_minor": threshold})
                for agent, threshold in lines
                if agent is not None and threshold is not None
                and balances.get(agent, 0) < threshold]

    def _import_conditions(self, session: Session, now_ms: int) -> list[Condition]:
        rows = session.scalars(select(Batch).where(
            Batch.status == "importing", Batch.created_at_ms < now_ms - self.stuck_ms)
            .limit(CONDITIONS_MAX)).all()
        return [Condition(f"stuck_import:{row.batch_id}", "stuck_import", None,
                          {"batch_id": row.batch_id, "sku": row.sku,
                           "processed": row.processed, "submitted": row.submitted})
                for row in rows]

    def _withdrawal_conditions(self, session: Session) -> list[Condition]:
        rows = session.scalars(select(Withdrawal).where(Withdrawal.status == "requested")
                               .order_by(Withdrawal.created_at_ms).limit(CONDITIONS_MAX)).all()
        return [Condition(f"withdrawal:{row.withdrawal_id}", "withdrawal", row.agent_id,
                          {"withdrawal_id": row.withdrawal_id, "agent_id": row.agent_id,
                           "amount_minor": row.amount_minor, "currency": row.currency})
                for row in rows]

    def event(self, kind: str, details: dict[str, Any], *, agent_id: str | None = None) -> None:
        """Records a one-off notice (``commissions_released``: how many, this round)."""
        now_ms = self.clock()
        with self.db.write() as session:
            self._add_event(session, f"{kind}:{now_ms}", kind, agent_id, "event", details,
                            now_ms)

    @staticmethod
    def _add_event(session: Session, key: str, kind: str, agent_id: str | None, notice: str,
                   details: dict[str, Any], now_ms: int) -> None:
        session.add(AlertEvent(key=key, kind=kind, agent_id=agent_id, notice=notice,
                               at_ms=now_ms, details=details, mailed=0))

    # ----- reading and subscribing -----

    def firing(self, principal: Principal) -> list[dict[str, Any]]:
        """The conditions true now: every one for the platform's staff, its own agent's for an
        agent's user (and the platform's low stock of SKUs, which it sells)."""
        with self.db.read() as session:
            query = select(AlertState).where(AlertState.firing.is_(True))
            if principal.agent_id is not None:
                query = query.where((AlertState.agent_id == principal.agent_id)
                                    | (AlertState.kind == "low_stock"))
            return [{"key": row.key, "kind": row.kind, "agent_id": row.agent_id,
                     "since_ms": row.since_ms, "details": row.details}
                    for row in session.scalars(query.order_by(AlertState.since_ms.desc())
                                               .limit(CONDITIONS_MAX))]

    def events(self, principal: Principal, *, cursor: str | None = None,
               limit: int | None = None) -> Page[dict[str, Any]]:
        """The notices newest first (cursor pagination), an agent's user seeing only its own
        agent's. Raises INVALID_ARGUMENT, LIMIT_EXCEEDED."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, (int, int))
        query = select(AlertEvent)
        if principal.agent_id is not None:
            query = query.where(AlertEvent.agent_id == principal.agent_id)
        if after is not None:
            query = query.where((AlertEvent.at_ms < after[0])
                                | ((AlertEvent.at_ms == after[0])
                                   & (AlertEvent.event_id < after[1])))
        with self.db.read() as session:
            rows = [{"event_id": row.event_id, "key": row.key, "kind": row.kind,
                     "agent_id": row.agent_id, "notice": row.notice, "at_ms": row.at_ms,
                     "details": row.details}
                    for row in session.scalars(query.order_by(
                        AlertEvent.at_ms.desc(), AlertEvent.event_id.desc()).limit(size + 1))]
        return page_of(rows, size, key=lambda row: (row["at_ms"], row["event_id"]))

    def page(self, principal: Principal, *, user_id: str | None = None,
             cursor: str | None = None) -> AlertsPage:
        """What an alerts page shows: :meth:`firing`, a page of :meth:`events` and, with
        ``user_id``, that user's :meth:`subscriptions`."""
        currency = None
        if principal.agent_id is not None:
            with self.db.read() as session:
                currency = session.scalar(select(Agent.currency).where(
                    Agent.agent_id == principal.agent_id))
        return AlertsPage(self.firing(principal), self.events(principal, cursor=cursor),
                          [] if user_id is None else self.subscriptions(user_id), currency)

    def subscribe(self, principal: Principal, *, user_id: str, kind: str,
                  threshold_minor: int | None = None) -> dict[str, Any]:
        """A user's subscription (``low_balance`` with a threshold; ``low_stock``), for its own
        agent (an agent's user) or the platform (staff). Raises INVALID_ARGUMENT, LIMIT_EXCEEDED
        (SUBSCRIPTIONS_PER_USER_MAX)."""
        if kind not in SUBSCRIBABLE:
            raise invalid("kind", f"kind is one of {', '.join(SUBSCRIBABLE)}")
        if kind == "low_balance" and (threshold_minor is None or threshold_minor <= 0
                                      or principal.agent_id is None):
            raise invalid("threshold_minor", "a low-balance alert needs an agent and a "
                                             "positive threshold")
        with self.db.write() as session:
            count = session.scalar(select(func.count()).select_from(AlertSubscription)
                                   .where(AlertSubscription.user_id == user_id)) or 0
            if count >= SUBSCRIPTIONS_PER_USER_MAX:
                raise make_error(ErrorCode.LIMIT_EXCEEDED, "too many alert subscriptions",
                                 {"max": SUBSCRIPTIONS_PER_USER_MAX})
            row = AlertSubscription(user_id=user_id, agent_id=principal.agent_id, kind=kind,
                                    threshold_minor=threshold_minor, skus=None, email=True,
                                    created_at_ms=self.clock())
            session.add(row)
            session.flush()
            return {"subscription_id": row.subscription_id, "kind": kind,
                    "threshold_minor": threshold_minor}

    def subscriptions(self, user_id: str) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return [{"subscription_id": row.subscription_id, "kind": row.kind,
                     "threshold_minor": row.threshold_minor, "agent_id": row.agent_id}
                    for row in session.scalars(select(AlertSubscription).where(
                        AlertSubscription.user_id == user_id)
                        .order_by(AlertSubscription.subscription_id)
                        .limit(SUBSCRIPTIONS_PER_USER_MAX))]
