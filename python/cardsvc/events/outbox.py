"""Domain events leave through the outbox, written inside the caller's transaction
(ARCHITECTURE.md rule 5): the event commits or rolls back with the change it reports, so a
mail is never sent for an order that did not commit, and never lost for one that did.

Workers claim due events (:func:`due`), do their work outside any transaction, then record the
outcome (:func:`done` or :func:`retry_later`, which backs off and gives up after
``ATTEMPTS_MAX``). Every function takes the caller's open ``Session`` and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.events.tables import OutboxEvent

BACKOFF_MS = (60_000, 300_000, 900_000, 3_600_000, 6 * 3_600_000)
"""Waits after the 1st, 2nd, ... failed attempt (1 min, 5 min, 15 min, 1 h, 6 h)."""
ATTEMPTS_MAX = len(BACKOFF_MS) + 1
"""Attempts before an event is ``failed`` for good (then staff look at it)."""
DUE_BATCH_MAX = 100
"""Events one :func:`due` call returns at most (a worker round's bound)."""
ERROR_CHARS_MAX = 200

_EVENTS = cast(Table, OutboxEvent.__table__)


@dataclass(frozen=True, slots=True)
class Event:
    """An event as a worker sees it."""

    event_id: int
    kind: str
    subject: str
    payload: dict[str, Any]
    attempts: int


def emit(session: Session, *, kind: str, subject: str, dedupe: str, payload: dict[str, Any],
         now_ms: int, due_at_ms: int | None = None) -> bool:
    """Writes the event in the caller's transaction, due now (or at ``due_at_ms``); returns
    False when an event with this ``dedupe`` key exists already (nothing is written)."""
    row = {"kind": kind, "subject": subject, "dedupe": dedupe, "payload": payload,
           "state": "pending", "attempts": 0,
           "next_attempt_at_ms": now_ms if due_at_ms is None else due_at_ms,
           "last_error": None, "created_at_ms": now_ms, "updated_at_ms": now_ms}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # RETURNING says whether the row was written on both dialects (psycopg's rowcount of an
    # INSERT ... ON CONFLICT DO NOTHING is not 0 when nothing was inserted).
    written = session.execute(dialect.insert(_EVENTS).values(row)
                              .on_conflict_do_nothing(index_elements=["dedupe"])
                              .returning(_EVENTS.c.event_id)).first()
    return written is not None


def due(session: Session, kind: str, now_ms: int, limit: int = DUE_BATCH_MAX) -> list[Event]:
    """Pending events of ``kind`` due by ``now_ms``, oldest first (at most ``limit``)."""
    rows = session.execute(
        select(_EVENTS.c.event_id, _EVENTS.c.kind, _EVENTS.c.subject, _EVENTS.c.payload,
               _EVENTS.c.attempts)
        .where(_EVENTS.c.state == "pending", _EVENTS.c.kind == kind,
               _EVENTS.c.next_attempt_at_ms <= now_ms)
        .order_by(_EVENTS.c.next_attempt_at_ms, _EVENTS.c.event_id)
        .limit(min(limit, DUE_BATCH_MAX)))
    return [Event(row.event_id, row.kind, row.subject, dict(row.payload), row.attempts)
            for row in rows]


def done(session: Session, event_id: int, now_ms: int) -> None:
    """The event's work is done: it is never handed out again."""
    session.execute(update(_EVENTS).where(_EVENTS.c.event_id == event_id)
                    .values(state="done", updated_at_ms=now_ms,
                            attempts=_EVENTS.c.attempts + 1))


def retry_later(session: Session, event_id: int, attempts_before: int, error: str,
                now_ms: int) -> str:
    """The attempt failed: due again after the back-off, or ``failed`` after the last attempt.
    Returns the new state."""
    attempts = attempts_before + 1
    state = "failed" if attempts >= ATTEMPTS_MAX else "pending"
    wait = BACKOFF_MS[min(attempts, len(BACKOFF_MS)) - 1]
    session.execute(update(_EVENTS).where(_EVENTS.c.event_id == event_id)
                    .values(state=state, attempts=attempts, updated_at_ms=now_ms,
                            next_attempt_at_ms=now_ms + wait,
                            last_error=error[:ERROR_CHARS_MAX]))
    return state


def pending_count(session: Session, kind: str) -> int:
    """Events of ``kind`` still pending (for readiness and reconciliation)."""
    return len(list(session.scalars(select(_EVENTS.c.event_id).where(
        _EVENTS.c.state == "pending", _EVENTS.c.kind == kind).limit(10_000))))
