"""Goal: group commit for SQL keeps every unit's outcome its own: units submitted together
share commits, a failing unit rolls back only its own changes, every successful unit is
committed when ``submit`` returns, and a closed batcher refuses new units.

Method: many threads submit units that insert grades (some raising on purpose) through one
``WriteBatcher`` on SQLite and PostgreSQL; afterwards the table holds exactly the successful
units' rows and the batcher made fewer commits than units.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.agents.tables import Grade
from cardsvc.db import Database
from cardsvc.db.batcher import WriteBatcher
from cardsvc.errors import CardsvcError, ErrorCode, make_error

THREADS = 24
UNITS_PER_THREAD = 10


def add_grade(name: str, fail: bool) -> Callable[[Session], str]:
    def work(session: Session) -> str:
        session.add(Grade(grade=name, name=name, created_at_ms=0))
        session.flush()
        if fail:
            raise make_error(ErrorCode.INSUFFICIENT_BALANCE, "refused on purpose")
        return name

    return work


def test_units_share_commits_and_fail_alone(database: Database) -> None:
    batcher = WriteBatcher(database).start()
    results: dict[str, str] = {}
    lock = threading.Lock()

    def client(worker: int) -> None:
        for i in range(UNITS_PER_THREAD):
            name = f"g{worker}-{i}"
            try:
                value = batcher.submit(add_grade(name, fail=i % 3 == 0))
                outcome = "ok" if value == name else "wrong"
            except CardsvcError as error:
                outcome = error.code.value
            with lock:
                results[name] = outcome

    threads = [threading.Thread(target=client, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    batcher.close()
    ok = {name for name, outcome in results.items() if outcome == "ok"}
    refused = {name for name, outcome in results.items() if outcome == "INSUFFICIENT_BALANCE"}
    assert len(ok) + len(refused) == THREADS * UNITS_PER_THREAD
    with database.read() as session:
        stored = set(session.scalars(select(Grade.grade).where(Grade.grade != "standard")))
    assert stored == ok
    assert batcher.units == THREADS * UNITS_PER_THREAD
    assert batcher.commits < batcher.units


def test_a_unit_bug_is_contained_and_reraised(database: Database) -> None:
    batcher = WriteBatcher(database).start()
    try:
        def bug(session: Session) -> None:
            raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            batcher.submit(bug)
        assert batcher.submit(add_grade("after", fail=False)) == "after"
    finally:
        batcher.close()
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Grade)) == 2


def test_closed_batcher_refuses_units(database: Database) -> None:
    batcher = WriteBatcher(database).start()
    batcher.close()
    with pytest.raises(CardsvcError) as caught:
        batcher.submit(add_grade("late", fail=False))
    assert caught.value.code == ErrorCode.DATABASE_UNAVAILABLE
