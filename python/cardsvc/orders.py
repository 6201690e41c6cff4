"""Orders and holds: the order saga of DESIGN.md and the flash-sale holds in front of it.

An order touches both stores, so it is a saga keyed by its ``order_id``, every step idempotent:

1. SQL: the order ``pending``, unique per ``(agent_id, client_order_id)`` (issue 6 debits the
   buyer's balance in this same transaction);
2. core: ``allocate(sku, qty, order_id)`` (or ``confirm_hold(hold_ref, order_id)``), journaled
   and idempotent on the order id, then *wait until the journal holds it*: an order must never be
   marked fulfilled on an allocation a crash could undo;
3. SQL: the order ``fulfilled`` with its code ids (issue 6 adds the postings here).

A definitive refusal in step 2 (``OUT_OF_STOCK``, ``HOLD_EXPIRED``...) marks the order ``failed``
with that error, and a retry with the same ``client_order_id`` returns the same error: the first
result. Anything else (the journal unavailable, a crash) leaves it ``pending``;
:meth:`Orders.recover` re-drives every pending order at start-up and on a timer, and a retry by
the agent re-drives it too. Re-driving repeats step 2, which returns the same codes when the
allocation had been made.

Holds never touch SQL (flash-sale demand stays in memory): a hold's id names its agent in the
core's hold reference (``<agent_id>/<hold_id>``), so one agent can never see or confirm another's
hold, and the open-hold caps of :mod:`cardsvc.risk` apply.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cardsvc.batches import Batches
from cardsvc.catalog import Catalog
from cardsvc.db import Database
from cardsvc.db.models import Order
from cardsvc.engine import ORDER_QTY_MAX, REF_LEN_MAX, Engine
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.risk import DAY_MS, RiskGuard, RiskLimits
from cardsvc.store import Store
from cardsvc.times import iso, iso_s

FINAL_ERRORS = frozenset({
    ErrorCode.OUT_OF_STOCK,
    ErrorCode.SKU_NOT_FOUND,
    ErrorCode.HOLD_NOT_FOUND,
    ErrorCode.HOLD_EXPIRED,
    ErrorCode.HOLD_RELEASED,
    ErrorCode.HOLD_ALREADY_CONFIRMED,
    ErrorCode.IDEMPOTENCY_KEY_REUSED,
    ErrorCode.LIMIT_EXCEEDED,
    ErrorCode.QUANTITY_MUST_BE_POSITIVE,
    ErrorCode.INVALID_ARGUMENT,
})
"""Core refusals that end an order as ``failed``; any other error leaves it ``pending``."""
HOLD_TTL_S_MIN = 1
HOLD_TTL_S_MAX = 86_400
"""A hold lasts 1 s to 1 day (the core's HOLD_TTL_MS_MAX)."""


def _invalid(field: str, message: str) -> CardsvcError:
    return make_error(ErrorCode.INVALID_ARGUMENT, message, {"field": field})


def check_client_ref(field: str, value: str) -> None:
    """Raises INVALID_ARGUMENT unless ``value`` is 1..REF_LEN_MAX printable ASCII characters."""
    if not value or len(value) > REF_LEN_MAX or not value.isascii() or not value.isprintable():
        raise _invalid(field, f"{field} must be 1 to {REF_LEN_MAX} printable ASCII characters")


def check_quantity(quantity: int) -> None:
    if quantity < 1:
        raise make_error(ErrorCode.QUANTITY_MUST_BE_POSITIVE, "quantity must be at least 1",
                         {"field": "quantity"})
    if quantity > ORDER_QTY_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, "quantity is too large",
                         {"field": "quantity", "max": ORDER_QTY_MAX, "got": quantity})


@dataclass(frozen=True)
class OrderRequest:
    """What an agent asked for; a retry must ask for exactly the same."""

    agent_id: str
    client_order_id: str
    sku: str
    quantity: int
    hold_id: str | None = None


class Orders:
    """The order saga and holds over the store, the SQL database and the catalog."""

    def __init__(self, store: Store, db: Database, catalog: Catalog, batches: Batches,
                 risk: RiskGuard) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.catalog = catalog
        self.batches = batches
        self.risk = risk

    # ----- orders -----

    def place(
        self, request: OrderRequest, *, actor: str, limits: RiskLimits
    ) -> tuple[dict[str, Any], bool]:
        """Runs (or resumes) the saga; returns the delivered order and whether this call created
        it. Raises IDEMPOTENCY_KEY_REUSED (details: ``field``), the order's stored error on a
        retry of a failed order, the core's refusals (OUT_OF_STOCK with ``available``...),
        RATE_LIMITED (daily quota), JOURNAL_UNAVAILABLE (the order stays pending)."""
        check_client_ref("client_order_id", request.client_order_id)
        if request.hold_id is None:
            check_quantity(request.quantity)
            self.catalog.get_sku(request.sku)
        order_id, created = self._begin(request, actor=actor, limits=limits)
        return self._drive(order_id), created

    def confirm_hold(
        self, agent_id: str, hold_id: str, client_order_id: str, *, actor: str,
        limits: RiskLimits,
    ) -> tuple[dict[str, Any], bool]:
        """Turns an open hold into an order through the same saga. Raises HOLD_NOT_FOUND (also
        for another agent's hold), HOLD_EXPIRED, HOLD_RELEASED, HOLD_ALREADY_CONFIRMED, and as
        :meth:`place`."""
        hold = self.engine.get_hold(hold_ref(agent_id, hold_id))
        request = OrderRequest(agent_id, client_order_id, hold.sku, len(hold.code_ids), hold_id)
        result = self.place(request, actor=actor, limits=limits)
        self.risk.end_hold(hold.hold_ref)
        return result

    def _begin(
        self, request: OrderRequest, *, actor: str, limits: RiskLimits
    ) -> tuple[str, bool]:
        """Step 1: the pending row, or the existing order of this ``client_order_id``."""
        existing = self._find_row(request.agent_id, request.client_order_id)
        if existing is not None:
            return self._same_request(existing, request), False
        self.risk.admit_order(request.agent_id, limits,
                              lambda: self._orders_today(request.agent_id))
        now_ms = self.engine.now_ms()
        order_id = "ord_" + secrets.token_hex(10)
        try:
            with self.db.write() as session:
                session.add(Order(
                    order_id=order_id, agent_id=request.agent_id,
                    client_order_id=request.client_order_id, sku=request.sku,
                    quantity=request.quantity, pool_id=0, hold_id=request.hold_id,
                    status="pending", error_code=None, error_details=None, code_ids=None,
                    created_at_ms=now_ms, updated_at_ms=now_ms, created_by=actor,
                ))
        except IntegrityError:
            # A concurrent request with the same client_order_id committed first.
            existing = self._find_row(request.agent_id, request.client_order_id)
            if existing is None:
                raise
            return self._same_request(existing, request), False
        return order_id, True

    @staticmethod
    def _same_request(existing: Order, request: OrderRequest) -> str:
        for field, old, new in (("sku", existing.sku, request.sku),
                                ("quantity", existing.quantity, request.quantity),
                                ("hold_id", existing.hold_id, request.hold_id)):
            if old != new:
                raise make_error(ErrorCode.IDEMPOTENCY_KEY_REUSED,
                                 "client_order_id was used for a different order",
                                 {"field": field, "client_order_id": request.client_order_id})
        return existing.order_id

    def _drive(self, order_id: str) -> dict[str, Any]:
        """Steps 2 and 3 for a pending order (nothing for a finished one); the delivered order."""
        row = self._row(order_id)
        if row.status == "failed":
            stored = row.error_details or {}
            raise make_error(row.error_code or ErrorCode.INTERNAL_ERROR,
                             str(stored.get("message", "the order failed")),
                             dict(stored.get("details", {})))
        if row.status == "pending":
            try:
                if row.hold_id is not None:
                    ids = self.engine.confirm_hold(hold_ref(row.agent_id, row.hold_id), order_id)
                else:
                    ids = self.engine.allocate(row.sku, row.quantity, order_id, row.pool_id)
            except CardsvcError as error:
                if error.code in FINAL_ERRORS:
                    self._finish(order_id, None, error)
                raise
            self.store.wait_last()
            row = self._finish(order_id, ids, None)
        return self._deliver(row)

    def _finish(
        self, order_id: str, ids: Sequence[int] | None, error: CardsvcError | None
    ) -> Order:
        with self.db.write() as session:
            row = session.get(Order, order_id)
            if row is None:
                raise AssertionError(f"order {order_id} vanished")
            if row.status == "pending":
                row.updated_at_ms = self.engine.now_ms()
                if error is None:
                    row.status = "fulfilled"
                    row.code_ids = list(ids or [])
                else:
                    row.status = "failed"
                    row.error_code = error.code.value
                    row.error_details = {"message": error.message, "details": error.details}
            return row

    def _deliver(self, row: Order) -> dict[str, Any]:
        """The order as its owner sees it, codes in plaintext (DESIGN.md: delivery)."""
        codes: list[dict[str, Any]] = []
        if row.status == "fulfilled" and row.code_ids:
            texts = self.batches.reveal(row.code_ids)
            for code_id, (code, pin) in zip(row.code_ids, texts, strict=True):
                info = self.engine.code_info(code_id)
                codes.append({"code": code, "pin": pin, "valid_until": iso_s(info.valid_until)})
        return {**order_dict(row), "codes": codes}

    def _row(self, order_id: str) -> Order:
        with self.db.read() as session:
            row = session.get(Order, order_id)
            if row is None:
                raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order",
                                 {"order_id": order_id})
            return row

    def _find_row(self, agent_id: str, client_order_id: str) -> Order | None:
        with self.db.read() as session:
            return session.scalar(select(Order).where(Order.agent_id == agent_id,
                                                      Order.client_order_id == client_order_id))

    def _orders_today(self, agent_id: str) -> int:
        start = self.engine.now_ms() // DAY_MS * DAY_MS
        with self.db.read() as session:
            return session.scalar(select(func.count()).select_from(Order).where(
                Order.agent_id == agent_id, Order.created_at_ms >= start)) or 0

    def get(self, order_id: str, *, agent_id: str | None) -> dict[str, Any]:
        """An order with its codes; re-drives it when still pending. ``agent_id`` restricts to
        that agent's orders (another agent's order is ORDER_NOT_FOUND, revealing nothing)."""
        row = self._row(order_id)
        if agent_id is not None and row.agent_id != agent_id:
            raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order", {"order_id": order_id})
        if row.status == "failed":
            return {**order_dict(row), "codes": []}
        return self._drive(order_id)

    def find(self, agent_id: str, client_order_id: str) -> dict[str, Any]:
        """The order an agent placed under ``client_order_id`` (for a request that timed out).
        Raises ORDER_NOT_FOUND when there is none: the request never reached step 1."""
        row = self._find_row(agent_id, client_order_id)
        if row is None:
            raise make_error(ErrorCode.ORDER_NOT_FOUND, "no order with that client_order_id",
                             {"client_order_id": client_order_id})
        return self.get(row.order_id, agent_id=agent_id)

    def recover(self, *, older_than_ms: int = 0) -> dict[str, int]:
        """Re-drives every pending order created at least ``older_than_ms`` ago; returns counts
        of orders fulfilled, failed and still pending (the journal unavailable)."""
        cutoff = self.engine.now_ms() - older_than_ms
        with self.db.read() as session:
            pending = list(session.scalars(select(Order.order_id).where(
                Order.status == "pending", Order.created_at_ms <= cutoff)))
        counts = {"fulfilled": 0, "failed": 0, "pending": 0}
        for order_id in pending:
            try:
                self._drive(order_id)
                counts["fulfilled"] += 1
            except CardsvcError as error:
                counts["failed" if error.code in FINAL_ERRORS else "pending"] += 1
        return counts

    # ----- holds -----

    def hold(
        self, agent_id: str, sku: str, quantity: int, ttl_seconds: int, *,
        buyer_id: str | None, client_hold_id: str | None, limits: RiskLimits,
    ) -> dict[str, Any]:
        """Holds ``quantity`` codes for ``ttl_seconds``. Does not wait for durability: the caller
        awaits ``Engine.last_ticket()`` (the HTTP layer does so without blocking). A retry with
        the same ``client_hold_id`` returns the same hold. Raises OUT_OF_STOCK, SKU_NOT_FOUND,
        RATE_LIMITED (open-hold caps), IDEMPOTENCY_KEY_REUSED, INVALID_ARGUMENT."""
        check_quantity(quantity)
        if not HOLD_TTL_S_MIN <= ttl_seconds <= HOLD_TTL_S_MAX:
            raise _invalid("ttl_seconds", f"ttl_seconds must be {HOLD_TTL_S_MIN}..{HOLD_TTL_S_MAX}")
        if client_hold_id is not None:
            check_client_ref("client_hold_id", client_hold_id)
            digest = hashlib.sha256(f"{agent_id}\0{client_hold_id}".encode()).hexdigest()
            hold_id = "hld_" + digest[:20]
        else:
            hold_id = "hld_" + secrets.token_hex(10)
        ref = hold_ref(agent_id, hold_id)
        expires_at_ms = self.engine.now_ms() + ttl_seconds * 1000
        self.risk.reserve_hold(ref, agent_id, buyer_id, quantity, expires_at_ms, limits)
        try:
            held = self.engine.hold(sku, quantity, hold_ref=ref, ttl_seconds=ttl_seconds)
        except CardsvcError:
            self.risk.end_hold(ref)
            raise
        return hold_dict(hold_id, held)

    def get_hold(self, agent_id: str, hold_id: str) -> dict[str, Any]:
        """Raises HOLD_NOT_FOUND (also for another agent's hold)."""
        return hold_dict(hold_id, self.engine.get_hold(hold_ref(agent_id, hold_id)))

    def release_hold(self, agent_id: str, hold_id: str) -> int:
        """Returns a hold's codes to stock; the count returned (0 when already released).
        The caller awaits durability as for :meth:`hold`. Raises HOLD_NOT_FOUND,
        HOLD_ALREADY_CONFIRMED."""
        ref = hold_ref(agent_id, hold_id)
        released = self.engine.release_hold(ref)
        self.risk.end_hold(ref)
        return released


def hold_ref(agent_id: str, hold_id: str) -> str:
    """The core's reference of an agent's hold."""
    if not hold_id.startswith("hld_") or len(hold_id) > 40:
        raise make_error(ErrorCode.HOLD_NOT_FOUND, "no such hold", {"hold_id": hold_id[:40]})
    return f"{agent_id}/{hold_id}"


def hold_dict(hold_id: str, held: Any) -> dict[str, Any]:
    return {
        "hold_id": hold_id,
        "sku": held.sku,
        "quantity": len(held.code_ids),
        "state": held.state,
        "expires_at": iso(held.expires_at_ms),
        "order_id": held.order_ref,
    }


def order_dict(row: Order) -> dict[str, Any]:
    out: dict[str, Any] = {
        "order_id": row.order_id,
        "client_order_id": row.client_order_id,
        "agent_id": row.agent_id,
        "status": row.status,
        "sku": row.sku,
        "quantity": row.quantity,
        "hold_id": row.hold_id,
        "created_at": iso(row.created_at_ms),
    }
    if row.status == "failed":
        out["error"] = {"code": row.error_code, **(row.error_details or {})}
    return out
