"""Goal: prove the money flows of ``cardsvc.money.settlement`` post exactly what docs/money.md
prescribes and keep money adding up: the worked example's every posting (a three-level chain,
price- difference commissions, platform margin, cost of goods), the cooling period and its release,
refunds before and after release (reversal and clawback), the release of a failed order, deposits,
and withdrawals through every state; every retry returns the first result, every bad input is a
clear error that changes nothing, and concurrent orders never overspend a balance.

Method: on SQLite and on PostgreSQL (``database`` fixture), the agent tree platform -> A -> B ->
C is created with its accounts; orders are rows of ``orders`` (the commissions refer to them)
driven through the flows inside ``Database.write()``. Postings are read back per transaction and
compared with literal expectations; after each scenario ``check_ledger`` and
``check_settlement`` must be empty. Refusals compare a snapshot of every balance, transaction,
commission, withdrawal and the audit head before and after. Concurrency uses threads with their
own write transactions (concurrent connections on PostgreSQL).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cardsvc import audit
from cardsvc.agents.tables import Agent
from cardsvc.audit.tables import AuditHead
from cardsvc.catalog.tables import Sku
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.money import ledger, withdrawals
from cardsvc.money import settlement as st
from cardsvc.money.tables import Account, Commission, LedgerTransaction, Posting, Withdrawal
from cardsvc.sales.tables import Order

T0_MS = 1_700_000_000_000
COOLING_MS = 7 * 86_400_000
CHAIN = [("C", 100), ("B", 90), ("A", 80)]
"""The worked example of docs/money.md: C buys at 100 from B (whose own price is 90), B's
parent A pays 80."""
UNIT_COST = 50
REVENUE, COST, DEPOSITS, PAYOUTS = (f"platform:{kind}:CNY" for kind in
                                    ("revenue", "cost_of_goods", "deposits", "payouts"))


def acct(agent_id: str, kind: str) -> str:
    return ledger.agent_account(agent_id, kind)


def _tree(database: Database, credit: dict[str, int] | None = None) -> None:
    """platform -> A -> B -> C, all in CNY with the given credit limits (default 0)."""
    limits = {"A": 0, "B": 0, "C": 0, **(credit or {})}
    with database.write() as session:
        session.add(Sku(sku="VIP", name="vip", uses_per_code=1, redeem_requires_sale=True,
                        validity_days_after_sale=None, created_at_ms=T0_MS))
        for agent_id, parent in (("A", None), ("B", "A"), ("C", "B")):
            session.add(Agent(agent_id=agent_id, name=agent_id, parent_id=parent,
                              status="active", created_at_ms=T0_MS, currency="CNY"))
            session.flush()
            ledger.open_agent_accounts(session, agent_id, "CNY", limits[agent_id], T0_MS)


def _deposit(database: Database, agent_id: str, amount: int, reference: str) -> str:
    with database.write() as session:
        return st.deposit(session, agent_id, amount, "CNY", reference, "finance", T0_MS).txn_id


def _order_row(order_id: str, agent_id: str, quantity: int) -> Order:
    return Order(order_id=order_id, agent_id=agent_id, client_order_id=order_id, sku="VIP",
                 quantity=quantity, pool_id=0, status="pending", created_at_ms=T0_MS,
                 updated_at_ms=T0_MS)


def _debit(database: Database, order_id: str, total: int, *, agent_id: str = "C",
           quantity: int = 2) -> ledger.PostResult:
    with database.write() as session:
        if session.get(Order, order_id) is None:
            session.add(_order_row(order_id, agent_id, quantity))
        return st.debit_order(session, order_id, agent_id, total, "CNY", agent_id, T0_MS)


def _settle(database: Database, order_id: str, *, chain: Sequence[tuple[str, int]] = CHAIN,
            quantity: int = 2, unit_cost: int | None = UNIT_COST,
            at_ms: int = T0_MS) -> st.SettleResult:
    with database.write() as session:
        return st.settle_order(session, order_id, chain, quantity, unit_cost, "CNY", COOLING_MS,
                               "saga", at_ms)


def _sold(database: Database, order_id: str = "o1") -> st.SettleResult:
    """The worked example up to settlement: C (funded with 1000) buys 2 at 100."""
    _debit(database, order_id, 200)
    return _settle(database, order_id)


def _postings(database: Database, txn_id: str) -> dict[str, int]:
    with database.read() as session:
        rows = session.execute(select(Posting.account_id, Posting.amount_minor)
                               .where(Posting.txn_id == txn_id))
        return {row.account_id: row.amount_minor for row in rows}


def _balances(database: Database) -> dict[str, int]:
    with database.read() as session:
        rows = session.execute(select(Account.account_id, Account.balance_minor))
        return {row.account_id: row.balance_minor for row in rows if row.balance_minor}


def _commissions(database: Database, order_id: str = "o1") -> list[tuple[str, int, str, int]]:
    with database.read() as session:
        return [(c.agent_id, c.amount_minor, c.status, c.release_at_ms)
                for c in st.order_commissions(session, order_id)]


def _release_due(database: Database, now_ms: int) -> list[int]:
    with database.write() as session:
        return st.release_due_commissions(session, now_ms)


def _refund(database: Database, order_id: str = "o1") -> ledger.PostResult:
    with database.write() as session:
        return st.refund_order(session, order_id, "admin", T0_MS + 1, reason="customer")


def _audit_actions(database: Database) -> list[str]:
    with database.read() as session:
        return [entry.action for entry in audit.query(session, limit=1000)]


def _consistent(database: Database) -> None:
    with database.read() as session:
        problems = ledger.check_ledger(session) + st.check_settlement(session)
    assert problems == []


def _snapshot(database: Database) -> tuple[Any, ...]:
    with database.read() as session:
        return (
            _balances(database),
            session.scalar(select(func.count()).select_from(LedgerTransaction)),
            sorted(session.execute(select(Commission.commission_id, Commission.status)).all()),
            sorted(session.execute(select(Withdrawal.withdrawal_id, Withdrawal.status)).all()),
            session.scalar(select(AuditHead.seq)),
        )


def _refused(database: Database, code: ErrorCode, call: Callable[[], object]) -> CardsvcError:
    before = _snapshot(database)
    with pytest.raises(CardsvcError) as caught:
        call()
    assert caught.value.code == code, caught.value
    assert _snapshot(database) == before
    return caught.value


@pytest.fixture
def funded(database: Database) -> Database:
    """The tree, with 1000 deposited for C."""
    _tree(database)
    _deposit(database, "C", 1000, "bank-1")
    return database


# ----- the worked example --------------------------------------------------------------------


def test_worked_example_debit_moves_the_total_into_escrow(funded: Database) -> None:
    debit = _debit(funded, "o1", 200)
    assert debit.created
    assert _postings(funded, debit.txn_id) == {acct("C", "available"): -200,
                                               acct("C", "escrow"): 200}
    _consistent(funded)


def test_worked_example_settlement_shares_the_price_differences(funded: Database) -> None:
    settled = _sold(funded)
    assert _postings(funded, settled.txn_id) == {
        acct("C", "escrow"): -200,
        acct("B", "pending"): 20,   # (100 - 90) x 2
        acct("A", "pending"): 20,   # (90 - 80) x 2
        REVENUE: 60,                # (80 - 50) x 2
        COST: 100,                  # 50 x 2
    }
    assert (settled.commissions, settled.revenue_minor, settled.cost_of_goods_minor) == (
        (("B", 20), ("A", 20)), 60, 100)
    assert _commissions(funded) == [("B", 20, "pending", T0_MS + COOLING_MS),
                                    ("A", 20, "pending", T0_MS + COOLING_MS)]
    assert _balances(funded) == {
        acct("C", "available"): 800, acct("B", "pending"): 20, acct("A", "pending"): 20,
        REVENUE: 60, COST: 100, DEPOSITS: -1000}
    _consistent(funded)


def test_commissions_cool_then_move_to_available(funded: Database) -> None:
    _sold(funded)
    assert _release_due(funded, T0_MS + COOLING_MS - 1) == []
    released = _release_due(funded, T0_MS + COOLING_MS)
    assert len(released) == 2
    assert _release_due(funded, T0_MS + COOLING_MS + 1) == []  # idempotent
    assert [status for _, _, status, _ in _commissions(funded)] == ["released", "released"]
    balances = _balances(funded)
    assert (balances[acct("A", "available")], balances[acct("B", "available")]) == (20, 20)
    assert acct("A", "pending") not in balances
    with funded.read() as session:
        txn = ledger.find_transaction(session, st.commission_reference(released[0]))
    assert txn is not None
    assert txn.kind == "commission_release"
    assert set(dict(txn.legs).values()) == {20, -20}
    _consistent(funded)


def test_release_takes_a_bounded_batch(funded: Database) -> None:
    for index in range(3):
        _debit(funded, f"o{index}", 200)
        _settle(funded, f"o{index}")
    with funded.write() as session:
        first = st.release_due_commissions(session, T0_MS + COOLING_MS, limit=4)
        second = st.release_due_commissions(session, T0_MS + COOLING_MS, limit=4)
    assert (len(first), len(second)) == (4, 2)
    assert _balances(funded)[acct("A", "available")] == 60
    _consistent(funded)


def test_refund_before_release_reverses_every_posting(funded: Database) -> None:
    _sold(funded)
    refund = _refund(funded)
    assert refund.created
    assert _postings(funded, refund.txn_id) == {
        acct("C", "available"): 200, acct("B", "pending"): -20, acct("A", "pending"): -20,
        REVENUE: -60, COST: -100}
    assert [status for _, _, status, _ in _commissions(funded)] == ["reversed", "reversed"]
    assert _balances(funded) == {acct("C", "available"): 1000, DEPOSITS: -1000}
    assert _release_due(funded, T0_MS + COOLING_MS) == []
    assert _audit_actions(funded) == ["money.deposit", "money.refund"]
    _consistent(funded)


def test_refund_after_release_claws_back_even_below_the_floor(funded: Database) -> None:
    _sold(funded)
    _release_due(funded, T0_MS + COOLING_MS)
    # B spends its released commission on an order of its own (no credit: exactly 20).
    _debit(funded, "b1", 20, agent_id="B", quantity=1)
    refund = _refund(funded)
    assert _postings(funded, refund.txn_id) == {
        acct("C", "available"): 200, acct("B", "available"): -20, acct("A", "available"): -20,
        REVENUE: -60, COST: -100}
    balances = _balances(funded)
    assert balances[acct("B", "available")] == -20
    assert acct("A", "available") not in balances  # 20 released, 20 clawed back
    with funded.read() as session:
        over = [(info.account_id, info.balance_minor)
                for info in ledger.over_limit_accounts(session)]
        txn = ledger.find_transaction(session, st.order_reference("o1", "refund"))
    assert over == [(acct("B", "available"), -20)]
    assert txn is not None
    assert txn.details["clawed_back"] == [["B", 20], ["A", 20]]
    _refused(funded, ErrorCode.INSUFFICIENT_BALANCE, lambda: _debit(funded, "b2", 1,
                                                                    agent_id="B", quantity=1))
    _consistent(funded)


def test_refund_retry_returns_the_first_refund_and_audits_once(funded: Database) -> None:
    _sold(funded)
    first = _refund(funded)
    before = _snapshot(funded)
    again = _refund(funded)
    assert again == ledger.PostResult(first.txn_id, created=False)
    assert _snapshot(funded) == before
    assert _audit_actions(funded).count("money.refund") == 1


def test_refund_of_an_order_never_settled_is_order_not_found(funded: Database) -> None:
    _debit(funded, "o1", 200)
    error = _refused(funded, ErrorCode.ORDER_NOT_FOUND, lambda: _refund(funded, "o1"))
    assert error.details == {"order_id": "o1", "missing": "settle"}
    _refused(funded, ErrorCode.ORDER_NOT_FOUND, lambda: _refund(funded, "never"))


def test_failed_order_release_returns_escrow_to_available(funded: Database) -> None:
    _debit(funded, "o1", 200)
    with funded.write() as session:
        released = st.release_order(session, "o1", "saga", T0_MS + 1)
        again = st.release_order(session, "o1", "saga", T0_MS + 2)
    assert again == ledger.PostResult(released.txn_id, created=False)
    assert _postings(funded, released.txn_id) == {acct("C", "available"): 200,
                                                  acct("C", "escrow"): -200}
    assert _balances(funded) == {acct("C", "available"): 1000, DEPOSITS: -1000}
    _consistent(funded)


def test_settling_a_released_order_or_releasing_a_settled_one_is_a_bug(funded: Database) -> None:
    _debit(funded, "o1", 200)
    with funded.write() as session:
        st.release_order(session, "o1", "saga", T0_MS)
    with pytest.raises(AssertionError):
        _settle(funded, "o1")
    _sold(funded, "o2")
    with pytest.raises(AssertionError), funded.write() as session:
        st.release_order(session, "o2", "saga", T0_MS)
    _consistent(funded)


def test_settlement_retry_adds_no_commission_and_a_changed_chain_is_refused(
    funded: Database,
) -> None:
    first = _sold(funded)
    again = _settle(funded, "o1", at_ms=T0_MS + 5)
    assert (again.txn_id, again.created) == (first.txn_id, False)
    assert len(_commissions(funded)) == 2
    error = _refused(funded, ErrorCode.IDEMPOTENCY_KEY_REUSED,
                     lambda: _settle(funded, "o1", unit_cost=40))
    assert error.details["field"] == "chain"


def test_unknown_cost_makes_the_top_price_all_revenue(funded: Database) -> None:
    _debit(funded, "o1", 200)
    settled = _settle(funded, "o1", unit_cost=None)
    assert _postings(funded, settled.txn_id) == {
        acct("C", "escrow"): -200, acct("B", "pending"): 20, acct("A", "pending"): 20,
        REVENUE: 160}


def test_selling_below_cost_books_negative_revenue(funded: Database) -> None:
    _sold(funded)
    _refund(funded)
    _debit(funded, "o2", 200)
    settled = _settle(funded, "o2", unit_cost=95)
    assert _postings(funded, settled.txn_id) == {
        acct("C", "escrow"): -200, acct("B", "pending"): 20, acct("A", "pending"): 20,
        REVENUE: -30, COST: 190}
    assert settled.revenue_minor == -30
    _consistent(funded)


def test_an_equal_parent_price_earns_no_commission_row(funded: Database) -> None:
    _debit(funded, "o1", 200)
    settled = _settle(funded, "o1", chain=[("C", 100), ("B", 100), ("A", 80)])
    assert settled.commissions == (("A", 40),)
    assert _commissions(funded) == [("A", 40, "pending", T0_MS + COOLING_MS)]
    assert acct("B", "pending") not in _postings(funded, settled.txn_id)


def test_a_top_agent_buying_pays_only_the_platform(funded: Database) -> None:
    _deposit(funded, "A", 500, "bank-a")
    _debit(funded, "a1", 80, agent_id="A", quantity=1)
    settled = _settle(funded, "a1", chain=[("A", 80)], quantity=1)
    assert _postings(funded, settled.txn_id) == {acct("A", "escrow"): -80, REVENUE: 30,
                                                 COST: 50}
    assert settled.commissions == ()


@pytest.mark.parametrize(("arguments", "code"), [
    ({"chain": [("C", 100), ("B", 110), ("A", 80)]}, ErrorCode.PRICE_BELOW_PARENT),
    ({"chain": [("C", 100), ("B", 90), ("C", 80)]}, ErrorCode.AGENT_CYCLE),
    ({"chain": []}, ErrorCode.INVALID_ARGUMENT),
    ({"chain": [("C", 0)]}, ErrorCode.AMOUNT_MUST_BE_POSITIVE),
    ({"chain": [("C", 100), ("B", -1)]}, ErrorCode.INVALID_ARGUMENT),
    ({"chain": [(f"x{i}", 100) for i in range(33)]}, ErrorCode.LIMIT_EXCEEDED),
    ({"chain": [("C", 101), ("B", 90), ("A", 80)]}, ErrorCode.INVALID_ARGUMENT),
    ({"chain": [("B", 100), ("A", 80)]}, ErrorCode.INVALID_ARGUMENT),
    ({"quantity": 0}, ErrorCode.QUANTITY_MUST_BE_POSITIVE),
    ({"quantity": 3}, ErrorCode.INVALID_ARGUMENT),
    ({"unit_cost": -1}, ErrorCode.INVALID_ARGUMENT),
])
def test_bad_settlements_are_refused_and_change_nothing(
    funded: Database, arguments: dict[str, Any], code: ErrorCode
) -> None:
    _debit(funded, "o1", 200)
    error = _refused(funded, code, lambda: _settle(funded, "o1", **arguments))
    if code is ErrorCode.PRICE_BELOW_PARENT:
        assert error.details == {"agent_id": "C", "price_minor": 100, "parent_id": "B",
                                 "parent_price_minor": 110}


def test_settling_an_order_never_debited_is_order_not_found(funded: Database) -> None:
    with funded.write() as session:
        session.add(_order_row("o9", "C", 2))
    error = _refused(funded, ErrorCode.ORDER_NOT_FOUND, lambda: _settle(funded, "o9"))
    assert error.details == {"order_id": "o9", "missing": "debit"}


def test_an_unknown_ancestor_is_agent_not_found(funded: Database) -> None:
    _debit(funded, "o1", 200)
    error = _refused(funded, ErrorCode.AGENT_NOT_FOUND,
                     lambda: _settle(funded, "o1", chain=[("C", 100), ("ghost", 90)]))
    assert error.details == {"agent_id": "ghost"}


# ----- deposits and debits -------------------------------------------------------------------


def test_deposit_is_idempotent_on_agent_and_reference_and_audited_once(
    database: Database,
) -> None:
    _tree(database)
    first = _deposit(database, "C", 1000, "bank-1")
    assert _deposit(database, "C", 1000, "bank-1") == first
    assert _postings(database, first) == {acct("C", "available"): 1000, DEPOSITS: -1000}
    assert _deposit(database, "B", 1000, "bank-1") != first  # another agent's reference
    with database.read() as session:
        entries = audit.query(session, action="money.deposit")
    assert [(entry.object_id, entry.details["amount_minor"]) for entry in entries] == [
        ("C", 1000), ("B", 1000)]
    assert entries[0].details["txn_id"] == first


@pytest.mark.parametrize(("arguments", "code", "field"), [
    ({"amount_minor": 0}, ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amount_minor"),
    ({"amount_minor": -5}, ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amount_minor"),
    ({"amount_minor": 2.5}, ErrorCode.INVALID_ARGUMENT, "amount_minor"),
    ({"amount_minor": 999}, ErrorCode.IDEMPOTENCY_KEY_REUSED, "amount_minor"),
    ({"currency": "USD"}, ErrorCode.IDEMPOTENCY_KEY_REUSED, "currency"),
    # A currency the agent does not use (no platform account in it either) names the
    # agent's currency; it was ACCOUNT_NOT_FOUND for the never-opened platform account.
    ({"currency": "USD", "reference": "bank-2"}, ErrorCode.CURRENCY_MISMATCH, None),
    ({"reference": ""}, ErrorCode.INVALID_ARGUMENT, "reference"),
    ({"agent_id": "ghost"}, ErrorCode.AGENT_NOT_FOUND, None),
])
def test_bad_deposits_are_refused_and_change_nothing(
    funded: Database, arguments: dict[str, Any], code: ErrorCode, field: str | None
) -> None:
    full = {"agent_id": "C", "amount_minor": 1000, "currency": "CNY", "reference": "bank-1",
            **arguments}

    def call() -> None:
        with funded.write() as session:
            st.deposit(session, full["agent_id"], full["amount_minor"], full["currency"],
                       full["reference"], "finance", T0_MS)

    error = _refused(funded, code, call)
    if field is not None:
        assert error.details["field"] == field


def test_deposit_in_another_currency_than_the_agent_is_currency_mismatch(
    funded: Database,
) -> None:
    with funded.write() as session:
        ledger.ensure_platform_accounts(session, "USD", T0_MS)

    def call() -> None:
        with funded.write() as session:
            st.deposit(session, "C", 5, "USD", "usd-1", "finance", T0_MS)

    _refused(funded, ErrorCode.CURRENCY_MISMATCH, call)


def test_deposit_in_a_currency_no_account_uses_names_the_agents_currency(
    funded: Database,
) -> None:
    """Before any USD account exists, a USD deposit to a CNY agent is
    CURRENCY_MISMATCH naming CNY (it was ACCOUNT_NOT_FOUND for platform:deposits:USD)."""
    def call() -> None:
        with funded.write() as session:
            st.deposit(session, "C", 5, "USD", "usd-2", "finance", T0_MS)

    error = _refused(funded, ErrorCode.CURRENCY_MISMATCH, call)
    assert error.details["account_currency"] == "CNY"
    assert error.details["account_id"] == acct("C", "available")


def test_debit_beyond_balance_and_credit_is_insufficient_balance(database: Database) -> None:
    _tree(database, {"C": 300})
    _deposit(database, "C", 100, "bank-1")
    _debit(database, "o1", 400)
    error = _refused(database, ErrorCode.INSUFFICIENT_BALANCE,
                     lambda: _debit(database, "o2", 1, quantity=1))
    assert error.details == {"account_id": acct("C", "available"), "agent_id": "C",
                             "available_minor": 0, "needed_minor": 1, "currency": "CNY"}


@pytest.mark.parametrize(("total", "code"), [(0, ErrorCode.AMOUNT_MUST_BE_POSITIVE),
                                             (-200, ErrorCode.AMOUNT_MUST_BE_POSITIVE),
                                             (10**16, ErrorCode.LIMIT_EXCEEDED)])
def test_debit_of_a_non_positive_or_huge_total_is_refused(
    funded: Database, total: int, code: ErrorCode
) -> None:
    def call() -> None:
        with funded.write() as session:
            st.debit_order(session, "o1", "C", total, "CNY", "C", T0_MS)

    _refused(funded, code, call)


def test_debit_retry_with_another_total_or_agent_is_refused_naming_the_field(
    funded: Database,
) -> None:
    _deposit(funded, "B", 1000, "bank-b")
    _debit(funded, "o1", 200)
    for agent_id, total, field in (("C", 300, "total_minor"), ("B", 200, "agent_id")):
        def call(agent_id: str = agent_id, total: int = total) -> None:
            with funded.write() as session:
                st.debit_order(session, "o1", agent_id, total, "CNY", "C", T0_MS)

        assert _refused(funded, ErrorCode.IDEMPOTENCY_KEY_REUSED, call).details["field"] == field


def test_debit_of_an_unknown_agent_is_agent_not_found(funded: Database) -> None:
    def call() -> None:
        with funded.write() as session:
            st.debit_order(session, "o1", "ghost", 200, "CNY", "ghost", T0_MS)

    _refused(funded, ErrorCode.AGENT_NOT_FOUND, call)


# ----- withdrawals ---------------------------------------------------------------------------


def _request(database: Database, amount: int, reference: str = "w-1",
             agent_id: str = "C") -> tuple[withdrawals.WithdrawalInfo, bool]:
    with database.write() as session:
        return withdrawals.request_withdrawal(session, agent_id, amount, "CNY", reference, agent_id,
                                     T0_MS)


def _decide(database: Database, action: str, withdrawal_id: str) -> withdrawals.WithdrawalInfo:
    functions = {"approve": withdrawals.approve_withdrawal, "reject": withdrawals.reject_withdrawal,
                 "pay": withdrawals.mark_withdrawal_paid}
    with database.write() as session:
        return functions[action](session, withdrawal_id, "finance", T0_MS + 1, note=action)


def _txn_of(database: Database, reference: str) -> dict[str, int]:
    with database.read() as session:
        txn = ledger.find_transaction(session, reference)
    assert txn is not None
    return dict(txn.legs)


def test_withdrawal_requested_approved_paid(funded: Database) -> None:
    requested, created = _request(funded, 300)
    assert created
    assert requested.status == "requested"
    wid = requested.withdrawal_id
    assert _txn_of(funded, withdrawals.withdrawal_reference(wid, "request")) == {
        acct("C", "available"): -300, acct("C", "withdrawing"): 300}
    assert _decide(funded, "approve", wid).status == "approved"
    assert _balances(funded)[acct("C", "withdrawing")] == 300  # approval moves no money
    paid = _decide(funded, "pay", wid)
    assert (paid.status, paid.decided_by, paid.note) == ("paid", "finance", "pay")
    assert _txn_of(funded, withdrawals.withdrawal_reference(wid, "pay")) == {
        acct("C", "withdrawing"): -300, PAYOUTS: 300}
    assert _balances(funded) == {acct("C", "available"): 700, DEPOSITS: -1000, PAYOUTS: 300}
    assert _audit_actions(funded) == ["money.deposit", "withdrawal.request",
                                      "withdrawal.approve", "withdrawal.pay"]
    _consistent(funded)


@pytest.mark.parametrize("approve_first", [False, True])
def test_rejected_withdrawal_returns_the_amount_to_available(
    funded: Database, approve_first: bool
) -> None:
    wid = _request(funded, 300)[0].withdrawal_id
    if approve_first:
        _decide(funded, "approve", wid)
    assert _decide(funded, "reject", wid).status == "rejected"
    assert _txn_of(funded, withdrawals.withdrawal_reference(wid, "reject")) == {
        acct("C", "withdrawing"): -300, acct("C", "available"): 300}
    assert _balances(funded) == {acct("C", "available"): 1000, DEPOSITS: -1000}
    _consistent(funded)


@pytest.mark.parametrize(("steps", "refused"), [
    (["approve"], "approve"),
    ([], "pay"),
    (["approve", "pay"], "reject"),
    (["approve", "pay"], "pay"),
    (["reject"], "approve"),
    (["reject"], "reject"),
])
def test_withdrawal_transitions_outside_the_state_machine_are_not_pending(
    funded: Database, steps: list[str], refused: str
) -> None:
    wid = _request(funded, 300)[0].withdrawal_id
    for step in steps:
        _decide(funded, step, wid)
    error = _refused(funded, ErrorCode.WITHDRAWAL_NOT_PENDING,
                     lambda: _decide(funded, refused, wid))
    assert error.details["withdrawal_id"] == wid
    _consistent(funded)


def test_unknown_withdrawal_is_withdrawal_not_found(funded: Database) -> None:
    for action in ("approve", "reject", "pay"):
        _refused(funded, ErrorCode.WITHDRAWAL_NOT_FOUND, lambda a=action: _decide(funded, a, "x"))


def test_withdrawal_request_is_idempotent_on_agent_and_reference(funded: Database) -> None:
    first, _ = _request(funded, 300)
    again, created = _request(funded, 300)
    assert (again, created) == (first, False)
    assert _audit_actions(funded).count("withdrawal.request") == 1
    error = _refused(funded, ErrorCode.IDEMPOTENCY_KEY_REUSED, lambda: _request(funded, 301))
    assert error.details["field"] == "amount_minor"


def test_a_withdrawal_may_not_use_credit(database: Database) -> None:
    _tree(database, {"C": 5000})
    _deposit(database, "C", 100, "bank-1")
    error = _refused(database, ErrorCode.INSUFFICIENT_BALANCE, lambda: _request(database, 101))
    assert (error.details["available_minor"], error.details["needed_minor"]) == (100, 101)
    _request(database, 100)
    _refused(database, ErrorCode.INSUFFICIENT_BALANCE,
             lambda: _request(database, 1, reference="w-2"))
    _debit(database, "o1", 300)  # orders still may use the credit
    assert _balances(database)[acct("C", "available")] == -300


def test_nothing_leaves_available_twice(funded: Database) -> None:
    wid = _request(funded, 1000)[0].withdrawal_id
    _refused(funded, ErrorCode.INSUFFICIENT_BALANCE, lambda: _request(funded, 1, "w-2"))
    _refused(funded, ErrorCode.INSUFFICIENT_BALANCE, lambda: _debit(funded, "o1", 100))
    _decide(funded, "approve", wid)
    _decide(funded, "pay", wid)
    _refused(funded, ErrorCode.WITHDRAWAL_NOT_PENDING, lambda: _decide(funded, "reject", wid))
    assert _balances(funded) == {DEPOSITS: -1000, PAYOUTS: 1000}
    _consistent(funded)


@pytest.mark.parametrize(("amount", "agent_id", "code"), [
    (0, "C", ErrorCode.AMOUNT_MUST_BE_POSITIVE),
    (-1, "C", ErrorCode.AMOUNT_MUST_BE_POSITIVE),
    (5, "ghost", ErrorCode.AGENT_NOT_FOUND),
])
def test_bad_withdrawal_requests_are_refused(
    funded: Database, amount: int, agent_id: str, code: ErrorCode
) -> None:
    _refused(funded, code, lambda: _request(funded, amount, agent_id=agent_id))


# ----- sub-ledger checks ---------------------------------------------------------------------


def test_check_settlement_detects_tampered_commissions_withdrawals_and_credit(
    funded: Database,
) -> None:
    _sold(funded)
    _request(funded, 100)
    with funded.write() as session:
        session.execute(update(Commission).where(Commission.agent_id == "A")
                        .values(amount_minor=21))
        session.execute(update(Withdrawal).values(status="paid"))
        session.execute(update(Agent).where(Agent.agent_id == "B").values(credit_limit_minor=7))
    with funded.read() as session:
        problems = [(p.kind, p.subject) for p in st.check_settlement(session)]
        assert ledger.check_ledger(session) == []
    assert problems == [("pending_commissions_mismatch", acct("A", "pending")),
                        ("withdrawing_mismatch", acct("C", "withdrawing")),
                        ("credit_limit_mismatch", acct("B", "available"))]


# ----- concurrency ---------------------------------------------------------------------------


def _race(count: int, work: Callable[[int], None]) -> list[BaseException | None]:
    barrier = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:  # collected and asserted by the test
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_orders_succeed_exactly_as_far_as_balance_and_credit_cover(
    database: Database,
) -> None:
    _tree(database, {"C": 200})
    _deposit(database, "C", 300, "bank-1")  # 500 spendable: 5 orders of 100 out of 16

    def order(index: int) -> None:
        _debit(database, f"o{index}", 100, quantity=1)

    outcomes = _race(16, order)
    refused = [exc for exc in outcomes if exc is not None]
    assert all(isinstance(exc, CardsvcError) and exc.code == ErrorCode.INSUFFICIENT_BALANCE
               for exc in refused), refused
    assert len(refused) == 11
    balances = _balances(database)
    assert (balances[acct("C", "available")], balances[acct("C", "escrow")]) == (-200, 500)
    _consistent(database)


def test_concurrent_refunds_and_releases_treat_each_commission_once(funded: Database) -> None:
    _deposit(funded, "C", 1000, "bank-2")
    orders = [f"o{index}" for index in range(8)]
    for order_id in orders:
        _debit(funded, order_id, 200)
        _settle(funded, order_id)

    def work(index: int) -> None:
        if index % 2:
            with funded.write() as session:
                st.release_due_commissions(session, T0_MS + COOLING_MS, limit=3)
        else:
            _refund(funded, orders[index])
            _refund(funded, orders[index + 1])

    assert _race(8, work) == [None] * 8
    with funded.read() as session:
        rows = session.execute(select(Commission.order_id, Commission.status)).all()
    refunded = {orders[i] for i in range(0, 8, 2)} | {orders[i + 1] for i in range(0, 8, 2)}
    assert {status for order_id, status in rows if order_id in refunded} == {"reversed"}
    balances = _balances(funded)
    assert balances.get(acct("A", "pending"), 0) + balances.get(acct("A", "available"), 0) == 0
    assert balances[acct("C", "available")] == 2000
    _consistent(funded)
