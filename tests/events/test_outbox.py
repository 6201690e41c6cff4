"""The outbox: events written in the caller's transaction, handed out once due, retried with
back-off until the last attempt, never written twice for one dedupe key.

Goal: a second ``emit`` with the same key (a retried transaction, a second driver of the same
order) writes nothing; a rolled-back transaction leaves no event; ``due`` hands out only what is
due, oldest first, within its bound; ``retry_later`` follows ``BACKOFF_MS`` and ends ``failed``
after ``ATTEMPTS_MAX``; ``done`` events are never handed out again.
Method: the real database (SQLite and PostgreSQL through the shared ``database`` fixture).
"""

from __future__ import annotations

import pytest

from cardsvc.db import Database
from cardsvc.events import ATTEMPTS_MAX, BACKOFF_MS, done, due, emit, pending_count, retry_later
from cardsvc.events.outbox import DUE_BATCH_MAX

T0 = 1_800_000_000_000


def _emit(database: Database, dedupe: str, *, at_ms: int = T0, due_at_ms: int | None = None,
          ) -> bool:
    with database.write() as session:
        return emit(session, kind="mail.send", subject=f"ord_{dedupe}", dedupe=dedupe,
                    payload={"template": "delivered", "n": 1}, now_ms=at_ms,
                    due_at_ms=due_at_ms)


def test_one_event_per_dedupe_key_and_none_from_a_rolled_back_transaction(
        database: Database) -> None:
    assert _emit(database, "a") is True
    assert _emit(database, "a") is False  # a retry of the same change
    with pytest.raises(RuntimeError), database.write() as session:
        emit(session, kind="mail.send", subject="ord_b", dedupe="b", payload={}, now_ms=T0)
        raise RuntimeError("the order's transaction fails after the emit")
    with database.read() as session:
        events = due(session, "mail.send", T0)
        assert [e.subject for e in events] == ["ord_a"]
        assert events[0].payload == {"template": "delivered", "n": 1}
        assert pending_count(session, "mail.send") == 1
        assert due(session, "other.kind", T0) == []


def test_due_hands_out_what_is_due_oldest_first_within_its_bound(database: Database) -> None:
    _emit(database, "later", due_at_ms=T0 + 60_000)
    for i in range(DUE_BATCH_MAX + 5):
        _emit(database, f"now-{i:03d}", at_ms=T0 + i)
    with database.read() as session:
        first = due(session, "mail.send", T0 + 10_000, limit=10 * DUE_BATCH_MAX)
        assert len(first) == DUE_BATCH_MAX  # the bound wins over a larger limit
        assert [e.subject for e in first[:3]] == ["ord_now-000", "ord_now-001", "ord_now-002"]
        assert "ord_later" not in {e.subject for e in first}
        assert [e.subject for e in due(session, "mail.send", T0 + 60_000, limit=DUE_BATCH_MAX)
                ][-1] != "ord_later"  # still oldest first: 105 due before it


def test_retries_back_off_then_fail_and_done_is_final(database: Database) -> None:
    _emit(database, "r")
    _emit(database, "d")
    with database.read() as session:
        retry, finished = due(session, "mail.send", T0)
    with database.write() as session:
        done(session, finished.event_id, T0)
    now = T0
    states = []
    for attempt in range(ATTEMPTS_MAX):
        with database.write() as session:
            states.append(retry_later(session, retry.event_id, attempt, "451 try later " * 50,
                                      now))
        wait = BACKOFF_MS[min(attempt + 1, len(BACKOFF_MS)) - 1]
        with database.read() as session:
            assert due(session, "mail.send", now + wait - 1) == []  # not before its back-off
            handed = due(session, "mail.send", now + wait)
        now += wait
        if states[-1] == "pending":
            assert [e.event_id for e in handed] == [retry.event_id]
            assert handed[0].attempts == attempt + 1
        else:
            assert handed == []
    assert states == ["pending"] * (ATTEMPTS_MAX - 1) + ["failed"]
    with database.read() as session:
        assert pending_count(session, "mail.send") == 0
        assert due(session, "mail.send", now + 10**9) == []
