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

Batch items (:meth:`WriteBatcher.submit_batch_async`) go further: the items of one
:class:`BatchKind` queued for the same transaction are handed to ONE call of the kind's
``run_batch``, which reads what they touch once, decides each item in arrival order and writes
them with one statement per table, so a commit group of orders costs a handful of statements
instead of a score per order. ``run_batch`` returns one outcome per item, a value or the
``CardsvcError`` that refuses it; a refused item must have written nothing (the kind decides
every item before it writes), so the others commit. The whole call runs inside one SAVEPOINT:
when it raises (a bug, or an error it did not expect), that savepoint is rolled back and the
items run again one by one through the kind's ``run_one``, each an ordinary unit in its own
savepoint, so one bad item cannot fail the rest. With ``batching=False`` every batch item runs
through ``run_one`` as an ordinary unit (the sequential path, kept as the reference the batched
path must equal).

The items of a kind run together at the place of the kind's first item in the group; the
transaction sees the ordinary units before that place and the units after it see the batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.orm import Session

from cardsvc.db.database import Database
from cardsvc.errors import CardsvcError, ErrorCode, make_error

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741  (an item of a batch kind)

UNITS_PER_COMMIT_MAX = 256
"""Units in one transaction: bounds how long one commit holds the write lock (a unit of the
order path takes about 0.2 ms, so at most ~50 ms)."""
SUBMIT_TIMEOUT_S = 30.0
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchKind(Generic[I, T]):
    """Items that one call can process together. ``run_batch(session, items)`` returns one
    outcome per item, in order: its value, or the CardsvcError refusing it (that item wrote
    nothing); ``run_one(session, item)`` is the same work for one item, returning the value or
    raising (the sequential path, and the fallback when ``run_batch`` raises)."""

    name: str
    run_batch: Callable[[Session, Sequence[I]], list[T | CardsvcError]]
    run_one: Callable[[Session, I], T]


@dataclass
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    future: Future[T]


@dataclass
class _BatchItem(Generic[I, T]):
    kind: BatchKind[I, T]
    item: I
    future: Future[T]


class WriteBatcher:
    """One writer thread committing submitted units in groups. Start with :meth:`start`, stop
    with :meth:`close` (units submitted after that raise DATABASE_UNAVAILABLE)."""

    def __init__(self, db: Database, *, units_max: int = UNITS_PER_COMMIT_MAX,
                 batching: bool = True) -> None:
        self._db = db
        self._units_max = units_max
        self._batching = batching
        self._queue: SimpleQueue[_Unit[Any] | _BatchItem[Any, Any] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cardsvc-sql-batcher",
                                        daemon=True)
        self._closed = False
        self.commits = 0
        self.units = 0
        self.batches = 0
        """Calls of a kind's ``run_batch`` that succeeded (several items each)."""
        self.fallbacks = 0
        """Calls of ``run_batch`` that raised, whose items then ran one by one."""

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
        return await self._await(future, timeout)

    async def submit_batch_async(self, kind: BatchKind[I, T], item: I,
                                 timeout: float = SUBMIT_TIMEOUT_S) -> T:
        """Queues ``item`` for the next group transaction, where it is processed with the
        other items of ``kind`` by one ``run_batch`` call (module doc); returns its value once
        committed, or raises its refusal (it then wrote nothing), or DATABASE_UNAVAILABLE as
        :meth:`submit`."""
        if self._closed:
            raise make_error(ErrorCode.DATABASE_UNAVAILABLE, "the database writer is closed")
        future: Future[T] = Future()
        self._queue.put(_BatchItem(kind, item, future))
        return await self._await(future, timeout)

    @staticmethod
    async def _await(future: Future[T], timeout: float) -> T:
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
            group: list[_Unit[Any] | _BatchItem[Any, Any]] = [first]
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

    def _commit(self, group: list[_Unit[Any] | _BatchItem[Any, Any]]) -> None:
        outcomes: dict[int, tuple[bool, Any]] = {}
        try:
            with self._db.write() as session:
                self._run_group(session, group, outcomes)
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
        for index, unit in enumerate(group):
            ok, value = outcomes[index]
            if ok:
                unit.future.set_result(value)
            else:
                unit.future.set_exception(value)

    def _run_group(self, session: Session, group: list[_Unit[Any] | _BatchItem[Any, Any]],
                   outcomes: dict[int, tuple[bool, Any]]) -> None:
        """Runs the group's units in order, each kind's batch items together at the place of
        the kind's first item; fills ``outcomes`` by position in the group."""
        kinds: dict[int, list[int]] = {}
        for index, unit in enumerate(group):
            if isinstance(unit, _BatchItem) and self._batching:
                kinds.setdefault(id(unit.kind), []).append(index)
        for index, unit in enumerate(group):
            if index in outcomes:
                continue
            if isinstance(unit, _Unit):
                outcomes[index] = _run_unit(session, unit.work)
                continue
            positions = kinds.get(id(unit.kind), [index])
            items = [cast(_BatchItem[Any, Any], group[at]) for at in positions]
            for at, outcome in zip(positions, self._run_batch(session, unit.kind, items),
                                   strict=True):
                outcomes[at] = outcome

    def _run_batch(self, session: Session, kind: BatchKind[Any, Any],
                   items: list[_BatchItem[Any, Any]]) -> list[tuple[bool, Any]]:
        """One ``run_batch`` call for ``items`` in a savepoint; when it raises (or breaks its
        contract), every item again through ``run_one``, each in its own savepoint."""
        values = [item.item for item in items]
        if self._batching:
            try:
                with session.begin_nested():
                    results = kind.run_batch(session, values)
                    if len(results) != len(values):
                        raise AssertionError(f"{kind.name}: {len(results)} outcomes for "
                                             f"{len(values)} items")
            except Exception as error:  # contained: the items run one by one below
                self.fallbacks += 1
                _log.warning("batch %s of %d items fell back to one by one: %s", kind.name,
                             len(values), type(error).__name__)
            else:
                self.batches += 1
                return [(False, result) if isinstance(result, CardsvcError) else (True, result)
                        for result in results]
        return [_run_unit(session, _bind(kind, value)) for value in values]


def _bind(kind: BatchKind[I, T], item: I) -> Callable[[Session], T]:
    return lambda session: kind.run_one(session, item)


def _run_unit(session: Session, work: Callable[[Session], Any]) -> tuple[bool, Any]:
    """Runs one unit inside a SAVEPOINT: ``(True, value)``, or ``(False, error)`` with the
    unit's changes rolled back. A unit's bug (not a CardsvcError) is also contained, so it
    cannot undo the other units; the caller re-raises it."""
    try:
        with session.begin_nested():
            return True, work(session)
    except Exception as error:
        return False, error
