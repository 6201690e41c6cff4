"""The in-process cache of price outcomes (``pricing.effective_price``), and how it stays right.

The order path asks for a price chain ~1,500 times a second. Outcomes are cached per (agent,
SKU) for one database, and the whole cache is dropped when any transaction that changed an
agent, SKU, grade or price ends: session events mark such a session (:func:`mark_changing`), the
session itself never reads the cache, and only a transaction that began after the last drop may
fill it, so a snapshot older than a committed change is never cached. Changes made behind the
ORM (raw SQL, another process) are seen after ``PRICE_CACHE_TTL_S``, or at once after
:meth:`PriceCache.clear`.

The cache is attached to one database's session factories (:meth:`PriceCache.attach`, which the
runtime calls when it opens the database): its listeners and its entry in each session's
``info`` belong to those factories only, so sessions of any other database (a test's, the
CLI's) neither read nor fill it and always compute.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from cardsvc.agents.tables import Agent, Grade, Price
from cardsvc.catalog.tables import Sku
from cardsvc.db import Database

T = TypeVar("T")

PRICE_CACHE_ENTRIES_MAX = 50_000
"""Cached outcomes (oldest dropped first); a chain of a few agents is ~0.5 KB."""
PRICE_CACHE_TTL_S = 2.0
"""How long a cached outcome is trusted: bounds what a change the session events cannot see
(raw SQL, another process) leaves stale. One miss per (agent, SKU) per TTL costs nothing."""
WATCHED = (Agent, Sku, Grade, Price)
"""The rows prices depend on."""
_CACHE = "cardsvc.price_cache"
_CHANGING = "cardsvc.price_cache.changing"
_BEGIN_VERSION = "cardsvc.price_cache.begin_version"


class PriceCache:
    """Outcomes by key, dropped whole at every :meth:`clear`. Thread-safe."""

    def __init__(self, *, entries_max: int = PRICE_CACHE_ENTRIES_MAX,
                 ttl_s: float = PRICE_CACHE_TTL_S) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._entries_max = entries_max
        self._ttl_s = ttl_s

    @property
    def version(self) -> int:
        return self._version

    def clear(self) -> None:
        """Drops every cached outcome: after any change prices depend on, and by hand for
        changes made behind the ORM (raw SQL, TRUNCATE in tests, another process)."""
        with self._lock:
            self._version += 1
            self._entries.clear()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._entries.get(key)
        if item is None or time.monotonic() - item[0] >= self._ttl_s:
            return None
        return item[1]

    def put(self, key: Hashable, outcome: object, version: int) -> None:
        """Stores ``outcome``, read in a transaction that began at ``version``, unless a change
        has ended since (its snapshot may predate that change)."""
        now = time.monotonic()
        with self._lock:
            if version != self._version:
                return
            if key not in self._entries and len(self._entries) >= self._entries_max:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (now, outcome)

    def attach(self, database: Database) -> None:
        """Serves every session of ``database``: puts this cache in the sessions' ``info`` and
        listens to their transactions and writes. Call once per database."""
        for factory in database.session_factories:
            _attach(self, factory)


def _attach(cache: PriceCache, factory: sessionmaker[Session]) -> None:
    info = dict(factory.kw.get("info") or {})
    info[_CACHE] = cache
    factory.configure(info=info)

    def on_begin(session: Session, transaction: SessionTransaction, _connection: Any) -> None:
        if transaction.parent is None:
            session.info[_BEGIN_VERSION] = cache.version

    def on_end(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            session.info.pop(_BEGIN_VERSION, None)
            if session.info.pop(_CHANGING, False):
                cache.clear()

    event.listen(factory, "after_begin", on_begin)
    event.listen(factory, "after_transaction_end", on_end)
    event.listen(factory, "do_orm_execute", _on_execute)
    event.listen(factory, "before_flush", _on_flush)


def mark_changing(session: Session) -> None:
    """Marks the session's transaction as changing what prices depend on: the session stops
    using the cache, and the cache is dropped when the transaction ends (committed or not)."""
    session.info[_CHANGING] = True


def cached(session: Session, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or its cached value for ``key`` when ``session`` belongs to a database
    with a cache and has changed nothing prices depend on. Flushes pending changes first (they
    mark the session)."""
    session.flush()
    cache = session.info.get(_CACHE)
    if not isinstance(cache, PriceCache) or session.info.get(_CHANGING):
        return compute()
    found = cache.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    outcome = compute()
    version = session.info.get(_BEGIN_VERSION)
    if version is not None and not session.info.get(_CHANGING):
        cache.put(key, outcome, version)
    return outcome


def _on_execute(state: ORMExecuteState) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and any(
        mapper.class_ in WATCHED for mapper in state.all_mappers
    ):
        mark_changing(state.session)


def _on_flush(session: Session, _context: Any, _instances: Any) -> None:
    if any(isinstance(row, WATCHED)
           for row in itertools.chain(session.new, session.dirty, session.deleted)):
        mark_changing(session)
