"""The money use cases of agents and finance, one transaction each: deposits, balances,
statements (whole, or a page at a time) and withdrawals (one, or a list by status and agent).

Who sees what: admins (``actor_agent_id`` None) every agent's money; an agent only its own
(FORBIDDEN otherwise; a withdrawal of another agent is WITHDRAWAL_NOT_FOUND, revealing nothing;
listing another agent's withdrawals gives an empty page).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, or_, select

from cardsvc.access import Approvals
from cardsvc.agents import require_agent
from cardsvc.checks import month_of
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, invalid, make_error
from cardsvc.money import ledger, settlement, statements, withdrawals
from cardsvc.money.ledger import PostResult
from cardsvc.money.settlement import CommissionInfo
from cardsvc.money.statements import Statement, StatementEntry
from cardsvc.money.tables import Withdrawal
from cardsvc.money.withdrawals import WITHDRAWAL_STATUSES, WithdrawalInfo, withdrawal_info
from cardsvc.paging import Page, check_page_size, decode_cursor, encode_cursor, page_of

WITHDRAWAL_DECISIONS: dict[str, Callable[..., WithdrawalInfo]] = {
    "approve": withdrawals.approve_withdrawal,
    "reject": withdrawals.reject_withdrawal,
    "paid": withdrawals.mark_withdrawal_paid,
}
"""What finance may decide about a withdrawal, and the flow each decision runs."""
COMMISSIONS_PER_ROUND_MAX = 10_000
"""Commissions one timer round releases at most (in batches of RELEASE_BATCH_MAX, one SQL
transaction each: about 5,000 statements a batch); the rest wait for the next round."""
WITHDRAWAL_CURSOR = (int, str)
"""The sort key of the withdrawal list: (``created_at_ms``, ``withdrawal_id``), newest first."""
STATEMENT_CURSOR = (int, int)
"""The sort key of a statement's entries: (``at_ms``, ``posting_id``), oldest first (each entry
carries the balance after it, so a statement reads forward)."""


@dataclass(frozen=True)
class PagedStatement:
    """A page of an account's statement: the period and its opening and closing balances, up
    to a page of entries (oldest first, each with the balance after it) and the cursor of the
    next page (None: the last)."""

    account_id: str
    currency: str
    since_ms: int
    until_ms: int
    opening_minor: int
    closing_minor: int
    entries: list[StatementEntry]
    next: str | None


@dataclass(frozen=True)
class Deposited:
    """A deposit's ledger transaction (``created`` False for a retry) and the balances after."""

    result: PostResult
    balances: dict[str, int]


class AgentMoney:
    """Deposits, balances, statements and withdrawals. With ``approvals``, a payout (``paid``)
    runs only under an approved maker-checker request (``cardsvc.access.approvals``)."""

    def __init__(self, db: Database, clock: Callable[[], int],
                 approvals: Approvals | None = None) -> None:
        self.db = db
        self.clock = clock
        self.approvals = approvals

    def deposit(self, agent_id: str, amount_minor: int, currency: str, reference: str, *,
                actor: str) -> Deposited:
        """Finance records money received from an agent (idempotent on ``reference``). Raises
        as ``settlement.deposit``."""
        with self.db.write() as session:
            result = settlement.deposit(session, agent_id, amount_minor, currency, reference,
                                        actor, self.clock())
            return Deposited(result, ledger.agent_balances(session, agent_id))

    def balance(self, agent_id: str, *, actor_agent_id: str | None) -> dict[str, Any]:
        """The agent's balances by account, its currency and credit limit. Raises FORBIDDEN,
        AGENT_NOT_FOUND."""
        _self_or_admin(actor_agent_id, agent_id)
        with self.db.read() as session:
            agent = require_agent(session, agent_id)
            return {"agent_id": agent_id, "currency": agent.currency,
                    "credit_limit_minor": agent.credit_limit_minor,
                    "balances": ledger.agent_balances(session, agent_id)}

    def period(self, since_ms: int | None, until_ms: int | None) -> tuple[int, int]:
        """A statement's period: the bounds given, each bound not given taken from the current
        UTC calendar month. Raises INVALID_ARGUMENT (``since`` after ``until``)."""
        month_start, month_end = month_of(self.clock())
        since = month_start if since_ms is None else since_ms
        until = month_end if until_ms is None else until_ms
        if since > until:
            raise invalid("since", "since must not be after until")
        return since, until

    def statement(self, agent_id: str, account: str, since_ms: int | None,
                  until_ms: int | None, *, actor_agent_id: str | None) -> Statement:
        """The statement of one of the agent's accounts for ``[since_ms, until_ms)``
        (:meth:`period`), its entries read whole. Raises FORBIDDEN, ACCOUNT_NOT_FOUND,
        INVALID_ARGUMENT."""
        _self_or_admin(actor_agent_id, agent_id)
        since, until = self.period(since_ms, until_ms)
        with self.db.read() as session:
            stmt = statements.statement(session, ledger.agent_account(agent_id, account),
                                        since, until)
            return replace(stmt, entries=list(stmt.entries))

    def statement_page(self, agent_id: str, account: str, *, since_ms: int | None,
                       until_ms: int | None, actor_agent_id: str | None,
                       cursor: str | None = None, limit: int | None = None) -> PagedStatement:
        """A page of the statement of one of the agent's accounts for ``[since_ms, until_ms)``
        (:meth:`period`), oldest entry first, with the period's opening and closing balances
        and the next page's cursor (``cardsvc.paging``). Reads only. Raises FORBIDDEN,
        ACCOUNT_NOT_FOUND, INVALID_ARGUMENT (``since`` after ``until``, a foreign cursor),
        LIMIT_EXCEEDED (``limit``)."""
        _self_or_admin(actor_agent_id, agent_id)
        size = check_page_size(limit)
        after = decode_cursor(cursor, STATEMENT_CURSOR)
        since, until = self.period(since_ms, until_ms)
        with self.db.read() as session:
            page = statements.statement_page(
                session, ledger.agent_account(agent_id, account), since, until,
                after=None if after is None else (int(after[0]), int(after[1])), limit=size + 1)
        entries = page.entries[:size]
        more = len(page.entries) > size
        last = entries[-1] if entries else None
        next_cursor = encode_cursor((last.at_ms, last.posting_id)) if more and last else None
        return PagedStatement(page.account_id, page.currency, since, until, page.opening_minor,
                              page.closing_minor, entries, next_cursor)

    def statement_csv(self, agent_id: str, account: str, since_ms: int | None,
                      until_ms: int | None, *, actor_agent_id: str | None) -> str:
        """:meth:`statement` as CSV (``statements.write_statement_csv``)."""
        _self_or_admin(actor_agent_id, agent_id)
        since, until = self.period(since_ms, until_ms)
        with self.db.read() as session:
            stmt = statements.statement(session, ledger.agent_account(agent_id, account),
                                        since, until)
            out = io.StringIO()
            statements.write_statement_csv(stmt, out)
            return out.getvalue()

    def release_due_commissions(self, *, actor: str = "system",
                                round_max: int = COMMISSIONS_PER_ROUND_MAX) -> int:
        """Releases every commission whose cooling period has ended, up to ``round_max``, in
        transactions of at most ``settlement.RELEASE_BATCH_MAX`` (the timer's round, and the
        admin's "release due now"). Returns how many were released; the rest wait for the next
        round. Raises DATABASE_UNAVAILABLE (what was committed stays released)."""
        total = 0
        while total < round_max:
            batch = min(settlement.RELEASE_BATCH_MAX, round_max - total)
            with self.db.write() as session:
                released = settlement.release_due_commissions(session, self.clock(), batch,
                                                              actor=actor)
            total += len(released)
            if len(released) < batch:
                break
        return total

    def commissions(self, *, agent_id: str | None, actor_agent_id: str | None,
                    status: str | None = None, limit: int | None = None,
                    cursor: str | None = None) -> Page[CommissionInfo]:
        """Commissions newest first (cursor pagination) with their status and release date:
        an agent sees its own (``agent_id`` absent or its own; FORBIDDEN otherwise), an admin
        any agent's (``agent_id`` filters; None: all). ``status`` filters
        (``settlement.COMMISSION_STATES``). Raises FORBIDDEN, INVALID_ARGUMENT, LIMIT_EXCEEDED."""
        if actor_agent_id is not None:
            _self_or_admin(actor_agent_id, agent_id or actor_agent_id)
            agent_id = actor_agent_id
        with self.db.read() as session:
            return settlement.list_commissions(session, agent_id=agent_id, status=status,
                                               limit=limit, cursor=cursor)

    def request_withdrawal(self, agent_id: str, amount_minor: int, currency: str,
                           reference: str, *, actor: str) -> tuple[WithdrawalInfo, bool]:
        """The agent asks to be paid out (idempotent on ``reference``). Raises as
        ``withdrawals.request_withdrawal``."""
        with self.db.write() as session:
            return withdrawals.request_withdrawal(session, agent_id, amount_minor, currency,
                                                  reference, actor, self.clock())

    def get_withdrawal(self, withdrawal_id: str, *,
                       actor_agent_id: str | None) -> WithdrawalInfo:
        """Raises WITHDRAWAL_NOT_FOUND (also for another agent's withdrawal)."""
        with self.db.read() as session:
            info = withdrawals.get_withdrawal(session, withdrawal_id)
        if actor_agent_id is not None and actor_agent_id != info.agent_id:
            raise make_error(ErrorCode.WITHDRAWAL_NOT_FOUND, "no such withdrawal",
                             {"withdrawal_id": withdrawal_id})
        return info

    def list_withdrawals(self, *, actor_agent_id: str | None, agent_id: str | None = None,
                         status: str | None = None, cursor: str | None = None,
                         limit: int | None = None) -> Page[WithdrawalInfo]:
        """Withdrawals newest first (``cardsvc.paging``): of ``agent_id`` (None: every agent's),
        in ``status`` (``requested``: awaiting approval; ``approved``: awaiting payment). An
        agent sees only its own: naming another agent gives an empty page. Reads only. Raises
        INVALID_ARGUMENT (an unknown status, a foreign cursor), LIMIT_EXCEEDED (``limit``)."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, WITHDRAWAL_CURSOR)
        if status is not None and status not in WITHDRAWAL_STATUSES:
            raise invalid("status", f"status must be one of {', '.join(WITHDRAWAL_STATUSES)}")
        if actor_agent_id is not None:
            if agent_id not in (None, actor_agent_id):
                return Page([], None)
            agent_id = actor_agent_id
        query = select(Withdrawal)
        if agent_id is not None:
            query = query.where(Withdrawal.agent_id == agent_id)
        if status is not None:
            query = query.where(Withdrawal.status == status)
        if after is not None:
            query = query.where(or_(Withdrawal.created_at_ms < after[0], and_(
                Withdrawal.created_at_ms == after[0], Withdrawal.withdrawal_id < after[1])))
        query = query.order_by(Withdrawal.created_at_ms.desc(),
                               Withdrawal.withdrawal_id.desc()).limit(size + 1)
        with self.db.read() as session:
            rows = [withdrawal_info(row) for row in session.scalars(query)]
        return page_of(rows, size, key=lambda info: (info.created_at_ms, info.withdrawal_id))

    def decide_withdrawal(self, withdrawal_id: str, decision: str, *, actor: str,
                          note: str | None, approval_id: str | None = None) -> WithdrawalInfo:
        """Finance approves, rejects or marks paid (WITHDRAWAL_DECISIONS). Marking paid is a
        payout, guarded by maker-checker: it needs ``approval_id``, an approved
        ``withdrawal_payout`` of this withdrawal, consumed in the same transaction (unless the
        policy or a waiver says otherwise). Raises WITHDRAWAL_NOT_FOUND,
        WITHDRAWAL_NOT_PENDING, INVALID_ARGUMENT (another decision), and for ``paid`` the
        refusals of ``Approvals.authorize`` (APPROVAL_REQUIRED...)."""
        step = WITHDRAWAL_DECISIONS.get(decision)
        if step is None:
            raise make_error(ErrorCode.INVALID_ARGUMENT, "unknown decision",
                             {"field": "decision"})
        with self.db.write() as session:
            if decision == "paid" and self.approvals is not None:
                withdrawals.get_withdrawal(session, withdrawal_id)
                self.approvals.authorize(session, action="withdrawal_payout",
                                         object_type="withdrawal", object_id=withdrawal_id,
                                         actor=actor, approval_id=approval_id)
            return step(session, withdrawal_id, actor, self.clock(), note)


def _self_or_admin(actor_agent_id: str | None, agent_id: str) -> None:
    if actor_agent_id is not None and actor_agent_id != agent_id:
        raise make_error(ErrorCode.FORBIDDEN, "an agent sees only its own money",
                         {"agent_id": agent_id})
