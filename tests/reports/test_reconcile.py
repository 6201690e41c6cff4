"""Goal: the reconciliation report (``cardsvc.reports.reconciliation_report``) without HTTP:
clean books report ``ok`` with the figures finance reads; each kind of disagreement between the
ledger, the orders and the core's stock is found and named (a fulfilled order whose codes differ
from the core's allocation, an order stuck pending with its escrow, a ledger posting without
its other leg), and the report changes nothing.

Method: the ``services`` runtime of conftest with one order; each test damages one store behind
the use cases' back (SQL rows edited directly) and reads the report.
"""

from __future__ import annotations

from sqlalchemy import update

from cardsvc import audit
from cardsvc.money.tables import Account
from cardsvc.reports import reconciliation_report
from cardsvc.runtime import Runtime
from cardsvc.sales import PENDING_ORDER_AGE_MS, Order
from tests.reports.conftest import CODES, order_one


def report(services: Runtime) -> dict[str, object]:
    return reconciliation_report(services.store, services.db, services.catalog)


def kinds(result: dict[str, object]) -> set[str]:
    return {str(d["kind"]) for d in result["differences"]}  # type: ignore[attr-defined]


def test_clean_books_reconcile_with_their_figures(services: Runtime) -> None:
    order = order_one(services)
    result = report(services)
    assert result["ok"] is True and result["difference_count"] == 0
    assert result["orders_checked"] == 1
    assert result["sales"] == {"fulfilled": {"CNY": 100}}
    stock = result["stock"]["VIP"]  # type: ignore[index]
    assert (stock["allocated"], stock["available"]) == (1, len(CODES) - 1)
    assert stock["available_cost_minor"] == (len(CODES) - 1) * 40
    assert report(services) == result  # reading changed nothing
    assert order.order_id not in str(result)  # nothing to name when all agrees


def test_an_order_whose_codes_differ_from_the_core_is_named(services: Runtime) -> None:
    order = order_one(services)
    with services.db.write() as session:
        session.execute(update(Order).where(Order.order_id == order.order_id)
                        .values(code_ids=[999_999]))
    result = report(services)
    assert result["ok"] is False and kinds(result) == {"order_codes_differ"}
    [difference] = result["differences"]  # type: ignore[misc]
    assert difference["subject"] == order.order_id


def test_a_stuck_pending_order_and_its_escrow_are_named(services: Runtime) -> None:
    order = order_one(services)
    old = services.engine.now_ms() - 2 * PENDING_ORDER_AGE_MS
    with services.db.write() as session:
        session.execute(update(Order).where(Order.order_id == order.order_id)
                        .values(status="pending", created_at_ms=old))
    assert {"order_pending_too_long", "order_ledger_steps", "escrow_mismatch"} <= kinds(
        report(services))


def test_a_cached_balance_that_disagrees_with_its_postings_is_named(services: Runtime) -> None:
    order_one(services)
    with services.db.write() as session:
        session.execute(update(Account).where(Account.account_id == "agent:A1:available")
                        .values(balance_minor=Account.balance_minor + 1))
    result = report(services)
    assert result["ok"] is False and result["difference_count"] >= 1


def test_a_run_is_stored_audited_and_read_back_as_the_latest(services: Runtime) -> None:
    """``Reconciliations``: a run is computed on request and stored, so the console reads the
    latest without re-reading every order per page view."""
    assert services.reconciliations.latest() is None
    first = services.reconciliations.run(actor="user:fin")
    second = services.reconciliations.run(actor="user:fin")
    assert first["ok"] and first["differences"] == 0
    latest = services.reconciliations.latest()
    assert latest is not None and latest["run_id"] == second["run_id"] > first["run_id"]
    assert latest["report"]["ok"] is True
    runs = audit.list_entries(services.db, action="reconciliation.run")
    assert [entry.object_id for entry in runs] == [str(first["run_id"]), str(second["run_id"])]
