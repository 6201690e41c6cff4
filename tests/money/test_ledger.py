"""Goal: prove the ledger mechanism (``cardsvc.money.ledger``) keeps money adding up: every
transaction's postings sum to zero, cached balances equal the sum of postings, a debit never takes
an account below its floor (not even when many transactions race for one balance), a reference
names one transaction forever, bad input changes nothing, ``check_ledger`` finds every kind of
tampering, and statements tie opening, entries and closing together across periods.

Method: on SQLite and on PostgreSQL (``database`` fixture), agents and their accounts are set up
through the public functions, transactions posted through ``ledger.post`` inside
``Database.write()``, and results read back through the ledger's own readers and directly from
the tables. Tampering is done in SQL behind the ledger's back, the way a bug or an attacker with
database access would. Concurrency: threads with their own write transactions (real concurrent
connections on PostgreSQL, where only ``FOR UPDATE`` stands between them).
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from cardsvc.agents.tables import Agent
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.money import ledger, statements
from cardsvc.money.ledger import Leg
from cardsvc.money.tables import Account, LedgerTransaction, Posting

T0_MS = 1_700_000_000_000
DEPOSITS = "platform:deposits:CNY"
REVENUE = "platform:revenue:CNY"


def _agents(database: Database, credit: dict[str, int], currency: str = "CNY") -> None:
    with database.write() as session:
        for agent_id, credit_limit in credit.items():
            session.add(Agent(agent_id=agent_id, name=agent_id, parent_id=None, status="active",
                              created_at_ms=T0_MS, currency=currency))
            session.flush()
            ledger.open_agent_accounts(session, agent_id, currency, credit_limit, T0_MS)


def _available(agent_id: str) -> str:
    return ledger.agent_account(agent_id, "available")


def _post(
    database: Database, reference: str, legs: list[Leg], *, currency: str = "CNY",
    kind: str = "test", at_ms: int = T0_MS,
) -> ledger.PostResult:
    with database.write() as session:
        return ledger.post(session, reference=reference, kind=kind, actor="tester",
                           currency=currency, legs=legs, details={"note": "test"}, now_ms=at_ms)


def _fund(database: Database, agent_id: str, amount: int, reference: str,
          at_ms: int = T0_MS) -> ledger.PostResult:
    return _post(database, reference, [Leg(_available(agent_id), amount),
                                       Leg(DEPOSITS, -amount)], at_ms=at_ms)


def _balances(database: Database) -> dict[str, int]:
    with database.read() as session:
        rows = session.execute(select(Account.account_id, Account.balance_minor))
        return {row.account_id: row.balance_minor for row in rows}


def _state(database: Database) -> tuple[dict[str, int], int, int]:
    """Everything a refused call must leave as it was: balances, transactions, postings."""
    with database.read() as session:
        txns = session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0
        postings = session.scalar(select(func.count()).select_from(Posting)) or 0
    return _balances(database), txns, postings


def _refused(database: Database, code: ErrorCode, call: Callable[[], Any]) -> CardsvcError:
    before = _state(database)
    with pytest.raises(CardsvcError) as caught:
        call()
    assert caught.value.code == code, caught.value
    assert _state(database) == before
    return caught.value


def _problems(database: Database) -> list[tuple[str, str]]:
    with database.read() as session:
        return [(problem.kind, problem.subject) for problem in ledger.check_ledger(session)]


# ----- accounts ------------------------------------------------------------------------------


def test_open_agent_accounts_creates_four_accounts_and_platform_accounts(
    database: Database,
) -> None:
    _agents(database, {"A": 500})
    with database.read() as session:
        infos = {kind: ledger.account_info(session, ledger.agent_account("A", kind))
                 for kind in ledger.AGENT_ACCOUNT_KINDS}
        platform = [ledger.account_info(session, ledger.platform_account(kind, "CNY"))
                    for kind in ledger.PLATFORM_ACCOUNT_KINDS]
    assert {kind: info.floor_minor for kind, info in infos.items()} == {
        "available": -500, "escrow": 0, "pending": 0, "withdrawing": 0}
    assert {info.currency for info in infos.values()} == {"CNY"}
    assert {info.agent_id for info in infos.values()} == {"A"}
    assert [info.account_id for info in platform] == [
        "platform:revenue:CNY", "platform:cost_of_goods:CNY", "platform:deposits:CNY",
        "platform:payouts:CNY"]
    assert {info.floor_minor for info in platform} == {None}


def test_open_agent_accounts_again_changes_only_the_credit_limit(database: Database) -> None:
    _agents(database, {"A": 500})
    _fund(database, "A", 70, "fund-1")
    with database.write() as session:
        ids = ledger.open_agent_accounts(session, "A", "CNY", 900, T0_MS + 5)
    with database.read() as session:
        assert ledger.account_info(session, _available("A")).floor_minor == -900
        assert ledger.balance(session, _available("A")) == 70
        assert session.get(Agent, "A").credit_limit_minor == 900  # type: ignore[union-attr]
        count = session.scalar(select(func.count()).select_from(Account)
                               .where(Account.agent_id == "A"))
    assert ids == [ledger.agent_account("A", kind) for kind in ledger.AGENT_ACCOUNT_KINDS]
    assert count == 4


def test_open_agent_accounts_in_another_currency_than_the_agent_is_refused(
    database: Database,
) -> None:
    _agents(database, {"A": 0})

    def call() -> None:
        with database.write() as session:
            ledger.open_agent_accounts(session, "A", "USD", 0, T0_MS)

    _refused(database, ErrorCode.CURRENCY_MISMATCH, call)


def test_open_accounts_of_unknown_agent_is_agent_not_found(database: Database) -> None:
    def call() -> None:
        with database.write() as session:
            ledger.open_agent_accounts(session, "ghost", "CNY", 0, T0_MS)

    _refused(database, ErrorCode.AGENT_NOT_FOUND, call)


def test_set_credit_limit_moves_the_floor_and_the_agent_row_together(database: Database) -> None:
    _agents(database, {"A": 100})
    _post(database, "spend", [Leg(_available("A"), -100), Leg(REVENUE, 100)])
    with database.write() as session:
        ledger.set_credit_limit(session, "A", 40)  # below what A already uses: allowed
    with database.read() as session:
        assert ledger.account_info(session, _available("A")).floor_minor == -40
        assert session.get(Agent, "A").credit_limit_minor == 40  # type: ignore[union-attr]
        over = ledger.over_limit_accounts(session)
    assert [(info.account_id, info.balance_minor) for info in over] == [(_available("A"), -100)]
    _refused(database, ErrorCode.INSUFFICIENT_BALANCE,
             lambda: _post(database, "spend-2", [Leg(_available("A"), -1), Leg(REVENUE, 1)]))
    assert _problems(database) == []


@pytest.mark.parametrize(("credit", "code"), [(-1, ErrorCode.INVALID_ARGUMENT),
                                              (1.5, ErrorCode.INVALID_ARGUMENT),
                                              (10**16, ErrorCode.LIMIT_EXCEEDED)])
def test_set_credit_limit_refuses_bad_limits(database: Database, credit: Any,
                                             code: ErrorCode) -> None:
    _agents(database, {"A": 100})

    def call() -> None:
        with database.write() as session:
            ledger.set_credit_limit(session, "A", credit)

    _refused(database, code, call)


# ----- posting -------------------------------------------------------------------------------


def test_post_records_postings_and_moves_cached_balances(database: Database) -> None:
    _agents(database, {"A": 0, "B": 0})
    result = _post(database, "three-way", [Leg(_available("A"), 70), Leg(_available("B"), 30),
                                           Leg(DEPOSITS, -100)])
    assert result.created
    with database.read() as session:
        info = ledger.find_transaction(session, "three-way")
        balances = {account: ledger.balance(session, account)
                    for account in (_available("A"), _available("B"), DEPOSITS)}
        derived = {account: ledger.derived_balance(session, account) for account in balances}
    assert info is not None
    assert info.txn_id == result.txn_id
    assert (info.kind, info.actor, info.currency) == ("test", "tester", "CNY")
    assert info.legs == ((_available("A"), 70), (_available("B"), 30), (DEPOSITS, -100))
    assert balances == derived == {_available("A"): 70, _available("B"): 30, DEPOSITS: -100}
    assert _problems(database) == []


def test_post_retry_with_same_legs_returns_the_first_transaction(database: Database) -> None:
    _agents(database, {"A": 0})
    first = _fund(database, "A", 50, "fund-1")
    before = _state(database)
    again = _post(database, "fund-1", [Leg(DEPOSITS, -50), Leg(_available("A"), 50)],
                  at_ms=T0_MS + 99)
    assert again == ledger.PostResult(first.txn_id, created=False)
    assert _state(database) == before


@pytest.mark.parametrize(("change", "field"), [
    ({"legs": [Leg("agent:A:available", 51), Leg(DEPOSITS, -51)]}, "legs"),
    ({"kind": "other"}, "kind"),
    ({"currency": "USD"}, "currency"),
])
def test_post_retry_with_different_transaction_is_idempotency_key_reused(
    database: Database, change: dict[str, Any], field: str
) -> None:
    _agents(database, {"A": 0})
    _fund(database, "A", 50, "fund-1")
    arguments: dict[str, Any] = {"legs": [Leg(_available("A"), 50), Leg(DEPOSITS, -50)],
                                 "kind": "test", "currency": "CNY", **change}
    error = _refused(database, ErrorCode.IDEMPOTENCY_KEY_REUSED,
                     lambda: _post(database, "fund-1", **arguments))
    assert error.details["field"] == field
    assert error.details["reference"] == "fund-1"


@pytest.mark.parametrize(("legs", "code"), [
    ([], ErrorCode.INVALID_ARGUMENT),
    ([Leg("agent:A:available", 0), Leg(DEPOSITS, 0)], ErrorCode.INVALID_ARGUMENT),
    ([Leg("agent:A:available", 1.5), Leg(DEPOSITS, -1.5)], ErrorCode.INVALID_ARGUMENT),
    ([Leg("agent:A:available", True), Leg(DEPOSITS, -1)], ErrorCode.INVALID_ARGUMENT),
    ([Leg("agent:A:available", 10), Leg(DEPOSITS, -9)], ErrorCode.INVALID_ARGUMENT),
    ([Leg("agent:A:available", 10), Leg("agent:A:available", -10)], ErrorCode.INVALID_ARGUMENT),
    ([Leg("agent:A:available", 10**16), Leg(DEPOSITS, -(10**16))], ErrorCode.LIMIT_EXCEEDED),
    ([Leg(f"x{i}", 1 if i % 2 else -1) for i in range(66)], ErrorCode.LIMIT_EXCEEDED),
])
def test_post_refuses_malformed_legs_and_changes_nothing(
    database: Database, legs: list[Leg], code: ErrorCode
) -> None:
    _agents(database, {"A": 0})
    _refused(database, code, lambda: _post(database, "bad", legs))


@pytest.mark.parametrize(("arguments", "code"), [
    ({"reference": ""}, ErrorCode.INVALID_ARGUMENT),
    ({"reference": "r" * 257}, ErrorCode.LIMIT_EXCEEDED),
    ({"kind": ""}, ErrorCode.INVALID_ARGUMENT),
    ({"currency": "cny"}, ErrorCode.INVALID_ARGUMENT),
    ({"currency": "CNYX"}, ErrorCode.INVALID_ARGUMENT),
    ({"now_ms": -1}, ErrorCode.INVALID_ARGUMENT),
])
def test_post_refuses_malformed_fields(
    database: Database, arguments: dict[str, Any], code: ErrorCode
) -> None:
    _agents(database, {"A": 0})
    full = {"reference": "r", "kind": "test", "actor": "tester", "currency": "CNY",
            "legs": [Leg(_available("A"), 5), Leg(DEPOSITS, -5)], "details": {},
            "now_ms": T0_MS, **arguments}

    def call() -> None:
        with database.write() as session:
            ledger.post(session, **full)

    _refused(database, code, call)


def test_post_to_unknown_account_is_account_not_found(database: Database) -> None:
    _agents(database, {"A": 0})
    error = _refused(database, ErrorCode.ACCOUNT_NOT_FOUND,
                     lambda: _post(database, "r", [Leg(_available("A"), 5),
                                                   Leg("platform:deposits:USD", -5)]))
    assert error.details == {"account_id": "platform:deposits:USD"}


def test_post_to_account_in_another_currency_is_currency_mismatch(database: Database) -> None:
    _agents(database, {"A": 0})
    _agents(database, {"U": 0}, currency="USD")
    error = _refused(database, ErrorCode.CURRENCY_MISMATCH,
                     lambda: _post(database, "r", [Leg(_available("A"), 5),
                                                   Leg(_available("U"), -5)]))
    assert error.details["account_id"] == _available("U")
    assert error.details["account_currency"] == "USD"


def test_debit_within_credit_succeeds_and_one_more_unit_is_insufficient_balance(
    database: Database,
) -> None:
    _agents(database, {"A": 500})
    _fund(database, "A", 100, "fund-1")
    _post(database, "spend-1", [Leg(_available("A"), -600), Leg(REVENUE, 600)])
    error = _refused(database, ErrorCode.INSUFFICIENT_BALANCE,
                     lambda: _post(database, "spend-2", [Leg(_available("A"), -1),
                                                         Leg(REVENUE, 1)]))
    assert error.details == {"account_id": _available("A"), "agent_id": "A",
                             "available_minor": 0, "needed_minor": 1, "currency": "CNY"}
    assert _balances(database)[_available("A")] == -500


def test_floor_zero_accounts_refuse_any_overdraft(database: Database) -> None:
    _agents(database, {"A": 1000})
    escrow = ledger.agent_account("A", "escrow")
    error = _refused(database, ErrorCode.INSUFFICIENT_BALANCE,
                     lambda: _post(database, "r", [Leg(escrow, -1), Leg(_available("A"), 1)]))
    assert error.details["available_minor"] == 0


def test_leg_floor_is_stricter_than_the_account_floor(database: Database) -> None:
    _agents(database, {"A": 1000})
    _fund(database, "A", 100, "fund-1")
    withdrawing = ledger.agent_account("A", "withdrawing")
    error = _refused(database, ErrorCode.INSUFFICIENT_BALANCE, lambda: _post(
        database, "w", [Leg(_available("A"), -101, floor_minor=0), Leg(withdrawing, 101)]))
    assert error.details["available_minor"] == 100
    _post(database, "w", [Leg(_available("A"), -100, floor_minor=0), Leg(withdrawing, 100)])
    assert _balances(database)[_available("A")] == 0


def test_forced_leg_may_cross_the_available_floor_and_is_listed_as_over_limit(
    database: Database,
) -> None:
    _agents(database, {"A": 10})
    _post(database, "clawback", [Leg(_available("A"), -25, force=True), Leg(REVENUE, 25)])
    with database.read() as session:
        over = ledger.over_limit_accounts(session)
    assert [(info.account_id, info.balance_minor, info.floor_minor) for info in over] == [
        (_available("A"), -25, -10)]
    assert _problems(database) == []


def test_credit_to_an_account_below_its_floor_is_always_allowed(database: Database) -> None:
    _agents(database, {"A": 0})
    _post(database, "clawback", [Leg(_available("A"), -25, force=True), Leg(REVENUE, 25)])
    _fund(database, "A", 5, "fund-1")
    assert _balances(database)[_available("A")] == -20


# ----- concurrency ---------------------------------------------------------------------------


def test_posts_in_a_batch_are_decided_as_one_by_one_and_written_together(
    database: Database,
) -> None:
    # The same posts into a PostingBatch and alone, over two agents with equal funds: the same
    # results in the same order (a floor reached mid-batch, a reference repeated inside the
    # batch and one reused for other legs), then the same balances; refusals wrote nothing.
    _agents(database, {"P": 0, "Q": 0})
    _fund(database, "P", 500, "seed-P")
    _fund(database, "Q", 500, "seed-Q")

    def posts(agent_id: str) -> list[tuple[str, list[Leg]]]:
        out = [(f"{agent_id}-{n}", [Leg(_available(agent_id), -150),
                                    Leg(ledger.agent_account(agent_id, "escrow"), 150)])
               for n in range(4)]
        out.insert(2, out[0])  # the first again: a retry inside the batch
        out.insert(3, (out[0][0], [Leg(_available(agent_id), -1),
                                   Leg(ledger.agent_account(agent_id, "escrow"), 1)]))
        return out

    def outcome(call: Callable[[], ledger.PostResult]) -> object:
        try:
            return call().created
        except CardsvcError as error:
            return error.code

    with database.write() as session:
        batch = ledger.PostingBatch(session, [_available("P"), ledger.agent_account("P", "escrow")])
        batched = [outcome(lambda ref=ref, legs=legs: ledger.post(
            session, reference=ref, kind="test", actor="tester", currency="CNY", legs=legs,
            details={}, now_ms=T0_MS, batch=batch)) for ref, legs in posts("P")]
        batch.write()
    alone = [outcome(lambda ref=ref, legs=legs: _post(database, ref, legs))
             for ref, legs in posts("Q")]
    assert batched == alone == [True, True, False, ErrorCode.IDEMPOTENCY_KEY_REUSED, True,
                                ErrorCode.INSUFFICIENT_BALANCE]
    balances = _balances(database)
    assert balances[_available("P")] == balances[_available("Q")] == 50
    assert balances[ledger.agent_account("P", "escrow")] == 450
    with database.read() as session:
        assert ledger.check_ledger(session) == []


def _race(count: int, work: Callable[[int], None]) -> list[BaseException | None]:
    """Runs ``work(i)`` on ``count`` threads released together; returns each one's exception."""
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


def test_concurrent_debits_of_one_balance_never_overspend(database: Database) -> None:
    _agents(database, {"A": 30})
    _fund(database, "A", 70, "fund-1")  # 100 spendable: 10 debits of 10 out of 16

    def spend(index: int) -> None:
        _post(database, f"spend-{index}", [Leg(_available("A"), -10), Leg(REVENUE, 10)])

    outcomes = _race(16, spend)
    refused = [exc for exc in outcomes if exc is not None]
    assert all(isinstance(exc, CardsvcError) and exc.code == ErrorCode.INSUFFICIENT_BALANCE
               for exc in refused), refused
    assert len(refused) == 6
    assert _balances(database)[_available("A")] == -30
    assert _problems(database) == []


def test_concurrent_transfers_in_both_directions_keep_balances_equal_to_postings(
    database: Database,
) -> None:
    _agents(database, {"A": 0, "B": 0})
    _fund(database, "A", 500, "fund-a")
    _fund(database, "B", 500, "fund-b")

    def transfer(index: int) -> None:
        source, target = ("A", "B") if index % 2 else ("B", "A")
        for step in range(5):
            _post(database, f"t-{index}-{step}", [Leg(_available(target), 7),
                                                 Leg(_available(source), -7)])

    outcomes = _race(12, transfer)
    assert outcomes == [None] * 12
    balances = _balances(database)
    assert balances[_available("A")] + balances[_available("B")] == 1000
    assert balances[_available("A")] == 500  # six threads each way, the same amounts
    assert _problems(database) == []


# ----- check_ledger --------------------------------------------------------------------------


def _tamper(database: Database, statement: Any) -> None:
    with database.write() as session:
        session.execute(statement)


def _seeded(database: Database) -> str:
    _agents(database, {"A": 0})
    return _fund(database, "A", 100, "fund-1").txn_id


def test_check_ledger_is_empty_for_an_honest_ledger(database: Database) -> None:
    _seeded(database)
    assert _problems(database) == []


def test_check_ledger_detects_a_tampered_posting(database: Database) -> None:
    txn_id = _seeded(database)
    _tamper(database, update(Posting).where(Posting.txn_id == txn_id,
                                            Posting.account_id == _available("A"))
            .values(amount_minor=1000))
    assert _problems(database) == [("unbalanced_transaction", txn_id),
                                   ("cached_balance_mismatch", _available("A"))]


def test_check_ledger_detects_a_tampered_cached_balance(database: Database) -> None:
    _seeded(database)
    _tamper(database, update(Account).where(Account.account_id == _available("A"))
            .values(balance_minor=1_000_000))
    with database.read() as session:
        problems = ledger.check_ledger(session)
    assert [problem.to_dict() for problem in problems] == [{
        "kind": "cached_balance_mismatch", "subject": _available("A"),
        "details": {"cached_minor": 1_000_000, "derived_minor": 100}}]


def test_check_ledger_detects_an_unbalanced_transaction_inserted_behind_its_back(
    database: Database,
) -> None:
    _seeded(database)
    with database.write() as session:
        session.execute(insert(LedgerTransaction).values(
            txn_id="txn_forged", reference="forged", kind="test", actor="mallory", details={},
            created_at_ms=T0_MS))
        session.execute(insert(Posting).values(
            txn_id="txn_forged", account_id=_available("A"), amount_minor=10**6,
            currency="CNY", created_at_ms=T0_MS))
        session.execute(update(Account).where(Account.account_id == _available("A"))
                        .values(balance_minor=Account.balance_minor + 10**6))
    assert _problems(database) == [("unbalanced_transaction", "txn_forged")]


def test_check_ledger_detects_empty_and_wrong_currency_postings(database: Database) -> None:
    txn_id = _seeded(database)
    with database.write() as session:
        session.execute(insert(LedgerTransaction).values(
            txn_id="txn_empty", reference="empty", kind="test", actor="mallory", details={},
            created_at_ms=T0_MS))
        session.execute(update(Posting).where(Posting.txn_id == txn_id).values(currency="USD"))
    assert sorted(_problems(database)) == [
        ("empty_transaction", "txn_empty"),
        ("posting_currency_mismatch", _available("A")),
        ("posting_currency_mismatch", DEPOSITS),
    ]


def test_check_ledger_detects_a_hard_floor_account_below_zero(database: Database) -> None:
    _seeded(database)
    escrow = ledger.agent_account("A", "escrow")
    with database.write() as session:  # balanced and cached = derived: only the floor is wrong
        session.execute(insert(LedgerTransaction).values(
            txn_id="txn_overdraft", reference="overdraft", kind="test", actor="mallory",
            details={}, created_at_ms=T0_MS))
        for account_id, amount in ((escrow, -5), (_available("A"), 5)):
            session.execute(insert(Posting).values(
                txn_id="txn_overdraft", account_id=account_id, amount_minor=amount,
                currency="CNY", created_at_ms=T0_MS))
            session.execute(update(Account).where(Account.account_id == account_id)
                            .values(balance_minor=Account.balance_minor + amount))
    assert _problems(database) == [("below_floor", escrow)]


def test_check_ledger_reports_at_most_limit_problems_per_check(database: Database) -> None:
    _seeded(database)
    for index in range(5):
        _fund(database, "A", 1, f"more-{index}")
    _tamper(database, update(Posting).where(Posting.account_id == DEPOSITS)
            .values(amount_minor=-1000))
    with database.read() as session:
        problems = ledger.check_ledger(session, limit=2)
    assert [problem.kind for problem in problems] == [
        "unbalanced_transaction", "unbalanced_transaction", "cached_balance_mismatch"]


# ----- statements ----------------------------------------------------------------------------

DAY_MS = 86_400_000


def _history(database: Database) -> None:
    """Agent A: +100 on day 0, -30 and +5 on day 1, +40 on day 2 (two postings at one time)."""
    _agents(database, {"A": 0})
    _fund(database, "A", 100, "d0", at_ms=T0_MS)
    _post(database, "d1-spend", [Leg(_available("A"), -30), Leg(REVENUE, 30)],
          kind="order_debit", at_ms=T0_MS + DAY_MS)
    _fund(database, "A", 5, "=d1-formula", at_ms=T0_MS + DAY_MS)
    _fund(database, "A", 40, "d2", at_ms=T0_MS + 2 * DAY_MS + 1)


def test_statement_ties_opening_entries_and_closing_across_periods(database: Database) -> None:
    _history(database)
    periods = [(T0_MS + day * DAY_MS, T0_MS + (day + 1) * DAY_MS) for day in range(4)]
    with database.read() as session:
        stmts = [statements.statement(session, _available("A"), since, until)
                 for since, until in periods]
        entries = [list(stmt.entries) for stmt in stmts]
    assert [(stmt.opening_minor, stmt.closing_minor) for stmt in stmts] == [
        (0, 100), (100, 75), (75, 115), (115, 115)]
    assert [[(entry.reference, entry.amount_minor, entry.balance_after_minor)
             for entry in day] for day in entries] == [
        [("d0", 100, 100)],
        [("d1-spend", -30, 70), ("=d1-formula", 5, 75)],
        [("d2", 40, 115)],
        [],
    ]
    assert entries[1][0].kind == "order_debit"
    for stmt, day in zip(stmts, entries, strict=True):
        assert stmt.closing_minor == stmt.opening_minor + sum(e.amount_minor for e in day)


def test_statement_streams_in_pages_and_pages_resume_from_a_cursor(database: Database) -> None:
    _agents(database, {"A": 0})
    for index in range(7):
        _fund(database, "A", index + 1, f"f{index}", at_ms=T0_MS + index // 2)
    with database.read() as session:
        streamed = list(statements.statement(session, _available("A"), T0_MS, T0_MS + 10,
                                         page_size=3).entries)
        paged: list[ledger.StatementEntry] = []
        after: tuple[int, int] | None = None
        while True:
            page = statements.statement_page(session, _available("A"), T0_MS, T0_MS + 10,
                                         after=after, limit=2)
            paged += page.entries
            if page.next_after is None:
                break
            after = page.next_after
    assert [entry.balance_after_minor for entry in streamed] == [1, 3, 6, 10, 15, 21, 28]
    assert paged == streamed


def test_statement_csv_has_opening_entries_closing_and_defuses_formulas(
    database: Database,
) -> None:
    _history(database)
    out = io.StringIO()
    with database.read() as session:
        stmt = statements.statement(session, _available("A"), T0_MS + DAY_MS, T0_MS + 2 * DAY_MS)
        rows_written = statements.write_statement_csv(stmt, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows_written == len(rows) + 1 == 5
    assert [(row["row"], row["reference"], row["amount_minor"], row["balance_after_minor"])
            for row in rows] == [
        ("opening", "", "", "100"),
        ("entry", "d1-spend", "-30", "70"),
        ("entry", "'=d1-formula", "5", "75"),
        ("closing", "", "", "75"),
    ]
    assert rows[0]["at"] == "2023-11-15T22:13:20.000Z"


def test_statement_refuses_a_period_that_ends_before_it_starts(database: Database) -> None:
    _history(database)
    with database.read() as session, pytest.raises(CardsvcError) as caught:
        statements.statement(session, _available("A"), T0_MS + 1, T0_MS)
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT


def test_statement_of_unknown_account_is_account_not_found(database: Database) -> None:
    with database.read() as session, pytest.raises(CardsvcError) as caught:
        statements.statement(session, "agent:ghost:available", T0_MS, T0_MS + 1)
    assert caught.value.code == ErrorCode.ACCOUNT_NOT_FOUND
