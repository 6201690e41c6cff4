"""The running service's parts, opened and closed together: the durable core store, the SQL
database, the master key, API keys, risk state, the catalog and orders.

``Services.open`` is what ``cardsvc serve`` (through the HTTP app's lifespan) runs at start-up:

1. the store: lock the data directory, recover the core from snapshot + journal;
2. the database: open it and migrate to the current schema;
3. the master keys (``cardsvc.crypto.load_keyring``: the current one wraps new batches' data
   keys, older ones still open theirs);
4. recovery passes that finish or undo what a crash interrupted: batches (the import saga),
   then pending orders (the order saga).

A recovery timer (:meth:`Services.recover_pending`) re-drives orders left pending by a transient
failure (the journal unavailable) while the server runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cardsvc import audit, crypto
from cardsvc.access.apikeys import KeyAuthenticator
from cardsvc.access.risk import RiskGuard, RiskLimits
from cardsvc.agents import AgentUpdates, PriceCache
from cardsvc.catalog.batches import Batches
from cardsvc.catalog.import_jobs import ImportJobs
from cardsvc.catalog.skus import Catalog
from cardsvc.db import Database
from cardsvc.db.batcher import WriteBatcher
from cardsvc.engine.store import Store, StoreConfig
from cardsvc.holds import Holds
from cardsvc.money import ledger, settlement
from cardsvc.orders import COOLING_MS_DEFAULT, Orders

log = logging.getLogger("cardsvc.services")

COMMISSIONS_PER_ROUND_MAX = 10_000
"""Commissions released per timer round (the rest wait for the next round)."""
PENDING_ORDER_AGE_MS = 10_000
"""The recovery timer leaves younger pending orders alone: their request is still running."""


@dataclass
class ServiceConfig:
    """Where the service keeps its state and which limits it enforces by default."""

    store: StoreConfig
    database_url: str | None = None
    risk: RiskLimits = field(default_factory=RiskLimits.from_env)
    commission_cooling_ms: int = COOLING_MS_DEFAULT


class Services:
    """Everything a request may need, opened once per process."""

    def __init__(self, store: Store, db: Database, keyring: crypto.MasterKeyring,
                 risk: RiskGuard, *, cooling_ms: int = COOLING_MS_DEFAULT) -> None:
        self.store = store
        self.engine = store.engine
        self.db = db
        self.keyring = keyring
        self.risk = risk
        self.keys = KeyAuthenticator(db)
        self.catalog = Catalog(store, db)
        self.price_cache = PriceCache()
        self.price_cache.attach(db)
        self.agent_updates = AgentUpdates(db, self.catalog, ledger, store.engine.now_ms)
        """Creating and changing agents (their ledger accounts through ``money.ledger``)."""
        self.batches = Batches(store, db, keyring, self.catalog)
        self.holds = Holds(store.engine, risk)
        self.batcher = WriteBatcher(db).start()
        """SQL group commit for the order path (``cardsvc.db.batcher``)."""
        self.orders = Orders(store, db, self.batches, self.holds, risk, self.batcher,
                             cooling_ms=cooling_ms)
        self.recovery: dict[str, Any] = {}
        self.jobs = ImportJobs(self.batches)
        """File imports run here, off the request path: a bounded queue with its own workers,
        each job cancellable (``cardsvc.catalog.import_jobs``)."""

    @classmethod
    def open(cls, config: ServiceConfig, *, store: Store | None = None) -> Services:
        """Opens (or adopts) the store, the database and the master key, then runs the recovery
        passes. Raises what ``Store.open`` and ``Database.open`` raise; on failure everything
        opened so far is closed again."""
        opened = store if store is not None else Store.open(config.store)
        try:
            db = Database.open(config.store.data_dir, config.database_url)
        except BaseException:
            opened.close()
            raise
        try:
            keyring = crypto.load_keyring(config.store.data_dir)
            services = cls(opened, db, keyring, RiskGuard(config.risk),
                           cooling_ms=config.commission_cooling_ms)
            services.recovery = {
                "batches": services.batches.recover(),
                "orders": services.orders.recover(),
            }
        except BaseException:
            db.close()
            opened.close()
            raise
        log.info("services recovered: %s", services.recovery)
        return services

    def record(
        self, *, actor: str, action: str, object_type: str, object_id: str,
        details: dict[str, Any],
    ) -> None:
        """Appends one audit entry in its own transaction (for events of the hot path, such
        as a rollback or a lockout, whose effect is already journaled in the core)."""
        with self.db.write() as session:
            audit.append(session, actor=actor, action=action, object_type=object_type,
                         object_id=object_id, details=details, at_ms=self.engine.now_ms())

    def recover_pending(self) -> dict[str, int]:
        """The timer's round: re-drives orders left pending for PENDING_ORDER_AGE_MS or more,
        and moves commissions whose cooling period has passed to their earners' balances."""
        counts = self.orders.recover(older_than_ms=PENDING_ORDER_AGE_MS)
        now_ms = self.engine.now_ms()
        with self.db.write() as session:
            counts["commissions_released"] = len(settlement.release_due_commissions(
                session, now_ms, COMMISSIONS_PER_ROUND_MAX))
        return counts

    def close(self) -> None:
        """Cancels the import jobs (their batches end ``cancelled``, what they imported voided)
        and waits for them, then closes the database and the store (flushing the journal).
        Idempotent."""
        self.jobs.close()
        self.batcher.close()
        self.db.close()
        self.store.close()
