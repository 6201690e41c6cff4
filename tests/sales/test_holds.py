"""Goal: a hold is bounded by what its holder can pay, and its money ends exactly once with it:
confirm turns the reservation into the order's debit, release (by the agent, an admin, or a
suspension) and expiry (on the timer) give it back; caps are LIMIT_EXCEEDED; holds racing
orders never let an agent spend beyond balance + credit; reconciliation agrees throughout
(issue 10, item 7).

Method: domain calls on a Runtime (tests/fixtures/runtime.py, SQLite and PostgreSQL), the
engine's manual clock moved past deadlines (no sleeps), balances read from the ledger, and the
reconciliation report checked after each story. The race runs holds and orders concurrently
on one event loop, as the server does.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from cardsvc.access import RiskLimits
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.reports import reconciliation_report
from cardsvc.runtime import Runtime
from cardsvc.sales import OrderRequest
from cardsvc.sales.holds import RESERVE_KIND, _Reserve, hold_ref
from cardsvc.sales.tables import HoldRecord
from tests.fixtures.runtime import FUNDS_MINOR, PRICE_MINOR, SHOP_CODES, balances

OFF = RiskLimits(enabled=False)


def hold(services: Runtime, agent_id: str, quantity: int, ref: str | None = None,
         ttl_s: int = 60, limits: RiskLimits = OFF) -> str:
    view = asyncio.run(services.holds.hold(agent_id, "VIP", quantity, ttl_s, buyer_id=None,
                                           client_hold_id=ref, limits=limits))
    return view.hold_id


def reconciled(services: Runtime) -> None:
    report = reconciliation_report(services.store, services.db, services.catalog)
    assert report["ok"], report["differences"]


def test_a_hold_reserves_its_value_and_cannot_exceed_balance_and_credit(shop: Runtime) -> None:
    hold(shop, "A1", 3)
    assert balances(shop, "A1")["available"] == FUNDS_MINOR - 3 * PRICE_MINOR
    assert balances(shop, "A1")["escrow"] == 3 * PRICE_MINOR
    with pytest.raises(CardsvcError) as refused:
        hold(shop, "A1", 8)  # 8,000 more than the 7,000 left
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert shop.catalog.stock("VIP")["held"] == 3  # the refusal held nothing
    reconciled(shop)


def test_confirm_turns_the_reservation_into_the_orders_debit_exactly_once(
    shop: Runtime,
) -> None:
    hold_id = hold(shop, "A1", 2)
    order, created = asyncio.run(shop.orders.confirm_hold("A1", hold_id, "c-1", actor="t",
                                                         limits=OFF))
    again, created_again = asyncio.run(shop.orders.confirm_hold("A1", hold_id, "c-1", actor="t",
                                                               limits=OFF))
    assert created and not created_again and again.order_id == order.order_id
    assert order.status == "fulfilled" and len(order.codes) == 2
    assert balances(shop, "A1")["available"] == FUNDS_MINOR - 2 * PRICE_MINOR
    assert balances(shop, "A1")["escrow"] == 0
    with pytest.raises(CardsvcError) as other:
        asyncio.run(shop.orders.confirm_hold("A1", hold_id, "c-2", actor="t", limits=OFF))
    assert other.value.code is ErrorCode.HOLD_ALREADY_CONFIRMED
    reconciled(shop)


def test_release_by_the_agent_or_an_admin_returns_codes_and_money(shop: Runtime) -> None:
    mine = hold(shop, "A1", 2)
    theirs = hold(shop, "A2", 4)
    assert asyncio.run(shop.holds.release("A1", mine)) == 2
    assert asyncio.run(shop.holds.release(None, theirs, actor="admin")) == 4
    assert balances(shop, "A1")["available"] == FUNDS_MINOR
    assert balances(shop, "A2")["available"] == FUNDS_MINOR
    assert shop.catalog.stock("VIP")["available"] == len(SHOP_CODES)
    with pytest.raises(CardsvcError) as gone:
        asyncio.run(shop.holds.release("A2", mine))  # another agent's hold does not exist
    assert gone.value.code is ErrorCode.HOLD_NOT_FOUND
    page = shop.holds.list(agent_id=None)
    assert {(view.hold_id, view.state) for view in page.items} == {(mine, "released"),
                                                                   (theirs, "released")}
    assert [view.hold_id for view in shop.holds.list(agent_id="A1").items] == [mine]
    reconciled(shop)


def test_expiry_on_the_timer_returns_the_money(shop: Runtime) -> None:
    hold_id = hold(shop, "A1", 3, ttl_s=5)
    shop.engine.set_clock_ms(shop.engine.now_ms() + 6_000)
    counts = asyncio.run(shop.recover_pending())
    assert counts["holds_expired"] == 1
    assert balances(shop, "A1")["available"] == FUNDS_MINOR
    assert shop.catalog.stock("VIP")["held"] == 0
    with pytest.raises(CardsvcError) as late:
        asyncio.run(shop.orders.confirm_hold("A1", hold_id, "c-1", actor="t", limits=OFF))
    assert late.value.code is ErrorCode.HOLD_EXPIRED
    assert balances(shop, "A1")["available"] == FUNDS_MINOR
    reconciled(shop)


def test_suspending_an_agent_releases_its_subtrees_holds(shop: Runtime) -> None:
    hold(shop, "A1", 2)  # A1 is below T
    hold(shop, "A2", 1)
    shop.agent_updates.change("T", {"status": "suspended"}, actor="admin", actor_agent_id=None)
    assert balances(shop, "A1")["available"] == FUNDS_MINOR
    assert balances(shop, "A2")["escrow"] == PRICE_MINOR  # not in the suspended subtree
    assert shop.catalog.stock("VIP")["held"] == 1
    with pytest.raises(CardsvcError) as refused:
        hold(shop, "A1", 1)  # a suspended agent (or one below it) holds nothing new
    assert refused.value.code is ErrorCode.AGENT_SUSPENDED
    reconciled(shop)


def test_open_hold_caps_are_limit_exceeded_not_rate_limited(shop: Runtime) -> None:
    capped = RiskLimits(open_hold_units_per_agent_max=2)
    hold(shop, "A1", 2, limits=capped)
    with pytest.raises(CardsvcError) as refused:
        hold(shop, "A1", 1, limits=capped)
    assert refused.value.code is ErrorCode.LIMIT_EXCEEDED
    assert refused.value.details["limit"] == "open_hold_units_per_agent_max"
    assert "retry_after_s" not in refused.value.details


def test_a_retried_hold_is_the_same_hold_and_reserves_once(shop: Runtime) -> None:
    first = hold(shop, "A1", 2, ref="same")
    assert hold(shop, "A1", 2, ref="same") == first
    assert balances(shop, "A1")["escrow"] == 2 * PRICE_MINOR
    with pytest.raises(CardsvcError) as reused:
        hold(shop, "A1", 3, ref="same")
    assert reused.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_holds_racing_orders_never_overspend(shop: Runtime, seed: int) -> None:
    """A1 has 10,000 (10 codes' worth) and 12 codes in stock: random holds, confirms, orders
    and releases run concurrently; whatever interleaves, A1 never spends beyond its balance and
    every code is paid for exactly once."""
    rng = random.Random(seed)

    async def attempt(index: int) -> None:
        kind = rng.choice(("hold", "order", "hold_confirm", "hold_release"))
        quantity = rng.randint(1, 4)
        try:
            if kind == "order":
                await shop.orders.place(OrderRequest("A1", f"o-{index}", "VIP", quantity),
                                        actor="t", limits=OFF)
                return
            view = await shop.holds.hold("A1", "VIP", quantity, 60, buyer_id=None,
                                         client_hold_id=f"h-{index}", limits=OFF)
            if kind == "hold_confirm":
                await shop.orders.confirm_hold("A1", view.hold_id, f"c-{index}", actor="t",
                                               limits=OFF)
            elif kind == "hold_release":
                await shop.holds.release("A1", view.hold_id)
        except CardsvcError as error:
            assert error.code in (ErrorCode.INSUFFICIENT_BALANCE, ErrorCode.OUT_OF_STOCK), error

    async def race() -> None:
        await asyncio.gather(*(attempt(index) for index in range(16)))

    asyncio.run(race())
    money = balances(shop, "A1")
    assert money["available"] >= 0  # no credit: never below zero
    stock = shop.catalog.stock("VIP")
    sold_value = stock["allocated"] * PRICE_MINOR
    held_value = stock["held"] * PRICE_MINOR
    assert money["available"] == FUNDS_MINOR - sold_value - held_value
    assert money["escrow"] == held_value
    reconciled(shop)


def test_a_group_of_hold_reservations_equals_one_hold_units(shop: Runtime) -> None:
    # The SQL step of eight holds as one batch for A1 and as one-hold units (a savepoint each)
    # for A2, funded alike: a retry and a clashing reuse of one client_hold_id inside the group,
    # a missing SKU, and the money running out before the last but one.
    asks = [("r0", "VIP", 2), ("r1", "VIP", 2), ("r1", "VIP", 2), ("r1", "VIP", 3),
            ("r2", "NOPE", 1), ("r3", "VIP", 4), ("r4", "VIP", 3), ("r5", "VIP", 2)]
    now_ms = shop.engine.now_ms()

    def items(agent_id: str) -> list[_Reserve]:
        return [_Reserve(hold_ref(agent_id, f"hld_{name}"), f"hld_{name}", agent_id, sku,
                         quantity, None, now_ms + 60_000, "test", now_ms)
                for name, sku, quantity in asks]

    def described(outcome: object) -> object:
        if isinstance(outcome, CardsvcError):
            return outcome.code, {k: v for k, v in outcome.details.items()
                                  if k not in ("account_id", "agent_id")}
        assert isinstance(outcome, HoldRecord)
        return outcome.hold_id, outcome.quantity, outcome.amount_minor, outcome.status

    with shop.db.write() as session:
        batched = RESERVE_KIND.run_batch(session, items("A1"))
    alone: list[object] = []
    with shop.db.write() as session:
        for item in items("A2"):
            try:
                with session.begin_nested():
                    alone.append(RESERVE_KIND.run_one(session, item))
            except CardsvcError as error:
                alone.append(error)
    assert [described(o) for o in batched] == [described(o) for o in alone]
    assert [o.code if isinstance(o, CardsvcError) else "ok" for o in batched] == [
        "ok", "ok", "ok", ErrorCode.IDEMPOTENCY_KEY_REUSED, ErrorCode.SKU_NOT_FOUND, "ok",
        ErrorCode.INSUFFICIENT_BALANCE, "ok"]
    assert balances(shop, "A1") == balances(shop, "A2") == {
        "available": 0, "escrow": FUNDS_MINOR, "pending": 0, "withdrawing": 0}
