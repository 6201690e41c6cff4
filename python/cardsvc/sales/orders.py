"""Orders: the order saga of DESIGN.md, with the money.

An order touches both stores, so it is a saga keyed by its ``order_id``, every step idempotent:

1. SQL (one transaction): the order ``pending``, unique per ``(agent_id, client_order_id)``,
   with the buyer's price chain fixed (``cardsvc.agents.pricing.price_chain``) and the total debited
   from the buyer's available balance into its escrow (``cardsvc.money.settlement.debit_order``;
   ``INSUFFICIENT_BALANCE`` beyond balance + credit, and then nothing is written at all);
2. core: ``allocate(sku, qty, order_id, pool)`` over the agent's pools in order (own pool, then
   shared, as its policy says), or ``confirm_hold(hold_ref, order_id)``, then *wait until the
   journal holds it*: an order is never settled on an allocation a crash could undo;
3. SQL (one transaction): the order ``fulfilled`` with its code ids, and the escrow shared out
   (``cardsvc.money.settlement.settle_order``: commissions up the chain, revenue, cost of goods).

A definitive refusal in step 2 (``OUT_OF_STOCK``, ``HOLD_EXPIRED``...) ends the order ``failed``
and releases the escrow back to the buyer, in one transaction; a retry with the same
``client_order_id`` then returns the same error: the first result. Anything else (the journal
unavailable, a crash) leaves it ``pending``; :meth:`Orders.recover` re-drives every pending order
at start-up and on a timer, and a retry by the agent re-drives it too. Re-driving repeats step
2, which returns the same codes when the allocation had been made.

Steps 1 and 3 go through the SQL group commit (``cardsvc.db.batcher``): concurrent orders share
transactions and fsyncs. Each is a batch kind (:data:`Orders.begin_kind`,
:data:`Orders.finish_kind`): the orders of one commit group are processed by one call, which
reads every order, agent, SKU and account they touch once, decides each order in arrival order
in Python exactly as the one-order unit (``_begin``, ``_finish_unit``) would (the same
idempotency, risk quota, price chain and ledger rules, ``ledger.post`` planning each debit and
settlement against the balances the orders before it left), and writes orders, ledger
transactions, postings, balances and commissions with one statement each. A refused order
writes nothing; the batcher falls back to the one-order units if the batch call fails. Orders
that confirm a hold, and step 3's failures, run as one-order units. A refund (``refund``) voids
the order's codes in the core, then reverses the settlement.

There is one driver of steps 2 and 3 (:meth:`Orders._drive`), a coroutine: the group commit and
the journal are awaited, never waited for on a thread, so concurrent orders cost no thread
switches; callers outside an event loop (recovery at start-up, the command line) run it with
``asyncio.run``. Every method returns only once the journal and the SQL commit hold what it
reports. Results are :class:`OrderView` values in domain units (Unix ms, minor units); the HTTP
layer renders them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access import DAY_MS, Approvals, Principal, RiskGuard, RiskLimits
from cardsvc.agents import Agent, pricing
from cardsvc.catalog import Batch, Sku, skus_found
from cardsvc.checks import check_client_ref, check_money_product, check_quantity, check_text
from cardsvc.db import BatchKind, Database, WriteBatcher
from cardsvc.delivery import Revealer
from cardsvc.engine import Engine, Hold, Store
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.masking import mask_code
from cardsvc.money import ledger, settlement
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of
from cardsvc.sales.holds import Holds, hold_ref, take_hold
from cardsvc.sales.tables import Order

FINAL_ERRORS = frozenset({
    ErrorCode.OUT_OF_STOCK,
    ErrorCode.SKU_NOT_FOUND,
    ErrorCode.HOLD_NOT_FOUND,
    ErrorCode.HOLD_EXPIRED,
    ErrorCode.HOLD_RELEASED,
    ErrorCode.HOLD_ALREADY_CONFIRMED,
    ErrorCode.IDEMPOTENCY_KEY_REUSED,
    ErrorCode.LIMIT_EXCEEDED,
    ErrorCode.QUANTITY_MUST_BE_POSITIVE,
    ErrorCode.INVALID_ARGUMENT,
})
"""Core refusals that end an order as ``failed``; any other error leaves it ``pending``."""
CRASH_POINTS = ("after_debit", "after_allocate", "after_durable", "after_settle")
"""The points between the saga's steps where a fault can be injected (``Orders(crash=...)``):
the saga crash test kills the process at each and proves the order ends fulfilled once."""


def no_crash(point: str) -> None:
    """The fault hook of production: nothing happens at any point."""
PENDING_ORDER_AGE_MS = 10_000
"""A pending order younger than this may still be driven by its own request: recovery timers
leave it alone, and reconciliation does not report it as stuck."""
REASON_LEN_MAX = 200
"""Characters of a support reveal's reason (kept in the audit log)."""
_BATCH_COSTS = "cardsvc.sales.batch_costs"
"""``Session.info`` key of the batch costs a transaction has read (``Orders._cost``)."""
_NO_BATCH = object()
"""A batch id that names no batch (it counts nothing)."""
Revealed = list[tuple[str, str | None]]
"""An order's codes in plaintext, ``(code, pin)`` in the order's code order."""
COOLING_MS_DEFAULT = 7 * DAY_MS
"""Commissions stay pending a week (refunds reverse them) before they become available."""
ORDER_STATUSES = ("pending", "fulfilled", "failed", "refunded")
ORDER_CURSOR = (int, str)
"""The sort key of the order list: (``created_at_ms``, ``order_id``), newest first."""
_ORDERS = cast(Table, Order.__table__)
_AGENTS = cast(Table, Agent.__table__)
_INSERT_ORDERS = insert(_ORDERS)
_TAKEN_CLIENT_IDS = select(_ORDERS.c.order_id).where(
    tuple_(_ORDERS.c.agent_id, _ORDERS.c.client_order_id).in_(
        bindparam("b_pairs", expanding=True)))
_BUYERS = select(_AGENTS.c.agent_id, _AGENTS.c.daily_order_quota, _AGENTS.c.pool_id,
                 _AGENTS.c.pool_policy).where(
    _AGENTS.c.agent_id.in_(bindparam("b_agent_ids", expanding=True)))
"""Step 1's reads of a commit group, built once (building a statement costs more than
running it)."""
_ORDER_STATES = select(_ORDERS.c.order_id, _ORDERS.c.status).where(
    _ORDERS.c.order_id.in_(bindparam("b_order_ids", expanding=True)))
_FULFIL_ORDERS = (
    update(_ORDERS)
    .where(_ORDERS.c.order_id == bindparam("b_order_id"))
    .values(status="fulfilled", code_ids=bindparam("b_code_ids"),
            settle_txn_id=bindparam("b_settle_txn_id"), updated_at_ms=bindparam("b_now_ms"))
)


@dataclass(frozen=True)
class OrderRequest:
    """What an agent asked for; a retry must ask for exactly the same."""

    agent_id: str
    client_order_id: str
    sku: str
    quantity: int
    hold_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Begin:
    """Step 1 of one order, as a batch item: what ``_begin`` takes."""

    request: OrderRequest
    actor: str
    now_ms: int
    limits: RiskLimits


@dataclass(frozen=True, slots=True)
class _Finish:
    """Step 3 of one allocated order, as a batch item: what ``_finish_unit`` takes, and the
    driver's row of the order (its step-1 facts)."""

    row: Order
    ids: tuple[int, ...]
    batches: dict[int, int]
    actor: str
    now_ms: int

    @property
    def order_id(self) -> str:
        return self.row.order_id


@dataclass(frozen=True, slots=True)
class DeliveredCode:
    """One code of an order as its owner receives it: in the clear (DESIGN.md: delivery)."""

    code: str
    pin: str | None
    valid_until_s: int | None
    has_pin: bool = False


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as the saga left it. ``codes`` is filled only when delivered: in plaintext to
    its owner (or an audited reveal), masked (``masked``, no PINs) to an admin; ``error`` is the
    stored refusal of a failed order (``code``, ``message``, ``details``)."""

    order_id: str
    client_order_id: str
    agent_id: str
    status: str
    sku: str
    quantity: int
    hold_id: str | None
    unit_price_minor: int | None
    total_minor: int | None
    currency: str | None
    created_at_ms: int
    codes: tuple[DeliveredCode, ...] = ()
    error: dict[str, Any] | None = None
    masked: bool = False


class Orders:
    """The order saga over the store, the SQL database (through the group commit), pricing and
    the ledger."""

    def __init__(self, store: Store, db: Database, revealer: Revealer, holds: Holds,
                 risk: RiskGuard, batcher: WriteBatcher, *,
                 cooling_ms: int = COOLING_MS_DEFAULT,
                 crash: Callable[[str], None] = no_crash,
                 approvals: Approvals | None = None) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.revealer = revealer
        self.holds = holds
        self.risk = risk
        self.batcher = batcher
        self.cooling_ms = cooling_ms
        self.crash = crash
        """Called with each CRASH_POINTS name as the saga passes it (fault injection)."""
        self.approvals = approvals
        """Maker-checker for refunds (None: refunds are not guarded, as for the CLI)."""
        self.begin_kind: BatchKind[_Begin, tuple[Order, bool]] = BatchKind(
            "order.begin", self._begin_batch,
            lambda session, item: self._begin(session, item.request, item.actor, item.now_ms,
                                              item.limits))
        """Step 1 as a batch kind of the group commit (module doc)."""
        self.finish_kind: BatchKind[_Finish, tuple[Order, Revealed | None]] = BatchKind(
            "order.finish", self._finish_batch,
            lambda session, item: self._finish_unit(session, item.order_id, item.ids,
                                                    item.batches, None, item.actor,
                                                    item.now_ms))
        """Step 3 of an allocated order as a batch kind of the group commit (module doc)."""

    # ----- placing -----

    async def place(
        self, request: OrderRequest, *, actor: str, limits: RiskLimits
    ) -> tuple[OrderView, bool]:
        """Runs (or resumes) the saga; returns the delivered order and whether this call created
        it. Raises IDEMPOTENCY_KEY_REUSED (details: ``field``), the order's stored error on a
        retry of a failed order, NOT_FOR_SALE, AGENT_SUSPENDED, INSUFFICIENT_BALANCE, the core's
        refusals (OUT_OF_STOCK with ``available``...), RATE_LIMITED (daily quota),
        JOURNAL_UNAVAILABLE / DATABASE_UNAVAILABLE (the order stays pending; retry)."""
        check_client_ref("client_order_id", request.client_order_id)
        if request.hold_id is None:
            check_quantity(request.quantity)
        now_ms = self.engine.now_ms()
        if request.hold_id is None:
            row, created = await self.batcher.submit_batch_async(
                self.begin_kind, _Begin(request, actor, now_ms, limits))
        else:
            row, created = await self.batcher.submit_async(
                lambda session: self._begin(session, request, actor, now_ms, limits))
        self.crash("after_debit")
        row, texts = await self._drive(row, actor)
        view = self._result(row, texts=texts)
        if not created and view.codes:  # a retry delivers the codes again: a re-delivery
            await asyncio.to_thread(
                audit.record, self.db, actor=actor, action="order.redeliver",
                object_type="order", object_id=view.order_id,
                details={"agent_id": view.agent_id, "codes": len(view.codes)},
                at_ms=self.engine.now_ms())
        return view, created

    async def confirm_hold(
        self, agent_id: str, hold_id: str, client_order_id: str, *, actor: str,
        limits: RiskLimits,
    ) -> tuple[OrderView, bool]:
        """Turns an open hold into an order through the same saga. A hold that is no longer
        open is refused before step 1, writing nothing (no order row, no ledger entry), unless
        ``client_order_id`` already names its order (a retry, answered with the first result).
        Raises HOLD_NOT_FOUND (also for another agent's hold), HOLD_EXPIRED, HOLD_RELEASED,
        HOLD_ALREADY_CONFIRMED, and as :meth:`place`."""
        hold = self.holds.get(agent_id, hold_id)
        request = OrderRequest(agent_id, client_order_id, hold.sku, len(hold.code_ids), hold_id)
        refusal = _closed_hold(hold, hold_id, self.engine.now_ms())
        if refusal is not None and await asyncio.to_thread(
                self._find_row, agent_id, client_order_id) is None:
            raise refusal
        result = await self.place(request, actor=actor, limits=limits)
        self.holds.ended(agent_id, hold_id)
        return result

    def _begin(self, session: Session, request: OrderRequest, actor: str, now_ms: int,
               limits: RiskLimits) -> tuple[Order, bool]:
        """Step 1 (a group-commit unit): the existing order of this ``client_order_id``, or a
        new pending order (within the agent's daily quota) with its price chain and the buyer's
        debit."""
        existing = session.scalar(select(Order).where(
            Order.agent_id == request.agent_id,
            Order.client_order_id == request.client_order_id))
        if existing is not None:
            _same_request(existing, request)
            return existing, False
        agent = session.get(Agent, request.agent_id)
        if agent is None:
            raise make_error(ErrorCode.AGENT_NOT_FOUND, "no such agent",
                             {"agent_id": request.agent_id})
        if agent.daily_order_quota is not None:
            limits = dataclasses.replace(limits,
                                         orders_per_agent_per_day_max=agent.daily_order_quota)
        self.risk.admit_order(request.agent_id, limits,
                              lambda: self._orders_today(session, request.agent_id))
        order_id = "ord_" + secrets.token_hex(10)
        held = None
        if request.hold_id is not None:
            held = take_hold(session, request.agent_id, request.hold_id, order_id, now_ms,
                             actor)
            chain = [(str(agent), int(price)) for agent, price in held.price_chain]
            currency, total = held.currency, held.amount_minor
        else:
            if session.get(Sku, request.sku) is None:
                raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": request.sku})
            chain = pricing.price_chain(session, request.agent_id, request.sku)
            _, currency = pricing.effective_price(session, request.agent_id, request.sku)
            total = check_money_product("total_minor", chain[0][1], request.quantity)
        pools = [0] if request.hold_id else pricing.order_pools(session, request.agent_id)
        row = Order(
            order_id=order_id, agent_id=request.agent_id,
            client_order_id=request.client_order_id, sku=request.sku,
            quantity=request.quantity, pool_id=pools[0], hold_id=request.hold_id,
            status="pending", error_code=None, error_details=None, code_ids=None,
            created_at_ms=now_ms, updated_at_ms=now_ms, created_by=actor,
            unit_price_minor=chain[0][1], total_minor=total, currency=currency, pools=pools,
            price_chain=[list(link) for link in chain])
        session.add(row)
        session.flush()
        debit = settlement.debit_order(session, order_id, request.agent_id, total, currency,
                                       actor, now_ms, reserved=held is not None)
        row.debit_txn_id = debit.txn_id
        return row, True

    def _begin_batch(self, session: Session,
                     items: Sequence[_Begin]) -> list[tuple[Order, bool] | CardsvcError]:
        """Step 1 of a commit group's orders (no hold confirmations) in one call: each outcome
        is what ``_begin`` gives that order run after the ones before it (an order refused
        writes nothing), with the orders, agents, SKUs, accounts and debit references read
        once and the new orders and their debits written with one statement per table."""
        requests = [item.request for item in items]
        connection = session.connection()
        taken = list(connection.execute(_TAKEN_CLIENT_IDS, {"b_pairs": sorted(
            {(r.agent_id, r.client_order_id) for r in requests})}).scalars())
        existing = {(row.agent_id, row.client_order_id): row for row in session.scalars(
            select(Order).where(Order.order_id.in_(taken)))} if taken else {}
        agents = {row.agent_id: row for row in connection.execute(
            _BUYERS, {"b_agent_ids": sorted({r.agent_id for r in requests})})}
        skus = skus_found(session, {r.sku for r in requests})
        order_ids = ["ord_" + secrets.token_hex(10) for _ in items]
        postings = ledger.PostingBatch(
            session, (ledger.agent_account(agent_id, kind) for agent_id in agents
                      for kind in ("available", "escrow")),
            [settlement.order_reference(order_id, "debit") for order_id in order_ids])
        created: dict[tuple[str, str], Order] = {}
        rows: list[dict[str, Any]] = []
        outcomes: list[tuple[Order, bool] | CardsvcError] = []
        for item, order_id in zip(items, order_ids, strict=True):
            request = item.request
            key = (request.agent_id, request.client_order_id)
            try:
                found = created.get(key) or existing.get(key)
                if found is not None:
                    _same_request(found, request)
                    outcomes.append((found, False))
                    continue
                values = self._begin_planned(session, item, order_id, agents, skus, rows,
                                             postings)
            except CardsvcError as error:
                outcomes.append(error)
                continue
            rows.append(values)
            created[key] = row = Order(**values)
            outcomes.append((row, True))
        if rows:
            session.connection().execute(_INSERT_ORDERS, rows)
        postings.write()
        return outcomes

    def _begin_planned(self, session: Session, item: _Begin, order_id: str,
                       agents: dict[str, Any], skus: set[str], earlier: list[dict[str, Any]],
                       postings: ledger.PostingBatch) -> dict[str, Any]:
        """One new order of ``_begin_batch``, checked in ``_begin``'s order (AGENT_NOT_FOUND,
        the quota counting the batch's ``earlier`` orders, SKU_NOT_FOUND, the price chain's
        refusals, the debit's), its debit queued in ``postings``: the order row's values."""
        request, now_ms = item.request, item.now_ms
        agent = agents.get(request.agent_id)
        if agent is None:
            raise make_error(ErrorCode.AGENT_NOT_FOUND, "no such agent",
                             {"agent_id": request.agent_id})
        limits = item.limits
        if agent.daily_order_quota is not None:
            limits = dataclasses.replace(limits,
                                         orders_per_agent_per_day_max=agent.daily_order_quota)

        def orders_today() -> int:
            start = self.engine.now_ms() // DAY_MS * DAY_MS
            return self._orders_today(session, request.agent_id) + sum(
                1 for row in earlier
                if row["agent_id"] == request.agent_id and row["created_at_ms"] >= start)

        self.risk.admit_order(request.agent_id, limits, orders_today)
        if request.sku not in skus:
            raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": request.sku})
        chain = pricing.price_chain(session, request.agent_id, request.sku)
        _, currency = pricing.effective_price(session, request.agent_id, request.sku)
        total = check_money_product("total_minor", chain[0][1], request.quantity)
        pools = pricing.pools_of(agent.pool_id, agent.pool_policy)
        debit = settlement.debit_order(session, order_id, request.agent_id, total, currency,
                                       item.actor, now_ms, batch=postings)
        return {
            "order_id": order_id, "agent_id": request.agent_id,
            "client_order_id": request.client_order_id, "sku": request.sku,
            "quantity": request.quantity, "pool_id": pools[0], "hold_id": None,
            "status": "pending", "error_code": None, "error_details": None, "code_ids": None,
            "created_at_ms": now_ms, "updated_at_ms": now_ms, "created_by": item.actor,
            "unit_price_minor": chain[0][1], "total_minor": total, "currency": currency,
            "debit_txn_id": debit.txn_id, "settle_txn_id": None, "pools": pools,
            "price_chain": [list(link) for link in chain]}

    def _finish_batch(self, session: Session, items: Sequence[_Finish]
                      ) -> list[tuple[Order, Revealed | None] | CardsvcError]:
        """Step 3 of a commit group's allocated orders in one call: each outcome is what
        ``_finish_unit`` gives that order (fulfilled and settled, or as it was when no longer
        pending), with the orders' states read once, the settlements made by
        ``settlement.settle_orders``, the orders updated with one statement and every code
        revealed in one read. The order's facts fixed at step 1 (chain, quantity, currency)
        come from the driver's row (``_Finish.row``), its state from the database; the row is
        updated in place once the writes are made."""
        states = dict(session.connection().execute(
            _ORDER_STATES, {"b_order_ids": sorted({item.order_id for item in items})}).all())
        ended = sorted(order_id for order_id, state in states.items() if state != "pending")
        current = {row.order_id: row for row in session.scalars(
            select(Order).where(Order.order_id.in_(ended)))} if ended else {}
        todo: list[tuple[int, _Finish]] = []
        requests: list[settlement.SettleRequest] = []
        outcomes: list[tuple[Order, Revealed | None] | CardsvcError] = []
        first: dict[str, int] = {}
        again: list[tuple[int, int]] = []
        for index, item in enumerate(items):
            if item.order_id not in states:
                raise AssertionError(f"order {item.order_id} vanished")
            row = current.get(item.order_id, item.row)
            outcomes.append((row, None))
            if item.order_id in current:
                continue
            if item.order_id in first:  # a second driver of the order: the first's result
                again.append((index, first[item.order_id]))
                continue
            first[item.order_id] = index
            chain = tuple((str(agent), int(price)) for agent, price in row.price_chain or [])
            cost = self._cost(session, item.batches)
            # As _finish_unit: a cost that does not split evenly over the codes is unknown.
            unit_cost = None if cost is None or cost % row.quantity else cost // row.quantity
            todo.append((index, item))
            requests.append(settlement.SettleRequest(
                item.order_id, chain, row.quantity, unit_cost, row.currency or "",
                self.cooling_ms, item.actor, item.now_ms))
        fulfilled: list[tuple[int, _Finish, str]] = []
        for (index, item), settled in zip(
                todo, settlement.settle_orders(session, requests), strict=True):
            if isinstance(settled, CardsvcError):
                outcomes[index] = settled
            else:
                fulfilled.append((index, item, settled.txn_id))
        if fulfilled:
            session.connection().execute(_FULFIL_ORDERS, [
                {"b_order_id": item.order_id, "b_code_ids": list(item.ids),
                 "b_settle_txn_id": txn_id, "b_now_ms": item.now_ms}
                for _, item, txn_id in fulfilled])
            _forget(session, [item.order_id for _, item, _ in fulfilled])
        texts = self._reveal_many(session, [item.ids for _, item, _ in fulfilled])
        for (index, item, txn_id), revealed in zip(fulfilled, texts, strict=True):
            row = item.row
            row.status, row.code_ids = "fulfilled", list(item.ids)
            row.settle_txn_id, row.updated_at_ms = txn_id, item.now_ms
            outcomes[index] = (row, revealed)
        for index, earlier in again:
            outcome = outcomes[earlier]
            outcomes[index] = outcome if isinstance(outcome, CardsvcError) else (outcome[0], None)
        return outcomes

    def _reveal_many(self, session: Session,
                     orders: Sequence[Sequence[int]]) -> list[Revealed | None]:
        """Each order's codes (``orders``: their ids) in plaintext, read in one go
        (``_finish_unit``'s delivery from inside the unit); an order whose codes cannot be
        revealed gets None, as alone."""
        every = [code_id for ids in orders for code_id in ids]
        try:
            texts = self.revealer.reveal(every, session=session) if every else []
        except CardsvcError:
            out: list[Revealed | None] = []
            for ids in orders:
                try:
                    out.append(self.revealer.reveal(ids, session=session))
                except CardsvcError:
                    out.append(None)
            return out
        split: list[Revealed | None] = []
        start = 0
        for ids in orders:
            split.append(texts[start:start + len(ids)])
            start += len(ids)
        return split

    # ----- driving -----

    async def _drive(self, row: Order, actor: str) -> tuple[Order, Revealed | None]:
        """Steps 2 and 3 for a pending order (nothing for a finished one): the one driver of the
        saga. Returns the row as it ended, with its codes in plaintext when this call fulfilled
        it (read inside step 3's unit); a definitive refusal ends it failed and is raised."""
        if row.status != "pending":
            return row, None
        try:
            ids = self._allocate(row)
        except CardsvcError as error:
            if error.code in FINAL_ERRORS:
                await self.batcher.submit_async(self._fail_work(row.order_id, error, actor))
            raise
        self.crash("after_allocate")
        await self.store.wait_async(Engine.last_ticket())
        self.crash("after_durable")
        row, texts = await self.batcher.submit_batch_async(
            self.finish_kind, _Finish(row, tuple(ids), self._batches_of(ids),
                                      actor, self.engine.now_ms()))
        self.crash("after_settle")
        return row, texts

    def _result(self, row: Order, *, masked: bool = False,
                texts: Revealed | None = None) -> OrderView:
        """The delivered order (masked for an admin), or its stored error raised; ``texts``:
        its codes already revealed by step 3."""
        if row.status == "failed":
            stored = row.error_details or {}
            raise make_error(row.error_code or ErrorCode.INTERNAL_ERROR,
                             str(stored.get("message", "the order failed")),
                             dict(stored.get("details", {})))
        return self._deliver(row, masked=masked, texts=texts)

    def _allocate(self, row: Order) -> list[int]:
        """Step 2: the order's codes, allocated now or by an earlier attempt."""
        engine = self.engine
        try:
            return list(engine.order_code_ids(row.order_id))
        except CardsvcError as error:
            if error.code != ErrorCode.ORDER_NOT_FOUND:
                raise  # not allocated yet: allocate below
        if row.hold_id is not None:
            return engine.confirm_hold(hold_ref(row.agent_id, row.hold_id), row.order_id)
        refused: CardsvcError | None = None
        available = 0
        for pool in row.pools or [row.pool_id]:
            try:
                return engine.allocate(row.sku, row.quantity, row.order_id, pool)
            except CardsvcError as refusal:
                if refusal.code != ErrorCode.OUT_OF_STOCK:
                    raise
                refused = refusal
                available += int(refusal.details.get("available", 0))
        if refused is None:
            raise AssertionError(f"order {row.order_id} has no pool")
        raise make_error(ErrorCode.OUT_OF_STOCK, "not enough codes in stock for this order",
                         {**refused.details, "available": available})

    def _fail_work(self, order_id: str, error: CardsvcError,
                   actor: str) -> Callable[[Session], tuple[Order, Revealed | None]]:
        """Step 3 of a definitive refusal as a group-commit unit: the order failed, its escrow
        released (a fulfilment is the batch kind :attr:`finish_kind`)."""
        now_ms = self.engine.now_ms()
        return lambda session: self._finish_unit(session, order_id, None, None, error, actor,
                                                 now_ms)

    def _finish_unit(self, session: Session, order_id: str, ids: Sequence[int] | None,
                     batches: dict[int, int] | None, error: CardsvcError | None, actor: str,
                     now_ms: int) -> tuple[Order, Revealed | None]:
        row = session.get(Order, order_id)
        if row is None:
            raise AssertionError(f"order {order_id} vanished")
        if row.status != "pending":
            return row, None
        texts: Revealed | None = None
        row.updated_at_ms = now_ms
        if error is None:
            chain = [(str(agent), int(price)) for agent, price in row.price_chain or []]
            cost = self._cost(session, batches or {})
            # A cost that does not split evenly over the codes (batches bought at different
            # prices in one order) is left unknown: all of it then counts as revenue.
            unit_cost = None if cost is None or cost % row.quantity else cost // row.quantity
            settled = settlement.settle_order(
                session, order_id, chain, row.quantity, unit_cost, row.currency or "",
                self.cooling_ms, actor, now_ms)
            row.status = "fulfilled"
            row.code_ids = list(ids or [])
            row.settle_txn_id = settled.txn_id
            try:  # deliver from this unit's session: no read session per order
                texts = self.revealer.reveal(row.code_ids, session=session)
            except CardsvcError:
                texts = None  # revealed (and refused) after the commit, as a retry would be
        else:
            if row.debit_txn_id is not None:
                settlement.release_order(session, order_id, actor, now_ms)
            row.status = "failed"
            row.error_code = error.code.value
            row.error_details = {"message": error.message, "details": error.details}
        return row, texts

    def _batches_of(self, ids: Sequence[int]) -> dict[int, int]:
        """How many of the codes come from each batch (the core knows)."""
        batches: dict[int, int] = {}
        for code_id in ids:
            batch = self.engine.code_info(code_id).batch
            batches[batch] = batches.get(batch, 0) + 1
        return batches

    @staticmethod
    def _cost(session: Session, batches: dict[int, int]) -> int | None:
        """What the codes cost the platform: each code's batch unit cost, else the SKU's cost;
        None when either is unknown for some code (the whole price is then revenue). Batches
        that do not exist count nothing (None when none exists). The cost of each batch is read
        once per transaction (``session.info``): the step-3 units of one commit group share the
        read, as they share the transaction's view of the catalog."""
        known: dict[int, object] = session.info.setdefault(_BATCH_COSTS, {})
        missing = [batch_id for batch_id in batches if batch_id not in known]
        if missing:
            for batch_id in missing:
                known[batch_id] = _NO_BATCH
            rows = session.execute(select(Batch.batch_id, Batch.unit_cost_minor, Sku.cost_minor)
                                   .join(Sku, Sku.sku == Batch.sku)
                                   .where(Batch.batch_id.in_(missing))).all()
            for batch_id, unit, sku_cost in rows:
                known[batch_id] = unit if unit is not None else sku_cost
        total = 0
        found = False
        for batch_id, count in batches.items():
            cost = known[batch_id]
            if cost is _NO_BATCH:
                continue
            found = True
            if cost is None:
                return None
            total += count * int(cast(int, cost))
        return total if found else None

    def _deliver(self, row: Order, *, masked: bool = False,
                 texts: Revealed | None = None) -> OrderView:
        """The order as its owner sees it, codes in plaintext (DESIGN.md: delivery), or, with
        ``masked``, as an admin sees it: every code through ``mask_code`` and no PIN. ``texts``:
        the codes already revealed (by step 3), else they are revealed here."""
        codes: list[DeliveredCode] = []
        if row.status in ("fulfilled", "refunded") and row.code_ids:
            if texts is None:
                texts = self.revealer.reveal(row.code_ids)
            for code_id, (code, pin) in zip(row.code_ids, texts, strict=True):
                info = self.engine.code_info(code_id)
                if masked:
                    codes.append(DeliveredCode(mask_code(code), None, info.valid_until,
                                               has_pin=pin is not None))
                else:
                    codes.append(DeliveredCode(code, pin, info.valid_until,
                                               has_pin=pin is not None))
        return dataclasses.replace(order_view(row), codes=tuple(codes), masked=masked)

    async def reveal(self, order_id: str, caller: Principal, *, reason: str) -> OrderView:
        """The plaintext codes of any agent's order, for support: needs the ``export`` scope
        (FORBIDDEN otherwise; admins do not hold it by default) and is audited
        ``order.reveal`` (who, which order, how many codes, why) before the codes leave.
        Raises FORBIDDEN, ORDER_NOT_FOUND, LIMIT_EXCEEDED (a reason over 200 characters)."""
        caller.require("export")
        check_text("reason", reason, REASON_LEN_MAX)
        row = await asyncio.to_thread(self._row, order_id)
        count = len(row.code_ids or []) if row.status in ("fulfilled", "refunded") else 0
        await asyncio.to_thread(
            audit.record, self.db, actor=caller.actor, action="order.reveal",
            object_type="order", object_id=order_id,
            details={"agent_id": row.agent_id, "codes": count, "reason": reason},
            at_ms=self.engine.now_ms())
        return self._deliver(row)

    # ----- reading -----

    def _row(self, order_id: str) -> Order:
        with self.db.read() as session:
            row = session.get(Order, order_id)
            if row is None:
                raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order",
                                 {"order_id": order_id})
            return row

    def _find_row(self, agent_id: str, client_order_id: str) -> Order | None:
        with self.db.read() as session:
            return session.scalar(select(Order).where(Order.agent_id == agent_id,
                                                      Order.client_order_id == client_order_id))

    def _orders_today(self, session: Session, agent_id: str) -> int:
        start = self.engine.now_ms() // DAY_MS * DAY_MS
        return session.scalar(select(func.count()).select_from(Order).where(
            Order.agent_id == agent_id, Order.created_at_ms >= start)) or 0

    async def get(self, order_id: str, *, agent_id: str | None,
                  actor: str = "system") -> OrderView:
        """An order; re-drives it when still pending. ``agent_id`` is the viewer: the order's
        own agent gets its codes in plaintext (a re-delivery, audited ``order.redeliver``);
        None (an admin) gets them masked. Another agent's order is ORDER_NOT_FOUND, revealing
        nothing."""
        row = await asyncio.to_thread(self._row, order_id)
        if agent_id is not None and row.agent_id != agent_id:
            raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order", {"order_id": order_id})
        if row.status == "failed":
            return order_view(row)
        row, texts = await self._drive(row, actor)
        view = self._result(row, masked=agent_id is None, texts=texts)
        if agent_id is None:
            return view
        if view.codes:
            await asyncio.to_thread(
                audit.record, self.db, actor=actor, action="order.redeliver",
                object_type="order", object_id=order_id,
                details={"agent_id": row.agent_id, "codes": len(view.codes)},
                at_ms=self.engine.now_ms())
        return view

    async def masked_for(self, order_id: str, agent_id: str, *,
                         actor: str = "system") -> OrderView:
        """An order of ``agent_id`` with its codes masked (the portal's order page: the
        plaintext leaves only through :meth:`get`, audited). Re-drives a pending order.
        Another agent's order is ORDER_NOT_FOUND."""
        row = await asyncio.to_thread(self._row, order_id)
        if row.agent_id != agent_id:
            raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order", {"order_id": order_id})
        if row.status == "failed":
            return order_view(row)
        row, _ = await self._drive(row, actor)
        return self._result(row, masked=True)

    async def list_orders(self, *, actor_agent_id: str | None, agent_id: str | None = None,
                          status: str | None = None, since_ms: int | None = None,
                          until_ms: int | None = None, cursor: str | None = None,
                          limit: int | None = None) -> Page[OrderView]:
        """Orders newest first (``cardsvc.paging``), each without its codes: of ``agent_id``
        (None: every agent's), in ``status``, created at ``since_ms <= at < until_ms``. An agent
        (``actor_agent_id``) sees only its own orders: naming another agent gives an empty page.
        Reads only (in a worker thread). Raises INVALID_ARGUMENT (an unknown status,
        ``since_ms > until_ms``, a cursor this list did not give out), LIMIT_EXCEEDED
        (``limit``)."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, ORDER_CURSOR)
        if status is not None and status not in ORDER_STATUSES:
            raise make_error(ErrorCode.INVALID_ARGUMENT,
                             f"status must be one of {', '.join(ORDER_STATUSES)}",
                             {"field": "status"})
        if since_ms is not None and until_ms is not None and since_ms > until_ms:
            raise make_error(ErrorCode.INVALID_ARGUMENT, "since must not be after until",
                             {"field": "since"})
        if actor_agent_id is not None:
            if agent_id not in (None, actor_agent_id):
                return Page([], None)
            agent_id = actor_agent_id
        query = select(Order)
        for wanted, column in ((agent_id, Order.agent_id), (status, Order.status)):
            if wanted is not None:
                query = query.where(column == wanted)
        if since_ms is not None:
            query = query.where(Order.created_at_ms >= since_ms)
        if until_ms is not None:
            query = query.where(Order.created_at_ms < until_ms)
        if after is not None:
            query = query.where(or_(Order.created_at_ms < after[0], and_(
                Order.created_at_ms == after[0], Order.order_id < after[1])))
        query = query.order_by(Order.created_at_ms.desc(), Order.order_id.desc()).limit(size + 1)

        def read() -> list[OrderView]:
            with self.db.read() as session:
                return [order_view(row) for row in session.scalars(query)]

        rows = await asyncio.to_thread(read)
        return page_of(rows, size, key=lambda view: (view.created_at_ms, view.order_id))

    async def find(self, agent_id: str, client_order_id: str, *, masked: bool = False,
                   actor: str = "system") -> OrderView:
        """The order ``agent_id`` placed under ``client_order_id`` (for a request that timed
        out), as :meth:`get` shows it to its agent (plaintext, audited) or, with ``masked``, to
        an admin. Raises ORDER_NOT_FOUND when there is none: the request never reached step 1."""
        row = await asyncio.to_thread(self._find_row, agent_id, client_order_id)
        if row is None:
            raise make_error(ErrorCode.ORDER_NOT_FOUND, "no order with that client_order_id",
                             {"client_order_id": client_order_id})
        return await self.get(row.order_id, agent_id=None if masked else agent_id, actor=actor)

    # ----- recovery and refunds -----

    async def recover(self, *, older_than_ms: int = 0) -> dict[str, int]:
        """Re-drives every pending order created at least ``older_than_ms`` ago; returns counts
        of orders fulfilled, failed and still pending (the journal or database unavailable)."""
        cutoff = self.engine.now_ms() - older_than_ms
        pending = await asyncio.to_thread(self._pending_ids, cutoff)
        counts = {"fulfilled": 0, "failed": 0, "pending": 0}
        for order_id in pending:
            try:
                await self._drive(await asyncio.to_thread(self._row, order_id), "recovery")
                counts["fulfilled"] += 1
            except CardsvcError as error:
                counts["failed" if error.code in FINAL_ERRORS else "pending"] += 1
        return counts

    def _pending_ids(self, cutoff_ms: int) -> list[str]:
        with self.db.read() as session:
            return list(session.scalars(select(Order.order_id).where(
                Order.status == "pending", Order.created_at_ms <= cutoff_ms)))

    async def refund(self, order_id: str, *, actor: str, reason: str,
                     approval_id: str | None = None) -> OrderView:
        """Refunds a fulfilled order whose codes were never redeemed: its codes are voided in
        the core (they were delivered, so they can never be sold again), then the settlement is
        reversed (``settlement.refund_order``) and the order is ``refunded``. Idempotent.
        Guarded by maker-checker when ``approvals`` are wired: ``approval_id`` names an
        approved ``refund`` of this order, checked before the codes are voided and consumed in
        the refund's transaction. Raises ORDER_NOT_FOUND, ORDER_NOT_REFUNDABLE (not fulfilled,
        or a code redeemed), the refusals of ``Approvals.authorize`` (APPROVAL_REQUIRED...)."""
        row = await asyncio.to_thread(self._row, order_id)
        if row.status == "refunded":
            return order_view(row)
        approvals = self.approvals
        if approvals is not None:
            await asyncio.to_thread(approvals.check, action="refund", object_type="order",
                                    object_id=order_id, actor=actor, approval_id=approval_id)
        if row.status != "fulfilled":
            raise make_error(ErrorCode.ORDER_NOT_REFUNDABLE, "only a fulfilled order is refunded",
                             {"order_id": order_id, "status": row.status})
        redeemed = [code_id for code_id in row.code_ids or []
                    if self.engine.code_info(code_id).redemption_ids]
        if redeemed:
            raise make_error(ErrorCode.ORDER_NOT_REFUNDABLE,
                             "a code of this order was redeemed", {"order_id": order_id,
                                                                    "redeemed": len(redeemed)})
        self.engine.void(list(row.code_ids or []))
        await self.store.wait_async(Engine.last_ticket())
        now_ms = self.engine.now_ms()

        def unit(session: Session) -> Order:
            current = session.get(Order, order_id)
            if current is None:
                raise AssertionError(f"order {order_id} vanished")
            if current.status == "fulfilled":
                if approvals is not None:
                    approvals.authorize(session, action="refund", object_type="order",
                                        object_id=order_id, actor=actor,
                                        approval_id=approval_id)
                settlement.refund_order(session, order_id, actor, now_ms, reason)
                current.status = "refunded"
                current.updated_at_ms = now_ms
            return current

        return order_view(await self.batcher.submit_async(unit))


def _closed_hold(hold: Hold, hold_id: str, now_ms: int) -> CardsvcError | None:
    """The refusal confirming ``hold`` would meet in the core (None while it is open and
    unexpired), so that a hold that is no longer open fails before the saga writes anything."""
    details: dict[str, Any] = {"hold_id": hold_id}
    if hold.state == "confirmed":
        return make_error(ErrorCode.HOLD_ALREADY_CONFIRMED, "the hold was confirmed already",
                          details)
    if hold.state == "released":
        return make_error(ErrorCode.HOLD_RELEASED, "the hold was released", details)
    if hold.state == "expired" or hold.expires_at_ms <= now_ms:
        return make_error(ErrorCode.HOLD_EXPIRED, "the hold has expired",
                          {**details, "expires_at_ms": hold.expires_at_ms})
    return None


def _forget(session: Session, order_ids: Sequence[str]) -> None:
    """Expires the session's ORM copies of orders a batch updated through Core statements, so
    that a later unit of the same transaction reads them again."""
    for order_id in order_ids:
        known = session.identity_map.get(session.identity_key(Order, order_id))
        if known is not None:
            session.expire(known)


def _same_request(existing: Order, request: OrderRequest) -> str:
    for field, old, new in (("sku", existing.sku, request.sku),
                            ("quantity", existing.quantity, request.quantity),
                            ("hold_id", existing.hold_id, request.hold_id)):
        if old != new:
            raise make_error(ErrorCode.IDEMPOTENCY_KEY_REUSED,
                             "client_order_id was used for a different order",
                             {"field": field, "client_order_id": request.client_order_id})
    return existing.order_id


def order_view(row: Order) -> OrderView:
    """The order's facts (no codes): the stored error of a failed order included."""
    error = None
    if row.status == "failed":
        error = {"code": row.error_code, **(row.error_details or {})}
    return OrderView(
        order_id=row.order_id, client_order_id=row.client_order_id, agent_id=row.agent_id,
        status=row.status, sku=row.sku, quantity=row.quantity, hold_id=row.hold_id,
        unit_price_minor=row.unit_price_minor, total_minor=row.total_minor,
        currency=row.currency, created_at_ms=row.created_at_ms, error=error)


def delivered_code_ids(session: Session, order_id: str) -> list[int]:
    """The code ids a fulfilled order delivered (what its export holds). Raises
    ORDER_NOT_FOUND for an unknown order or one that is not fulfilled."""
    order = session.get(Order, order_id)
    if order is None or order.status != "fulfilled":
        raise make_error(ErrorCode.ORDER_NOT_FOUND, "no fulfilled order with that id",
                         {"order_id": order_id})
    return list(order.code_ids or [])
