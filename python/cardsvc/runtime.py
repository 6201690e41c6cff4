"""The running service's parts, opened and wired together once per process: the durable core
store, the SQL database, the master keys, API keys, risk state and every use case.

``Runtime.open`` is what ``cardsvc serve`` (through the server's lifespan) and the commands that
work on a data directory run at start-up:

1. the store: lock the data directory, recover the core from snapshot + journal;
2. the database: open it and migrate to the current schema; attach the price cache;
3. the master keys (``cardsvc.crypto.load_keyring``: the current one wraps new batches' data
   keys, older ones still open theirs);
4. recovery passes that finish or undo what a crash interrupted: batches (the import saga),
   then pending orders (the order saga).

``recover_pending`` is one round of the timer that re-drives orders left pending by a
transient failure (the journal unavailable) and releases commissions whose cooling period has
passed, while the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardsvc import crypto, files
from cardsvc.access import (
    ARGON2_PARAMS,
    DAY_MS,
    AccessGate,
    ApprovalPolicy,
    Approvals,
    Argon2Params,
    Challenges,
    KeyAuthenticator,
    LockoutPolicy,
    Logins,
    Passwords,
    RiskGuard,
    RiskLimits,
    SessionSettings,
)
from cardsvc.agents import AgentDirectory, AgentUpdates, Credentials, PriceCache, PriceLists
from cardsvc.catalog import Batches, BatchMeta, Catalog, CodeFormat, ImportJobs
from cardsvc.db import Database, WriteBatcher
from cardsvc.delivery import (
    Composer,
    Exports,
    FolderSender,
    MailSender,
    MailWorker,
    RetailReveal,
    Revealer,
    SmtpSender,
)
from cardsvc.engine import (
    PIN_FAILURES_DEFAULT,
    PIN_LOCKOUT_MAX_MS_DEFAULT,
    PIN_LOCKOUT_MS_DEFAULT,
    Store,
    StoreConfig,
)
from cardsvc.errors import ErrorCode, make_error
from cardsvc.money import AgentMoney, ledger
from cardsvc.payments import Channels, HttpxTransport
from cardsvc.redemption import RedemptionHistory, Terminals
from cardsvc.reports import (
    COOLDOWN_MS_DEFAULT,
    STUCK_PAYMENT_MS_DEFAULT,
    AgentReports,
    Alerts,
    CodeSearch,
    Dashboards,
    Reconciliations,
    Rollups,
    channel_reconciliation,
    mark_mailed,
)
from cardsvc.sales import (
    COOLING_MS_DEFAULT,
    CRASH_POINTS,
    PENDING_ORDER_AGE_MS,
    RETAIL_CRASH_POINTS,
    ApprovedActions,
    BuyerGuard,
    Checkout,
    Holds,
    Orders,
    RetailLimits,
    ShopCatalog,
    StoreSettings,
    delivered_code_ids,
)
from cardsvc.sales import no_crash as _no_crash

log = logging.getLogger("cardsvc.services")

FOLD_ROUNDS_MAX = 50
"""Fold pages per readers' round (each at most ``reports.rollups.FOLD_POSTINGS_MAX``, 2,000
postings, one write transaction): up to 100,000 postings per round (~15,000 orders), drained
in short transactions so the order path's group commit never waits long for the write lock."""
HOUR_MS = 3_600_000


ORDER_PASSWORD_PARAMS = Argon2Params(time_cost=2, memory_kib=19 * 1024)
"""argon2id for retail order passwords: RFC 9106's low-memory option (about 20 ms here), since a
checkout must not cost a login's 140 ms; lookups are throttled per IP and per order anyway."""


@dataclass(frozen=True)
class MailConfig:
    """Where the storefront's mail goes: an SMTP server (``smtp_host``), else ``folder`` (the
    embedded defaults: ``<data dir>/mail``); ``composer`` renders a mail (the server wires the
    web layer's templates; without one, mails wait in the outbox)."""

    from_address: str = "shop@localhost"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    composer: Composer | None = None


@dataclass
class ServiceConfig:
    """Where the service keeps its state, which limits it enforces by default, and the fault to
    inject (``crash_at``: one of ``cardsvc.sales.CRASH_POINTS``, for the saga crash test only)."""

    store: StoreConfig
    database_url: str | None = None
    risk: RiskLimits = field(default_factory=RiskLimits.from_env)
    commission_cooling_ms: int = COOLING_MS_DEFAULT
    crash_at: str | None = None
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    """Which guarded actions need a second person's approval (every one by default)."""
    argon2: Argon2Params = ARGON2_PARAMS
    """Password hashing of console users (tests pass cheaper parameters)."""
    sessions: SessionSettings = field(default_factory=SessionSettings)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    timezone: str = "Asia/Shanghai"
    """The IANA zone of the business's days (dashboards' "today", daily roll-ups)."""
    alert_cooldown_ms: int = COOLDOWN_MS_DEFAULT
    """How often a condition still true is noticed again."""
    alert_stuck_payment_ms: int = STUCK_PAYMENT_MS_DEFAULT
    """How long after its deadline an unconfirmed retail payment is a stuck-payment alert."""
    alert_mail: bool = True
    """Queue alert mail through the outbox (sent when a composer is wired)."""
    pin_failures_max: int = PIN_FAILURES_DEFAULT
    """Wrong PINs per code before the engine locks it (docs/engine.md, PIN lockout)."""
    pin_lockout_ms: int = PIN_LOCKOUT_MS_DEFAULT
    """The first lockout; each further one lasts twice as long, up to pin_lockout_max_ms."""
    pin_lockout_max_ms: int = PIN_LOCKOUT_MAX_MS_DEFAULT
    store_settings: StoreSettings = field(default_factory=StoreSettings)
    retail: RetailLimits = field(default_factory=RetailLimits.from_env)
    challenge_enabled: bool = True
    challenge_max_number: int = 50_000
    mail: MailConfig = field(default_factory=MailConfig)
    sandbox_default: bool = True
    """Create the sandbox channel on a data directory that has no channel (never in
    production)."""
    demo_shop: bool = False
    """Put two demo products with generated codes in an empty shop (``scripts/run.sh``'s
    embedded defaults, so the quick start shows a shop ready to pay in the sandbox)."""
    sql_batching: bool = True
    """The order saga's commit groups processed as batches (``cardsvc.db.batcher``); False runs
    every order as a one-order unit (the reference path the batches must equal)."""


def check_modes(data_dir: Path) -> None:
    """The start-up check of the data directory's modes (``cardsvc.files``): FILE_MODE_INSECURE
    (details ``path``, ``mode``) for a key file others may read; a warning in the log for any
    other loosened file or directory."""
    report = files.check_data_dir_modes(data_dir)
    for line in report.warn:
        log.warning("data directory: %s", line)
    if report.refuse:
        path, mode = report.refuse[0]
        raise make_error(ErrorCode.FILE_MODE_INSECURE,
                         "a key file of the data directory may be read by others: chmod 600 it",
                         {"path": path, "mode": mode, "files": len(report.refuse)})


def crash_hook(crash_at: str | None) -> Callable[[str], None]:
    """The order saga's fault hook: kills this process with SIGKILL at the point named
    ``crash_at`` (the saga crash test's fault injection), nothing when None."""
    if not crash_at:
        return _no_crash
    if crash_at not in CRASH_POINTS + RETAIL_CRASH_POINTS:
        raise ValueError(f"crash_at must be one of {CRASH_POINTS + RETAIL_CRASH_POINTS}")

    def crash(point: str) -> None:
        if point == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


class Runtime:
    """Everything a request may need, opened once per process."""

    def __init__(self, store: Store, db: Database, keyring: crypto.MasterKeyring,
                 risk: RiskGuard, *, cooling_ms: int = COOLING_MS_DEFAULT,
                 crash: Callable[[str], None] = _no_crash,
                 config: ServiceConfig | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.db = db
        self.keyring = keyring
        self.risk = risk
        self.keys = KeyAuthenticator(db)
        self.gate = AccessGate(self.keys, risk, db, store.engine.now_ms)
        """Authentication of API requests and the brute-force lockouts' administration."""
        self.credentials = Credentials(db, self.keys, store.engine.now_ms)
        policy = config.approvals if config is not None else ApprovalPolicy()
        self.approvals = Approvals(db, store.engine.now_ms, policy)
        """Maker-checker: payouts, refunds, exports and batch voids run only once approved."""
        self.logins = Logins(
            db, keyring,
            passwords=Passwords(config.argon2 if config is not None else ARGON2_PARAMS),
            settings=config.sessions if config is not None else None,
            policy=config.lockout if config is not None else None)
        """Console users' logins and sessions (one per process: it holds the throttles)."""
        self.catalog = Catalog(store, db, self.approvals)
        self.price_cache = PriceCache()
        self.price_cache.attach(db)
        self.agent_updates = AgentUpdates(db, self.catalog, ledger, store.engine.now_ms,
                                          on_suspended=self._release_holds_of)
        """Creating and changing agents (their ledger accounts through ``money.ledger``; a
        suspension releases the subtree's holds through ``sales.Holds``)."""
        self.agent_directory = AgentDirectory(db, store.engine)
        self.price_lists = PriceLists(db, store.engine.now_ms)
        self.money = AgentMoney(db, store.engine.now_ms, self.approvals)
        self.batches = Batches(store, db, keyring, self.catalog)
        self.revealer = Revealer(db, keyring)
        self.exports = Exports(db, self.revealer, delivered_code_ids, store,
                               store.engine.now_ms, self.approvals)
        self.batcher = WriteBatcher(
            db, batching=config.sql_batching if config is not None else True).start()
        """SQL group commit for the order path (``cardsvc.db.batcher``)."""
        self.holds = Holds(store, db, risk, self.batcher)
        self.orders = Orders(store, db, self.revealer, self.holds, risk, self.batcher,
                             cooling_ms=cooling_ms, crash=crash, approvals=self.approvals)
        self.terminals = Terminals(store, db, risk, self.batches.prefixes,
                                   crypto.load_public_ids(store.config.data_dir))
        self.timezone = config.timezone if config is not None else "Asia/Shanghai"
        self.rollups = Rollups(db, store.engine.now_ms, self.timezone, self.terminals.counts)
        """Sales folded from the ledger and redemptions counted, for the dashboards."""
        self.dashboards = Dashboards(db, store, self.rollups, store.engine.now_ms)
        self.codes = CodeSearch(store, db, self.revealer, self.batches.suffix_key)
        """Support's code search (full code, last 4 + SKU, order, batch) and traces."""
        self.agent_reports = AgentReports(db)
        """The agents' tree, dossiers, price lists and commissions for the console and portal."""
        self.reconciliations = Reconciliations(store, db, self.catalog, store.engine.now_ms)
        """Stored reconciliation runs (the console's money page shows the latest)."""
        self.alerts = Alerts(
            db, self.dashboards, store.engine.now_ms,
            cooldown_ms=config.alert_cooldown_ms if config is not None else COOLDOWN_MS_DEFAULT,
            stuck_payment_ms=(config.alert_stuck_payment_ms if config is not None
                              else STUCK_PAYMENT_MS_DEFAULT),
            mail=config.alert_mail if config is not None else True)
        """Low stock, low balances, stuck imports, payments and mails, withdrawal requests;
        evaluated each readers' round, deduplicated with a cooldown, mailed through the
        outbox."""
        self._hourly_at_ms = 0
        self.redemptions = RedemptionHistory(store, db, self.terminals)
        self.recovery: dict[str, Any] = {}
        self.jobs = ImportJobs(self.batches, store.config.data_dir / "uploads")
        """File imports run here, off the request path: a bounded queue with its own workers,
        each job cancellable (``cardsvc.catalog.import_jobs``)."""
        self._open_storefront(config or ServiceConfig(store=store.config), crash)
        self.approved = ApprovedActions(self.approvals, self.money, self.orders, self.checkout,
                                        self.catalog, self.exports)
        """Runs approved maker-checker requests through their guarded use cases."""

    def _open_storefront(self, config: ServiceConfig, crash: Callable[[str], None]) -> None:
        """The storefront's parts: payment channels, the shop's catalog, buyers' limits, the
        challenge, the checkout saga and the mail worker."""
        data_dir = self.store.config.data_dir
        settings = config.store_settings
        self.link_key = crypto.load_link_key(data_dir)
        self._reconciled_day: int | None = None
        self.channels = Channels(self.db, self.keyring, public_url=settings.public_url,
                                 clock_ms=self.engine.now_ms, transport=HttpxTransport(),
                                 production=settings.production)
        self.shop = ShopCatalog(self.db, self.engine)
        self.buyers = BuyerGuard(config.retail)
        self.challenges = Challenges(enabled=config.challenge_enabled,
                                     max_number=config.challenge_max_number)
        self.order_passwords = Passwords(ORDER_PASSWORD_PARAMS, hashes_at_once_max=2)
        self.retail_reveal = RetailReveal(self.db, self.revealer, self.link_key,
                                          self.engine.now_ms)
        self.checkout = Checkout(
            self.store, self.db, self.batcher, channels=self.channels, shop=self.shop,
            guard=self.buyers, challenges=self.challenges, passwords=self.order_passwords,
            reveal=self.retail_reveal, link_key=self.link_key, settings=settings, crash=crash,
            approvals=self.approvals)
        mail = config.mail
        sender: MailSender = (FolderSender(data_dir / "mail") if not mail.smtp_host else
                              SmtpSender(mail.smtp_host, mail.smtp_port,
                                         starttls=mail.smtp_starttls,
                                         username=mail.smtp_username,
                                         password=mail.smtp_password))
        self.mail = MailWorker(self.db, self.revealer, sender, mail.composer,
                               link_key=self.link_key, public_url=settings.public_url,
                               from_address=mail.from_address, clock_ms=self.engine.now_ms,
                               on_alert_mailed=mark_mailed)
        if config.sandbox_default:
            self.channels.ensure_sandbox()
        if config.demo_shop and not settings.production:
            self._seed_demo_shop()

    def _seed_demo_shop(self) -> None:
        """Two demo products with generated codes, when the catalog is empty."""
        if self.catalog.list_skus():
            return
        demos = (("DEMO-GAME", "Demo game points 100", "Games", 990, 6),
                 ("DEMO-VIDEO", "Demo video membership, 1 month", "Video", 1_500, 0))
        for sku, name, category, price, pin_length in demos:
            self.catalog.create_sku(
                sku, name, actor="demo", retail_price_minor=price, cost_minor=price // 2,
                category=category, validity_text="365 days",
                description="A demo product of the sandbox shop: its codes are test codes.",
                usage_instructions="Copy the code, open the app, choose Redeem and paste it.")
            self.batches.generate(BatchMeta(sku, unit_cost_minor=price // 2, currency="CNY"),
                                  CodeFormat(pin_length=pin_length), 50, actor="demo")
        self.shop.invalidate()

    @classmethod
    def open(cls, config: ServiceConfig, *, store: Store | None = None) -> Runtime:
        """Opens (or adopts) the store, the database and the master key, then runs the recovery
        passes. Raises what ``Store.open`` and ``Database.open`` raise; on failure everything
        opened so far is closed again. Call it outside an event loop (the order recovery runs
        one of its own)."""
        check_modes(config.store.data_dir)
        opened = store if store is not None else Store.open(config.store)
        try:
            opened.engine.set_pin_policy(config.pin_failures_max, config.pin_lockout_ms,
                                         config.pin_lockout_max_ms)
            db = Database.open(config.store.data_dir, config.database_url)
        except BaseException:
            opened.close()
            raise
        try:
            keyring = crypto.load_keyring(config.store.data_dir)
            runtime = cls(opened, db, keyring, RiskGuard(config.risk),
                          cooling_ms=config.commission_cooling_ms,
                          crash=crash_hook(config.crash_at), config=config)
            runtime.recovery = {
                "batches": runtime.batches.recover(),
                "orders": asyncio.run(runtime.orders.recover()),
                "retail": asyncio.run(runtime.checkout.recover()),
            }
        except BaseException:
            db.close()
            opened.close()
            raise
        log.info("services recovered: %s", runtime.recovery)
        return runtime

    async def recover_pending(self) -> dict[str, int]:
        """The timer's round: re-drives orders left pending for PENDING_ORDER_AGE_MS or more,
        expires due holds and returns their money, and moves commissions whose cooling period
        has passed to their earners' balances (in bounded batches,
        ``AgentMoney.release_due_commissions``)."""
        counts = await self.orders.recover(older_than_ms=PENDING_ORDER_AGE_MS)
        counts["holds_expired"] = await self.holds.expire_due()
        counts["commissions_released"] = await asyncio.to_thread(
            self.money.release_due_commissions)
        retail = await self.checkout.recover(older_than_ms=PENDING_ORDER_AGE_MS)
        counts.update({f"retail_{name}": count for name, count in retail.items()})
        counts["channels_reconciled"] = await asyncio.to_thread(self._reconcile_channels_daily)
        if counts["commissions_released"]:
            await asyncio.to_thread(self.alerts.event, "commissions_released",
                                    {"count": counts["commissions_released"]})
        return counts

    def reports_round(self) -> dict[str, int]:
        """The readers' timer round (blocking; run it in a worker thread): folds new ledger
        postings and redemption counts into the roll-ups, expires old approvals, evaluates the
        alerts; once an hour also checks the roll-ups against the ledger (rebuilding them on a
        difference) and purges old sessions and invitations."""
        counts = {"postings_folded": 0, "approvals_expired": self.approvals.expire_due()}
        for _ in range(FOLD_ROUNDS_MAX):
            folded = self.rollups.refresh()
            counts["postings_folded"] += folded
            if folded == 0:
                break
            time.sleep(0)  # between rounds, a writer waiting for the write lock takes its turn
        now_ms = self.engine.now_ms()
        if now_ms - self._hourly_at_ms >= HOUR_MS:
            self._hourly_at_ms = now_ms
            if self.rollups.check():
                log.warning("roll-ups disagree with the ledger; rebuilding them")
                counts["postings_refolded"] = self.rollups.rebuild()
            counts["logins_purged"] = self.logins.purge()
        counts.update({f"alerts_{notice}": count
                       for notice, count in self.alerts.evaluate().items()})
        return counts

    def _release_holds_of(self, agent_ids: list[str], actor: str) -> None:
        released = self.holds.release_agents(agent_ids, actor=actor)
        if released:
            log.info("released %d holds of suspended agents", released)

    def _reconcile_channels_daily(self) -> int:
        """Once a UTC day, each payment channel's attempts of the day before against its
        callbacks and postings (``reports.channel_reconciliation``); mismatches are logged as
        warnings for staff. Returns how many channels were checked this round."""
        day = self.engine.now_ms() // DAY_MS
        if day == self._reconciled_day:
            return 0
        self._reconciled_day = day
        checked = 0
        for view in self.channels.all():
            result = channel_reconciliation(self.db, view.channel_id, since_ms=(day - 1) * DAY_MS,
                                            until_ms=day * DAY_MS, now_ms=self.engine.now_ms())
            checked += 1
            for problem in result["problems"]:
                log.warning("channel %s reconciliation: %s %s", view.channel_id,
                            problem["kind"], problem["subject"])
        return checked

    async def deliver_mail(self) -> dict[str, int]:
        """One round of the mail worker (the server runs it every few seconds)."""
        return await self.mail.run_once()

    def close(self) -> None:
        """Cancels the import jobs (their batches end ``cancelled``, what they imported voided)
        and waits for them, then closes the database and the store (flushing the journal).
        Idempotent."""
        self.jobs.close()
        self.batcher.close()
        self.db.close()
        self.store.close()
