"""The platform's reconciliation: one report that the ledger, the orders and the core's stock
agree, with the figures finance reads (stock by state and cost, sales, commissions,
withdrawals, deposits).

Checks (each difference is listed; ``ok`` is true only when there is none):

* **ledger**: every transaction sums to zero, cached balances equal the postings, no account
  below its floor (``ledger.check_ledger``), and the sub-ledgers agree with it (pending
  commissions, withdrawals, credit limits: ``settlement.check_settlement``);
* **orders vs ledger**: a fulfilled order has its debit and its settlement, a failed order no
  settlement (and its debit released), a refunded order its refund; the money of each matches
  the order's total;
* **orders vs core**: a fulfilled or refunded order's codes are exactly the codes the core has
  allocated to it; a pending order older than the recovery timer's age is reported (a saga that
  did not finish);
* **holds vs ledger**: an open hold has its reservation and no end, a released or expired hold
  its reservation and its release, a confirmed hold its reservation and its consumption, each
  for the hold's amount;
* **escrow**: every agent's escrow equals the totals of its pending orders plus the
  reservations of its open holds.
* **retail** (``cardsvc.reports.retail``): retail orders against the ledger and the core,
  payment attempts against the orders, the money received for undelivered orders.

``cardsvc reconcile`` prints the report and exits 1 on any difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from cardsvc import audit
from cardsvc.catalog import STATES, Catalog
from cardsvc.catalog.tables import Batch, Sku
from cardsvc.db import Database
from cardsvc.engine import Engine, Store
from cardsvc.errors import CardsvcError
from cardsvc.money import ledger, settlement
from cardsvc.money.tables import Account, Commission, LedgerTransaction, Posting, Withdrawal
from cardsvc.reports.retail import retail_differences
from cardsvc.reports.tables import ReconciliationRun
from cardsvc.sales import PENDING_ORDER_AGE_MS
from cardsvc.sales.tables import HoldRecord, Order

ORDERS_CHECKED_MAX = 1_000_000
"""Orders compared with the core in one report (about 2 µs each plus their codes)."""
DIFFERENCES_LISTED_MAX = 200


def report(store: Store, db: Database, catalog: Catalog) -> dict[str, Any]:
    """The reconciliation report (module docstring) over the core (through ``store``), the
    database and the catalog's stock. Reads only."""
    store.wait_visible()
    differences: list[dict[str, Any]] = []
    with db.read() as session:
        differences += [p.to_dict() for p in ledger.check_ledger(session)]
        differences += [p.to_dict() for p in settlement.check_settlement(session)]
        orders = _orders(session)
        txns = _order_txns(session)
        holds = list(session.execute(
            select(HoldRecord.hold_ref, HoldRecord.agent_id, HoldRecord.status,
                   HoldRecord.amount_minor).limit(ORDERS_CHECKED_MAX)))
        hold_txns = _prefixed_txns(session, "hold:")
        escrow = {row.agent_id: row.balance_minor for row in session.execute(
            select(Account.agent_id, Account.balance_minor).where(Account.kind == "escrow"))}
        figures = _figures(session)
        retail, retail_checked = retail_differences(session, store.engine)
    differences += retail
    differences += _orders_vs_ledger(orders, txns)
    differences += _orders_vs_core(store.engine, orders)
    differences += _holds_vs_ledger(holds, hold_txns)
    differences += _escrow(orders, holds, escrow)
    figures["stock"], stock_problems = _stock(db, catalog)
    differences += stock_problems
    return {"ok": not differences, "differences": differences[:DIFFERENCES_LISTED_MAX],
            "difference_count": len(differences), "orders_checked": len(orders),
            "retail_orders_checked": retail_checked, **figures}


def _orders(session: Any) -> list[Any]:
    return list(session.execute(
        select(Order.order_id, Order.agent_id, Order.status, Order.total_minor,
               Order.code_ids, Order.created_at_ms, Order.currency)
        .order_by(Order.created_at_ms).limit(ORDERS_CHECKED_MAX)))


def _order_txns(session: Any) -> dict[str, dict[str, int]]:
    """For each order: its transactions by step (debit, settle, release, refund) with the
    amount each moved (the sum of its positive postings)."""
    return _prefixed_txns(session, "order:")


def _prefixed_txns(session: Any, prefix: str) -> dict[str, dict[str, int]]:
    """For each subject of ledger references ``<prefix><subject>:<step>``: the amount each step
    moved (the sum of its positive postings)."""
    rows = session.execute(
        select(LedgerTransaction.reference, func.sum(Posting.amount_minor))
        .join(Posting, Posting.txn_id == LedgerTransaction.txn_id)
        .where(LedgerTransaction.reference.like(prefix + "%"), Posting.amount_minor > 0)
        .group_by(LedgerTransaction.reference))
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for reference, moved in rows:
        subject, step = reference[len(prefix):].rsplit(":", 1)
        out[subject][step] = int(moved)
    return out


def _holds_vs_ledger(holds: list[Any], txns: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    expected = {"open": {"reserve"}, "released": {"reserve", "release"},
                "expired": {"reserve", "release"}, "confirmed": {"reserve", "consume"}}
    problems = []
    for hold in holds:
        steps = txns.get(hold.hold_ref, {})
        want = expected.get(hold.status, set())
        if set(steps) != want:
            problems.append({"kind": "hold_ledger_steps", "subject": hold.hold_ref,
                             "details": {"status": hold.status, "steps": sorted(steps),
                                         "expected": sorted(want)}})
        elif any(amount != hold.amount_minor for amount in steps.values()):
            problems.append({"kind": "hold_ledger_amount", "subject": hold.hold_ref,
                             "details": {"amount_minor": hold.amount_minor, "moved": steps}})
    return problems


def _orders_vs_ledger(orders: list[Any], txns: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    problems = []
    expected = {"fulfilled": {"debit", "settle"}, "refunded": {"debit", "settle", "refund"},
                "failed": {"debit", "release"}, "pending": {"debit"}}
    for order in orders:
        steps = txns.get(order.order_id, {})
        want = expected.get(order.status, set())
        if order.status == "failed" and not steps:
            continue  # refused before its debit: nothing to reconcile
        if set(steps) != want:
            problems.append({"kind": "order_ledger_steps", "subject": order.order_id,
                             "details": {"status": order.status, "steps": sorted(steps),
                                         "expected": sorted(want)}})
            continue
        moved = {step: amount for step, amount in steps.items() if amount != order.total_minor}
        if moved:
            problems.append({"kind": "order_ledger_amount", "subject": order.order_id,
                             "details": {"total_minor": order.total_minor, "moved": moved}})
    return problems


def _orders_vs_core(engine: Engine, orders: list[Any]) -> list[dict[str, Any]]:
    problems = []
    stale_before = engine.now_ms() - PENDING_ORDER_AGE_MS
    for order in orders:
        if order.status in ("fulfilled", "refunded"):
            try:
                core_ids = sorted(engine.order_code_ids(order.order_id))
            except CardsvcError:
                core_ids = []
            if core_ids != sorted(order.code_ids or []):
                problems.append({"kind": "order_codes_differ", "subject": order.order_id,
                                 "details": {"sql": len(order.code_ids or []),
                                             "core": len(core_ids)}})
        elif order.status == "pending" and order.created_at_ms < stale_before:
            problems.append({"kind": "order_pending_too_long", "subject": order.order_id,
                             "details": {"created_at_ms": order.created_at_ms}})
    return problems


def _escrow(orders: list[Any], holds: list[Any],
            escrow: dict[str | None, int]) -> list[dict[str, Any]]:
    owed: dict[str, int] = defaultdict(int)
    held: dict[str, int] = defaultdict(int)
    for order in orders:
        if order.status == "pending" and order.total_minor is not None:
            owed[order.agent_id] += order.total_minor
    for hold in holds:
        if hold.status == "open":
            held[hold.agent_id] += hold.amount_minor
    problems = []
    for agent_id in set(owed) | set(held) | {a for a in escrow if a is not None}:
        expected = owed.get(agent_id, 0) + held.get(agent_id, 0)
        if escrow.get(agent_id, 0) != expected:
            problems.append({"kind": "escrow_mismatch", "subject": agent_id,
                             "details": {"escrow_minor": escrow.get(agent_id, 0),
                                         "pending_orders_minor": owed.get(agent_id, 0),
                                         "open_holds_minor": held.get(agent_id, 0)}})
    return problems


def _figures(session: Any) -> dict[str, Any]:
    def sums(statement: Any) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for key, currency, total in session.execute(statement):
            out[str(key)][str(currency)] = int(total or 0)
        return dict(out)

    return {
        "sales": sums(select(Order.status, Order.currency, func.sum(Order.total_minor))
                      .where(Order.total_minor.is_not(None)).group_by(Order.status,
                                                                      Order.currency)),
        "commissions": sums(select(Commission.status, Commission.currency,
                                   func.sum(Commission.amount_minor))
                            .group_by(Commission.status, Commission.currency)),
        "withdrawals": sums(select(Withdrawal.status, Withdrawal.currency,
                                   func.sum(Withdrawal.amount_minor))
                            .group_by(Withdrawal.status, Withdrawal.currency)),
        "platform_accounts": {row.account_id: row.balance_minor for row in session.execute(
            select(Account.account_id, Account.balance_minor)
            .where(Account.agent_id.is_(None)))},
        "batch_costs": _batch_costs(session),
    }


def _batch_costs(session: Any) -> dict[str, dict[str, int | None]]:
    """Each SKU's stock cost (unit cost x codes, summed in Python: a SQL product of two 64-bit
    columns can overflow) and codes imported."""
    out: dict[str, dict[str, int | None]] = {}
    for sku, unit, imported in session.execute(
            select(Batch.sku, Batch.unit_cost_minor, Batch.imported)):
        entry = out.setdefault(sku, {"cost_minor": None, "codes": 0})
        entry["codes"] = (entry["codes"] or 0) + int(imported or 0)
        if unit is not None:
            entry["cost_minor"] = (entry["cost_minor"] or 0) + int(unit) * int(imported or 0)
    return out


def _stock(db: Database, catalog: Catalog) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Codes by state per SKU (the core's counts, ``withdrawn`` included), with the stock's cost
    at each SKU's cost; and a ``stock_states_differ`` problem for a SKU whose states do not add
    up to its total (every code is in exactly one state)."""
    with db.read() as session:
        rows = session.execute(select(Sku.sku, Sku.cost_minor))
        costs = {row.sku: row.cost_minor for row in rows}
    out = {}
    problems = []
    for sku, cost in costs.items():
        counts = catalog.stock(sku)
        out[sku] = {state: counts[state] for state in STATES}
        states_sum = sum(counts[state] for state in STATES if state != "expired")
        if "total" in counts and states_sum != counts["total"]:
            problems.append({"kind": "stock_states_differ", "subject": sku,
                             "details": {"states_sum": states_sum, "total": counts["total"]}})
        if cost is not None:
            out[sku]["available_cost_minor"] = (counts["available"] - counts["expired"]) * cost
    return out, problems


class Reconciliations:
    """Stored reconciliation runs, so the console shows the latest report without re-reading
    every order on each page view: :meth:`run` computes one (a person's button) and keeps it in
    ``reconciliation_runs``; :meth:`latest` reads the newest. Times from ``clock`` (Unix ms)."""

    def __init__(self, store: Store, db: Database, catalog: Catalog,
                 clock: Callable[[], int]) -> None:
        self.store = store
        self.db = db
        self.catalog = catalog
        self.clock = clock

    def run(self, *, actor: str) -> dict[str, Any]:
        """Computes the report now, stores it (audited ``reconciliation.run``) and returns the
        stored run (``run_id``, times, ``ok``, ``differences``, ``report``). Reads everything
        (up to ORDERS_CHECKED_MAX orders): a button, never a page view."""
        started_ms = self.clock()
        result = report(self.store, self.db, self.catalog)
        finished_ms = self.clock()
        with self.db.write() as session:
            row = ReconciliationRun(started_at_ms=started_ms, finished_at_ms=finished_ms,
                                    requested_by=actor, ok=bool(result["ok"]),
                                    differences=int(result["difference_count"]), report=result)
            session.add(row)
            session.flush()
            audit.append(session, actor=actor, action="reconciliation.run",
                         object_type="reconciliation", object_id=str(row.run_id),
                         details={"ok": row.ok, "differences": row.differences},
                         at_ms=finished_ms)
            return _run_dict(row)

    def latest(self) -> dict[str, Any] | None:
        """The newest stored run, or None before the first."""
        with self.db.read() as session:
            row = session.scalars(select(ReconciliationRun).order_by(
                ReconciliationRun.run_id.desc()).limit(1)).first()
            return None if row is None else _run_dict(row)


def _run_dict(row: ReconciliationRun) -> dict[str, Any]:
    return {"run_id": row.run_id, "started_at_ms": row.started_at_ms,
            "finished_at_ms": row.finished_at_ms, "requested_by": row.requested_by,
            "ok": row.ok, "differences": row.differences, "report": row.report}
