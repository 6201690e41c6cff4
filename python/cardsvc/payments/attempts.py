"""Payment attempts and the callback inbox in SQL: the pieces of docs/payments.md's "what the
checkout layer must do", each working in the caller's session (the checkout saga,
``cardsvc.sales.checkout``, opens the transaction, so that the inbox row, the attempt's new state
and the order's new state commit together).

* :func:`attempt_values` and :data:`INSERT_ATTEMPT`: the attempt, ``pending``, recorded
  before the buyer is sent away, with its query schedule (1, 5 and 15 minutes after it was
  made, and at its expiry).
* :func:`record_inbox`: the verified callback, unique on (channel, provider event id); None when
  that row exists already (a retry: change nothing, acknowledge).
* :func:`apply_event`: ``cardsvc.payments.state.transition`` on the locked attempt; stores the
  new state, the fee and the provider's trade number when it changed.
* :func:`record_refusal`: a callback that failed verification, kept bounded (size and digest
  only, never the body).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.errors import CardsvcError
from cardsvc.payments.providers.base import Notify
from cardsvc.payments.state import AttemptEvent, AttemptState, Outcome, transition
from cardsvc.payments.tables import NotifyRefusal, PaymentAttempt, PaymentInbox

QUERY_OFFSETS_MS = (60_000, 300_000, 900_000)
"""A pending attempt is queried 1, 5 and 15 minutes after it was made, then at its expiry."""
REFUSALS_KEPT_MAX = 1_000
"""Refused callbacks kept per channel (about 200 bytes each); older ones are pruned."""
_INBOX = cast(Table, PaymentInbox.__table__)


@dataclass(frozen=True, slots=True)
class AttemptFacts:
    """What the binding check and the saga need of an attempt, read under its lock."""

    out_trade_no: str
    order_id: str
    channel_id: str
    amount_minor: int
    currency: str
    state: AttemptState
    provider_ref: str | None


def query_schedule(created_at_ms: int, expires_at_ms: int) -> list[int]:
    """When to query a pending attempt: the offsets before its expiry, then the expiry."""
    due = [created_at_ms + offset for offset in QUERY_OFFSETS_MS
           if created_at_ms + offset < expires_at_ms]
    return [*due, expires_at_ms]


def attempt_values(*, out_trade_no: str, order_id: str, channel_id: str, provider: str,
                   amount_minor: int, currency: str, expires_at_ms: int, secret_version: int,
                   provider_ref: str | None, now_ms: int) -> dict[str, object]:
    """The new attempt's row, ``pending``, its first query scheduled (insert it with
    :data:`INSERT_ATTEMPT` in the checkout's transaction)."""
    return {"out_trade_no": out_trade_no, "order_id": order_id, "channel_id": channel_id,
            "provider": provider, "amount_minor": amount_minor, "currency": currency,
            "state": "pending", "expires_at_ms": expires_at_ms,
            "secret_version": secret_version, "provider_ref": provider_ref,
            "provider_trade_no": None, "fee_minor": None, "paid_at_ms": None, "queries": 0,
            "next_query_at_ms": query_schedule(now_ms, expires_at_ms)[0],
            "created_at_ms": now_ms, "updated_at_ms": now_ms}


INSERT_ATTEMPT = insert(cast(Table, PaymentAttempt.__table__))


def lock_attempt(session: Session, out_trade_no: str, channel_id: str) -> PaymentAttempt | None:
    """The attempt ``out_trade_no`` of ``channel_id``, locked (PostgreSQL ``FOR UPDATE``); None
    when there is none on that channel (a callback for another channel's attempt finds
    nothing)."""
    return session.scalar(select(PaymentAttempt).where(
        PaymentAttempt.out_trade_no == out_trade_no,
        PaymentAttempt.channel_id == channel_id).with_for_update())


def facts(row: PaymentAttempt) -> AttemptFacts:
    return AttemptFacts(row.out_trade_no, row.order_id, row.channel_id, row.amount_minor,
                        row.currency, cast(AttemptState, row.state), row.provider_ref)


def record_inbox(session: Session, channel_id: str, notify: Notify, now_ms: int) -> int | None:
    """Inserts the inbox row of a verified callback (verdict ``received``); returns its id, or
    None when the channel already has a row for ``notify.event_id`` (a retry)."""
    row = {"channel_id": channel_id, "event_id": notify.event_id[:128],
           "out_trade_no": notify.out_trade_no[:128], "status": notify.status,
           "amount_minor": notify.amount_minor, "currency": notify.currency[:3],
           "verdict": "received", "reason": None, "raw": dict(notify.raw),
           "received_at_ms": now_ms}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    result = session.execute(dialect.insert(_INBOX).values(row).on_conflict_do_nothing(
        index_elements=["channel_id", "event_id"]).returning(_INBOX.c.inbox_id))
    inserted = result.scalar()
    return None if inserted is None else int(inserted)


def set_verdict(session: Session, inbox_id: int, verdict: str, reason: str | None) -> None:
    session.execute(update(_INBOX).where(_INBOX.c.inbox_id == inbox_id)
                    .values(verdict=verdict, reason=None if reason is None else reason[:64]))


def apply_event(session: Session, attempt: PaymentAttempt, event: AttemptEvent, *,
                now_ms: int, fee_minor: int | None = None, paid_at_ms: int | None = None,
                provider_trade_no: str | None = None) -> Outcome:
    """The state machine's outcome of ``event`` on the (locked) attempt; a change is stored
    with the provider's facts, and a closed attempt is queried no more."""
    outcome = transition(cast(AttemptState, attempt.state), event)
    if outcome.changed:
        attempt.state = outcome.state
        attempt.updated_at_ms = now_ms
        attempt.next_query_at_ms = None
        if outcome.became_paid:
            attempt.paid_at_ms = paid_at_ms or now_ms
            attempt.fee_minor = fee_minor
        if provider_trade_no:
            attempt.provider_trade_no = provider_trade_no[:128]
    return outcome


def queried(session: Session, attempt: PaymentAttempt, now_ms: int) -> None:
    """One query of a pending attempt was made: schedule the next (None after the last)."""
    schedule = query_schedule(attempt.created_at_ms, attempt.expires_at_ms)
    attempt.queries += 1
    later = [at for at in schedule[attempt.queries:] if at > now_ms]
    attempt.next_query_at_ms = later[0] if later and attempt.state == "pending" else None
    attempt.updated_at_ms = now_ms


def record_refusal(session: Session, channel_id: str, error: CardsvcError, body: bytes,
                   now_ms: int) -> None:
    """Stores that a callback to ``channel_id`` failed verification: its code and reason, the
    body's size and SHA-256. Keeps at most REFUSALS_KEPT_MAX per channel."""
    reason = error.details.get("reason")
    session.add(NotifyRefusal(
        channel_id=channel_id, code=error.code.value,
        reason=reason[:64] if isinstance(reason, str) else None, body_bytes=len(body),
        body_sha256=hashlib.sha256(body).hexdigest(), received_at_ms=now_ms))
    session.flush()
    count = session.scalar(select(func.count()).select_from(NotifyRefusal).where(
        NotifyRefusal.channel_id == channel_id)) or 0
    if count > REFUSALS_KEPT_MAX:
        oldest = select(NotifyRefusal.refusal_id).where(
            NotifyRefusal.channel_id == channel_id).order_by(
            NotifyRefusal.refusal_id).limit(count - REFUSALS_KEPT_MAX)
        session.execute(delete(NotifyRefusal).where(NotifyRefusal.refusal_id.in_(oldest)))


def due_queries(session: Session, now_ms: int, limit: int) -> list[AttemptFacts]:
    """Pending attempts whose next query is due."""
    rows = session.scalars(select(PaymentAttempt).where(
        PaymentAttempt.state == "pending", PaymentAttempt.next_query_at_ms.is_not(None),
        PaymentAttempt.next_query_at_ms <= now_ms).order_by(
        PaymentAttempt.next_query_at_ms).limit(limit))
    return [facts(row) for row in rows]
