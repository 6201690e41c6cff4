"""Alerts: conditions evaluated on the readers' timer, deduplicated with a cooldown, kept as a
history the console and portal show, and mailed through the delivery outbox.

Conditions (each a ``key``: its kind and subject):

* ``low_stock:<sku>:<pool>``: a SKU at or below its low-stock threshold, or a pool's stock that
  lasts fewer than ``cover_days_min`` days at the last 7 days' rate (``Dashboards.stock``);
* ``low_balance:<agent>``: an agent whose available balance is below the highest threshold its
  users subscribed to (``alert_subscriptions``, kind ``low_balance``);
* ``stuck_import:<batch>``: a batch still importing ``stuck_ms`` after it began;
* ``withdrawal:<id>``: a withdrawal request waiting for finance (resolved when decided);
* ``stuck_payment:<order>``: a retail order whose payment attempt still awaits the provider
  ``stuck_payment_ms`` after its deadline, or a paid order still not delivered (``paid``,
  ``paid_unfulfillable``) that long after its last change; resolved when the order moves on;
* ``stuck_delivery:<delivery>``: a buyer's mail that failed for good in the last
  STUCK_DELIVERY_WINDOW_MS (resolved when it ages out of the window).

Each evaluation compares the conditions with the stored ``alert_states``: a new condition is
``fired``; one still true after ``cooldown_ms`` since its last notice is ``repeated``; one that
cleared is ``resolved`` (the recovery notice). Events such as ``commissions_released`` are
recorded as they happen (:meth:`Alerts.event`). Every notice is one ``alert_events`` row.

Mail: in the SAME transaction as the round's notices, each recipient gets ONE outbox event
(``delivery.ALERT_MAIL_KIND``, a digest of its notices of the round, at most
NOTICES_PER_MAIL_MAX listed), so a crash can neither lose nor duplicate the enqueue; the
delivery worker sends it (at least once, with a stable Message-ID) and counts it in each
listed notice's ``mailed`` (:func:`mark_mailed`, in the worker's record transaction);
``mails_queued`` says how many mails a notice went into. Recipients (RECIPIENTS_MAX per round,
so a flood of conditions is at most one mail per recipient per round, and the cooldown keeps
repeats rare): active users with an alert address (``users.email``) who may see the notice:

* platform notices go to the staff roles of STAFF_ROLES_OF_KIND (stock and imports: owner and
  operator; withdrawals, payments, commissions: owner and finance; buyers' mail: owner and
  support);
* an agent's low balance goes to that agent's users subscribed to ``low_balance``; low stock
  also goes to agents' users subscribed to ``low_stock`` (every SKU, or the SKUs listed) whose
  agent buys that SKU (it has a price for it). No other agent's user ever gets an agent's
  notice. Mails never carry a code or PIN: the details are counts, ids and amounts.

Bounded: at most CONDITIONS_MAX conditions per round; a kind whose conditions a round did not
all read (its read was full, or the round's cap cut it) resolves nothing that round, so an
unread condition is not taken for a cleared one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cardsvc import events
from cardsvc.access import STAFF_ROLES, Principal, User
from cardsvc.agents import Agent
from cardsvc.agents.pricing import effective_price
from cardsvc.catalog import Batch
from cardsvc.db import Database
from cardsvc.delivery import ALERT_MAIL_KIND, Delivery
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.money import Account, Withdrawal
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of
from cardsvc.payments import PaymentAttempt
from cardsvc.reports.dashboards import Dashboards
from cardsvc.reports.tables import AlertEvent, AlertState, AlertSubscription
from cardsvc.sales import RetailOrder

ALERT_KINDS = ("low_stock", "low_balance", "stuck_import", "withdrawal",
               "commissions_released", "stuck_payment", "stuck_delivery")
SUBSCRIBABLE = ("low_balance", "low_stock")
COOLDOWN_MS_DEFAULT = 6 * 3_600_000
"""A condition still true is noticed again at most this often (``CARDSVC_ALERT_COOLDOWN_S``)."""
STUCK_IMPORT_MS = 30 * 60_000
STUCK_PAYMENT_MS_DEFAULT = 30 * 60_000
"""A payment still unconfirmed this long after its deadline, or a paid order still undelivered
this long after its last change, is stuck (``CARDSVC_ALERT_STUCK_PAYMENT_S``)."""
STUCK_DELIVERY_WINDOW_MS = 3 * 86_400_000
"""A buyer's mail that failed for good is an alert for this long (then it ages out)."""
STAFF_ROLES_OF_KIND: dict[str, tuple[str, ...]] = {
    "low_stock": ("owner", "operator"),
    "stuck_import": ("owner", "operator"),
    "withdrawal": ("owner", "finance"),
    "commissions_released": ("owner", "finance"),
    "stuck_payment": ("owner", "finance"),
    "stuck_delivery": ("owner", "support"),
    "low_balance": (),
}
"""Which staff roles a platform notice is mailed to (the roles whose work it is); an agent's low
balance goes to its own subscribed users only."""
if set(STAFF_ROLES_OF_KIND) != set(ALERT_KINDS) or not all(
        role in STAFF_ROLES for roles in STAFF_ROLES_OF_KIND.values() for role in roles):
    raise AssertionError("STAFF_ROLES_OF_KIND must name every alert kind and staff roles only")
RECIPIENTS_MAX = 200
"""Recipients mailed per round (one digest each): the bound on a round's alert mail."""
NOTICES_PER_MAIL_MAX = 20
"""Notices one digest lists (~300 bytes each); it says how many more there were."""
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


@dataclass(frozen=True)
class _Subscriber:
    kind: str
    agent_id: str
    skus: frozenset[str] | None
    user_id: str


class _Recipients:
    """Who may be mailed a round's notices (module docstring), read once per round: the active
    staff users with an address in the roles the notices' kinds name, and the agents' users with
    an address subscribed to the agent kinds among them. Bounded by RECIPIENTS_MAX."""

    def __init__(self, session: Session, notices: Sequence[AlertEvent]) -> None:
        self.session = session
        self.address: dict[str, tuple[str, str, str]] = {}
        """user id -> (address, locale, area of the link: ``console`` or ``portal``)."""
        self.staff: dict[str, list[str]] = {}
        self.subscribers: list[_Subscriber] = []
        self._buys: dict[tuple[str, str], bool] = {}
        kinds = {notice.kind for notice in notices}
        roles = sorted({role for kind in kinds for role in STAFF_ROLES_OF_KIND.get(kind, ())})
        if roles:
            for row in session.execute(
                    select(User.user_id, User.role, User.email, User.email_locale)
                    .where(User.role.in_(roles), User.status == "active",
                           User.email.is_not(None))
                    .order_by(User.user_id).limit(RECIPIENTS_MAX)):
                self.staff.setdefault(row.role, []).append(row.user_id)
                self.address[row.user_id] = (row.email, row.email_locale or "zh_CN", "console")
        agent_kinds = sorted(kinds & set(SUBSCRIBABLE))
        if agent_kinds:
            for line in session.execute(
                    select(AlertSubscription.kind, AlertSubscription.agent_id,
                           AlertSubscription.skus, User.user_id, User.email, User.email_locale)
                    .join(User, User.user_id == AlertSubscription.user_id)
                    .where(AlertSubscription.kind.in_(agent_kinds),
                           AlertSubscription.email.is_(True),
                           AlertSubscription.agent_id.is_not(None),
                           # The user's own agent only, whatever the subscription row says.
                           User.agent_id == AlertSubscription.agent_id, User.role == "agent",
                           User.status == "active", User.email.is_not(None))
                    .order_by(AlertSubscription.subscription_id).limit(RECIPIENTS_MAX)):
                if line.agent_id is None or line.email is None:
                    continue
                self.subscribers.append(_Subscriber(
                    line.kind, line.agent_id,
                    None if line.skus is None else frozenset(line.skus), line.user_id))
                self.address[line.user_id] = (line.email, line.email_locale or "zh_CN",
                                              "portal")

    def of(self, notice: AlertEvent) -> list[str]:
        """The user ids ``notice`` is mailed to, each once."""
        users = [user for role in STAFF_ROLES_OF_KIND.get(notice.kind, ())
                 for user in self.staff.get(role, ())]
        if notice.kind == "low_balance" and notice.agent_id is not None:
            users += [sub.user_id for sub in self.subscribers
                      if sub.kind == "low_balance" and sub.agent_id == notice.agent_id]
        elif notice.kind == "low_stock" and notice.agent_id is None:
            sku = str(notice.details.get("sku"))
            users += [sub.user_id for sub in self.subscribers
                      if sub.kind == "low_stock" and (sub.skus is None or sku in sub.skus)
                      and self._agent_buys(sub.agent_id, sku)]
        return list(dict.fromkeys(users))

    def _agent_buys(self, agent_id: str, sku: str) -> bool:
        """Whether the agent has a price for ``sku`` (it sells it), once per round and pair."""
        if (agent_id, sku) not in self._buys:
            try:
                effective_price(self.session, agent_id, sku)
                self._buys[agent_id, sku] = True
            except CardsvcError:
                self._buys[agent_id, sku] = False
        return self._buys[agent_id, sku]


def mark_mailed(session: Session, alert_event_ids: Sequence[int]) -> None:
    """A digest listing these notices was sent: each counts one more mail (``mailed``). The
    delivery worker calls it in the transaction that records the send."""
    ids = [int(event_id) for event_id in alert_event_ids][:NOTICES_PER_MAIL_MAX]
    if ids:
        session.execute(update(AlertEvent).where(AlertEvent.event_id.in_(ids))
                        .values(mailed=AlertEvent.mailed + 1))


class Alerts:
    """Evaluates, deduplicates and lists alerts (module docstring). Times from ``clock``."""

    def __init__(self, db: Database, dashboards: Dashboards, clock: Callable[[], int], *,
                 cooldown_ms: int = COOLDOWN_MS_DEFAULT, stuck_ms: int = STUCK_IMPORT_MS,
                 stuck_payment_ms: int = STUCK_PAYMENT_MS_DEFAULT,
                 cover_days_min: Decimal = COVER_DAYS_MIN, mail: bool = True) -> None:
        self.db = db
        self.dashboards = dashboards
        self.clock = clock
        self.cooldown_ms = cooldown_ms
        self.stuck_ms = stuck_ms
        self.stuck_payment_ms = stuck_payment_ms
        self.cover_days_min = cover_days_min
        self.mail = mail
        """Queue alert mail (``CARDSVC_ALERT_MAIL``); the notices are kept either way."""

    # ----- evaluating -----

    def evaluate(self) -> dict[str, int]:
        """One round: the conditions now, compared with the stored states; returns how many
        notices of each kind (``fired``, ``repeated``, ``resolved``) it wrote and how many
        alert mails it queued (``mails``), in one transaction."""
        now_ms = self.clock()
        stock = self._stock_conditions()
        conditions = {c.key: c for c in stock[:CONDITIONS_MAX]}
        unsure = {"low_stock"} if len(stock) >= CONDITIONS_MAX else set()
        with self.db.write() as session:
            balances, balances_full = self._balance_conditions(session)
            if balances_full:
                unsure.add("low_balance")
            for kind, found in (("low_balance", balances),
                                ("stuck_import", self._import_conditions(session, now_ms)),
                                ("withdrawal", self._withdrawal_conditions(session)),
                                ("stuck_payment", self._payment_conditions(session, now_ms)),
                                ("stuck_delivery", self._delivery_conditions(session, now_ms))):
                # A source that filled its read, or that the round's cap cut, may have more
                # conditions than it gave: its unread ones must not count as cleared.
                if len(found) >= CONDITIONS_MAX or len(conditions) + len(found) > CONDITIONS_MAX:
                    unsure.add(kind)
                for condition in found[:max(0, CONDITIONS_MAX - len(conditions))]:
                    conditions.setdefault(condition.key, condition)
            notices: list[AlertEvent] = []
            counts = self._settle(session, conditions, now_ms, notices, unsure)
            counts["mails"] = self._queue_mail(session, notices, now_ms)
            return counts

    def _settle(self, session: Session, conditions: dict[str, Condition], now_ms: int,
                notices: list[AlertEvent], unsure: set[str]) -> dict[str, int]:
        """Writes the round's notices: fired, repeated, and resolved for a firing state whose
        condition is gone, unless its kind is in ``unsure`` (the round did not read all of
        that kind's conditions)."""
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
            notices.append(self._add_event(session, key, condition.kind, condition.agent_id,
                                           notice, condition.details, now_ms))
            counts[notice] += 1
        for key, state in states.items():
            if state.firing and key not in conditions and state.kind not in unsure:
                state.firing, state.updated_at_ms = False, now_ms
                notices.append(self._add_event(session, key, state.kind, state.agent_id,
                                               "resolved", state.details, now_ms))
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
        return found

    def _balance_conditions(self, session: Session) -> tuple[list[Condition], bool]:
        """Agents below their subscribed threshold, and whether the read of subscribed agents
        was full (CONDITIONS_MAX: there may be more)."""
        lines = session.execute(
            select(AlertSubscription.agent_id, func.max(AlertSubscription.threshold_minor))
            .where(AlertSubscription.kind == "low_balance",
                   AlertSubscription.agent_id.is_not(None))
            .group_by(AlertSubscription.agent_id).limit(CONDITIONS_MAX)).all()
        if not lines:
            return [], False
        balances = dict(session.execute(
            select(Account.agent_id, Account.balance_minor)
            .where(Account.agent_id.in_([agent for agent, _ in lines]),
                   Account.kind == "available")).all())
        return [Condition(f"low_balance:{agent}", "low_balance", agent,
                          {"agent_id": agent, "available_minor": balances.get(agent, 0),
                           "threshold_minor": threshold})
                for agent, threshold in lines
                if agent is not None and threshold is not None
                and balances.get(agent, 0) < threshold], len(lines) >= CONDITIONS_MAX

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

    def _payment_conditions(self, session: Session, now_ms: int) -> list[Condition]:
        """Retail orders whose payment is stuck (module docstring): two index range reads
        (``ix_payment_attempts_state_expires``, ``ix_retail_orders_status``)."""
        cutoff_ms = now_ms - self.stuck_payment_ms
        waiting = session.execute(
            select(PaymentAttempt.order_id, PaymentAttempt.channel_id,
                   PaymentAttempt.amount_minor, PaymentAttempt.currency,
                   PaymentAttempt.expires_at_ms)
            .where(PaymentAttempt.state == "pending", PaymentAttempt.expires_at_ms < cutoff_ms)
            .order_by(PaymentAttempt.expires_at_ms).limit(CONDITIONS_MAX)).all()
        found = [Condition(f"stuck_payment:{row.order_id}", "stuck_payment", None,
                           {"order_id": row.order_id, "status": "awaiting_payment",
                            "channel_id": row.channel_id, "amount_minor": row.amount_minor,
                            "currency": row.currency, "since_ms": row.expires_at_ms})
                 for row in waiting]
        for status in ("paid", "paid_unfulfillable"):
            found.extend(Condition(
                f"stuck_payment:{row.order_id}", "stuck_payment", None,
                {"order_id": row.order_id, "status": status, "channel_id": row.channel_id,
                 "amount_minor": row.total_minor, "currency": row.currency,
                 "since_ms": row.updated_at_ms})
                for row in session.execute(
                    select(RetailOrder.order_id, RetailOrder.channel_id, RetailOrder.total_minor,
                           RetailOrder.currency, RetailOrder.updated_at_ms)
                    .where(RetailOrder.status == status,
                           RetailOrder.updated_at_ms < cutoff_ms)
                    .order_by(RetailOrder.updated_at_ms).limit(CONDITIONS_MAX)))
        return found[:CONDITIONS_MAX]

    def _delivery_conditions(self, session: Session, now_ms: int) -> list[Condition]:
        """Buyers' mails that failed for good lately (``ix_deliveries_channel_state``)."""
        rows = session.execute(
            select(Delivery.delivery_id, Delivery.order_id, Delivery.template,
                   Delivery.last_error, Delivery.updated_at_ms)
            .where(Delivery.channel == "email", Delivery.state == "failed",
                   Delivery.updated_at_ms >= now_ms - STUCK_DELIVERY_WINDOW_MS)
            .order_by(Delivery.updated_at_ms.desc()).limit(CONDITIONS_MAX)).all()
        return [Condition(f"stuck_delivery:{row.delivery_id}", "stuck_delivery", None,
                          {"delivery_id": row.delivery_id, "order_id": row.order_id,
                           "template": row.template, "error": (row.last_error or "")[:64]})
                for row in rows]

    def event(self, kind: str, details: dict[str, Any], *, agent_id: str | None = None) -> None:
        """Records a one-off notice (``commissions_released``: how many, this round) and queues
        its mail in the same transaction."""
        now_ms = self.clock()
        with self.db.write() as session:
            notice = self._add_event(session, f"{kind}:{now_ms}", kind, agent_id, "event",
                                     details, now_ms)
            self._queue_mail(session, [notice], now_ms)

    @staticmethod
    def _add_event(session: Session, key: str, kind: str, agent_id: str | None, notice: str,
                   details: dict[str, Any], now_ms: int) -> AlertEvent:
        row = AlertEvent(key=key, kind=kind, agent_id=agent_id, notice=notice, at_ms=now_ms,
                         details=details, mailed=0, mails_queued=0)
        session.add(row)
        return row

    # ----- mailing -----

    def _queue_mail(self, session: Session, notices: Sequence[AlertEvent], now_ms: int) -> int:
        """One outbox event per recipient of the round's ``notices`` (a digest), in the
        caller's transaction; returns how many. Nothing without notices or with mail off."""
        if not notices or not self.mail:
            return 0
        session.flush()  # the notices' ids
        recipients = _Recipients(session, notices)
        digests: dict[str, list[AlertEvent]] = {}
        for notice in notices:
            for user_id in recipients.of(notice):
                digests.setdefault(user_id, []).append(notice)
        queued = 0
        for user_id, listed in list(digests.items())[:RECIPIENTS_MAX]:
            email, locale, area = recipients.address[user_id]
            shown = listed[:NOTICES_PER_MAIL_MAX]
            written = events.emit(
                session, kind=ALERT_MAIL_KIND, subject=user_id,
                dedupe=f"alert:{shown[0].event_id}:{user_id}", now_ms=now_ms,
                payload={"template": "alert", "user_id": user_id, "email": email,
                         "locale": locale, "area": area, "more": len(listed) - len(shown),
                         "alert_event_ids": [row.event_id for row in shown],
                         "notices": [{"event_id": row.event_id, "kind": row.kind,
                                      "notice": row.notice, "key": row.key,
                                      "agent_id": row.agent_id, "at_ms": row.at_ms,
                                      "details": row.details} for row in shown]})
            if written:
                queued += 1
                for row in shown:
                    row.mails_queued += 1
        return queued

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
                     "details": row.details, "mailed": row.mailed,
                     "mails_queued": row.mails_queued}
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
            if kind == "low_stock":  # one per user: a second asks for what the first gives
                existing = session.scalar(select(AlertSubscription).where(
                    AlertSubscription.user_id == user_id, AlertSubscription.kind == kind))
                if existing is not None:
                    return {"subscription_id": existing.subscription_id, "kind": kind,
                            "threshold_minor": None}
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

    def unsubscribe(self, *, user_id: str, subscription_id: int) -> None:
        """Ends one of the user's own subscriptions. Raises INVALID_ARGUMENT (field
        ``subscription_id``) for one that is not the user's (another user's says the same)."""
        with self.db.write() as session:
            row = session.get(AlertSubscription, subscription_id)
            if row is None or row.user_id != user_id:
                raise invalid("subscription_id", "no such subscription of yours")
            session.delete(row)

    def subscriptions(self, user_id: str) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return [{"subscription_id": row.subscription_id, "kind": row.kind,
                     "threshold_minor": row.threshold_minor, "agent_id": row.agent_id}
                    for row in session.scalars(select(AlertSubscription).where(
                        AlertSubscription.user_id == user_id)
                        .order_by(AlertSubscription.subscription_id)
                        .limit(SUBSCRIPTIONS_PER_USER_MAX))]
