"""Flash-sale holds: codes reserved for a few seconds or minutes while a buyer pays, in memory
at core speed. Holds never touch SQL, so rejected demand never reaches it.

A hold's id names its agent in the core's hold reference (``<agent_id>/<hold_id>``), so one agent
can never see, release or confirm another's hold; the open-hold caps of :mod:`cardsvc.access.risk`
apply per agent and per buyer. Confirming a hold goes through the order saga
(``cardsvc.sales.orders.Orders.confirm_hold``). Every method returns only once the journal holds
what it reports (a refusal too: it may report state).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from cardsvc.access import RiskGuard, RiskLimits
from cardsvc.checks import check_client_ref, check_quantity
from cardsvc.engine import Engine, Hold, Store
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error

HOLD_TTL_S_MIN = 1
HOLD_TTL_S_MAX = 86_400
"""A hold lasts 1 s to 1 day (the core's HOLD_TTL_MS_MAX)."""
HOLD_ID_LEN_MAX = 40


@dataclass(frozen=True, slots=True)
class HoldView:
    """A hold as its agent sees it (times in Unix ms)."""

    hold_id: str
    sku: str
    quantity: int
    state: str
    expires_at_ms: int | None
    order_id: str | None


class Holds:
    """Holds of agents over the core, with the risk guard's caps."""

    def __init__(self, store: Store, risk: RiskGuard) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.risk = risk

    async def hold(
        self, agent_id: str, sku: str, quantity: int, ttl_seconds: int, *,
        buyer_id: str | None, client_hold_id: str | None, limits: RiskLimits,
    ) -> HoldView:
        """Holds ``quantity`` codes for ``ttl_seconds``. A retry with the same
        ``client_hold_id`` returns the same hold. Raises OUT_OF_STOCK, SKU_NOT_FOUND,
        RATE_LIMITED (open-hold caps), IDEMPOTENCY_KEY_REUSED, INVALID_ARGUMENT."""
        try:
            return self._hold(agent_id, sku, quantity, ttl_seconds, buyer_id=buyer_id,
                              client_hold_id=client_hold_id, limits=limits)
        finally:
            await self.store.wait_async(Engine.last_ticket())

    def _hold(
        self, agent_id: str, sku: str, quantity: int, ttl_seconds: int, *,
        buyer_id: str | None, client_hold_id: str | None, limits: RiskLimits,
    ) -> HoldView:
        check_quantity(quantity)
        if not HOLD_TTL_S_MIN <= ttl_seconds <= HOLD_TTL_S_MAX:
            raise invalid("ttl_seconds", f"ttl_seconds must be {HOLD_TTL_S_MIN}..{HOLD_TTL_S_MAX}")
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
        return hold_view(hold_id, held)

    def get(self, agent_id: str, hold_id: str) -> Hold:
        """The core's hold. Raises HOLD_NOT_FOUND (also for another agent's hold)."""
        return self.engine.get_hold(hold_ref(agent_id, hold_id))

    async def view(self, agent_id: str, hold_id: str) -> HoldView:
        """Raises HOLD_NOT_FOUND (also for another agent's hold)."""
        held = hold_view(hold_id, self.get(agent_id, hold_id))
        await self.store.wait_async(Engine.last_ticket())
        return held

    async def release(self, agent_id: str, hold_id: str) -> int:
        """Returns a hold's codes to stock; the count returned (0 when already released).
        Raises HOLD_NOT_FOUND, HOLD_ALREADY_CONFIRMED."""
        ref = hold_ref(agent_id, hold_id)
        try:
            released = self.engine.release_hold(ref)
            self.risk.end_hold(ref)
        finally:
            await self.store.wait_async(Engine.last_ticket())
        return released

    def ended(self, agent_id: str, hold_id: str) -> None:
        """A hold was confirmed: its units no longer count against the caps."""
        self.risk.end_hold(hold_ref(agent_id, hold_id))


def hold_ref(agent_id: str, hold_id: str) -> str:
    """The core's reference of an agent's hold. Raises HOLD_NOT_FOUND for an id that is not one
    of ours (it cannot exist)."""
    if not hold_id.startswith("hld_") or len(hold_id) > HOLD_ID_LEN_MAX:
        raise make_error(ErrorCode.HOLD_NOT_FOUND, "no such hold",
                         {"hold_id": hold_id[:HOLD_ID_LEN_MAX]})
    return f"{agent_id}/{hold_id}"


def hold_view(hold_id: str, held: Hold) -> HoldView:
    return HoldView(hold_id=hold_id, sku=held.sku, quantity=len(held.code_ids), state=held.state,
                    expires_at_ms=held.expires_at_ms, order_id=held.order_ref)
