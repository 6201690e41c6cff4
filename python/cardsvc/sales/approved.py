"""Running an approved maker-checker request: the one use case that knows which guarded use case
each action is, so the console's "approve and run" and "run" buttons are one call each.

The guarded use cases check and consume the approval themselves (``Approvals.authorize`` in
their own transaction); this only picks the use case and passes the approval on, so nothing
here can run an action without an approval that the use case accepts. It lives in ``sales``
because a refund (the order saga) is the highest of the four actions; the others are in
``money`` (payouts), ``catalog`` (batch voids) and ``delivery`` (exports), all below it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cardsvc.access import APPROVAL_ACTIONS, ApprovalInfo, Approvals, Principal
from cardsvc.catalog import Catalog
from cardsvc.delivery import ExportResult, Exports
from cardsvc.errors import ErrorCode, make_error
from cardsvc.money import AgentMoney
from cardsvc.sales.checkout import Checkout
from cardsvc.sales.orders import Orders


@dataclass(frozen=True)
class Ran:
    """What running an approval did: the approval (now executed) and the action's result."""

    approval: ApprovalInfo
    result: dict[str, Any]


class ApprovedActions:
    """Approves and runs maker-checker requests through their guarded use cases."""

    def __init__(self, approvals: Approvals, money: AgentMoney, orders: Orders,
                 checkout: Checkout, catalog: Catalog, exports: Exports) -> None:
        self.approvals = approvals
        self.money = money
        self.orders = orders
        self.checkout = checkout
        self.catalog = catalog
        self.exports = exports

    async def run(self, principal: Principal, approval_id: str) -> Ran:
        """Runs an approved request (its maker or checker; an export runs by downloading it,
        :meth:`export`). Raises the approval's refusals (APPROVAL_NOT_PENDING, APPROVAL_SELF,
        APPROVAL_EXPIRED...), FORBIDDEN (the action's scope), and the action's own errors."""
        approval = await asyncio.to_thread(self.approvals.get, principal, approval_id)
        principal.require(APPROVAL_ACTIONS[approval.action].scope)
        actor = principal.actor
        if approval.action == "withdrawal_payout":
            info = await asyncio.to_thread(self.money.decide_withdrawal, approval.object_id,
                                           "paid", actor=actor, note=approval.reason,
                                           approval_id=approval_id)
            result: dict[str, Any] = {"withdrawal_id": info.withdrawal_id, "status": info.status}
        elif approval.action == "refund" and approval.object_type == "retail_order":
            retail = await self.checkout.refund(approval.object_id, actor=actor,
                                                reason=approval.reason, approval_id=approval_id)
            result = {"order_id": retail.order_id, "status": retail.status}
        elif approval.action == "refund":
            order = await self.orders.refund(approval.object_id, actor=actor,
                                             reason=approval.reason, approval_id=approval_id)
            result = {"order_id": order.order_id, "status": order.status}
        elif approval.action == "batch_void":
            result = await asyncio.to_thread(
                self.catalog.set_state, "void", batch_id=int(approval.object_id), actor=actor,
                reason=approval.reason, approval_id=approval_id)
        else:
            raise make_error(ErrorCode.INVALID_ARGUMENT,
                             "an export runs by downloading its file", {"field": "action"})
        done = await asyncio.to_thread(self.approvals.get, principal, approval_id)
        return Ran(done, result)

    async def approve_and_run(self, principal: Principal, approval_id: str,
                              note: str | None = None) -> Ran:
        """The checker approves a request and runs it at once (not for exports: the maker
        downloads those). Raises as :meth:`Approvals.approve`, then as :meth:`run`."""
        pending = await asyncio.to_thread(self.approvals.get, principal, approval_id)
        if pending.action == "code_export":
            raise make_error(ErrorCode.INVALID_ARGUMENT,
                             "an export is approved, then downloaded by its maker",
                             {"field": "action"})
        await asyncio.to_thread(self.approvals.approve, principal, approval_id, note)
        return await self.run(principal, approval_id)

    def export(self, principal: Principal,
               approval_id: str) -> tuple[ExportResult, Iterator[tuple[str, int]]]:
        """The file of an approved export (recorded and audited now, the approval consumed:
        once per approval). Raises FORBIDDEN without ``export``, the approval's refusals."""
        principal.require("export")
        approval = self.approvals.get(principal, approval_id)
        if approval.action != "code_export":
            raise make_error(ErrorCode.APPROVAL_MISMATCH, "this approval is not an export",
                             {"approval_id": approval_id, "action": approval.action})
        batch_id = int(approval.object_id) if approval.object_type == "batch" else None
        order_id = approval.object_id if approval.object_type == "order" else None
        return self.exports.export_stream(actor=principal.actor, batch_id=batch_id,
                                          order_id=order_id, approval_id=approval_id)
