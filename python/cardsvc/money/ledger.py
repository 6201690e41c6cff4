"""The double-entry ledger: accounts, immutable transactions whose postings sum to
zero, balances derived from postings, and floors that no spending can cross.

Every function takes an open ``Session`` whose transaction the caller owns (``Database.write()``
to change, ``Database.read()`` to look); none commits. docs/money.md describes the accounts, the
flows built on this mechanism (``cardsvc.money.settlement``) and every posting they make.

Accounts (ids are stable text; an account's currency never changes):

* ``agent:<agent_id>:available`` (floor ``-credit_limit``), ``agent:<agent_id>:escrow``,
  ``agent:<agent_id>:pending`` and ``agent:<agent_id>:withdrawing`` (floor 0), all in the agent's
  one currency;
* ``platform:revenue:<CUR>``, ``platform:cost_of_goods:<CUR>``, ``platform:deposits:<CUR>`` and
  ``platform:payouts:<CUR>``, one set per currency, unbounded (floor None).

Sign convention (cardsvc.money.tables): a posting's ``amount_minor`` is added to its account's
balance and a transaction's postings sum to zero. ``accounts.balance_minor`` caches the sum of
the account's postings and is changed only by :func:`post`, in the same transaction as the
postings; :func:`check_ledger` proves cached = derived.

Concurrency: :func:`post` locks the accounts it touches before it reads their balances
(PostgreSQL: ``SELECT ... FOR UPDATE`` in account id order, so two transactions never wait for
each other in a cycle; SQLite: the database's single writer). Two transactions spending one
balance therefore take turns, and the second sees what the first left.

Writes go through SQLAlchemy Core (bulk inserts, one UPDATE per touched account in one
executemany): an ``Account`` ORM object loaded earlier in the same session does not see them;
read balances with :func:`balance`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.agents.tables import Agent
from cardsvc.checks import MONEY_MINOR_MAX, check_amount, check_currency, check_text
from cardsvc.db.base import ID_LEN_MAX
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.money.tables import Account, LedgerTransaction, Posting

AGENT_ACCOUNT_KINDS = ("available", "escrow", "pending", "withdrawing")
"""An agent's accounts: spendable money, orders in flight, commissions cooling, withdrawals
waiting for finance."""
HARD_FLOOR_KINDS = ("escrow", "pending", "withdrawing")
"""Kinds whose floor (0) nothing may ever cross, not even a refund's clawback: a balance below it
means the ledger is wrong. ``available`` may end below its floor through a clawback or a credit
cut (docs/money.md), which :func:`over_limit_accounts` lists."""
PLATFORM_ACCOUNT_KINDS = ("revenue", "cost_of_goods", "deposits", "payouts")
"""The platform's side, one set per currency: its margin, what the goods cost, cash received
from agents (negative: money in), cash paid out to agents (positive: money out)."""

LEGS_MAX = 64
"""Postings per transaction: a settlement has one per ancestor in the agent chain plus three."""
REFERENCE_LEN_MAX = 256
"""``ledger_transactions.reference`` is String(256): a prefix plus a client key of up to 128."""
KIND_LEN_MAX = 32
PAGE_SIZE_MAX = 1000
"""Statement entries one query reads at most (~200 bytes each in memory)."""
PROBLEMS_MAX = 100
"""Problems :func:`check_ledger` reports per check: enough to diagnose, bounded in memory."""

_ACCOUNTS = cast(Table, Account.__table__)
TXNS = cast(Table, LedgerTransaction.__table__)
POSTINGS = cast(Table, Posting.__table__)
# The order path runs these thousands of times a second: built once, executed on the session's
# connection (Core, no ORM bookkeeping), with lists of parameters where there are several rows.
_UPDATE_BALANCE = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.account_id == bindparam("b_account_id"))
    .values(balance_minor=_ACCOUNTS.c.balance_minor + bindparam("b_delta"))
)
_LOCK_ACCOUNTS: dict[int, Select[Any]] = {}
"""SELECT ... FOR UPDATE of n accounts (n <= LEGS_MAX), one statement per n with plain
parameters ``b_0``... (an expanding IN would be re-rendered on every call)."""
_FIND_TRANSACTION = (
    select(TXNS.c.txn_id, TXNS.c.kind, TXNS.c.actor, TXNS.c.details, TXNS.c.created_at_ms,
           POSTINGS.c.account_id, POSTINGS.c.amount_minor, POSTINGS.c.currency)
    .select_from(TXNS.outerjoin(POSTINGS, POSTINGS.c.txn_id == TXNS.c.txn_id))
    .where(TXNS.c.reference == bindparam("b_reference"))
    .order_by(POSTINGS.c.account_id)
)
_FIND_TRANSACTIONS = (
    select(TXNS.c.reference, TXNS.c.txn_id, TXNS.c.kind, TXNS.c.actor, TXNS.c.details,
           TXNS.c.created_at_ms, POSTINGS.c.account_id, POSTINGS.c.amount_minor,
           POSTINGS.c.currency)
    .select_from(TXNS.outerjoin(POSTINGS, POSTINGS.c.txn_id == TXNS.c.txn_id))
    .where(TXNS.c.reference.in_(bindparam("b_references", expanding=True)))
    .order_by(TXNS.c.reference, POSTINGS.c.account_id)
)
_INSERT_TRANSACTION = insert(TXNS)
_INSERT_POSTINGS = insert(POSTINGS)


# ----- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting of a transaction about to be made: ``amount_minor`` (non-zero) is added to
    ``account_id``'s balance.

    A debit (negative amount) may not take the balance below the account's floor. ``floor_minor``
    raises that floor for this posting only (a withdrawal may not spend credit: 0); ``force``
    skips the floor check (a refund's clawback of a commission already released). Neither is
    stored or compared by idempotent retries."""

    account_id: str
    amount_minor: int
    floor_minor: int | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class PostResult:
    """The transaction of a reference, and whether this call created it (False: a retry)."""

    txn_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An account as stored; ``balance_minor`` is the cached balance."""

    account_id: str
    kind: str
    agent_id: str | None
    currency: str
    floor_minor: int | None
    balance_minor: int


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    """A stored transaction with its postings ``(account_id, amount_minor)`` in account order."""

    txn_id: str
    reference: str
    kind: str
    actor: str
    currency: str
    created_at_ms: int
    details: dict[str, Any]
    legs: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One inconsistency found by a check: what kind, which transaction or account, the
    numbers."""

    kind: str
    subject: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-safe data (for reports and the API)."""
        return {"kind": self.kind, "subject": self.subject, "details": self.details}


# ----- account ids ---------------------------------------------------------------------------


def agent_account(agent_id: str, kind: str) -> str:
    """``agent:<agent_id>:<kind>`` for a kind in AGENT_ACCOUNT_KINDS. Pure. Raises
    INVALID_ARGUMENT for another kind."""
    if kind not in AGENT_ACCOUNT_KINDS:
        raise invalid("kind", f"an agent account kind is one of {AGENT_ACCOUNT_KINDS}")
    return f"agent:{agent_id}:{kind}"


def platform_account(kind: str, currency: str) -> str:
    """``platform:<kind>:<currency>`` for a kind in PLATFORM_ACCOUNT_KINDS. Pure. Raises
    INVALID_ARGUMENT for another kind or a currency that is not three capital letters."""
    if kind not in PLATFORM_ACCOUNT_KINDS:
        raise invalid("kind", f"a platform account kind is one of {PLATFORM_ACCOUNT_KINDS}")
    check_currency("currency", currency)
    return f"platform:{kind}:{currency}"


# ----- opening accounts ----------------------------------------------------------------------


def ensure_platform_accounts(session: Session, currency: str, now_ms: int) -> list[str]:
    """The platform's accounts in ``currency``, created when missing (idempotent, safe when two
    transactions do it at once). Returns their ids. Raises INVALID_ARGUMENT for a bad currency.
    """
    check_currency("currency", currency)
    rows = [
        {"account_id": platform_account(kind, currency), "kind": kind, "agent_id": None,
         "currency": currency, "floor_minor": None, "balance_minor": 0, "created_at_ms": now_ms}
        for kind in PLATFORM_ACCOUNT_KINDS
    ]
    _insert_missing(session, rows)
    return [platform_account(kind, currency) for kind in PLATFORM_ACCOUNT_KINDS]


def open_agent_accounts(
    session: Session, agent_id: str, currency: str, credit_limit_minor: int, now_ms: int
) -> list[str]:
    """The agent's four accounts in ``currency`` (and the platform's in that currency), created
    when missing, with the available floor at ``-credit_limit_minor``. Idempotent; called again it
    sets the credit limit as :func:`set_credit_limit`. Returns the agent's account ids.

    Preconditions: the agent row exists with this currency (an agent has one currency). Effects:
    inserts the missing accounts; sets ``agents.credit_limit_minor`` and the available floor.
    Raises AGENT_NOT_FOUND, CURRENCY_MISMATCH (the agent or its existing accounts have another
    currency), INVALID_ARGUMENT (bad currency, negative limit), LIMIT_EXCEEDED.
    """
    check_currency("currency", currency)
    check_amount("credit_limit_minor", credit_limit_minor, positive=False)
    agent = _require_agent(session, agent_id)
    if agent.currency != currency:
        raise _currency_mismatch(f"agent:{agent_id}", agent.currency, currency)
    ensure_platform_accounts(session, currency, now_ms)
    ids = [agent_account(agent_id, kind) for kind in AGENT_ACCOUNT_KINDS]
    _insert_missing(session, [
        {"account_id": account_id, "kind": kind, "agent_id": agent_id, "currency": currency,
         "floor_minor": -credit_limit_minor if kind == "available" else 0, "balance_minor": 0,
         "created_at_ms": now_ms}
        for account_id, kind in zip(ids, AGENT_ACCOUNT_KINDS, strict=True)
    ])
    for info in lock_accounts(session, ids).values():
        if info.currency != currency:
            raise _currency_mismatch(info.account_id, info.currency, currency)
    set_credit_limit(session, agent_id, credit_limit_minor)
    return ids


def set_credit_limit(session: Session, agent_id: str, credit_limit_minor: int) -> None:
    """Sets how far the agent's available balance may go below zero: ``agents.credit_limit_minor``
    and the available account's floor, together. Lowering it below what the agent already uses
    is allowed (the agent can then spend nothing until its balance is back above the floor).

    Locks the available account first, so a concurrent debit sees either the old floor or the
    new one, never a mix. Not audited here: the caller (an admin action) audits it. Raises
    AGENT_NOT_FOUND, ACCOUNT_NOT_FOUND (accounts never opened), INVALID_ARGUMENT (negative or not
    an integer), LIMIT_EXCEEDED.
    """
    check_amount("credit_limit_minor", credit_limit_minor, positive=False)
    agent = _require_agent(session, agent_id)
    available = agent_account(agent_id, "available")
    if available not in lock_accounts(session, [available]):
        raise _account_not_found(available)
    session.execute(update(_ACCOUNTS).where(_ACCOUNTS.c.account_id == available)
                    .values(floor_minor=-credit_limit_minor))
    agent.credit_limit_minor = credit_limit_minor


def lock_accounts(session: Session, account_ids: Iterable[str]) -> dict[str, AccountInfo]:
    """The named accounts that exist, locked until the transaction ends (PostgreSQL: ``FOR
    UPDATE`` in account id order; SQLite: the writer already excludes all others). Lock every
    account a multi-step transaction will touch up front, in one call, to keep lock order global.
    """
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    if len(ids) > LEGS_MAX:  # a batch: one expanding IN, rendered per call
        rows = session.connection().execute(_LOCK_MANY, {"b_ids": ids})
    else:
        statement = _LOCK_ACCOUNTS.get(len(ids))
        if statement is None:
            statement = _LOCK_ACCOUNTS.setdefault(len(ids), _lock_statement(len(ids)))
        rows = session.connection().execute(
            statement, {f"b_{index}": account_id for index, account_id in enumerate(ids)})
    return {row.account_id: _account_info(row) for row in rows}


def _lock_statement(count: int | None) -> Select[Any]:
    """The lock query for ``count`` ids (None: any number, as the expanding ``b_ids``)."""
    a = _ACCOUNTS.c
    ids = (bindparam("b_ids", expanding=True) if count is None
           else [bindparam(f"b_{index}") for index in range(count)])
    return (select(a.account_id, a.kind, a.agent_id, a.currency, a.floor_minor, a.balance_minor)
            .where(a.account_id.in_(ids))
            .order_by(a.account_id)
            .with_for_update())


_LOCK_MANY = _lock_statement(None)


# ----- posting -------------------------------------------------------------------------------


class PostingBatch:
    """Several transactions of one SQL transaction, decided one by one against balances read
    once and written together: :func:`post` with ``batch=`` plans each transaction here (the
    same checks and floors as alone, against the balances the transactions before it in the
    batch left) and queues its rows; :meth:`write` inserts every transaction and posting and
    updates every touched balance with one statement each (executemany). A refused post queues
    nothing, so the others still write.

    Opening the batch locks ``account_ids`` (one ``lock_accounts`` call, in id order) and looks
    up ``references`` in one query; accounts and references named later are locked or looked up
    when first posted to. Until :meth:`write`, the queued rows are only here: call it before
    the transaction reads balances, transactions or postings in any other way."""

    def __init__(self, session: Session, account_ids: Iterable[str],
                 references: Iterable[str] = ()) -> None:
        self.session = session
        self.accounts: dict[str, AccountInfo] = lock_accounts(session, account_ids)
        """The locked accounts, their balances including what the batch has queued."""
        self._known: dict[str, TransactionInfo | None] = find_transactions(session, references)
        self._txns: list[dict[str, Any]] = []
        self._postings: list[dict[str, Any]] = []
        self._deltas: dict[str, int] = {}

    def lock(self, account_ids: Iterable[str]) -> None:
        """Locks the named accounts the batch has not locked yet (their balances read now)."""
        missing = [account_id for account_id in account_ids if account_id not in self.accounts]
        if missing:
            for account_id, info in lock_accounts(self.session, missing).items():
                self.accounts.setdefault(account_id, info)

    def existing(self, reference: str) -> TransactionInfo | None:
        """The transaction ``reference`` names: stored, or queued in this batch."""
        if reference not in self._known:
            self._known[reference] = find_transaction(self.session, reference)
        return self._known[reference]

    def add(self, reference: str, kind: str, actor: str, currency: str, legs: Sequence[Leg],
            details: dict[str, Any], now_ms: int) -> str:
        """Queues a checked transaction and applies its legs to the balances; its id."""
        txn_id = "txn_" + secrets.token_hex(12)
        self._txns.append({"txn_id": txn_id, "reference": reference, "kind": kind,
                           "actor": actor, "details": details, "created_at_ms": now_ms})
        for leg in legs:
            self._postings.append({"txn_id": txn_id, "account_id": leg.account_id,
                                   "amount_minor": leg.amount_minor, "currency": currency,
                                   "created_at_ms": now_ms})
            self._deltas[leg.account_id] = self._deltas.get(leg.account_id, 0) + leg.amount_minor
            info = self.accounts[leg.account_id]
            self.accounts[leg.account_id] = AccountInfo(
                info.account_id, info.kind, info.agent_id, info.currency, info.floor_minor,
                info.balance_minor + leg.amount_minor)
        self._known[reference] = TransactionInfo(
            txn_id=txn_id, reference=reference, kind=kind, actor=actor, currency=currency,
            created_at_ms=now_ms, details=dict(details),
            legs=tuple(sorted((leg.account_id, leg.amount_minor) for leg in legs)))
        return txn_id

    def write(self) -> None:
        """Writes what is queued: the transactions, their postings, the balances (each touched
        account once). Nothing queued: no statement."""
        if not self._txns:
            return
        connection = self.session.connection()
        connection.execute(_INSERT_TRANSACTION, self._txns)
        connection.execute(_INSERT_POSTINGS, self._postings)
        connection.execute(_UPDATE_BALANCE, [
            {"b_account_id": account_id, "b_delta": delta}
            for account_id, delta in sorted(self._deltas.items()) if delta])
        self._txns, self._postings, self._deltas = [], [], {}


def post(
    session: Session,
    *,
    reference: str,
    kind: str,
    actor: str,
    currency: str,
    legs: Sequence[Leg],
    details: dict[str, Any],
    now_ms: int,
    under_lock: Callable[[], None] | None = None,
    batch: PostingBatch | None = None,
) -> PostResult:
    """Records one immutable transaction, or finds the one ``reference`` already names.

    Checks, in this order of precedence: the arguments (INVALID_ARGUMENT: empty or overlong
    text, a bad currency, no legs, a zero or non-integer amount, an account twice, legs that do
    not sum to zero; LIMIT_EXCEEDED: over LEGS_MAX legs or an amount over MONEY_MINOR_MAX);
    then the reference: taken by the same kind, currency and legs returns that transaction with
    ``created`` False, taken by anything else raises IDEMPOTENCY_KEY_REUSED (details ``field``:
    ``kind``, ``currency`` or ``legs``); then CURRENCY_MISMATCH (an account in another currency,
    details ``account_currency``), ACCOUNT_NOT_FOUND, and INSUFFICIENT_BALANCE (details
    ``account_id``, ``agent_id``, ``available_minor`` = balance - floor, ``needed_minor``,
    ``currency``) when a debit would take an account below its floor (see :class:`Leg`).

    ``under_lock``, if given, runs once the accounts are locked and before the reference is
    looked up: a precondition on other state that must hold while the balances cannot move
    (a settlement checks its order was not released); whatever it raises propagates.

    Effects: locks the touched accounts (module doc), inserts the transaction and its postings,
    adds each amount to its account's cached balance. An error changes nothing. On PostgreSQL, a
    concurrent transaction committing the same reference over other accounts makes this insert
    fail with IntegrityError (the whole transaction rolls back; a retry then finds it).

    ``batch``: decided against the batch's balances and queued there instead of written now
    (:class:`PostingBatch`; the same checks, in the same order).
    """
    _check_post_args(reference, kind, actor, currency, legs, now_ms)
    alone = batch is None
    if batch is None:
        batch = PostingBatch(session, (leg.account_id for leg in legs))
    else:
        batch.lock(leg.account_id for leg in legs)
    if under_lock is not None:
        under_lock()
    existing = batch.existing(reference)
    if existing is not None:
        _require_same(existing, kind, currency, legs)
        return PostResult(existing.txn_id, created=False)
    _check_accounts(batch.accounts, legs, currency)
    txn_id = batch.add(reference, kind, actor, currency, legs, details, now_ms)
    if alone:
        batch.write()
    return PostResult(txn_id, created=True)


def find_transaction(session: Session, reference: str) -> TransactionInfo | None:
    """The transaction recorded under ``reference``, with its postings; None if there is none.
    Reads only."""
    rows = session.connection().execute(_FIND_TRANSACTION, {"b_reference": reference}).all()
    return _transaction_info(reference, rows) if rows else None


def find_transactions(session: Session,
                      references: Iterable[str]) -> dict[str, TransactionInfo | None]:
    """:func:`find_transaction` of each reference, in one query. Reads only."""
    wanted = sorted(set(references))
    found: dict[str, TransactionInfo | None] = dict.fromkeys(wanted)
    if not wanted:
        return found
    rows: dict[str, list[Any]] = {}
    for row in session.connection().execute(_FIND_TRANSACTIONS, {"b_references": wanted}):
        rows.setdefault(row.reference, []).append(row)
    for reference, its_rows in rows.items():
        found[reference] = _transaction_info(reference, its_rows)
    return found


def _transaction_info(reference: str, rows: Sequence[Any]) -> TransactionInfo:
    """A transaction from its rows of the transaction-postings join (in account order)."""
    first = rows[0]
    legs = tuple((row.account_id, row.amount_minor) for row in rows if row.account_id is not None)
    return TransactionInfo(
        txn_id=first.txn_id, reference=reference, kind=first.kind, actor=first.actor,
        currency=first.currency or "", created_at_ms=first.created_at_ms,
        details=dict(first.details), legs=legs,
    )


def _check_post_args(
    reference: str, kind: str, actor: str, currency: str, legs: Sequence[Leg], now_ms: int
) -> None:
    check_text("reference", reference, REFERENCE_LEN_MAX)
    check_text("kind", kind, KIND_LEN_MAX)
    check_text("actor", actor, ID_LEN_MAX)
    check_currency("currency", currency)
    if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
        raise invalid("now_ms", "now_ms must be a non-negative integer")
    if not legs:
        raise invalid("legs", "a transaction needs at least one posting")
    if len(legs) > LEGS_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"at most {LEGS_MAX} postings per transaction",
                         {"field": "legs", "max": LEGS_MAX})
    seen: set[str] = set()
    for index, leg in enumerate(legs):
        amount = leg.amount_minor
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise invalid("legs", "every posting's amount is a non-zero integer", index=index)
        if abs(amount) > MONEY_MINOR_MAX:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "a posting's amount is too large",
                             {"field": "legs", "index": index, "max": MONEY_MINOR_MAX})
        if leg.account_id in seen:
            raise invalid("legs", "an account appears twice in one transaction", index=index)
        seen.add(leg.account_id)
    total = sum(leg.amount_minor for leg in legs)
    if total != 0:
        raise make_error(ErrorCode.INVALID_ARGUMENT, "the postings do not sum to zero",
                         {"field": "legs", "sum_minor": total})


def _require_same(
    existing: TransactionInfo, kind: str, currency: str, legs: Sequence[Leg]
) -> None:
    wanted = tuple(sorted((leg.account_id, leg.amount_minor) for leg in legs))
    for field, old, new in (("kind", existing.kind, kind),
                            ("currency", existing.currency, currency),
                            ("legs", existing.legs, wanted)):
        if old != new:
            raise make_error(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "the reference was used for a different transaction",
                {"field": field, "reference": existing.reference, "txn_id": existing.txn_id},
            )


def _check_accounts(accounts: dict[str, AccountInfo], legs: Sequence[Leg], currency: str) -> None:
    """CURRENCY_MISMATCH (an existing account in another currency), then ACCOUNT_NOT_FOUND,
    then INSUFFICIENT_BALANCE, each for the first offending account in id order. The currency
    comes first: a deposit in a currency the agent does not use names the agent's currency,
    instead of the platform account of that currency that was never opened."""
    ordered = sorted(legs, key=lambda leg: leg.account_id)
    for leg in ordered:
        found = accounts.get(leg.account_id)
        if found is not None and found.currency != currency:
            raise _currency_mismatch(found.account_id, found.currency, currency)
    for leg in ordered:
        if leg.account_id not in accounts:
            raise _account_not_found(leg.account_id)
    for leg in ordered:
        if leg.amount_minor >= 0 or leg.force:
            continue
        info = accounts[leg.account_id]
        floor = _effective_floor(info.floor_minor, leg.floor_minor)
        if floor is not None and info.balance_minor + leg.amount_minor < floor:
            raise make_error(
                ErrorCode.INSUFFICIENT_BALANCE,
                "the balance (with credit, where allowed) does not cover this amount",
                {"account_id": info.account_id, "agent_id": info.agent_id,
                 "available_minor": max(info.balance_minor - floor, 0),
                 "needed_minor": -leg.amount_minor, "currency": currency},
            )


def _effective_floor(account_floor: int | None, leg_floor: int | None) -> int | None:
    if leg_floor is None:
        return account_floor
    return leg_floor if account_floor is None else max(account_floor, leg_floor)


# ----- balances and checks -------------------------------------------------------------------


def account_info(session: Session, account_id: str) -> AccountInfo:
    """The account as stored (cached balance). Reads only. Raises ACCOUNT_NOT_FOUND."""
    row = session.execute(
        select(_ACCOUNTS.c.account_id, _ACCOUNTS.c.kind, _ACCOUNTS.c.agent_id,
               _ACCOUNTS.c.currency, _ACCOUNTS.c.floor_minor, _ACCOUNTS.c.balance_minor)
        .where(_ACCOUNTS.c.account_id == account_id)
    ).one_or_none()
    if row is None:
        raise _account_not_found(account_id)
    return _account_info(row)


def balance(session: Session, account_id: str) -> int:
    """The cached balance. Reads only. Raises ACCOUNT_NOT_FOUND."""
    return account_info(session, account_id).balance_minor


def derived_balance(session: Session, account_id: str) -> int:
    """The sum of the account's postings (what the cached balance must equal). Reads only.
    Raises ACCOUNT_NOT_FOUND."""
    account_info(session, account_id)
    total = session.scalar(select(func.coalesce(func.sum(POSTINGS.c.amount_minor), 0))
                           .where(POSTINGS.c.account_id == account_id))
    return int(total or 0)


def agent_balances(session: Session, agent_id: str) -> dict[str, int]:
    """The agent's cached balances by account kind (``available``, ``escrow``, ``pending``,
    ``withdrawing``); an agent without accounts gets an empty dict. Reads only."""
    rows = session.execute(select(_ACCOUNTS.c.kind, _ACCOUNTS.c.balance_minor)
                           .where(_ACCOUNTS.c.agent_id == agent_id))
    return {row.kind: row.balance_minor for row in rows}


def check_ledger(session: Session, *, limit: int = PROBLEMS_MAX) -> list[Problem]:
    """Every inconsistency of the ledger itself, at most ``limit`` per check (empty: consistent):

    * ``unbalanced_transaction``: a transaction whose postings do not sum to zero in a currency;
    * ``empty_transaction``: a transaction without postings;
    * ``posting_currency_mismatch``: a posting in another currency than its account;
    * ``cached_balance_mismatch``: an account whose cached balance is not the sum of its postings;
    * ``below_floor``: an escrow, pending or withdrawing balance below its floor (available
      balances may legitimately end below theirs: :func:`over_limit_accounts`).

    Reads only, with aggregate queries the database streams (memory independent of the number
    of postings). Run it in a read transaction, so every check sees one snapshot.
    """
    return [
        *_unbalanced_problems(session, limit),
        *_empty_transaction_problems(session, limit),
        *_posting_currency_problems(session, limit),
        *_cached_balance_problems(session, limit),
        *_below_floor_problems(session, limit),
    ]


def _unbalanced_problems(session: Session, limit: int) -> list[Problem]:
    p = POSTINGS.c
    total = func.sum(p.amount_minor)
    rows = session.execute(select(p.txn_id, p.currency, total.label("total"))
                           .group_by(p.txn_id, p.currency).having(total != 0)
                           .order_by(p.txn_id).limit(limit))
    return [Problem("unbalanced_transaction", row.txn_id,
                    {"currency": row.currency, "sum_minor": int(row.total)}) for row in rows]


def _empty_transaction_problems(session: Session, limit: int) -> list[Problem]:
    p, t = POSTINGS.c, TXNS.c
    has_postings = select(p.posting_id).where(p.txn_id == t.txn_id).exists()
    rows = session.execute(select(t.txn_id, t.reference).where(~has_postings)
                           .order_by(t.txn_id).limit(limit))
    return [Problem("empty_transaction", row.txn_id, {"reference": row.reference})
            for row in rows]


def _posting_currency_problems(session: Session, limit: int) -> list[Problem]:
    p, a = POSTINGS.c, _ACCOUNTS.c
    rows = session.execute(select(p.posting_id, p.txn_id, p.account_id, p.currency,
                                  a.currency.label("account_currency"))
                           .join(_ACCOUNTS, a.account_id == p.account_id)
                           .where(p.currency != a.currency)
                           .order_by(p.posting_id).limit(limit))
    return [Problem("posting_currency_mismatch", row.account_id, {
        "posting_id": row.posting_id, "txn_id": row.txn_id, "currency": row.currency,
        "account_currency": row.account_currency}) for row in rows]


def _below_floor_problems(session: Session, limit: int) -> list[Problem]:
    a = _ACCOUNTS.c
    rows = session.execute(select(a.account_id, a.balance_minor, a.floor_minor)
                           .where(a.kind.in_(HARD_FLOOR_KINDS), a.floor_minor.is_not(None),
                                  a.balance_minor < a.floor_minor)
                           .order_by(a.account_id).limit(limit))
    return [Problem("below_floor", row.account_id,
                    {"balance_minor": row.balance_minor, "floor_minor": row.floor_minor})
            for row in rows]


def _cached_balance_problems(session: Session, limit: int) -> list[Problem]:
    p, a = POSTINGS.c, _ACCOUNTS.c
    sums = (select(p.account_id, func.sum(p.amount_minor).label("total"))
            .group_by(p.account_id).subquery())
    derived = func.coalesce(sums.c.total, 0)
    rows = session.execute(
        select(a.account_id, a.balance_minor, derived.label("derived"))
        .select_from(_ACCOUNTS.outerjoin(sums, sums.c.account_id == a.account_id))
        .where(a.balance_minor != derived)
        .order_by(a.account_id).limit(limit)
    )
    return [Problem("cached_balance_mismatch", row.account_id,
                    {"cached_minor": row.balance_minor, "derived_minor": int(row.derived)})
            for row in rows]


def over_limit_accounts(session: Session, *, limit: int = PROBLEMS_MAX) -> list[AccountInfo]:
    """Available accounts below their floor: agents that owe more than their credit allows,
    after a refund clawed back a released commission or an admin lowered the credit limit. Not
    an inconsistency (finance collects); such an agent can spend nothing until it deposits.
    Reads only."""
    a = _ACCOUNTS.c
    rows = session.execute(
        select(a.account_id, a.kind, a.agent_id, a.currency, a.floor_minor, a.balance_minor)
        .where(a.kind == "available", a.floor_minor.is_not(None), a.balance_minor < a.floor_minor)
        .order_by(a.account_id).limit(limit)
    )
    return [_account_info(row) for row in rows]


# ----- helpers -------------------------------------------------------------------------------


def _insert_missing(session: Session, rows: list[dict[str, Any]]) -> None:
    """Inserts account rows whose id is not taken (INSERT ... ON CONFLICT DO NOTHING)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(_ACCOUNTS).values(rows)
                        .on_conflict_do_nothing(index_elements=["account_id"]))
    else:
        session.execute(sqlite.insert(_ACCOUNTS).values(rows)
                        .on_conflict_do_nothing(index_elements=["account_id"]))


def _require_agent(session: Session, agent_id: str) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise make_error(ErrorCode.AGENT_NOT_FOUND, "no such agent", {"agent_id": agent_id})
    return agent


def _account_info(row: Any) -> AccountInfo:
    return AccountInfo(row.account_id, row.kind, row.agent_id, row.currency, row.floor_minor,
                       row.balance_minor)


def check_limit(field: str, limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise invalid(field, f"{field} must be at least 1")
    if limit > PAGE_SIZE_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"{field} may be at most {PAGE_SIZE_MAX}",
                         {"field": field, "max": PAGE_SIZE_MAX})


def _account_not_found(account_id: str) -> CardsvcError:
    return make_error(ErrorCode.ACCOUNT_NOT_FOUND, "no such account", {"account_id": account_id})


def _currency_mismatch(subject: str, expected: str, got: str) -> CardsvcError:
    return make_error(ErrorCode.CURRENCY_MISMATCH, "the currency differs from the account's",
                      {"account_id": subject, "account_currency": expected, "currency": got})
