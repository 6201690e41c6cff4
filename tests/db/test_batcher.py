"""Goal: group commit for SQL keeps every unit's outcome its own: units submitted together
share commits, a failing unit rolls back only its own changes, every successful unit is
committed when ``submit`` returns, and a closed batcher refuses new units.

Method: many threads submit units that insert grades (some raising on purpose) through one
``WriteBatcher`` on SQLite and PostgreSQL; afterwards the table holds exactly the successful
units' rows and the batcher made fewer commits than units. Batch kinds: items submitted while
the writer is held by another unit form one group, handed to one call of the kind; a refused
item writes nothing, and a call that raises is rolled back and its items run one by one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.agents.tables import Grade
from cardsvc.db import Database
from cardsvc.db.batcher import BatchKind, WriteBatcher
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


# ----- batch kinds: the items of one group in one call ---------------------------------------


def _grade_kind(calls: list[list[int]], *, broken: bool = False) -> BatchKind[int, str]:
    """Items are numbers; a multiple of 3 is refused, the others insert grade ``b<n>``."""

    def one(session: Session, n: int) -> str:
        if n % 3 == 0:
            raise make_error(ErrorCode.INSUFFICIENT_BALANCE, "refused on purpose")
        session.add(Grade(grade=f"b{n}", name="b", created_at_ms=0))
        session.flush()
        return f"b{n}"

    def batch(session: Session, items: Sequence[int]) -> list[str | CardsvcError]:
        calls.append(list(items))
        out: list[str | CardsvcError] = []
        for n in items:
            if n % 3 == 0:
                out.append(make_error(ErrorCode.INSUFFICIENT_BALANCE, "refused on purpose"))
            else:
                session.add(Grade(grade=f"b{n}", name="b", created_at_ms=0))
                out.append(f"b{n}")
        session.flush()
        if broken:
            raise ZeroDivisionError
        return out

    return BatchKind("grades", batch, one)


def _grouped(batcher: WriteBatcher, kind: BatchKind[int, str],
             items: range) -> list[str | BaseException]:
    """Submits ``items`` while the writer is held by another unit, so they form one group."""
    started, gate = threading.Event(), threading.Event()

    def hold(session: Session) -> None:
        started.set()
        gate.wait(10)

    holder = threading.Thread(target=batcher.submit, args=(hold,))
    holder.start()
    started.wait(10)

    async def submit_all() -> list[str | BaseException]:
        tasks = [asyncio.ensure_future(batcher.submit_batch_async(kind, n)) for n in items]
        asyncio.get_running_loop().call_soon(gate.set)  # after every task has queued its item
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        return asyncio.run(submit_all())
    finally:
        holder.join(10)


def _stored_grades(database: Database) -> set[str]:
    with database.read() as session:
        return set(session.scalars(select(Grade.grade).where(Grade.grade.like("b%"))))


def _codes(outcomes: list[str | BaseException]) -> list[str]:
    return [o.code.value if isinstance(o, CardsvcError) else str(o) for o in outcomes]


def test_batch_items_of_a_group_share_one_call_and_refusals_write_nothing(
    database: Database,
) -> None:
    calls: list[list[int]] = []
    batcher = WriteBatcher(database).start()
    try:
        outcomes = _grouped(batcher, _grade_kind(calls), range(1, 8))
    finally:
        batcher.close()
    assert calls == [list(range(1, 8))]
    assert _codes(outcomes) == ["b1", "b2", "INSUFFICIENT_BALANCE", "b4", "b5",
                                "INSUFFICIENT_BALANCE", "b7"]
    assert _stored_grades(database) == {"b1", "b2", "b4", "b5", "b7"}
    assert (batcher.batches, batcher.fallbacks) == (1, 0)


def test_a_failing_batch_call_is_rolled_back_and_its_items_run_one_by_one(
    database: Database,
) -> None:
    calls: list[list[int]] = []
    batcher = WriteBatcher(database).start()
    try:
        outcomes = _grouped(batcher, _grade_kind(calls, broken=True), range(1, 8))
    finally:
        batcher.close()
    assert calls == [list(range(1, 8))]
    assert _codes(outcomes) == ["b1", "b2", "INSUFFICIENT_BALANCE", "b4", "b5",
                                "INSUFFICIENT_BALANCE", "b7"]
    assert _stored_grades(database) == {"b1", "b2", "b4", "b5", "b7"}
    assert (batcher.batches, batcher.fallbacks) == (0, 1)


def test_without_batching_every_item_is_an_ordinary_unit(database: Database) -> None:
    calls: list[list[int]] = []
    batcher = WriteBatcher(database, batching=False).start()
    try:
        outcomes = _grouped(batcher, _grade_kind(calls), range(1, 5))
    finally:
        batcher.close()
    assert calls == []
    assert _codes(outcomes) == ["b1", "b2", "INSUFFICIENT_BALANCE", "b4"]
    assert _stored_grades(database) == {"b1", "b2", "b4"}
