"""Goal: the retail checkout saga sells from the one stock through the core's hold, records the
payment attempt before the buyer leaves, takes each verified callback once, delivers each paid
order exactly once, posts its money (receipt, sale, fee, refund), and refuses what it must: caps
and sold-out demand before SQL, forged or mismatched callbacks, callbacks for another channel.

Method: a ``Runtime`` over a temporary data directory (``tests/fixtures/shop.py``) with the
sandbox channel; callbacks are signed by the sandbox simulator (``sandbox_script``) exactly as
its pay page sends them, and fed to ``Checkout.handle_notify`` as the notify route does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from cardsvc import audit
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments import PaymentInbox, SandboxScenario, sandbox_script
from cardsvc.payments.tables import NotifyRefusal
from cardsvc.reports import reconciliation_report
from cardsvc.runtime import Runtime
from cardsvc.sales import CheckoutResult, OrderRequest
from cardsvc.sales.tables import RetailOrder
from tests.fixtures.shop import PRICE, SKU, STOCK, balances, request, run


def notify_body(runtime: Runtime, result: CheckoutResult, status: str = "paid", *,
                amount: int | None = None, forge: bool = False,
                out_trade_no: str | None = None) -> tuple[str, dict[str, str], bytes]:
    live = runtime.channels.live("sandbox")
    delivery = sandbox_script(live.config, SandboxScenario((status,), forge=forge),  # type: ignore[arg-type]
                              out_trade_no=out_trade_no or result.payment.out_trade_no,
                              amount_minor=result.order.total_minor if amount is None else amount,
                              currency="CNY", start_ms=runtime.engine.now_ms())[0]
    token = live.view.notify_url.rsplit("/", 1)[1]
    return token, dict(delivery.headers), delivery.body


async def notify(runtime: Runtime, token: str, headers: dict[str, str], body: bytes) -> Any:
    return await runtime.checkout.handle_notify(token, "POST", headers, [], body)


def order_row(runtime: Runtime, order_id: str) -> RetailOrder:
    with runtime.db.read() as session:
        row = session.get(RetailOrder, order_id)
        assert row is not None
        return row


def test_checkout_holds_stock_and_records_the_attempt(shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(2)))
    assert result.order.status == "pending"
    assert result.order.total_minor == 2 * PRICE
    assert result.payment.kind == "redirect" and result.payment.sandbox
    assert result.payment.url is not None and "/store/sandbox/pay?" in result.payment.url
    stock = shop_runtime.engine.stock(SKU, 0)
    assert (stock["held"], stock["available"]) == (2, STOCK - 2)
    row = order_row(shop_runtime, result.order.order_id)
    assert row.unit_cost_minor == 900 and row.product_name == "Game points 100"
    assert result.token not in repr(row.__dict__)


def test_paid_notify_delivers_once_and_posts_the_sale(shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(2)))
    token, headers, body = notify_body(shop_runtime, result)
    first = run(notify(shop_runtime, token, headers, body))
    assert first.answer.body == b"success" and first.verdict == "applied"
    again = run(notify(shop_runtime, token, headers, body))
    assert again.answer.body == b"success" and again.verdict == "duplicate"
    row = order_row(shop_runtime, result.order.order_id)
    assert row.status == "delivered" and len(row.code_ids or []) == 2
    money = balances(shop_runtime)
    assert money["clearing:sandbox:CNY"] == -2 * PRICE
    assert money["platform:retail_received:CNY"] == 0
    assert money["platform:revenue:CNY"] == 2 * (PRICE - 900)
    assert money["platform:cost_of_goods:CNY"] == 2 * 900
    _view, codes, full = run(shop_runtime.checkout.codes(
        result.order.order_id, result.token, full=False, channel="page", ip="1.2.3.4"))
    assert full and all(not c.masked for c in codes) and codes[0].code.startswith("SHOP-")
    _, again_codes, again_full = run(shop_runtime.checkout.codes(
        result.order.order_id, result.token, full=False, channel="page", ip="1.2.3.4"))
    assert not again_full and all(c.masked and c.code.startswith("*") for c in again_codes)
    report = reconciliation_report(shop_runtime.store, shop_runtime.db, shop_runtime.catalog)
    assert report["ok"], report["differences"]


def test_twenty_identical_notifies_at_once_fulfil_once(shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(1)))
    token, headers, body = notify_body(shop_runtime, result)

    async def storm() -> list[Any]:
        return await asyncio.gather(*(notify(shop_runtime, token, headers, body)
                                      for _ in range(20)))

    outcomes = run(storm())
    assert all(o.answer.body == b"success" for o in outcomes)
    assert sorted(o.verdict for o in outcomes).count("applied") == 1
    with shop_runtime.db.read() as session:
        inbox = session.scalar(select(func.count()).select_from(PaymentInbox))
        sales = session.scalar(select(func.count()).select_from(RetailOrder).where(
            RetailOrder.status == "delivered"))
    assert (inbox, sales) == (1, 1)
    assert shop_runtime.engine.stock(SKU, 0)["allocated"] == 1
    assert balances(shop_runtime)["clearing:sandbox:CNY"] == -PRICE


def test_notify_for_order_a_replayed_with_order_b_is_refused(shop_runtime: Runtime) -> None:
    a = run(shop_runtime.checkout.start(request(1, email="a@example.com")))
    b = run(shop_runtime.checkout.start(request(1, email="b@example.com")))
    token, headers, body = notify_body(shop_runtime, a, out_trade_no=b.payment.out_trade_no)
    outcome = run(notify(shop_runtime, token, headers, body))
    # Signed for B's attempt but carrying A's amount is fine; rewriting the body breaks the
    # signature: a validly signed notify for B pays B only.
    assert outcome.verdict == "applied" and outcome.order_to_fulfil == b.order.order_id
    forged = body.replace(b.payment.out_trade_no.encode(), a.payment.out_trade_no.encode())
    refused = run(notify(shop_runtime, token, headers, forged))
    assert refused.answer.body == b"fail"
    assert order_row(shop_runtime, a.order.order_id).status == "pending"


def test_forged_signature_and_amount_mismatch_are_refused_and_stored(
        shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(1)))
    token, headers, body = notify_body(shop_runtime, result, forge=True)
    forged = run(notify(shop_runtime, token, headers, body))
    assert (forged.answer.status_code, forged.verdict) == (400, "refused_verification")
    token, headers, body = notify_body(shop_runtime, result, amount=1)
    mismatch = run(notify(shop_runtime, token, headers, body))
    assert (mismatch.answer.body, mismatch.verdict) == (b"fail", "mismatch")
    assert order_row(shop_runtime, result.order.order_id).status == "pending"
    with shop_runtime.db.read() as session:
        refusals = session.scalar(select(func.count()).select_from(NotifyRefusal))
        verdicts = list(session.scalars(select(PaymentInbox.verdict)))
    assert refusals == 1 and verdicts == ["mismatch"]
    assert balances(shop_runtime)["clearing:sandbox:CNY"] == 0


def test_unknown_channel_token_reaches_nothing(shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(1)))
    _, headers, body = notify_body(shop_runtime, result)
    assert run(notify(shop_runtime, "not-a-channel-token", headers, body)) is None


def test_sold_out_answers_from_the_core_without_sql(shop_runtime: Runtime,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run(shop_runtime.checkout.start(request(5, email="x@example.com", ip="10.0.0.1")))
    run(shop_runtime.checkout.start(request(5, email="y@example.com", ip="10.0.0.2")))
    run(shop_runtime.checkout.start(request(2, email="z@example.com", ip="10.0.0.3")))

    def no_sql(*args: object, **kwargs: object) -> object:
        raise AssertionError("a sold-out checkout reached SQL")

    monkeypatch.setattr(shop_runtime.batcher, "submit_async", no_sql)
    monkeypatch.setattr(shop_runtime.db, "write", no_sql)
    with pytest.raises(CardsvcError) as refused:
        run(shop_runtime.checkout.start(request(1, email="w@example.com", ip="10.0.0.4")))
    assert refused.value.code == ErrorCode.OUT_OF_STOCK


def test_caps_refuse_before_the_hold(shop_runtime: Runtime) -> None:
    checkout = shop_runtime.checkout
    for n in range(2):
        run(checkout.start(request(5, email="same@example.com", ip=f"10.1.0.{n}")))
    held = shop_runtime.engine.stock(SKU, 0)["held"]
    with pytest.raises(CardsvcError) as refused:
        run(checkout.start(request(1, email="same@example.com", ip="10.1.0.9")))
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert refused.value.details["limit"] == "units_per_email_max"
    assert shop_runtime.engine.stock(SKU, 0)["held"] == held
    with pytest.raises(CardsvcError) as too_many:
        run(checkout.start(request(6, email="other@example.com")))
    assert too_many.value.code == ErrorCode.QUANTITY_NOT_ALLOWED


def test_late_paid_notify_after_expiry_is_fulfilled_from_stock(shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(1)))
    shop_runtime.engine.release_hold(f"retail/{result.order.order_id}")  # the hold lapsed
    outcome = run(notify(shop_runtime, *notify_body(shop_runtime, result)))
    assert outcome.verdict == "applied"
    row = order_row(shop_runtime, result.order.order_id)
    assert row.status == "delivered" and row.late


def test_late_paid_notify_with_no_stock_left_is_refunded(shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(1)))
    shop_runtime.engine.release_hold(f"retail/{result.order.order_id}")
    rest = STOCK
    shop_runtime.engine.allocate(SKU, rest, "someone-else", 0)  # an agent bought the rest
    run(notify(shop_runtime, *notify_body(shop_runtime, result)))
    row = order_row(shop_runtime, result.order.order_id)
    assert row.status == "refunded" and row.error_code == "OUT_OF_STOCK"
    money = balances(shop_runtime)
    assert money["clearing:sandbox:CNY"] == 0 and money["platform:retail_received:CNY"] == 0


def test_retail_buyers_and_agents_racing_for_the_last_codes_never_oversell(
        shop_runtime: Runtime) -> None:
    runtime = shop_runtime
    runtime.agent_updates.create_agent("AG", "agent", actor="test")
    runtime.price_lists.set_price(sku=SKU, price_minor=1_000, currency="CNY", grade="standard",
                                  agent_id=None, visible=True, actor="test",
                                  actor_agent_id=None)
    runtime.money.deposit("AG", 1_000_000, "CNY", "seed", actor="test")
    limits = runtime.risk.limits

    async def agent_order(n: int) -> str | None:
        try:
            view, _ = await runtime.orders.place(OrderRequest("AG", f"race-{n}", SKU, 1),
                                                 actor="test", limits=limits)
            return view.order_id
        except CardsvcError as error:
            assert error.code == ErrorCode.OUT_OF_STOCK
            return None

    async def retail(n: int) -> CheckoutResult | None:
        try:
            return await runtime.checkout.start(request(1, email=f"r{n}@example.com",
                                                        ip=f"10.9.0.{n}"))
        except CardsvcError as error:
            assert error.code == ErrorCode.OUT_OF_STOCK
            return None

    async def race() -> tuple[list[str | None], list[CheckoutResult | None]]:
        agents = [agent_order(n) for n in range(10)]
        buyers = [retail(n) for n in range(10)]
        done = await asyncio.gather(*agents, *buyers)
        return list(done[:10]), list(done[10:])  # type: ignore[arg-type]

    orders, checkouts = run(race())
    sold = [o for o in orders if o] + [c for c in checkouts if c]
    assert len(sold) == STOCK
    for checkout in checkouts:
        if checkout is not None:
            run(notify(runtime, *notify_body(runtime, checkout)))
    stock = runtime.engine.stock(SKU, 0)
    assert (stock["allocated"], stock["held"], stock["available"]) == (STOCK, 0, 0)
    codes: list[int] = []
    for order_id in [o for o in orders if o] + [c.order.order_id for c in checkouts if c]:
        codes += runtime.engine.order_code_ids(order_id)
    assert len(codes) == len(set(codes)) == STOCK
    runtime.engine.check_invariants()
    report = reconciliation_report(runtime.store, runtime.db, runtime.catalog)
    assert report["ok"], report["differences"]


def test_a_failed_payment_gives_its_codes_back_at_once_and_a_late_payment_still_counts(
        shop_runtime: Runtime) -> None:
    result = run(shop_runtime.checkout.start(request(2)))
    token, headers, body = notify_body(shop_runtime, result, "failed")
    failed = run(notify(shop_runtime, token, headers, body))
    assert failed.verdict == "applied"
    assert order_row(shop_runtime, result.order.order_id).status == "failed"
    stock = shop_runtime.engine.stock(SKU, 0)
    assert (stock["held"], stock["available"]) == (0, STOCK)  # not at the hold's deadline
    token, headers, body = notify_body(shop_runtime, result, "paid")  # the buyer paid anyway
    run(notify(shop_runtime, token, headers, body))
    row = order_row(shop_runtime, result.order.order_id)
    assert row.status == "delivered" and row.late and len(row.code_ids or []) == 2
    report = reconciliation_report(shop_runtime.store, shop_runtime.db, shop_runtime.catalog)
    assert report["ok"], report["differences"]


def test_a_refund_made_at_the_provider_voids_the_unredeemed_codes_and_reverses_the_sale(
        shop_runtime: Runtime) -> None:
    runtime = shop_runtime
    result = run(runtime.checkout.start(request(2)))
    order_id = result.order.order_id
    run(notify(runtime, *notify_body(runtime, result)))
    _view, codes, _ = run(runtime.checkout.codes(order_id, result.token, full=True,
                                                 channel="page", ip="1.2.3.4"))
    runtime.engine.redeem(codes[0].code, "r-1", "till", codes[0].pin)
    refund = notify_body(runtime, result, "refunded")
    first = run(notify(runtime, *refund))
    assert (first.verdict, first.answer.body) == ("applied", b"success")
    row = order_row(runtime, order_id)
    assert row.status == "refunded" and row.refund_txn_id is not None
    states = sorted(runtime.engine.code_info(code_id).state for code_id in row.code_ids or [])
    assert states == ["redeemed", "void"]
    entry = next(e for e in audit.list_entries(runtime.db)
                 if e.action == "order.refund" and e.object_id == order_id)
    assert (entry.actor, entry.details["redeemed"]) == ("payments", 1)
    again = run(notify(runtime, *refund))
    assert (again.verdict, again.answer.body) == ("duplicate", b"success")
    money = balances(runtime)
    assert money["clearing:sandbox:CNY"] == 0 and money["platform:revenue:CNY"] == 0
    report = reconciliation_report(runtime.store, runtime.db, runtime.catalog)
    assert report["ok"], report["differences"]


def test_a_provider_refund_is_not_applied_while_a_code_of_the_order_is_usable(
        shop_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The codes are voided before the sale is reversed; should that step not have happened
    (a crash, or a delivery racing the callback), the callback writes nothing and is not
    acknowledged, and the provider's retry completes it."""
    runtime = shop_runtime
    result = run(runtime.checkout.start(request(1)))
    run(notify(runtime, *notify_body(runtime, result)))
    refund = notify_body(runtime, result, "refunded")

    async def skipped(*_: Any) -> None:
        return None

    monkeypatch.setattr(runtime.checkout, "_void_for_provider_refund", skipped)
    waiting = run(notify(runtime, *refund))
    assert (waiting.verdict, waiting.answer.body) == ("retry", b"fail")
    row = order_row(runtime, result.order.order_id)
    assert row.status == "delivered"
    assert runtime.engine.code_info((row.code_ids or [])[0]).state == "allocated"
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(PaymentInbox).where(
            PaymentInbox.status == "refunded")) == 0
    monkeypatch.undo()
    done = run(notify(runtime, *refund))
    assert done.verdict == "applied"
    assert order_row(runtime, result.order.order_id).status == "refunded"
