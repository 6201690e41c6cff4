"""The storefront's part of the reconciliation: retail orders against the ledger and the core,
payment attempts against callbacks and postings, and one channel's daily list of mismatches.

Checks (each difference listed):

* **orders vs ledger**: a paid or unfulfillable order has its receipt and no sale; a delivered
  order its receipt and its sale; a refunded one its refund too; every amount equals the order's
  total; a pending, expired or failed order has none of them;
* **orders vs core**: a delivered (or refunded) order's codes are exactly the codes the core has
  allocated to it;
* **attempts vs orders**: a paid attempt's order is paid, delivered, unfulfillable or refunded,
  and an order that took money has a paid attempt;
* **retail received**: ``platform:retail_received:<CUR>`` equals the totals of the orders paid
  and not yet delivered (nor refunded): money taken is always either delivered or owed;
* **stuck**: a paid order older than the recovery age (the saga did not finish).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.engine import Engine
from cardsvc.errors import CardsvcError
from cardsvc.money.tables import Account, LedgerTransaction, Posting
from cardsvc.payments.tables import PaymentAttempt, PaymentInbox
from cardsvc.sales import PENDING_ORDER_AGE_MS
from cardsvc.sales.tables import RetailOrder

ORDERS_CHECKED_MAX = 1_000_000
DAY_MS = 86_400_000
EXPECTED_STEPS = {
    "pending": set(), "expired": set(), "failed": set(),
    "paid": {"receipt"}, "paid_unfulfillable": {"receipt"},
    "delivered": {"receipt", "sale"},
}
MONEY_TAKEN = ("paid", "paid_unfulfillable", "delivered", "refunded")


def retail_differences(session: Session, engine: Engine) -> tuple[list[dict[str, Any]], int]:
    """The differences of the module text, and how many retail orders were checked."""
    orders = list(session.execute(
        select(RetailOrder.order_id, RetailOrder.status, RetailOrder.total_minor,
               RetailOrder.currency, RetailOrder.code_ids, RetailOrder.updated_at_ms,
               RetailOrder.attempt_id).order_by(RetailOrder.created_at_ms)
        .limit(ORDERS_CHECKED_MAX)))
    steps = _steps(session)
    paid_attempts = {row.out_trade_no for row in session.execute(
        select(PaymentAttempt.out_trade_no).where(PaymentAttempt.state == "paid"))}
    problems: list[dict[str, Any]] = []
    owed: dict[str, int] = defaultdict(int)
    stale_before = engine.now_ms() - PENDING_ORDER_AGE_MS
    for order in orders:
        problems += _order_problems(order, steps.get(order.order_id, {}), paid_attempts,
                                    engine, stale_before)
        if order.status in ("paid", "paid_unfulfillable"):
            owed[order.currency] += order.total_minor
    received = {row.currency: row.balance_minor for row in session.execute(
        select(Account.currency, Account.balance_minor).where(Account.kind == "retail_received"))}
    for currency in set(owed) | set(received):
        if owed.get(currency, 0) != received.get(currency, 0):
            problems.append({"kind": "retail_received_mismatch", "subject": currency,
                             "details": {"balance_minor": received.get(currency, 0),
                                         "paid_undelivered_minor": owed.get(currency, 0)}})
    return problems, len(orders)


def _steps(session: Session) -> dict[str, dict[str, int]]:
    rows = session.execute(
        select(LedgerTransaction.reference, func.sum(Posting.amount_minor))
        .join(Posting, Posting.txn_id == LedgerTransaction.txn_id)
        .where(LedgerTransaction.reference.like("retail:%"), Posting.amount_minor > 0)
        .group_by(LedgerTransaction.reference))
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for reference, moved in rows:
        _, order_id, step = reference.split(":", 2)
        out[order_id][step] = int(moved)
    return out


def _order_problems(order: Any, steps: dict[str, int], paid_attempts: set[str],
                    engine: Engine, stale_before: int) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    money_steps = {step for step in steps if step != "fee"}
    if order.status == "refunded":
        wanted = {"receipt", "refund"} | ({"sale"} if "sale" in steps else set())
    else:
        wanted = EXPECTED_STEPS.get(order.status, set())
    if money_steps != wanted:
        problems.append({"kind": "retail_ledger_steps", "subject": order.order_id,
                         "details": {"status": order.status, "steps": sorted(money_steps),
                                     "expected": sorted(wanted)}})
    elif any(steps[step] != order.total_minor for step in money_steps):
        problems.append({"kind": "retail_ledger_amount", "subject": order.order_id,
                         "details": {"total_minor": order.total_minor,
                                     "moved": {s: steps[s] for s in money_steps}}})
    if (order.status in MONEY_TAKEN) != (order.attempt_id in paid_attempts):
        problems.append({"kind": "retail_attempt_mismatch", "subject": order.order_id,
                         "details": {"status": order.status,
                                     "attempt_paid": order.attempt_id in paid_attempts}})
    if order.status == "delivered" or (order.status == "refunded" and order.code_ids):
        try:
            core_ids = sorted(engine.order_code_ids(order.order_id))
        except CardsvcError:
            core_ids = []
        if core_ids != sorted(order.code_ids or []):
            problems.append({"kind": "retail_codes_differ", "subject": order.order_id,
                             "details": {"sql": len(order.code_ids or []), "core": len(core_ids)}})
    if order.status == "paid" and order.updated_at_ms < stale_before:
        problems.append({"kind": "retail_paid_not_delivered", "subject": order.order_id,
                         "details": {"updated_at_ms": order.updated_at_ms}})
    return problems


def channel_reconciliation(db: Database, channel_id: str, *, since_ms: int | None,
                           until_ms: int | None, now_ms: int) -> dict[str, Any]:
    """One channel's attempts made in ``[since, until)`` (default: the last 24 hours) against
    its callbacks and the ledger: paid attempts without a receipt, receipts without a paid
    attempt, attempts still pending after their expiry, callbacks refused as mismatches."""
    until = now_ms if until_ms is None else until_ms
    since = until - DAY_MS if since_ms is None else since_ms
    with db.read() as session:
        attempts = list(session.execute(select(
            PaymentAttempt.out_trade_no, PaymentAttempt.order_id, PaymentAttempt.state,
            PaymentAttempt.amount_minor, PaymentAttempt.expires_at_ms).where(
            PaymentAttempt.channel_id == channel_id, PaymentAttempt.created_at_ms >= since,
            PaymentAttempt.created_at_ms < until)))
        receipts = {reference.split(":")[1] for reference in session.scalars(
            select(LedgerTransaction.reference).where(
                LedgerTransaction.reference.like("retail:%:receipt")))}
        mismatches = list(session.execute(select(
            PaymentInbox.out_trade_no, PaymentInbox.event_id, PaymentInbox.reason).where(
            PaymentInbox.channel_id == channel_id, PaymentInbox.verdict == "mismatch",
            PaymentInbox.received_at_ms >= since, PaymentInbox.received_at_ms < until)))
    problems: list[dict[str, Any]] = []
    totals = {"attempts": len(attempts), "paid": 0, "paid_minor": 0}
    for attempt in attempts:
        paid = attempt.state == "paid"
        if paid:
            totals["paid"] += 1
            totals["paid_minor"] += attempt.amount_minor
        if paid != (attempt.order_id in receipts):
            problems.append({"kind": "paid_without_receipt" if paid else "receipt_without_paid",
                             "subject": attempt.out_trade_no, "details": {"order_id":
                                                                          attempt.order_id}})
        if attempt.state == "pending" and attempt.expires_at_ms < now_ms:
            problems.append({"kind": "pending_after_expiry", "subject": attempt.out_trade_no,
                             "details": {"expires_at_ms": attempt.expires_at_ms}})
    problems += [{"kind": "callback_mismatch", "subject": row.out_trade_no,
                  "details": {"event_id": row.event_id, "field": row.reason}}
                 for row in mismatches]
    return {"channel_id": channel_id, "since_ms": since, "until_ms": until,
            "ok": not problems, "problems": problems[:200], **totals}
