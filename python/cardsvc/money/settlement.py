"""The money flows of the wholesale business as ledger transactions: deposits, an
order's debit into escrow, its settlement with price-difference commissions, the release of a
failed order, refunds and the commissions' cooling period (withdrawals:
``cardsvc.money.withdrawals``).

Every function works in the caller's session and transaction (``Database.write()``), never
commits, and is idempotent through the reference of the ledger transaction it makes
(docs/money.md lists them with every posting):

========================  ===========================================  =======================
flow                      reference                                    audit action
========================  ===========================================  =======================
deposit                   ``deposit:<agent_id>:<client reference>``    ``money.deposit``
debit_order               ``order:<order_id>:debit``                   --
settle_order              ``order:<order_id>:settle``                  --
release_order             ``order:<order_id>:release``                 --
refund_order              ``order:<order_id>:refund``                  ``money.refund``
release_due_commissions   ``commission:<commission_id>:release``       --
reserve_hold              ``hold:<hold_ref>:reserve``                  --
release_hold              ``hold:<hold_ref>:release``                  --
consume_hold              ``hold:<hold_ref>:consume``                  --
request_withdrawal        ``withdrawal:<withdrawal_id>:request``       ``withdrawal.request``
approve_withdrawal        (no money moves)                             ``withdrawal.approve``
reject_withdrawal         ``withdrawal:<withdrawal_id>:reject``        ``withdrawal.reject``
mark_withdrawal_paid      ``withdrawal:<withdrawal_id>:pay``           ``withdrawal.pay``
========================  ===========================================  =======================

Audited flows append their entry last (``cardsvc.audit``: the head row stays locked to the end of
the transaction), only when they change something: a retry is not audited twice. Call them last
in a transaction, after any update of the order row.

Lock order (PostgreSQL), the same in every flow so no two wait for each other in a cycle: the
commission or withdrawal rows, then the accounts (one ``lock_accounts`` call, in id order), then
the audit he"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.agents.tables import Agent
from cardsvc.checks import check_amount, check_currency, check_text
from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, REF_LEN_MAX
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.money.ledger import (
    Leg,
    PostingBatch,
    PostResult,
    Problem,
    agent_account,
    find_transaction,
    lock_accounts,
    platform_account,
    post,
)
from cardsvc.money.tables import Account, Commission, LedgerTransaction, Posting, Withdrawal
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of

CHAIN_LEN_MAX = 32
"""Agents in one settlement chain (buyer and ancestors): an agent tree deeper than this is a
bug, and the settlement's postings (chain + 2) stay under ledger.LEGS_MAX."""
RELEASE_BATCH_MAX = 1000
"""Commissions one ``release_due_commissions`` call releases at most (~5 statements each)."""
COOLING_MS_MAX = 366 * 24 * 3600 * 1000
"""The longest cooling period: a year (and a bit). Longer is a unit mistake."""
ORDER_STEPS = ("debit", "settle", "release", "refund")
COMMISSION_STATES = ("pending", "released", "reversed")
HOLD_STEPS = ("reserve", "release", "consume")
"""A hold's ledger steps: its reservation, and its end (released unconfirmed, or consumed by
the order that confirmed it)."""

_COMMISSIONS = cast(Table, Commission.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_ORDER_TXNS = (
    select(LedgerTransaction.reference, LedgerTransaction.txn_id, Posting.account_id,
           Posting.amount_minor, Posting.currency)
    .join(Posting, Posting.txn_id == LedgerTransaction.txn_id)
    .where(LedgerTransaction.reference.in_([bindparam(f"b_{step}") for step in ORDER_STEPS]))
    .order_by(Posting.posting_id)
)
_ORDER_TXNS_OF = (
    select(LedgerTransaction.reference, LedgerTransaction.txn_id, Posting.account_id,
           Posting.amount_minor, Posting.currency)
    .join(Posting, Posting.txn_id == LedgerTransaction.txn_id)
    .where(LedgerTransaction.reference.in_(bindparam("b_references", expanding=True)))
    .order_by(Posting.posting_id)
)
_INSERT_COMMISSIONS = insert(_COMMISSIONS)
_UPDATE_COMMISSION = (
    update(_COMMISSIONS)
    .where(_COMMISSIONS.c.commission_id == bindparam("b_commission_id"))
    .values(status=bindparam("b_status"), txn_id=bindparam("b_txn_id"))
)


@dataclass(frozen=True, slots=True)
class SettleResult:
    """The settlement transaction, whether this call made it, and how the total was shared:
    ``commissions`` as ``(agent_id, amount_minor)`` from the buyer's parent upwards (zero shares
    left out), the platform's revenue and the cost of goods."""

    txn_id: str
    created: bool
    commissions: tuple[tuple[str, int], ...]
    revenue_minor: int
    cost_of_goods_minor: int


@dataclass(frozen=True, slots=True)
class CommissionInfo:
    """A commission row: ``pending`` until ``release_at_ms``, then ``released``, or
    ``reversed`` by a refund; ``txn_id`` is the last ledger transaction that moved it."""

    commission_id: int
    order_id: str
    agent_id: str
    amount_minor: int
    currency: str
    status: str
    release_at_ms: int
    txn_id: str | None


# ----- references ----------------------------------------------------------------------------


def deposit_reference(agent_id: str, reference: str) -> str:
    """The ledger reference of an agent's deposit with finance's ``reference``. Pure."""
    return f"deposit:{agent_id}:{reference}"


def order_reference(order_id: str, step: str) -> str:
    """``order:<order_id>:<step>`` for a step in ORDER_STEPS."""
    if step not in ORDER_STEPS:
        raise invalid("step", f"an order step is one of {ORDER_STEPS}")
    return f"order:{order_id}:{step}"


def commission_reference(commission_id: int) -> str:
    """The ledger reference of a commission's release from pending to available. Pure."""
    return f"commission:{commission_id}:release"


# ----- deposits and orders -------------------------------------------------------------------


def deposit(
    session: Session, agent_id: str, amount_minor: int, currency: str, reference: str,
    actor: str, now_ms: int,
) -> PostResult:
    """Finance records money received from the agent: ``platform:deposits:<CUR>`` -amount,
    ``agent:<id>:available`` +amount. Idempotent on (agent, ``reference``): a retry returns the
    first transaction (``created`` False, not audited again).

    Effects: the transaction and an audit entry ``money.deposit``. Raises
    AMOUNT_MUST_BE_POSITIVE, INVALID_ARGUMENT (currency, empty reference), LIMIT_EXCEEDED,
    IDEMPOTENCY_KEY_REUSED (field ``currency`` or ``amount_minor``), AGENT_NOT_FOUND,
    ACCOUNT_NOT_FOUND (accounts never opened), CURRENCY_MISMATCH (not the agent's currency).
    """
    check_amount("amount_minor", amount_minor)
    check_currency("currency", currency)
    check_text("reference", reference, REF_LEN_MAX)
    details = {"agent_id": agent_id, "amount_minor": amount_minor, "reference": reference}
    result = _post(session, deposit_reference(agent_id, reference), "deposit", actor, currency,
                   [Leg(agent_account(agent_id, "available"), amount_minor),
                    Leg(platform_account("deposits", currency), -amount_minor)],
                   details, now_ms, legs_field="amount_minor")
    if result.created:
        audit.append(session, actor=actor, action="money.deposit", object_type="agent",
                     object_id=agent_id, at_ms=now_ms,
                     details={**details, "currency": currency, "txn_id": result.txn_id})
    return result


def debit_order(
    session: Session, order_id: str, agent_id: str, total_minor: int, currency: str,
    actor: str, now_ms: int, *, reserved: bool = False, batch: PostingBatch | None = None,
) -> PostResult:
    """Saga step 1: the order's total leaves the buyer's available balance for its escrow
    (``agent:<id>:available`` -total, ``agent:<id>:escrow`` +total), within balance + credit.
    Idempotent on the order id.

    Raises AMOUNT_MUST_BE_POSITIVE, INVALID_ARGUMENT, LIMIT_EXCEEDED, IDEMPOTENCY_KEY_REUSED
    (field ``currency`` or ``total_minor``), AGENT_NOT_FOUND, ACCOUNT_NOT_FOUND,
    CURRENCY_MISMATCH, INSUFFICIENT_BALANCE (details ``available_minor`` = balance + credit
    left, ``needed_minor``). Five statements; no audit entry (the order is the record).

    ``reserved``: the money was reserved by a hold whose reservation this same transaction has
    just given back (:func:`consume_hold`), so the debit is not checked against the floor again
    (a credit cut since the hold does not undo what the hold had reserved).

    ``batch``: the debit is decided against the batch's balances and queued there
    (``ledger.PostingBatch``; the order saga's commit groups), written by its ``write``.
    """
    check_amount("total_minor", total_minor)
    return _post(session, order_reference(order_id, "debit"), "order_debit", actor, currency,
                 debit_legs(agent_id, total_minor, reserved=reserved),
                 {"order_id": order_id, "agent_id": agent_id, "total_minor": total_minor},
                 now_ms, legs_field="total_minor", batch=batch)


def debit_legs(agent_id: str, total_minor: int, *, reserved: bool = False) -> list[Leg]:
    """An order's debit: available -total (unchecked when ``reserved``), escrow +total. Pure
    (the saga's commit groups lock these accounts up front)."""
    return [Leg(agent_account(agent_id, "available"), -total_minor, force=reserved),
            Leg(agent_account(agent_id, "escrow"), total_minor)]


def settle_order(
    session: Session, order_id: str, chain: Sequence[tuple[str, int]], quantity: int,
    unit_cost_minor: int | None, currency: str, cooling_ms: int, actor: str, now_ms: int,
) -> SettleResult:
    """Saga step 3: the escrowed total is shared out. ``chain`` is ``[(buyer, buyer's unit
    price), (its parent, the parent's own unit price), ..., (the top agent, its price)]``. Each
    ancestor earns (its child's price - its own price) x quantity into its ``pending`` account,
    with a ``commissions`` row released at ``now_ms + cooling_ms``; the platform's revenue is
    (top price - unit cost) x quantity and the cost of goods unit cost x quantity (an unknown
    cost, None, counts as 0: the top price is all revenue). The buyer's escrow loses exactly the
    total it received from this order's debit.

    Preconditions: the order row exists (commissions refer to it); ``chain`` follows the agent
    tree upwards (not re-read here). Idempotent: a retry with the same arguments returns the
    first transaction and adds no commission. Raises QUANTITY_MUST_BE_POSITIVE,
    AMOUNT_MUST_BE_POSITIVE (a buyer price of 0), INVALID_ARGUMENT (empty chain, negative cost
    or cooling, a chain that does not match the order's debit: another buyer or total),
    AGENT_CYCLE (an agent twice), PRICE_BELOW_PARENT (a price above the child's: a negative
    commission), LIMIT_EXCEEDED, ORDER_NOT_FOUND (no debit for this order),
    IDEMPOTENCY_KEY_REUSED, ACCOUNT_NOT_FOUND/AGENT_NOT_FOUND, CURRENCY_MISMATCH. A settlement
    after the order's release is a saga bug: AssertionError.
    """
    plan = plan_settlement(SettleRequest(order_id, tuple(chain), quantity, unit_cost_minor,
                                         currency, cooling_ms, actor, now_ms))
    return _settle(session, plan, None, None, None)


@dataclass(frozen=True, slots=True)
class SettleRequest:
    """The arguments of one :func:`settle_order`, for :func:`settle_orders`."""

    order_id: str
    chain: tuple[tuple[str, int], ...]
    quantity: int
    unit_cost_minor: int | None
    currency: str
    cooling_ms: int
    actor: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class _SettlePlan:
    request: SettleRequest
    chain: list[tuple[str, int]]
    legs: list[Leg]
    shares: list[tuple[str, int]]
    revenue_minor: int
    cost_minor: int


def plan_settlement(request: SettleRequest) -> _SettlePlan:
    """The settlement's arguments checked and its legs planned; raises as
    :func:`settle_order`'s argument checks. Pure."""
    checked = _check_chain(request.chain)
    _check_count("quantity", request.quantity, ErrorCode.QUANTITY_MUST_BE_POSITIVE)
    if request.unit_cost_minor is not None:
        check_amount("unit_cost_minor", request.unit_cost_minor, positive=False)
    _check_cooling(request.cooling_ms)
    legs, shares, revenue, cost = _settlement_plan(checked, request.quantity,
                                                   request.unit_cost_minor, request.currency)
    return _SettlePlan(request, checked, legs, shares, revenue, cost)


def settle_orders(session: Session,
                  requests: Sequence[SettleRequest]) -> list[SettleResult | CardsvcError]:
    """:func:`settle_order` for many orders in one transaction, with one outcome per request
    (its result, or the error :func:`settle_order` would raise; a refused settlement writes
    nothing): every touched account locked and every order's ledger transactions read in one
    query each, each settlement decided in order against the balances the ones before it left
    (``ledger.PostingBatch``), then the transactions, postings, balances and commissions
    written with one statement each. Preconditions as :func:`settle_order`."""
    plans: list[_SettlePlan | CardsvcError] = []
    for request in requests:
        try:
            plans.append(plan_settlement(request))
        except CardsvcError as error:
            plans.append(error)
    planned = [plan for plan in plans if not isinstance(plan, CardsvcError)]
    batch = PostingBatch(
        session, (leg.account_id for plan in planned for leg in plan.legs),
        [order_reference(plan.request.order_id, "settle") for plan in planned])
    txns = _order_txns_of(session, [plan.request.order_id for plan in planned])
    commissions: list[dict[str, Any]] = []
    outcomes: list[SettleResult | CardsvcError] = []
    for plan in plans:
        if isinstance(plan, CardsvcError):
            outcomes.append(plan)
            continue
        try:
            outcomes.append(_settle(session, plan, batch, txns, commissions))
        except CardsvcError as error:
            outcomes.append(error)
    batch.write()
    if commissions:
        session.connection().execute(_INSERT_COMMISSIONS, commissions)
    return outcomes


def _settle(
    session: Session, plan: _SettlePlan, batch: PostingBatch | None,
    txns: dict[str, dict[str, tuple[str, str, tuple[tuple[str, int], ...]]]] | None,
    commissions: list[dict[str, Any]] | None,
) -> SettleResult:
    """One planned settlement: posted alone (``batch`` None: its commissions inserted now), or
    into ``batch`` with the order's transactions read beforehand (``txns``) and its
    commission rows appended to ``commissions`` for the caller to insert."""
    request = plan.request
    order_id = request.order_id

    def order_is_debited_and_not_released() -> None:
        # Under the accounts' locks: a concurrent release locks the same escrow, so it either
        # committed before this read or waits until this transaction ends.
        found = _order_txns(session, order_id) if txns is None else txns.get(order_id, {})
        if "release" in found:
            raise AssertionError(f"order {order_id} was released; it cannot be settled")
        _require_debit_matches(found, order_id, plan.legs[0])

    details = {"order_id": order_id, "quantity": request.quantity,
               "unit_cost_minor": request.unit_cost_minor,
               "chain": [list(link) for link in plan.chain]}
    result = _post(session, order_reference(order_id, "settle"), "order_settle", request.actor,
                   request.currency, plan.legs, details, request.now_ms, legs_field="chain",
                   accounts_field="chain", under_lock=order_is_debited_and_not_released,
                   batch=batch)
    if result.created and plan.shares:
        rows = [{"order_id": order_id, "agent_id": agent_id, "amount_minor": amount,
                 "currency": request.currency, "status": "pending",
                 "release_at_ms": request.now_ms + request.cooling_ms, "txn_id": result.txn_id}
                for agent_id, amount in plan.shares]
        if commissions is not None:
            commissions.extend(rows)
        else:
            session.flush()  # the caller's pending order row, which the commissions refer to
            session.connection().execute(_INSERT_COMMISSIONS, rows)
    return SettleResult(result.txn_id, result.created, tuple(plan.shares), plan.revenue_minor,
                        plan.cost_minor)


def release_order(session: Session, order_id: str, actor: str, now_ms: int) -> PostResult:
    """Saga recovery for an order that failed (nothing allocated): its debit is undone, escrow
    back to available. Idempotent on the order id.

    Raises ORDER_NOT_FOUND (the order was never debited). Releasing a settled order is a saga
    bug (refund it instead): AssertionError.
    """
    debit = _order_txns(session, order_id).get("debit")
    if debit is None:
        raise _order_not_found(order_id, "debit")
    _, currency, debit_legs = debit
    # Lock the buyer's accounts, then read the order's state again: a settlement committed in
    # between (it locks the same escrow first) is seen.
    lock_accounts(session, (account_id for account_id, _ in debit_legs))
    if "settle" in _order_txns(session, order_id):
        raise AssertionError(f"order {order_id} was settled; refund it instead of releasing")
    return post(session, reference=order_reference(order_id, "release"), kind="order_release",
                actor=actor, currency=currency, now_ms=now_ms, details={"order_id": order_id},
                legs=[Leg(account_id, -amount) for account_id, amount in debit_legs])


def refund_order(
    session: Session, order_id: str, actor: str, now_ms: int, reason: str | None = None
) -> PostResult:
    """A fulfilled (settled) order is refunded: the buyer gets the total back in available; each
    commission still pending is reversed from its earner's pending account; each commission
    already released is clawed back from its earner's available balance, even below the floor
    (a refund never fails for the earner's spending; the earner then owes and can spend nothing
    until it deposits, see ledger.over_limit_accounts); revenue and cost of goods are reversed.
    Every commission of the order becomes ``reversed``. Idempotent: a retry returns the first
    refund, not audited again.

    Effects: the transaction, the commission rows, and an audit entry ``money.refund``.
    Raises ORDER_NOT_FOUND (no settlement for this order), LIMIT_EXCEEDED (reason over 200).
    """
    if reason is not None:
        check_text("reason", reason, NAME_LEN_MAX)
    # The commission rows first (the lock a concurrent refund or release waits on), then the
    # order's state as it is once they are ours.
    commissions = _lock_commissions(session, order_id)
    txns = _order_txns(session, order_id)
    if "refund" in txns:
        return PostResult(txns["refund"][0], created=False)
    settle = txns.get("settle")
    if settle is None:
        raise _order_not_found(order_id, "settle")
    _, currency, settle_legs = settle
    plan = _refund_plan(order_id, settle_legs, commissions)
    result = post(session, reference=order_reference(order_id, "refund"), kind="order_refund",
                  actor=actor, currency=currency, legs=plan.legs, now_ms=now_ms,
                  details={"order_id": order_id, "reason": reason,
                           "clawed_back": plan.clawed_back})
    if not result.created:  # a concurrent refund of an order without commissions won
        return result
    if commissions:
        session.execute(_UPDATE_COMMISSION, [
            {"b_commission_id": row.commission_id, "b_status": "reversed",
             "b_txn_id": result.txn_id} for row in commissions
        ])
    audit.append(session, actor=actor, action="money.refund", object_type="order",
                 object_id=order_id, at_ms=now_ms,
                 details={"total_minor": plan.total_minor, "currency": currency,
                          "reason": reason, "txn_id": result.txn_id,
                          "reversed_pending": plan.reversed_pending,
                          "clawed_back": plan.clawed_back})
    return result


@dataclass(frozen=True, slots=True)
class _RefundPlan:
    legs: list[Leg]
    total_minor: int
    reversed_pending: list[list[Any]]
    clawed_back: list[list[Any]]


def _refund_plan(
    order_id: str, settle_legs: tuple[tuple[str, int], ...], commissions: Sequence[Any]
) -> _RefundPlan:
    """The refund's legs from the settlement's postings and the order's commission rows; the
    total back to the buyer; the commissions reversed from pending and clawed back from
    available, as [agent, amount]. Pure."""
    legs: list[Leg] = []
    settled_pending = total = 0
    for account_id, amount in settle_legs:
        if account_id.startswith("platform:"):
            legs.append(Leg(account_id, -amount))
        elif account_id.endswith(":escrow"):
            total = -amount
            legs.append(Leg(_sibling(account_id, "available"), total))
        else:
            settled_pending += amount
    plan = _RefundPlan(legs, total, [], [])
    for row in commissions:
        if row.status == "pending":
            legs.append(Leg(agent_account(row.agent_id, "pending"), -row.amount_minor))
            plan.reversed_pending.append([row.agent_id, row.amount_minor])
        elif row.status == "released":
            legs.append(Leg(agent_account(row.agent_id, "available"), -row.amount_minor,
                            force=True))
            plan.clawed_back.append([row.agent_id, row.amount_minor])
        else:
            raise AssertionError(f"commission {row.commission_id} of the unrefunded order "
                                 f"{order_id} is {row.status}")
    if settled_pending != sum(row.amount_minor for row in commissions):
        raise AssertionError(f"order {order_id}: its commissions disagree with its settlement")
    return plan


# ----- hold reservations ---------------------------------------------------------------------


def hold_reference(hold_ref: str, step: str) -> str:
    """``hold:<hold_ref>:<step>`` for a step in HOLD_STEPS. Pure."""
    if step not in HOLD_STEPS:
        raise invalid("step", f"a hold step is one of {HOLD_STEPS}")
    return f"hold:{hold_ref}:{step}"


def reserve_hold(
    session: Session, hold_ref: str, agent_id: str, amount_minor: int, currency: str,
    actor: str, now_ms: int, *, batch: PostingBatch | None = None,
) -> PostResult:
    """A hold reserves what its codes cost the holder: ``agent:<id>:available`` -amount,
    ``agent:<id>:escrow`` +amount, within balance + credit, like an order's debit. Idempotent
    on the hold. Raises as :func:`debit_order` (INSUFFICIENT_BALANCE beyond balance + credit).
    ``batch``: decided and queued there, as :func:`debit_order`'s."""
    check_amount("amount_minor", amount_minor)
    return _post(session, hold_reference(hold_ref, "reserve"), "hold_reserve", actor, currency,
                 [Leg(agent_account(agent_id, "available"), -amount_minor),
                  Leg(agent_account(agent_id, "escrow"), amount_minor)],
                 {"hold_ref": hold_ref, "agent_id": agent_id, "amount_minor": amount_minor},
                 now_ms, legs_field="amount_minor", batch=batch)


def release_hold(session: Session, hold_ref: str, actor: str, now_ms: int) -> PostResult | None:
    """A hold ended unconfirmed (released, expired, refused by the core): its reservation goes
    back to available. Idempotent; None when the hold reserved nothing. A release after the
    reservation was consumed by an order is a saga bug: AssertionError."""
    return _end_hold(session, hold_ref, "release", actor, now_ms)


def consume_hold(session: Session, hold_ref: str, actor: str, now_ms: int) -> PostResult | None:
    """A hold is being confirmed: its reservation goes back to available in the transaction
    that debits the order (``debit_order(..., reserved=True)``), so the order's debit is the
    hold's reservation exactly once. Idempotent; None when the hold reserved nothing."""
    return _end_hold(session, hold_ref, "consume", actor, now_ms)


def _end_hold(session: Session, hold_ref: str, step: str, actor: str,
              now_ms: int) -> PostResult | None:
    txns = _hold_txns(session, hold_ref)
    reserve = txns.get("reserve")
    if reserve is None:
        return None
    other = "consume" if step == "release" else "release"
    _, currency, legs = reserve
    lock_accounts(session, (account_id for account_id, _ in legs))
    txns = _hold_txns(session, hold_ref)
    if other in txns:
        raise AssertionError(f"hold {hold_ref} was already ended by {other}")
    return post(session, reference=hold_reference(hold_ref, step), kind=f"hold_{step}",
                actor=actor, currency=currency, now_ms=now_ms, details={"hold_ref": hold_ref},
                legs=[Leg(account_id, -amount) for account_id, amount in legs])


def _hold_txns(
    session: Session, hold_ref: str
) -> dict[str, tuple[str, str, tuple[tuple[str, int], ...]]]:
    found: dict[str, tuple[str, str, tuple[tuple[str, int], ...]]] = {}
    for step in HOLD_STEPS:
        txn = find_transaction(session, hold_reference(hold_ref, step))
        if txn is not None:
            found[step] = (txn.txn_id, txn.currency, txn.legs)
    return found


# ----- commissions ---------------------------------------------------------------------------


def release_due_commissions(
    session: Session, now_ms: int, limit: int = RELEASE_BATCH_MAX, *, actor: str = "system"
) -> list[int]:
    """Moves up to ``limit`` pending commissions whose cooling ended (``release_at_ms <=
    now_ms``) from their earner's pending account to its available balance, one transaction
    each, and marks them ``released``. Returns their ids (empty: nothing due). Idempotent and
    safe to run from several processes at once (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; a
    refund locks the same rows, so a commission is released or reversed, never both).

    Raises INVALID_ARGUMENT (limit below 1), LIMIT_EXCEEDED (over RELEASE_BATCH_MAX).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise invalid("limit", "limit must be at least 1")
    if limit > RELEASE_BATCH_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"limit may be at most {RELEASE_BATCH_MAX}",
                         {"field": "limit", "max": RELEASE_BATCH_MAX})
    c = _COMMISSIONS.c
    due = session.execute(
        select(c.commission_id, c.agent_id, c.amount_minor, c.currency)
        .where(c.status == "pending", c.release_at_ms <= now_ms)
        .order_by(c.release_at_ms, c.commission_id).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    lock_accounts(session, (agent_account(row.agent_id, kind) for row in due
                            for kind in ("available", "pending")))
    updates = []
    for row in sorted(due, key=lambda row: row.commission_id):
        result = post(session, reference=commission_reference(row.commission_id),
                      kind="commission_release", actor=actor, currency=row.currency,
                      legs=[Leg(agent_account(row.agent_id, "pending"), -row.amount_minor),
                            Leg(agent_account(row.agent_id, "available"), row.amount_minor)],
                      details={"commission_id": row.commission_id}, now_ms=now_ms)
        updates.append({"b_commission_id": row.commission_id, "b_status": "released",
                        "b_txn_id": result.txn_id})
    if updates:
        session.execute(_UPDATE_COMMISSION, updates)
    return [update_["b_commission_id"] for update_ in updates]


def list_commissions(session: Session, *, agent_id: str | None, status: str | None = None,
                     limit: int | None = None, cursor: str | None = None,
                     ) -> Page[CommissionInfo]:
    """Commissions newest first by (release date, id), a page at a time (``cardsvc.paging``),
    of one earner (``agent_id``) or all. Reads only. Raises INVALID_ARGUMENT (status, cursor),
    LIMIT_EXCEEDED (limit)."""
    size = check_page_size(limit)
    after = decode_cursor(cursor, (int, int))
    if status is not None and status not in COMMISSION_STATES:
        raise invalid("status", f"status is one of {', '.join(COMMISSION_STATES)}")
    c = _COMMISSIONS.c
    query = select(_COMMISSIONS)
    if agent_id is not None:
        query = query.where(c.agent_id == agent_id)
    if status is not None:
        query = query.where(c.status == status)
    if after is not None:
        at_ms, commission_id = after
        query = query.where((c.release_at_ms < at_ms)
                            | ((c.release_at_ms == at_ms) & (c.commission_id < commission_id)))
    rows = session.execute(query.order_by(c.release_at_ms.desc(), c.commission_id.desc())
                           .limit(size + 1)).all()
    page = page_of(rows, size, key=lambda row: (row.release_at_ms, row.commission_id))
    return Page([CommissionInfo(row.commission_id, row.order_id, row.agent_id,
                                row.amount_minor, row.currency, row.status, row.release_at_ms,
                                row.txn_id) for row in page.items], page.next)


def order_commissions(session: Session, order_id: str) -> list[CommissionInfo]:
    """The order's commissions, by id. Reads only."""
    c = _COMMISSIONS.c
    rows = session.execute(select(_COMMISSIONS).where(c.order_id == order_id)
                           .order_by(c.commission_id))
    return [CommissionInfo(row.commission_id, row.order_id, row.agent_id, row.amount_minor,
                           row.currency, row.status, row.release_at_ms, row.txn_id)
            for row in rows]


# ----- ledger-side checks of the sub-ledgers -------------------------------------------------


def check_settlement(session: Session, *, limit: int = 100) -> list[Problem]:
    """The sub-ledgers against the ledger, at most ``limit`` problems per check (empty: they
    agree): ``pending_commissions_mismatch`` (an agent's pending balance is not the sum of its
    pending commissions), ``withdrawing_mismatch`` (its withdrawing balance is not the sum of its
    requested and approved withdrawals), ``credit_limit_mismatch`` (its available floor is not
    minus its credit limit). Reads only; aggregate queries."""
    c, w = _COMMISSIONS.c, Withdrawal.__table__.c
    pending = (select(c.agent_id, func.sum(c.amount_minor).label("total"))
               .where(c.status == "pending").group_by(c.agent_id).subquery())
    withdrawing = (select(w.agent_id, func.sum(w.amount_minor).label("total"))
                   .where(w.status.in_(("requested", "approved"))).group_by(w.agent_id)
                   .subquery())
    problems = _subledger_problems(session, "pending", pending, limit,
                                   "pending_commissions_mismatch")
    problems += _subledger_problems(session, "withdrawing", withdrawing, limit,
                                    "withdrawing_mismatch")
    a = _ACCOUNTS.c
    rows = session.execute(
        select(a.account_id, a.floor_minor, Agent.credit_limit_minor)
        .join(Agent, Agent.agent_id == a.agent_id)
        .where(a.kind == "available",
               (a.floor_minor.is_(None)) | (a.floor_minor != -Agent.credit_limit_minor))
        .order_by(a.account_id).limit(limit)
    )
    problems += [Problem("credit_limit_mismatch", row.account_id,
                         {"floor_minor": row.floor_minor,
                          "credit_limit_minor": row.credit_limit_minor}) for row in rows]
    return problems


def _subledger_problems(
    session: Session, kind: str, totals: Any, limit: int, problem: str
) -> list[Problem]:
    a = _ACCOUNTS.c
    expected = func.coalesce(totals.c.total, 0)
    rows = session.execute(
        select(a.account_id, a.balance_minor, expected.label("expected"))
        .select_from(_ACCOUNTS.outerjoin(totals, totals.c.agent_id == a.agent_id))
        .where(a.kind == kind, a.balance_minor != expected)
        .order_by(a.account_id).limit(limit)
    )
    return [Problem(problem, row.account_id,
                    {"balance_minor": row.balance_minor, "expected_minor": int(row.expected)})
            for row in rows]


# ----- helpers -------------------------------------------------------------------------------


def _post(
    session: Session, reference: str, kind: str, actor: str, currency: str, legs: list[Leg],
    details: dict[str, Any], now_ms: int, *, legs_field: str, accounts_field: str = "agent_id",
    under_lock: Callable[[], None] | None = None, batch: PostingBatch | None = None,
) -> PostResult:
    """``ledger.post``, naming the business field in IDEMPOTENCY_KEY_REUSED (``legs_field`` when
    only amounts differ, ``accounts_field`` when the accounts do) and answering AGENT_NOT_FOUND
    for an unknown agent's account (both looked up only on the error path)."""
    try:
        return post(session, reference=reference, kind=kind, actor=actor, currency=currency,
                    legs=legs, details=details, now_ms=now_ms, under_lock=under_lock,
                    batch=batch)
    except CardsvcError as error:
        if error.code is ErrorCode.IDEMPOTENCY_KEY_REUSED and error.details["field"] == "legs":
            existing = (find_transaction(session, reference) if batch is None
                        else batch.existing(reference))
            same_accounts = existing is not None and (
                {account_id for account_id, _ in existing.legs}
                == {leg.account_id for leg in legs})
            error.details["field"] = legs_field if same_accounts else accounts_field
        elif error.code is ErrorCode.ACCOUNT_NOT_FOUND:
            raise missing_account(session, error.details["account_id"]) from None
        raise


def missing_account(session: Session, account_id: str) -> CardsvcError:
    """AGENT_NOT_FOUND when ``account_id`` is an unknown agent's, else ACCOUNT_NOT_FOUND."""
    if account_id.startswith("agent:"):
        agent_id = account_id[len("agent:"):account_id.rindex(":")]
        if session.get(Agent, agent_id) is None:
            return make_error(ErrorCode.AGENT_NOT_FOUND, "no such agent", {"agent_id": agent_id})
    return make_error(ErrorCode.ACCOUNT_NOT_FOUND, "no such account (accounts never opened?)",
                      {"account_id": account_id})


def _settlement_plan(
    chain: list[tuple[str, int]], quantity: int, unit_cost_minor: int | None, currency: str
) -> tuple[list[Leg], list[tuple[str, int]], int, int]:
    """(legs, commissions as (agent, amount), revenue, cost of goods). The escrow leg is first.
    Zero shares get no leg. Pure."""
    buyer, buyer_price = chain[0]
    legs = [Leg(agent_account(buyer, "escrow"), -buyer_price * quantity)]
    shares: list[tuple[str, int]] = []
    for (_, child_price), (parent, price) in itertools.pairwise(chain):
        amount = (child_price - price) * quantity
        if amount:
            legs.append(Leg(agent_account(parent, "pending"), amount))
            shares.append((parent, amount))
    cost = (unit_cost_minor or 0) * quantity
    revenue = chain[-1][1] * quantity - cost
    if revenue:
        legs.append(Leg(platform_account("revenue", currency), revenue))
    if cost:
        legs.append(Leg(platform_account("cost_of_goods", currency), cost))
    return legs, shares, revenue, cost


def _check_chain(chain: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    if not chain:
        raise invalid("chain", "the chain names at least the buyer")
    if len(chain) > CHAIN_LEN_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"at most {CHAIN_LEN_MAX} agents in a chain",
                         {"field": "chain", "max": CHAIN_LEN_MAX})
    checked: list[tuple[str, int]] = []
    for agent_id, price in chain:
        check_text("chain", agent_id, ID_LEN_MAX)
        check_amount("chain", price, positive=not checked)
        if any(agent_id == seen for seen, _ in checked):
            raise make_error(ErrorCode.AGENT_CYCLE, "an agent appears twice in the chain",
                             {"agent_id": agent_id})
        if checked and price > checked[-1][1]:
            child, child_price = checked[-1]
            raise make_error(ErrorCode.PRICE_BELOW_PARENT,
                             "an agent's price is below its parent's: a negative commission",
                             {"agent_id": child, "price_minor": child_price,
                              "parent_id": agent_id, "parent_price_minor": price})
        checked.append((agent_id, price))
    return checked


def _order_txns(
    session: Session, order_id: str
) -> dict[str, tuple[str, str, tuple[tuple[str, int], ...]]]:
    """The order's ledger transactions by step: (txn id, currency, postings), one query."""
    references = {order_reference(order_id, step): (order_id, step) for step in ORDER_STEPS}
    rows = session.connection().execute(
        _ORDER_TXNS, {f"b_{step}": reference for reference, (_, step) in references.items()})
    return _fold_order_txns(references, rows).get(order_id, {})


def _order_txns_of(
    session: Session, order_ids: Sequence[str]
) -> dict[str, dict[str, tuple[str, str, tuple[tuple[str, int], ...]]]]:
    """:func:`_order_txns` of each order, by order id, in one query."""
    references = {order_reference(order_id, step): (order_id, step)
                  for order_id in order_ids for step in ORDER_STEPS}
    if not references:
        return {}
    rows = session.connection().execute(_ORDER_TXNS_OF, {"b_references": sorted(references)})
    return _fold_order_txns(references, rows)


def _fold_order_txns(
    references: dict[str, tuple[str, str]], rows: Any
) -> dict[str, dict[str, tuple[str, str, tuple[tuple[str, int], ...]]]]:
    """Rows of (reference, txn id, account, amount, currency) by order and step, postings in
    row order."""
    found: dict[str, dict[str, tuple[str, str, tuple[tuple[str, int], ...]]]] = {}
    for row in rows:
        order_id, step = references[row.reference]
        steps = found.setdefault(order_id, {})
        txn_id, currency, legs = steps.get(step, (row.txn_id, row.currency, ()))
        steps[step] = (txn_id, currency, (*legs, (row.account_id, row.amount_minor)))
    return found


def _require_debit_matches(
    txns: dict[str, tuple[str, str, tuple[tuple[str, int], ...]]], order_id: str,
    escrow_leg: Leg,
) -> None:
    debit = txns.get("debit")
    if debit is None:
        raise _order_not_found(order_id, "debit")
    debited = dict(debit[2]).get(escrow_leg.account_id)
    if debited != -escrow_leg.amount_minor:
        raise make_error(ErrorCode.INVALID_ARGUMENT,
                         "the chain's buyer or total differs from the order's debit",
                         {"field": "chain", "order_id": order_id,
                          "debit": [list(leg) for leg in debit[2]],
                          "total_minor": -escrow_leg.amount_minor})


def _lock_commissions(session: Session, order_id: str) -> list[Any]:
    c = _COMMISSIONS.c
    return list(session.execute(
        select(c.commission_id, c.agent_id, c.amount_minor, c.status)
        .where(c.order_id == order_id).order_by(c.commission_id).with_for_update()
    ).all())


def _sibling(account_id: str, kind: str) -> str:
    """The agent account of another kind: ``agent:<id>:escrow`` -> ``agent:<id>:<kind>``."""
    return account_id[: account_id.rindex(":") + 1] + kind


def _check_count(field: str, value: object, code: ErrorCode) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise make_error(code, f"{field} must be a positive integer", {"field": field})


def _check_cooling(cooling_ms: object) -> None:
    if isinstance(cooling_ms, bool) or not isinstance(cooling_ms, int) or cooling_ms < 0:
        raise invalid("cooling_ms", "cooling_ms must be a non-negative integer")
    if cooling_ms > COOLING_MS_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "the cooling period is too long",
                         {"field": "cooling_ms", "max": COOLING_MS_MAX})


def _order_not_found(order_id: str, missing: str) -> CardsvcError:
    return make_error(ErrorCode.ORDER_NOT_FOUND, f"the ledger holds no {missing} of this order",
                      {"order_id": order_id, "missing": missing})
