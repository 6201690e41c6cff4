"""Withdrawals: an agent asks for its available balance to be paid out; finance approves,
rejects or marks it paid. The amount moves to the agent's ``withdrawing`` account on request
(never on credit) and leaves the platform on payment; a rejection returns it. Each step is one
ledger transaction (``withdrawal:<id>:<step>``) and one audit entry."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.checks import check_amount, check_currency, check_text
from cardsvc.db.base import NAME_LEN_MAX, REF_LEN_MAX
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.money.ledger import (
    Leg,
    agent_account,
    lock_accounts,
    platform_account,
    post,
)
from cardsvc.money.settlement import missing_account
from cardsvc.money.tables import Withdrawal


@dataclass(frozen=True, slots=True)
class WithdrawalInfo:
    """A withdrawal row: ``requested`` -> ``approved`` -> ``paid``, or ``rejected`` from either
    of the first two (docs/money.md)."""

    withdrawal_id: str
    agent_id: str
    amount_minor: int
    currency: str
    status: str
    reference: str
    requested_by: str
    decided_by: str | None
    note: str | None
    created_at_ms: int
    updated_at_ms: int


WITHDRAWAL_STATUSES = ("requested", "approved", "paid", "rejected")


def withdrawal_reference(withdrawal_id: str, step: str) -> str:
    """The ledger reference of a withdrawal's ``request``, ``reject`` or ``pay``. Pure."""
    return f"withdrawal:{withdrawal_id}:{step}"


# ----- withdrawals ---------------------------------------------------------------------------


def request_withdrawal(
    session: Session, agent_id: str, amount_minor: int, currency: str, reference: str,
    actor: str, now_ms: int,
) -> tuple[WithdrawalInfo, bool]:
    """The agent asks to be paid ``amount_minor``: it leaves available for ``withdrawing`` at
    once, so it cannot be spent or requested twice. A withdrawal may not use credit: the
    available balance must cover it from its own money (floor 0, not -credit_limit). Returns the
    withdrawal (``requested``) and whether this call created it; idempotent on (agent,
    ``reference``).

    Effects: the transaction, the ``withdrawals`` row, an audit entry ``withdrawal.request``.
    Raises AMOUNT_MUST_BE_POSITIVE, INVALID_ARGUMENT, LIMIT_EXCEEDED, IDEMPOTENCY_KEY_REUSED
    (field ``amount_minor`` or ``currency``), AGENT_NOT_FOUND, ACCOUNT_NOT_FOUND,
    CURRENCY_MISMATCH, INSUFFICIENT_BALANCE (``available_minor``: the balance above 0).
    """
    check_amount("amount_minor", amount_minor)
    check_currency("currency", currency)
    check_text("reference", reference, REF_LEN_MAX)
    available, withdrawing = (agent_account(agent_id, kind)
                              for kind in ("available", "withdrawing"))
    if len(lock_accounts(session, [available, withdrawing])) < 2:
        raise missing_account(session, available)
    existing = session.scalar(select(Withdrawal).where(Withdrawal.agent_id == agent_id,
                                                       Withdrawal.reference == reference))
    if existing is not None:
        for field, old, new in (("amount_minor", existing.amount_minor, amount_minor),
                                ("currency", existing.currency, currency)):
            if old != new:
                raise make_error(ErrorCode.IDEMPOTENCY_KEY_REUSED,
                                 "the reference was used for a different withdrawal",
                                 {"field": field, "reference": reference})
        return withdrawal_info(existing), False
    withdrawal_id = "wd_" + secrets.token_hex(10)
    post(session, reference=withdrawal_reference(withdrawal_id, "request"),
         kind="withdrawal_request", actor=actor, currency=currency, now_ms=now_ms,
         legs=[Leg(available, -amount_minor, floor_minor=0), Leg(withdrawing, amount_minor)],
         details={"withdrawal_id": withdrawal_id, "agent_id": agent_id})
    row = Withdrawal(withdrawal_id=withdrawal_id, agent_id=agent_id, amount_minor=amount_minor,
                     currency=currency, status="requested", reference=reference,
                     requested_by=actor, decided_by=None, note=None, created_at_ms=now_ms,
                     updated_at_ms=now_ms)
    session.add(row)
    session.flush()
    _audit_withdrawal(session, row, "withdrawal.request", actor, now_ms)
    return withdrawal_info(row), True


def approve_withdrawal(
    session: Session, withdrawal_id: str, actor: str, now_ms: int, note: str | None = None
) -> WithdrawalInfo:
    """Finance approves a ``requested`` withdrawal (no money moves: it is already withdrawing).
    Effects: status ``approved``, ``decided_by``, the note, an audit entry
    ``withdrawal.approve``. Raises WITHDRAWAL_NOT_FOUND, WITHDRAWAL_NOT_PENDING (any other status,
    including approved: a second approval is refused), LIMIT_EXCEEDED (note over 200)."""
    row = _decide(session, withdrawal_id, ("requested",), "approved", actor, now_ms, note)
    _audit_withdrawal(session, row, "withdrawal.approve", actor, now_ms)
    return withdrawal_info(row)


def reject_withdrawal(
    session: Session, withdrawal_id: str, actor: str, now_ms: int, note: str | None = None
) -> WithdrawalInfo:
    """Finance rejects a ``requested`` or ``approved`` withdrawal: the amount returns from
    withdrawing to available. Effects: the transaction, status ``rejected``, an audit entry
    ``withdrawal.reject``. Raises WITHDRAWAL_NOT_FOUND, WITHDRAWAL_NOT_PENDING (paid or rejected),
    LIMIT_EXCEEDED."""
    row = _decide(session, withdrawal_id, ("requested", "approved"), "rejected", actor, now_ms,
                  note)
    post(session, reference=withdrawal_reference(withdrawal_id, "reject"),
         kind="withdrawal_reject", actor=actor, currency=row.currency, now_ms=now_ms,
         legs=[Leg(agent_account(row.agent_id, "withdrawing"), -row.amount_minor),
               Leg(agent_account(row.agent_id, "available"), row.amount_minor)],
         details={"withdrawal_id": withdrawal_id})
    _audit_withdrawal(session, row, "withdrawal.reject", actor, now_ms)
    return withdrawal_info(row)


def mark_withdrawal_paid(
    session: Session, withdrawal_id: str, actor: str, now_ms: int, note: str | None = None
) -> WithdrawalInfo:
    """Finance records that an ``approved`` withdrawal was paid out: the amount leaves
    withdrawing for ``platform:payouts:<CUR>``. Effects: the transaction, status ``paid``, an
    audit entry ``withdrawal.pay``. Raises WITHDRAWAL_NOT_FOUND, WITHDRAWAL_NOT_PENDING (not
    approved: requested, paid or rejected), LIMIT_EXCEEDED."""
    row = _decide(session, withdrawal_id, ("approved",), "paid", actor, now_ms, note)
    post(session, reference=withdrawal_reference(withdrawal_id, "pay"), kind="withdrawal_pay",
         actor=actor, currency=row.currency, now_ms=now_ms,
         legs=[Leg(agent_account(row.agent_id, "withdrawing"), -row.amount_minor),
               Leg(platform_account("payouts", row.currency), row.amount_minor)],
         details={"withdrawal_id": withdrawal_id})
    _audit_withdrawal(session, row, "withdrawal.pay", actor, now_ms)
    return withdrawal_info(row)


def get_withdrawal(session: Session, withdrawal_id: str) -> WithdrawalInfo:
    """Reads only. Raises WITHDRAWAL_NOT_FOUND."""
    row = session.get(Withdrawal, withdrawal_id)
    if row is None:
        raise _withdrawal_not_found(withdrawal_id)
    return withdrawal_info(row)


def _decide(
    session: Session, withdrawal_id: str, allowed: tuple[str, ...], status: str, actor: str,
    now_ms: int, note: str | None,
) -> Withdrawal:
    """Locks the row, checks its status is one of ``allowed`` and moves it to ``status``."""
    if note is not None:
        check_text("note", note, NAME_LEN_MAX)
    row = session.scalar(select(Withdrawal).where(Withdrawal.withdrawal_id == withdrawal_id)
                         .with_for_update().execution_options(populate_existing=True))
    if row is None:
        raise _withdrawal_not_found(withdrawal_id)
    if row.status not in allowed:
        raise make_error(ErrorCode.WITHDRAWAL_NOT_PENDING,
                         f"the withdrawal is {row.status}; this needs {' or '.join(allowed)}",
                         {"withdrawal_id": withdrawal_id, "status": row.status,
                          "expected": list(allowed)})
    row.status = status
    row.decided_by = actor
    row.note = note if note is not None else row.note
    row.updated_at_ms = now_ms
    session.flush()
    return row


def _audit_withdrawal(
    session: Session, row: Withdrawal, action: str, actor: str, now_ms: int
) -> None:
    audit.append(session, actor=actor, action=action, object_type="withdrawal",
                 object_id=row.withdrawal_id, at_ms=now_ms,
                 details={"agent_id": row.agent_id, "amount_minor": row.amount_minor,
                          "currency": row.currency, "status": row.status, "note": row.note})


def withdrawal_info(row: Withdrawal) -> WithdrawalInfo:
    """The row's facts. Pure."""
    return WithdrawalInfo(row.withdrawal_id, row.agent_id, row.amount_minor, row.currency,
                          row.status, row.reference, row.requested_by, row.decided_by, row.note,
                          row.created_at_ms, row.updated_at_ms)


def _withdrawal_not_found(withdrawal_id: str) -> CardsvcError:
    return make_error(ErrorCode.WITHDRAWAL_NOT_FOUND, "no such withdrawal",
                      {"withdrawal_id": withdrawal_id})
