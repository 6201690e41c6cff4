"""Goal: prove that money adds up under any sequence of business events, not just the ones a
person thought of: after every step every transaction sums to zero, every cached balance equals
its postings, no escrow, pending or withdrawing balance is negative, an available balance is below
its floor only after a clawback or a credit cut said so, ``check_ledger`` and
``check_settlement`` are empty, and every balance equals that of a small reference model.

Method: a hypothesis ``RuleBasedStateMachine`` draws a random agent tree (depth up to 4, random
credit limits and non-decreasing prices down the tree, a unit cost or none) and drives random
deposits and their retries, order debits (refused exactly when the model says balance + credit
is short), settlements, releases of failed orders, refunds before and after their commissions
are released, commission releases on a fake clock, credit changes, and withdrawals with every
decision, legal or not. The reference model is plain dictionaries of balances and states,
written from the rules in docs/money.md, not from the implementation. Each example gets a fresh
SQLite database copied from one migrated template; a smaller run does the same on PostgreSQL.
"""

from __future__ import annotations

import itertools
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as strat
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from cardsvc.agents.tables import Agent
from cardsvc.catalog.tables import Sku
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.money import ledger, statements, withdrawals
from cardsvc.money import settlement as st
from cardsvc.money.tables import Account
from cardsvc.sales.tables import Order

if TYPE_CHECKING:
    from tests.fixtures.postgres import PostgresTestDatabase

T0_MS = 1_700_000_000_000
COOLING_MS = 10_000
CUR = "CNY"
PLATFORM = {kind: ledger.platform_account(kind, CUR) for kind in ledger.PLATFORM_ACCOUNT_KINDS}
CREDITS = (0, 0, 100, 500)
EXAMPLES = max(40, settings.default.max_examples // 8)
STEPS = 40


def acct(agent_id: str, kind: str) -> str:
    return ledger.agent_account(agent_id, kind)


@dataclass
class ModelOrder:
    buyer: str
    total: int
    quantity: int
    state: str = "debited"  # debited -> settled -> refunded, or debited -> released
    commissions: list[list[Any]] = field(default_factory=list)  # [agent, amount, status, due]


@dataclass
class ModelWithdrawal:
    withdrawal_id: str  # random: never used to choose, so a replayed example chooses the same
    agent_id: str
    amount: int
    status: str = "requested"


@dataclass
class Model:
    """What the ledger must say, computed from the rules alone."""

    balances: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    credit: dict[str, int] = field(default_factory=dict)
    over_limit: set[str] = field(default_factory=set)  # allowed below floor (clawback, cut)

    def move(self, *legs: tuple[str, int]) -> None:
        for account_id, amount in legs:
            self.balances[account_id] += amount

    def available(self, agent_id: str) -> int:
        return self.balances[acct(agent_id, "available")]

    def floor(self, agent_id: str) -> int:
        return -self.credit[agent_id]

    def forget_repaid(self) -> None:
        """An agent back at or above its floor is no longer excused."""
        for agent_id in self.credit:
            if self.available(agent_id) >= self.floor(agent_id):
                self.over_limit.discard(agent_id)


class MoneyMachine(RuleBasedStateMachine):
    """One random history against one fresh database (``open_database`` is set by the test)."""

    open_database: Callable[[], Database]

    def __init__(self) -> None:
        super().__init__()
        self.database = type(self).open_database()
        self.model = Model()
        self.now = T0_MS
        self.parent: dict[str, str | None] = {}
        self.price: dict[str, int] = {}
        self.unit_cost: int | None = None
        self.orders: dict[str, ModelOrder] = {}
        self.withdrawals: list[ModelWithdrawal] = []
        self.deposits: list[tuple[str, int, str]] = []
        self.serial = 0

    def teardown(self) -> None:
        self.database.close()

    def _next(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def _refused(self, code: ErrorCode, call: Callable[[], object]) -> None:
        try:
            call()
        except CardsvcError as error:
            assert error.code == code, error
        else:
            raise AssertionError(f"expected {code}, the call succeeded")

    # ----- set-up ----------------------------------------------------------------------------

    @initialize(
        parents=strat.lists(strat.integers(0, 4), min_size=2, max_size=5),
        credits=strat.lists(strat.sampled_from(CREDITS), min_size=5, max_size=5),
        margins=strat.lists(strat.integers(0, 30), min_size=5, max_size=5),
        funds=strat.lists(strat.sampled_from((0, 300, 1000, 3000)), min_size=5, max_size=5),
        top_price=strat.integers(40, 100),
        unit_cost=strat.none() | strat.sampled_from((0, 30, 60, 120)),  # 120: sold at a loss
    )
    def build_tree(self, parents: list[int], credits: list[int], margins: list[int],
                   funds: list[int], top_price: int, unit_cost: int | None) -> None:
        self.unit_cost = unit_cost
        with self.database.write() as session:
            session.add(Sku(sku="VIP", name="vip", uses_per_code=1, redeem_requires_sale=True,
                            validity_days_after_sale=None, created_at_ms=T0_MS))
            for index, pick in enumerate(parents):
                agent_id = f"a{index}"
                # a0 is under the platform; agent i under one of a0..a(i-1), or (pick 4) under
                # the platform too: mostly one deep tree, sometimes a forest.
                parent = f"a{pick % index}" if index and pick < 4 else None
                self.parent[agent_id] = parent
                self.price[agent_id] = (top_price if parent is None
                                        else self.price[parent] + margins[index])
                self.model.credit[agent_id] = credits[index]
                session.add(Agent(agent_id=agent_id, name=agent_id, parent_id=parent,
                                  status="active", created_at_ms=T0_MS, currency=CUR))
                session.flush()
                ledger.open_agent_accounts(session, agent_id, CUR, credits[index], T0_MS)
                if funds[index]:
                    st.deposit(session, agent_id, funds[index], CUR, "opening", "finance", T0_MS)
                    self.model.move((acct(agent_id, "available"), funds[index]),
                                    (PLATFORM["deposits"], -funds[index]))

    def _chain(self, agent_id: str) -> list[tuple[str, int]]:
        chain: list[tuple[str, int]] = []
        current: str | None = agent_id
        while current is not None:
            chain.append((current, self.price[current]))
            current = self.parent[current]
        return chain

    def agent(self, data: strat.DataObject) -> str:
        return data.draw(strat.sampled_from(sorted(self.parent)))

    # ----- deposits and orders ---------------------------------------------------------------

    @rule(data=strat.data(), amount=strat.integers(1, 1000))
    def deposit(self, data: strat.DataObject, amount: int) -> None:
        agent_id, reference = self.agent(data), self._next("bank-")
        with self.database.write() as session:
            result = st.deposit(session, agent_id, amount, CUR, reference, "finance", self.now)
        assert result.created
        self.deposits.append((agent_id, amount, reference))
        self.model.move((acct(agent_id, "available"), amount), (PLATFORM["deposits"], -amount))

    @precondition(lambda self: self.deposits)
    @rule(data=strat.data())
    def retry_deposit(self, data: strat.DataObject) -> None:
        agent_id, amount, reference = data.draw(strat.sampled_from(self.deposits))
        with self.database.write() as session:
            result = st.deposit(session, agent_id, amount, CUR, reference, "finance", self.now)
        assert not result.created

    @rule(data=strat.data(), quantity=strat.integers(1, 3), settle_now=strat.booleans())
    def place_order(self, data: strat.DataObject, quantity: int, settle_now: bool) -> None:
        buyer, order_id = self.agent(data), self._next("o")
        total = self.price[buyer] * quantity
        allowed = self.model.available(buyer) - total >= self.model.floor(buyer)

        def call() -> None:
            with self.database.write() as session:
                session.add(Order(order_id=order_id, agent_id=buyer, client_order_id=order_id,
                                  sku="VIP", quantity=quantity, pool_id=0, status="pending",
                                  created_at_ms=self.now, updated_at_ms=self.now))
                st.debit_order(session, order_id, buyer, total, CUR, buyer, self.now)

        if not allowed:
            self._refused(ErrorCode.INSUFFICIENT_BALANCE, call)
            return
        call()
        self.orders[order_id] = ModelOrder(buyer, total, quantity)
        self.model.move((acct(buyer, "available"), -total), (acct(buyer, "escrow"), total))
        if settle_now:  # the saga's usual path, so histories reach refunds and releases sooner
            self._settle(order_id)

    def _in_state(self, state: str) -> list[str]:
        return sorted(order_id for order_id, order in self.orders.items() if order.state == state)

    @precondition(lambda self: self._in_state("debited"))
    @rule(data=strat.data())
    def settle(self, data: strat.DataObject) -> None:
        self._settle(data.draw(strat.sampled_from(self._in_state("debited"))))

    def _settle(self, order_id: str) -> None:
        order = self.orders[order_id]
        chain = self._chain(order.buyer)
        with self.database.write() as session:
            st.settle_order(session, order_id, chain, order.quantity, self.unit_cost, CUR,
                            COOLING_MS, "saga", self.now)
        order.state = "settled"
        self.model.move((acct(order.buyer, "escrow"), -order.total))
        for (_, child_price), (parent, price) in itertools.pairwise(chain):
            share = (child_price - price) * order.quantity
            if share:
                order.commissions.append([parent, share, "pending", self.now + COOLING_MS])
                self.model.move((acct(parent, "pending"), share))
        cost = (self.unit_cost or 0) * order.quantity
        self.model.move((PLATFORM["revenue"], chain[-1][1] * order.quantity - cost),
                        (PLATFORM["cost_of_goods"], cost))

    @precondition(lambda self: self._in_state("debited"))
    @rule(data=strat.data())
    def fail(self, data: strat.DataObject) -> None:
        order_id = data.draw(strat.sampled_from(self._in_state("debited")))
        order = self.orders[order_id]
        with self.database.write() as session:
            st.release_order(session, order_id, "saga", self.now)
        order.state = "released"
        self.model.move((acct(order.buyer, "escrow"), -order.total),
                        (acct(order.buyer, "available"), order.total))

    @precondition(lambda self: self._in_state("settled"))
    @rule(data=strat.data())
    def refund(self, data: strat.DataObject) -> None:
        order_id = data.draw(strat.sampled_from(self._in_state("settled")))
        order = self.orders[order_id]
        with self.database.write() as session:
            assert st.refund_order(session, order_id, "admin", self.now).created
        order.state = "refunded"
        self.model.move((acct(order.buyer, "available"), order.total))
        paid_up = 0
        for commission in order.commissions:
            agent_id, share, status, _ = commission
            kind = "pending" if status == "pending" else "available"
            self.model.move((acct(agent_id, kind), -share))
            if kind == "available":  # a clawback: the one debit allowed below the floor
                self.model.over_limit.add(agent_id)
            commission[2] = "reversed"
            paid_up += share
        top_total = order.total - paid_up
        cost = (self.unit_cost or 0) * order.quantity
        self.model.move((PLATFORM["revenue"], -(top_total - cost)),
                        (PLATFORM["cost_of_goods"], -cost))

    @rule(advance_ms=strat.sampled_from((0, COOLING_MS // 2, COOLING_MS, 2 * COOLING_MS)))
    def release_commissions(self, advance_ms: int) -> None:
        self.now += advance_ms
        with self.database.write() as session:
            released = st.release_due_commissions(session, self.now)
        due = [commission for order in self.orders.values() for commission in order.commissions
               if commission[2] == "pending" and commission[3] <= self.now]
        assert len(released) == len(due)
        for commission in due:
            agent_id, share = commission[0], commission[1]
            commission[2] = "released"
            self.model.move((acct(agent_id, "pending"), -share),
                            (acct(agent_id, "available"), share))

    @rule(data=strat.data(), credit=strat.sampled_from(CREDITS))
    def change_credit(self, data: strat.DataObject, credit: int) -> None:
        agent_id = self.agent(data)
        with self.database.write() as session:
            ledger.set_credit_limit(session, agent_id, credit)
        self.model.credit[agent_id] = credit
        self.model.over_limit.add(agent_id)  # a cut may leave it below the new floor

    # ----- withdrawals -----------------------------------------------------------------------

    @rule(data=strat.data(), amount=strat.integers(1, 500) | strat.just(0))
    def request_withdrawal(self, data: strat.DataObject, amount: int) -> None:
        """Amount 0 stands for everything available (then a clawback overdraws)."""
        agent_id, reference = self.agent(data), self._next("w-")
        if amount == 0:
            amount = max(self.model.available(agent_id), 1)

        def call() -> withdrawals.WithdrawalInfo:
            with self.database.write() as session:
                return withdrawals.request_withdrawal(session, agent_id, amount, CUR, reference,
                                             agent_id, self.now)[0]

        if self.model.available(agent_id) - amount < 0:  # never on credit
            self._refused(ErrorCode.INSUFFICIENT_BALANCE, call)
            return
        info = call()
        self.withdrawals.append(ModelWithdrawal(info.withdrawal_id, agent_id, amount))
        self.model.move((acct(agent_id, "available"), -amount),
                        (acct(agent_id, "withdrawing"), amount))

    @precondition(lambda self: self.withdrawals)
    @rule(data=strat.data(), action=strat.sampled_from(["approve", "reject", "pay"]))
    def decide_withdrawal(self, data: strat.DataObject, action: str) -> None:
        withdrawal = data.draw(strat.sampled_from(self.withdrawals))
        withdrawal_id = withdrawal.withdrawal_id
        allowed = {"approve": ("requested",), "reject": ("requested", "approved"),
                   "pay": ("approved",)}[action]
        function = {"approve": withdrawals.approve_withdrawal,
                    "reject": withdrawals.reject_withdrawal,
                    "pay": withdrawals.mark_withdrawal_paid}[action]

        def call() -> None:
            with self.database.write() as session:
                function(session, withdrawal_id, "finance", self.now)

        if withdrawal.status not in allowed:
            self._refused(ErrorCode.WITHDRAWAL_NOT_PENDING, call)
            return
        call()
        withdrawal.status = {"approve": "approved", "reject": "rejected", "pay": "paid"}[action]
        target = {"approve": None, "reject": acct(withdrawal.agent_id, "available"),
                  "pay": PLATFORM["payouts"]}[action]
        if target is not None:
            self.model.move((acct(withdrawal.agent_id, "withdrawing"), -withdrawal.amount),
                            (target, withdrawal.amount))

    # ----- invariants ------------------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self) -> None:
        with self.database.read() as session:
            problems = ledger.check_ledger(session) + st.check_settlement(session)
        assert problems == []

    @invariant()
    def balances_equal_the_model_and_respect_floors(self) -> None:
        self.model.forget_repaid()
        with self.database.read() as session:
            rows = session.execute(select(Account.account_id, Account.kind, Account.agent_id,
                                          Account.floor_minor, Account.balance_minor)).all()
        actual = {row.account_id: row.balance_minor for row in rows}
        expected = {account_id: amount for account_id, amount in self.model.balances.items()
                    if amount}
        assert {k: v for k, v in actual.items() if v} == expected
        assert sum(actual.values()) == 0
        for row in rows:
            if row.kind in ledger.HARD_FLOOR_KINDS:
                assert row.balance_minor >= 0, row
            if row.kind == "available" and row.balance_minor < row.floor_minor:
                assert row.agent_id in self.model.over_limit, row

    @invariant()
    def a_statement_closes_at_the_balance(self) -> None:
        if not self.parent:
            return
        account_id = acct(sorted(self.parent)[0], "available")
        with self.database.read() as session:
            stmt = statements.statement(session, account_id, T0_MS, self.now + 1)
            entries = list(stmt.entries)
            assert stmt.closing_minor == ledger.balance(session, account_id)
        assert stmt.opening_minor == 0
        assert sum(entry.amount_minor for entry in entries) == stmt.closing_minor


def _run(open_database: Callable[[], Database], examples: int, steps: int) -> None:
    machine = type("Machine", (MoneyMachine,), {"open_database": staticmethod(open_database)})
    # No explain phase: it traces every line executed (Python < 3.12), through SQLAlchemy that
    # turns a failure's report from seconds into many minutes.
    phases = [phase for phase in Phase if phase is not Phase.explain]
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, phases=phases))


@pytest.fixture
def sqlite_template(tmp_path: Path) -> Iterator[Path]:
    """A migrated, empty SQLite file that each example copies (migrating costs more)."""
    template = tmp_path / "template.db"
    Database.open(tmp_path, f"sqlite:///{template}").close()
    yield template


def test_money_adds_up_after_every_random_step_on_sqlite(
    sqlite_template: Path, tmp_path: Path
) -> None:
    counter = iter(range(1_000_000))

    def open_database() -> Database:
        path = tmp_path / f"example-{next(counter)}.db"
        shutil.copyfile(sqlite_template, path)
        return Database.open(tmp_path, f"sqlite:///{path}", migrate=False)

    _run(open_database, EXAMPLES, STEPS)


def test_money_adds_up_after_every_random_step_on_postgresql(
    postgres_test_database: PostgresTestDatabase, tmp_path: Path
) -> None:
    def open_database() -> Database:
        postgres_test_database.reset()
        return Database.open(tmp_path, postgres_test_database.url, migrate=False)

    _run(open_database, max(6, EXAMPLES // 6), STEPS // 2)
