"""Flash-sale holds: codes reserved for a few seconds or minutes while a buyer pays, with the
money to pay for them reserved too.

A hold's id names its agent in the core's hold reference (``<agent_id>/<hold_id>``), so one agent
can never see, release or confirm another's hold. **A hold is bounded by what its holder can
pay**: before the core reserves any code, one SQL transaction (through the group commit) fixes
the holder's price chain and reserves its value, price x quantity, from the holder's balance +
credit into escrow (``cardsvc.money.settlement.reserve_hold``; INSUFFICIENT_BALANCE beyond it,
and then nothing is held). The reservation ends with the hold, exactly once:

* **confirm** (``cardsvc.sales.orders.Orders.confirm_hold``): the order's step 1 gives the
  reservation back and debits the order in the same transaction (``consume_hold``), at the
  hold's price chain;
* **release** by its agent, by an admin (any hold), or because the agent or an ancestor was
  suspended: the core returns the codes, then ``release_hold`` returns the money;
* **expiry**: the core expires holds lazily and on the timer (``expire_holds``); the timer round
  (:meth:`Holds.expire_due`) then returns the money of every hold whose deadline passed and
  that the core reports ended (or never created: a crash between the two steps).

Rejected demand stays cheap: a hold for more than the pool's sellable stock is refused by a core
read before any SQL. The open-hold caps of :mod:`cardsvc.access.risk` apply per agent and per
buyer (LIMIT_EXCEEDED: a cap, not a rate). Every method returns only once the journal holds what
it reports (a refusal too: it may report state).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access import RiskGuard, RiskLimits
from cardsvc.agents import pricing
from cardsvc.catalog import Sku, skus_found
from cardsvc.checks import check_client_ref, check_money_product, check_quantity
from cardsvc.db import BatchKind, Database, WriteBatcher
from cardsvc.engine import Engine, Hold, Store
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.money import ledger, settlement
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of
from cardsvc.sales.tables import HoldRecord

log = logging.getLogger("cardsvc.sales.holds")

HOLD_TTL_S_MIN = 1
HOLD_TTL_S_MAX = 86_400
"""A hold lasts 1 s to 1 day (the core's HOLD_TTL_MS_MAX)."""
HOLD_ID_LEN_MAX = 40
EXPIRE_BATCH_MAX = 500
"""Holds whose money one expiry pass returns per SQL transaction (one ledger transaction
each)."""
EXPIRE_ROUND_MAX = 20_000
"""Holds one timer round ends at most; the rest wait for the next round (30 s later)."""
MISSING_GRACE_MS = 60_000
"""A reserved hold that the core does not know is released only this long after its deadline:
its core step may still be in flight (a crash between the steps leaves such a row)."""
HOLD_STATES = ("open", "confirmed", "released", "expired")


@dataclass(frozen=True, slots=True)
class HoldView:
    """A hold as its agent sees it (times in Unix ms; money in minor units)."""

    hold_id: str
    sku: str
    quantity: int
    state: str
    expires_at_ms: int | None
    order_id: str | None
    agent_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    created_at_ms: int | None = None
    replayed: bool = False
    """True when :meth:`Holds.hold` answered a retry of a hold made before (its
    ``client_hold_id``) instead of making one."""


class Holds:
    """Holds of agents over the core, their money in SQL, with the risk guard's caps."""

    def __init__(self, store: Store, db: Database, risk: RiskGuard, batcher: WriteBatcher,
                 *, clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.risk = risk
        self.batcher = batcher
        self.clock = clock if clock is not None else store.engine.now_ms

    # ----- holding -----

    async def hold(
        self, agent_id: str, sku: str, quantity: int, ttl_seconds: int, *,
        buyer_id: str | None, client_hold_id: str | None, limits: RiskLimits,
        actor: str = "system",
    ) -> HoldView:
        """Reserves the money for ``quantity`` codes, then holds the codes for
        ``ttl_seconds``. A retry with the same ``client_hold_id`` returns the same hold. Raises
        OUT_OF_STOCK, SKU_NOT_FOUND, NOT_FOR_SALE, AGENT_SUSPENDED, INSUFFICIENT_BALANCE,
        LIMIT_EXCEEDED (open-hold caps, a total too large), IDEMPOTENCY_KEY_REUSED,
        INVALID_ARGUMENT."""
        check_quantity(quantity)
        if not HOLD_TTL_S_MIN <= ttl_seconds <= HOLD_TTL_S_MAX:
            raise invalid("ttl_seconds", f"ttl_seconds must be {HOLD_TTL_S_MIN}..{HOLD_TTL_S_MAX}")
        if buyer_id is not None:
            check_client_ref("buyer_id", buyer_id)
        hold_id = _hold_id(agent_id, client_hold_id)
        ref = hold_ref(agent_id, hold_id)
        try:
            return await self._hold(agent_id, hold_id, ref, sku, quantity, ttl_seconds,
                                    buyer_id, limits, actor)
        finally:
            await self.store.wait_async(Engine.last_ticket())

    async def _hold(self, agent_id: str, hold_id: str, ref: str, sku: str, quantity: int,
                    ttl_seconds: int, buyer_id: str | None, limits: RiskLimits,
                    actor: str) -> HoldView:
        try:
            earlier = hold_view(hold_id,
                                self._same_hold(self.engine.get_hold(ref), sku, quantity))
            return dataclasses.replace(await asyncio.to_thread(self._with_money, earlier, ref),
                                       replayed=True)
        except CardsvcError as error:
            if error.code != ErrorCode.HOLD_NOT_FOUND:
                raise
        self._check_stock(sku, quantity)
        now_ms = self.clock()
        expires_at_ms = now_ms + ttl_seconds * 1000
        self.risk.reserve_hold(ref, agent_id, buyer_id, quantity, expires_at_ms, limits)
        try:
            row = await self.batcher.submit_batch_async(RESERVE_KIND, _Reserve(
                ref, hold_id, agent_id, sku, quantity, buyer_id, expires_at_ms, actor, now_ms))
            if row.status != "open":  # a retry of a hold that was refused or has ended
                self.risk.end_hold(ref)
                return dataclasses.replace(record_view(row), replayed=True)
            ttl_ms = row.expires_at_ms - self.clock()
            if ttl_ms <= 0:
                raise make_error(ErrorCode.HOLD_EXPIRED, "the hold expired before it was made",
                                 {"hold_id": hold_id})
            held = self.engine.hold_ms(sku, quantity, ref, ttl_ms)
        except CardsvcError:
            self.risk.end_hold(ref)
            await self._end_money([ref], "released", actor, only_missing=False)
            raise
        return dataclasses.replace(hold_view(hold_id, held), agent_id=agent_id,
                                   amount_minor=row.amount_minor, currency=row.currency,
                                   created_at_ms=row.created_at_ms)

    def _check_stock(self, sku: str, quantity: int) -> None:
        """OUT_OF_STOCK without touching SQL when the shared pool cannot hold ``quantity``."""
        try:
            counts = self.engine.stock(sku, 0)
        except CardsvcError:
            return  # SKU_NOT_FOUND and the like: the SQL step names them
        sellable = counts["available"] - counts["expired"]
        if sellable < quantity:
            raise make_error(ErrorCode.OUT_OF_STOCK, "not enough codes in stock for this hold",
                             {"available": sellable})

    @staticmethod
    def _same_hold(held: Hold, sku: str, quantity: int) -> Hold:
        for field, old, new in (("sku", held.sku, sku), ("quantity", len(held.code_ids),
                                                          quantity)):
            if old != new:
                raise make_error(ErrorCode.IDEMPOTENCY_KEY_REUSED,
                                 "client_hold_id was used for a different hold", {"field": field})
        return held

    # ----- reading -----

    def get(self, agent_id: str, hold_id: str) -> Hold:
        """The core's hold. Raises HOLD_NOT_FOUND (also for another agent's hold)."""
        return self.engine.get_hold(hold_ref(agent_id, hold_id))

    async def view(self, agent_id: str, hold_id: str) -> HoldView:
        """The hold with its money. Raises HOLD_NOT_FOUND (also for another agent's hold)."""
        held = hold_view(hold_id, self.get(agent_id, hold_id))
        await self.store.wait_async(Engine.last_ticket())
        return await asyncio.to_thread(self._with_money, held, hold_ref(agent_id, hold_id))

    def _with_money(self, held: HoldView, ref: str) -> HoldView:
        """``held`` (the core's view) with what its SQL row says: agent, amount, creation."""
        with self.db.read() as session:
            row = session.get(HoldRecord, ref)
        if row is None:
            return held
        return dataclasses.replace(held, agent_id=row.agent_id, amount_minor=row.amount_minor,
                                   currency=row.currency, created_at_ms=row.created_at_ms)

    def list(self, *, agent_id: str | None, status: str | None = None,
             limit: int | None = None, cursor: str | None = None) -> Page[HoldView]:
        """Holds newest first (cursor pagination): an agent's own (``agent_id``), or, for an
        admin (``agent_id`` None), every agent's. ``status`` filters (HOLD_STATES). Raises
        INVALID_ARGUMENT, LIMIT_EXCEEDED."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, (int, str))
        if status is not None and status not in HOLD_STATES:
            raise invalid("status", f"status is one of {', '.join(HOLD_STATES)}")
        query = select(HoldRecord)
        if agent_id is not None:
            query = query.where(HoldRecord.agent_id == agent_id)
        if status is not None:
            query = query.where(HoldRecord.status == status)
        if after is not None:
            at_ms, ref = after
            query = query.where((HoldRecord.created_at_ms < at_ms)
                                | ((HoldRecord.created_at_ms == at_ms)
                                   & (HoldRecord.hold_ref < ref)))
        query = query.order_by(HoldRecord.created_at_ms.desc(),
                               HoldRecord.hold_ref.desc()).limit(size + 1)
        with self.db.read() as session:
            rows = list(session.scalars(query))
        page = page_of(rows, size, key=lambda row: (row.created_at_ms, row.hold_ref))
        return Page([record_view(row) for row in page.items], page.next)

    # ----- ending -----

    async def release(self, agent_id: str | None, hold_id: str, *,
                      actor: str = "system") -> int:
        """Returns a hold's codes to stock and its money to its holder; the codes returned (0
        when already released or expired). ``agent_id`` None: an admin, for any agent's hold.
        Raises HOLD_NOT_FOUND, HOLD_ALREADY_CONFIRMED."""
        ref = hold_ref(agent_id, hold_id) if agent_id is not None else self._ref_of(hold_id)
        try:
            released = self.engine.release_hold(ref)
            self.risk.end_hold(ref)
        finally:
            await self.store.wait_async(Engine.last_ticket())
        await self._end_money([ref], "released", actor, only_missing=False)
        if agent_id is None:
            await asyncio.to_thread(
                audit.record, self.db, actor=actor, action="hold.release", object_type="hold",
                object_id=hold_id, details={"hold_ref": ref, "released": released},
                at_ms=self.clock())
        return released

    def release_agents(self, agent_ids: Sequence[str], *, actor: str) -> int:
        """Releases every open hold of these agents (codes and money): their agent or an
        ancestor was suspended. Returns how many holds ended. Synchronous (the suspension is
        a synchronous use case); waits for the journal before it touches the money."""
        if not agent_ids:
            return 0
        with self.db.read() as session:
            refs = list(session.scalars(select(HoldRecord.hold_ref).where(
                HoldRecord.agent_id.in_(list(agent_ids)), HoldRecord.status == "open")))
        ended = []
        for ref in refs:
            try:
                self.engine.release_hold(ref)
            except CardsvcError as error:
                if error.code == ErrorCode.HOLD_ALREADY_CONFIRMED:
                    continue  # its order's step 1 runs now and consumes the reservation
                if error.code != ErrorCode.HOLD_NOT_FOUND:
                    raise
            self.risk.end_hold(ref)
            ended.append(ref)
        self.store.wait_last()
        now_ms = self.clock()
        with self.db.write() as session:
            for ref in ended:
                _end_record(session, ref, "released", actor, now_ms)
        return len(ended)

    async def expire_due(self, *, actor: str = "system") -> int:
        """The timer's pass: expires due holds in the core, then returns the money of every
        open hold whose deadline passed and that the core reports ended (or does not know,
        MISSING_GRACE_MS after its deadline). Returns how many holds' money it returned, at
        most EXPIRE_ROUND_MAX."""
        self.engine.expire_holds()
        await self.store.wait_async(Engine.last_ticket())
        done = 0
        after = ""
        while done < EXPIRE_ROUND_MAX:
            now_ms = self.clock()
            with self.db.read() as session:
                refs = list(session.scalars(
                    select(HoldRecord.hold_ref)
                    .where(HoldRecord.status == "open", HoldRecord.expires_at_ms <= now_ms,
                           HoldRecord.hold_ref > after)
                    .order_by(HoldRecord.hold_ref).limit(EXPIRE_BATCH_MAX)))
            if not refs:
                break
            after = refs[-1]
            done += await self._end_money(refs, "expired", actor, only_missing=True)
            if len(refs) < EXPIRE_BATCH_MAX:
                break
        return done

    async def _end_money(self, refs: Sequence[str], status: str, actor: str, *,
                         only_missing: bool) -> int:
        """Returns the reservations of ``refs`` whose core hold has ended (released, expired,
        never made), in one group-commit unit. With ``only_missing`` a hold unknown to the core
        ends only MISSING_GRACE_MS after its deadline."""
        ended: list[tuple[str, str]] = []
        now_ms = self.clock()
        for ref in refs:
            try:
                state = self.engine.get_hold(ref).state
            except CardsvcError as error:
                if error.code != ErrorCode.HOLD_NOT_FOUND:
                    raise
                state = "missing"
            if state in ("open", "confirmed"):
                continue  # open: not ended; confirmed: its order consumes the reservation
            self.risk.end_hold(ref)
            ended.append((ref, status if state == "missing" else state))
        if not ended:
            return 0

        def unit(session: Session) -> int:
            count = 0
            for ref, state in ended:
                grace = MISSING_GRACE_MS if only_missing and state == "missing" else 0
                count += _end_record(session, ref, state if state != "missing" else status,
                                     actor, now_ms, grace_ms=grace)
            return count

        return await self.batcher.submit_async(unit)

    def _ref_of(self, hold_id: str) -> str:
        """The core reference of any agent's hold, for an admin. Raises HOLD_NOT_FOUND."""
        if not hold_id.startswith("hld_") or len(hold_id) > HOLD_ID_LEN_MAX:
            raise _no_hold(hold_id)
        with self.db.read() as session:
            ref = session.scalar(select(HoldRecord.hold_ref).where(HoldRecord.hold_id == hold_id)
                                 .limit(1))
        if ref is None:
            raise _no_hold(hold_id)
        return ref

    def ended(self, agent_id: str, hold_id: str) -> None:
        """A hold was confirmed: its units no longer count against the caps."""
        self.risk.end_hold(hold_ref(agent_id, hold_id))


@dataclass(frozen=True, slots=True)
class _Reserve:
    """The SQL step of one hold, as a batch item of the group commit."""

    ref: str
    hold_id: str
    agent_id: str
    sku: str
    quantity: int
    buyer_id: str | None
    expires_at_ms: int
    actor: str
    now_ms: int


_HOLDS = cast(Table, HoldRecord.__table__)
_INSERT_HOLDS = insert(_HOLDS)
_HOLDS_FOUND = select(_HOLDS.c.hold_ref).where(
    _HOLDS.c.hold_ref.in_(bindparam("b_refs", expanding=True)))


def _reserve(session: Session, item: _Reserve) -> HoldRecord:
    """The SQL step of a hold (a group-commit unit): the existing row of this hold (a retry),
    or a new ``open`` row with the holder's price chain and its reservation."""
    existing = session.get(HoldRecord, item.ref)
    if existing is not None:
        return _same_record(existing, item)
    if session.get(Sku, item.sku) is None:
        raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": item.sku})
    row = HoldRecord(**_planned(session, item, None))
    session.add(row)
    session.flush()
    settlement.reserve_hold(session, item.ref, item.agent_id, row.amount_minor, row.currency,
                            item.actor, item.now_ms)
    return row


def _reserve_batch(session: Session,
                   items: Sequence[_Reserve]) -> list[HoldRecord | CardsvcError]:
    """The SQL step of a commit group's holds in one call: each outcome is what ``_reserve``
    gives that hold run after the ones before it (a refused hold writes nothing), with the
    holds, SKUs, accounts and references read once and the new rows and reservations written
    with one statement per table."""
    connection = session.connection()
    taken = list(connection.execute(
        _HOLDS_FOUND, {"b_refs": sorted({item.ref for item in items})}).scalars())
    existing = {row.hold_ref: row for row in session.scalars(
        select(HoldRecord).where(HoldRecord.hold_ref.in_(taken)))} if taken else {}
    skus = skus_found(session, {item.sku for item in items})
    postings = ledger.PostingBatch(
        session, (ledger.agent_account(item.agent_id, kind) for item in items
                  for kind in ("available", "escrow")),
        [settlement.hold_reference(item.ref, "reserve") for item in items])
    rows: list[dict[str, object]] = []
    outcomes: list[HoldRecord | CardsvcError] = []
    for item in items:
        try:
            found = existing.get(item.ref)
            if found is not None:
                outcomes.append(_same_record(found, item))
                continue
            if item.sku not in skus:
                raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": item.sku})
            values = _planned(session, item, postings)
        except CardsvcError as error:
            outcomes.append(error)
            continue
        rows.append(values)
        existing[item.ref] = row = HoldRecord(**values)
        outcomes.append(row)
    if rows:
        connection.execute(_INSERT_HOLDS, rows)
    postings.write()
    return outcomes


def _same_record(existing: HoldRecord, item: _Reserve) -> HoldRecord:
    """The hold's row for a retry; IDEMPOTENCY_KEY_REUSED when it asks for another hold."""
    for field, old, new in (("sku", existing.sku, item.sku),
                            ("quantity", existing.quantity, item.quantity)):
        if old != new:
            raise make_error(ErrorCode.IDEMPOTENCY_KEY_REUSED,
                             "client_hold_id was used for a different hold", {"field": field})
    return existing


def _planned(session: Session, item: _Reserve,
             postings: ledger.PostingBatch | None) -> dict[str, object]:
    """A new hold's row values (price chain, amount) and, with ``postings``, its reservation
    decided and queued there. Raises the price chain's refusals, LIMIT_EXCEEDED, and the
    reservation's (INSUFFICIENT_BALANCE...)."""
    chain = pricing.price_chain(session, item.agent_id, item.sku)
    _, currency = pricing.effective_price(session, item.agent_id, item.sku)
    amount = check_money_product("total_minor", chain[0][1], item.quantity)
    if postings is not None:
        settlement.reserve_hold(session, item.ref, item.agent_id, amount, currency, item.actor,
                                item.now_ms, batch=postings)
    return {"hold_ref": item.ref, "hold_id": item.hold_id, "agent_id": item.agent_id,
            "sku": item.sku, "quantity": item.quantity, "buyer_id": item.buyer_id,
            "amount_minor": amount, "currency": currency,
            "price_chain": [list(link) for link in chain], "status": "open", "order_id": None,
            "expires_at_ms": item.expires_at_ms, "created_at_ms": item.now_ms,
            "updated_at_ms": item.now_ms, "created_by": item.actor}


RESERVE_KIND: BatchKind[_Reserve, HoldRecord] = BatchKind("hold.reserve", _reserve_batch,
                                                          _reserve)
"""A hold's SQL step as a batch kind of the group commit (``cardsvc.db.batcher``)."""


def _end_record(session: Session, ref: str, status: str, actor: str, now_ms: int, *,
                grace_ms: int = 0) -> int:
    """Ends an open hold's row as ``status`` and returns its reservation (1), or nothing (0)
    when the row is not open (or not yet ``grace_ms`` past its deadline)."""
    row = session.get(HoldRecord, ref, with_for_update=True)
    if row is None or row.status != "open":
        return 0
    if grace_ms and row.expires_at_ms + grace_ms > now_ms:
        return 0
    settlement.release_hold(session, ref, actor, now_ms)
    row.status = status
    row.updated_at_ms = now_ms
    return 1


def take_hold(session: Session, agent_id: str, hold_id: str, order_id: str, now_ms: int,
              actor: str) -> HoldRecord:
    """Order step 1 of a confirm: the hold's row, locked, turned ``confirmed`` for
    ``order_id`` with its reservation given back (``consume_hold``) for the order's debit in
    the same transaction. Raises HOLD_NOT_FOUND, HOLD_RELEASED, HOLD_EXPIRED,
    HOLD_ALREADY_CONFIRMED (another order)."""
    ref = hold_ref(agent_id, hold_id)
    row = session.get(HoldRecord, ref, with_for_update=True)
    if row is None:
        raise _no_hold(hold_id)
    if row.status == "confirmed" and row.order_id != order_id:
        raise make_error(ErrorCode.HOLD_ALREADY_CONFIRMED, "the hold was confirmed already",
                         {"hold_id": hold_id})
    if row.status == "released":
        raise make_error(ErrorCode.HOLD_RELEASED, "the hold was released", {"hold_id": hold_id})
    if row.status == "expired" or row.expires_at_ms <= now_ms:
        raise make_error(ErrorCode.HOLD_EXPIRED, "the hold expired", {"hold_id": hold_id})
    settlement.consume_hold(session, ref, actor, now_ms)
    row.status, row.order_id, row.updated_at_ms = "confirmed", order_id, now_ms
    return row


def _hold_id(agent_id: str, client_hold_id: str | None) -> str:
    if client_hold_id is None:
        return "hld_" + secrets.token_hex(10)
    check_client_ref("client_hold_id", client_hold_id)
    digest = hashlib.sha256(f"{agent_id}\0{client_hold_id}".encode()).hexdigest()
    return "hld_" + digest[:20]


def _no_hold(hold_id: str) -> CardsvcError:
    return make_error(ErrorCode.HOLD_NOT_FOUND, "no such hold",
                      {"hold_id": hold_id[:HOLD_ID_LEN_MAX]})


def hold_ref(agent_id: str, hold_id: str) -> str:
    """The core's reference of an agent's hold. Raises HOLD_NOT_FOUND for an id that is not one
    of ours (it cannot exist)."""
    if not hold_id.startswith("hld_") or len(hold_id) > HOLD_ID_LEN_MAX:
        raise _no_hold(hold_id)
    return f"{agent_id}/{hold_id}"


def hold_view(hold_id: str, held: Hold) -> HoldView:
    return HoldView(hold_id=hold_id, sku=held.sku, quantity=len(held.code_ids), state=held.state,
                    expires_at_ms=held.expires_at_ms, order_id=held.order_ref)


def record_view(row: HoldRecord) -> HoldView:
    """A hold as its SQL row tells it (the lists; ``state`` is how its money ended)."""
    return HoldView(hold_id=row.hold_id, sku=row.sku, quantity=row.quantity, state=row.status,
                    expires_at_ms=row.expires_at_ms, order_id=row.order_id,
                    agent_id=row.agent_id, amount_minor=row.amount_minor,
                    currency=row.currency, created_at_ms=row.created_at_ms)
