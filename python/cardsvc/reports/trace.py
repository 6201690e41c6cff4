"""A code's whole story in one call, to settle disputes ("the card was already used when I got
it") from the record: its batch and supplier, its import, its order and agent and delivery, each
redemption (when, which terminal) and rollback, freezes and voids, exports of its batch or
order and whether it was withdrawn from sale by one — as facts and as one timeline ordered by
time.

The story joins both stores: the core's view of the code (state, pool, order, redemptions) and
SQL's (the batch, the order, the audit log). It never contains the code's text or PIN: the
code is shown masked. Looking a code up is itself audited (``code.trace``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, select

from cardsvc import audit
from cardsvc.audit.tables import AuditEntry
from cardsvc.catalog.tables import Batch
from cardsvc.db import Database
from cardsvc.delivery.tables import Export
from cardsvc.engine import Store
from cardsvc.masking import mask_code
from cardsvc.sales.tables import Order
from cardsvc.times import iso, iso_s

AUDIT_ENTRIES_MAX = 500
"""Audit entries shown per story (a code's own history is short; a batch's may not be)."""


def trace_code(store: Store, db: Database, code: str, *, actor: str,
               public_id: Callable[[int], str] | None = None) -> dict[str, Any]:
    """The story of ``code``: the core's view (through ``store``) joined with the database's.
    ``public_id`` gives each redemption's public id (``Terminals.public_id``: what terminals
    see and a rollback takes) beside the core's number. Audited as ``code.trace``. Raises
    CODE_NOT_FOUND, INVALID_CODE."""
    code_id = store.engine.lookup(code)
    return trace_code_id(store, db, code_id, mask_code(code), actor=actor, public_id=public_id)


def trace_code_id(store: Store, db: Database, code_id: int, masked: str, *, actor: str,
                  public_id: Callable[[int], str] | None = None) -> dict[str, Any]:
    """:func:`trace_code` of the code with id ``code_id``, shown as ``masked`` (the caller's
    masked form of it). Raises CODE_NOT_FOUND."""
    engine = store.engine
    info = engine.code_info(code_id)
    store.wait_visible()
    timeline: list[dict[str, Any]] = []
    redemptions = []
    for redemption_id in info.redemption_ids:
        r = engine.get_redemption(redemption_id)
        redemptions.append({"redemption_id": r.redemption_id,
                            "public_id": None if public_id is None else public_id(
                                r.redemption_id),
                            "terminal": r.terminal,
                            "request_id": r.request_id, "redeemed_at": iso(r.redeemed_at_ms),
                            "rolled_back_at": iso(r.rolled_back_at_ms),
                            "rollback_reason": r.rollback_reason})
        timeline.append({"at_ms": r.redeemed_at_ms, "event": "redeemed",
                         "redemption_id": r.redemption_id, "terminal": r.terminal})
        if r.rolled_back_at_ms is not None:
            timeline.append({"at_ms": r.rolled_back_at_ms, "event": "rolled_back",
                             "redemption_id": r.redemption_id, "reason": r.rollback_reason})
    with db.write() as session:
        batch = session.get(Batch, info.batch) if info.batch else None
        order = session.get(Order, info.order_ref) if info.order_ref else None
        objects = [AuditEntry.object_type == "code", AuditEntry.object_id == str(code_id)]
        related = [objects]
        if batch is not None:
            related.append([AuditEntry.object_type == "batch",
                            AuditEntry.object_id == str(batch.batch_id)])
        if info.order_ref:
            # The order the code went to, an agent's or the shop's (``ro_...``, no ``orders``
            # row): its deliveries, re-deliveries, reveals and claims are audited on it.
            related.append([AuditEntry.object_type == "order",
                            AuditEntry.object_id == info.order_ref])
        related += [[AuditEntry.object_type == "redemption",
                     AuditEntry.object_id == str(r["redemption_id"])] for r in redemptions]
        entries = session.scalars(
            select(AuditEntry).where(or_(*(a & b for a, b in related)))
            .order_by(AuditEntry.seq).limit(AUDIT_ENTRIES_MAX)).all()
        story = _story(masked, code_id, info, batch, order, redemptions)
        exports = session.scalars(
            select(Export).where(((Export.object_type == "batch")
                                  & (Export.object_id == str(info.batch)))
                                 | ((Export.object_type == "order")
                                    & (Export.object_id == (info.order_ref or ""))))
            .order_by(Export.created_at_ms).limit(AUDIT_ENTRIES_MAX)).all()
        story["exports"] = [{"export_id": e.export_id, "object_type": e.object_type,
                             "at": iso(e.created_at_ms), "by": e.actor, "status": e.status,
                             "withdrawn": e.withdrawn, "restored_at": iso(e.restored_at_ms)}
                            for e in exports]
        story["audit"] = [{"seq": e.seq, "at": iso(e.at_ms), "actor": e.actor,
                           "action": e.action, "object_type": e.object_type,
                           "object_id": e.object_id, "details": e.details} for e in entries]
        timeline += [{"at_ms": e.at_ms, "event": e.action, "actor": e.actor,
                      "seq": e.seq} for e in entries if e.action != "redemption.rollback"]
        if order is not None:
            timeline.append({"at_ms": order.created_at_ms, "event": "ordered",
                             "order_id": order.order_id, "agent_id": order.agent_id})
            if order.status == "fulfilled":
                timeline.append({"at_ms": order.updated_at_ms, "event": "delivered",
                                 "order_id": order.order_id})
        audit.append(session, actor=actor, action="code.trace", object_type="code",
                     object_id=str(code_id), details={"code": masked},
                     at_ms=engine.now_ms())
    timeline.sort(key=lambda event: (event["at_ms"], event.get("seq", 0)))
    story["timeline"] = [{**event, "at": iso(event["at_ms"])} for event in timeline]
    return story


def _story(masked: str, code_id: int, info: Any, batch: Batch | None, order: Order | None,
           redemptions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "code": masked,
        "code_id": code_id,
        "sku": info.sku,
        "state": info.state,
        "frozen_from": info.frozen_from,
        "uses_left": info.uses_left,
        "valid_from": iso_s(info.valid_from),
        "valid_until": iso_s(info.valid_until),
        "pool": info.pool,
        "hold": info.hold_ref,
        "was_withdrawn": info.was_withdrawn,
        "batch": None if batch is None else {
            "batch_id": batch.batch_id, "source": batch.source, "supplier": batch.supplier,
            "source_name": batch.source_name, "purchase_date": batch.purchase_date,
            "unit_cost_minor": batch.unit_cost_minor, "currency": batch.currency,
            "imported_at": iso(batch.created_at_ms), "imported_by": batch.created_by},
        "order": None if order is None else {
            "order_id": order.order_id, "agent_id": order.agent_id,
            "client_order_id": order.client_order_id, "status": order.status,
            "ordered_at": iso(order.created_at_ms),
            "delivered_at": iso(order.updated_at_ms) if order.status == "fulfilled" else None},
        "redemptions": redemptions,
    }
