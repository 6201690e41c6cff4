"""Group commit for SQL: many small write units share one transaction and one commit.

A durable commit costs an fsync (SQLite ``synchronous=FULL``) or a WAL flush (PostgreSQL), a
few hundred microseconds to milliseconds; the order path needs two write transactions per order
(the saga's steps 1 and 3). :class:`WriteBatcher` runs the units that callers submit while a
commit is under way together in the next transaction, each inside its own SAVEPOINT, so one
unit's failure (``INSUFFICIENT_BALANCE``) rolls back that unit only and the others commit.

A unit is a function of the session that returns a value or raises. ``submit`` blocks its
caller until the transaction holding the unit has committed (its effect is then durable) and
returns the unit's value or raises its error. When the commit itself fails, every unit of that
transaction gets DATABASE_UNAVAILABLE: none of them took effect.

Units must be independent and short: they run one after another on the batcher's thread, and
must not call ``Database.write()`` (they already are inside it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from cardsvc.db.database import Database
from cardsvc.errors import CardsvcError, ErrorCode, make_error

T = TypeVar("T")

UNITS_PER_COMMIT_MAX = 256
"""Units in one transaction: bounds how long one commit holds the write lock (a unit of the
order path takes about 0.2 ms, so at most ~50 ms)."""
SUBMIT_TIMEOUT_S = 30.0


@dataclass
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    future: Future[T]


class WriteBatcher:
    """One writer thread committing submitted units in groups. Start with :meth:`start`, stop
    with :meth:`close` (units submitted after that raise DATABASE_UNAVAILABLE)."""

    def __init__(self, db: Database, *, units_max: int = UNITS_PER_COMMIT_MAX) -> None:
        self._db = db
        self._units_max = units_max
        self._queue: SimpleQueue[_Unit[Any] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cardsvc-sql-batcher",
                                        daemon=True)
        self._closed = False
        self.commits = 0
        self.units = 0

    def start(self) -> WriteBatcher:
        self._thread.start()
        return self

    def submit(self, work: Callable[[Session], T], timeout: float = SUBMIT_TIMEOUT_S) -> T:
        """Runs ``work`` in the next group transaction and returns its value once committed.
        Raises what ``work`` raised (its changes rolled back), or DATABASE_UNAVAILABLE when the
        transaction could not commit or did not within ``timeout``."""
        if self._closed:
            raise make_error(ErrorCode.DATABASE_UNAVAILABLE, "the database writer is closed")
        future: Future[T] = Future()
        self._queue.put(_Unit(work, future))
        try:
            return future.result(timeout)
        except TimeoutError:
            raise make_error(ErrorCode.DATABASE_UNAVAILABLE,
                             "the database did not commit in time; the effect may still land",
                             {"timeout_s": timeout}) from None

    async def submit_async(self, work: Callable[[Session], T],
                           timeout: float = SUBMIT_TIMEOUT_S) -> T:
        """:meth:`submit` for an event loop: awaits the commit instead of blocking a thread."""
        if self._closed:
            raise make_error(ErrorCode.DATABASE_UNAVAILABLE, "the database writer is closed")
        future: Future[T] = Future()
        self._queue.put(_Unit(work, future))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise make_error(ErrorCode.DATABASE_UNAVAILABLE,
                             "the database did not commit in time; the effect may still land",
                             {"timeout_s": timeout}) from None

    def close(self) -> None:
        """Stops the thread after the units already submitted. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(SUBMIT_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group: list[_Unit[Any]] = [first]
            stop = False
            while len(group) < self._units_max:
                try:
                    unit = self._queue.get_nowait()
                except Empty:
                    break
                if unit is None:
                    stop = True
                    break
                group.append(unit)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Unit[Any]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._db.write() as session:
                for unit in group:
                    outcomes.append(_run_unit(session, unit.work))
        except CardsvcError as error:
            for unit in group:
                unit.future.set_exception(error)
            return
        except Exception as error:  # the commit failed: nothing in the group took effect
            failure = make_error(ErrorCode.DATABASE_UNAVAILABLE,
                                 "the database could not commit; nothing was changed",
                                 {"reason": type(error).__name__})
            for unit in group:
                unit.future.set_exception(failure)
            return
        self.commits += 1
        self.units += len(group)
        for unit, (ok, value) in zip(group, outcomes, strict=True):
            if ok:
                unit.future.set_result(value)
            else:
                unit.future.set_exception(value)


def _run_unit(session: Session, work: Callable[[Session], Any]) -> tuple[bool, Any]:
    """Runs one unit inside a SAVEPOINT: ``(True, value)``, or ``(False, error)`` with the
    unit's changes rolled back. A unit's bug (not a CardsvcError) is also contained, so it
    cannot undo the other units; the caller re-raises it."""
    try:
        with session.begin_nested():
            return True, work(session)
    except Exception as error:
        return False, error
