"""Goal: alerts fire once when a condition starts, repeat only after the cooldown, send a
recovery notice when it clears, and show each agent only its own; each notice is mailed through
the outbox, in its own transaction, once per recipient whose role or subscription it concerns
(never another agent's user), in bounded digests; stuck payments and failed buyers' mails are
conditions that clear. Method: domain calls on the shop Runtime (tests/fixtures/runtime.py;
engine on a manual clock), on SQLite and PostgreSQL; conditions made through the use cases (a
low-stock threshold, a withdrawal request, a subscription over the balance) or, for the
storefront's stuck rows, written directly; mail read from the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cardsvc.access import Principal, User, principal_of_user, set_own_email
from cardsvc.delivery import ALERT_MAIL_KIND, Delivery
from cardsvc.events import OutboxEvent
from cardsvc.payments import PaymentAttempt
from cardsvc.reports import alerts as alerts_module
from cardsvc.runtime import Runtime
from cardsvc.sales import RetailOrder
from tests.fixtures.runtime import FUNDS_MINOR, SHOP_CODES, open_runtime, stock_shop


@pytest.fixture
def shop(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """The shop of tests/fixtures/runtime.py (T over A1, and A2), not tests/reports' own."""
    opened = open_runtime(tmp_path / "data", database_url)
    try:
        stock_shop(opened)
        yield opened
    finally:
        opened.close()


STAFF = Principal("user:staff", "owner", None, frozenset({"admin"}), None, {})
HOUR_MS = 3_600_000


def agent_user(agent_id: str) -> Principal:
    return Principal(f"user:{agent_id}", "agent", agent_id, frozenset({"orders"}), None, {})


def notices(shop: Runtime, principal: Principal = STAFF) -> list[tuple[str, str]]:
    return [(e["key"], e["notice"]) for e in shop.alerts.events(principal).items]


def test_low_stock_fires_once_repeats_after_the_cooldown_and_recovers(shop: Runtime) -> None:
    shop.catalog.update_sku("VIP", {"low_stock_threshold": len(SHOP_CODES)}, actor="test")
    assert shop.alerts.evaluate()["fired"] == 1
    assert shop.alerts.evaluate() == {"fired": 0, "repeated": 0, "resolved": 0, "mails": 0}
    shop.engine.set_clock_ms(shop.engine.now_ms() + shop.alerts.cooldown_ms)
    assert shop.alerts.evaluate()["repeated"] == 1
    assert [s["key"] for s in shop.alerts.firing(STAFF)] == ["low_stock:VIP:0"]
    shop.catalog.update_sku("VIP", {"low_stock_threshold": 1}, actor="test")
    assert shop.alerts.evaluate()["resolved"] == 1
    assert shop.alerts.firing(STAFF) == []
    assert notices(shop) == [("low_stock:VIP:0", "resolved"), ("low_stock:VIP:0", "repeated"),
                             ("low_stock:VIP:0", "fired")]


def test_an_agents_low_balance_and_withdrawal_are_its_own(shop: Runtime) -> None:
    shop.alerts.subscribe(agent_user("A1"), user_id="u-a1", kind="low_balance",
                          threshold_minor=FUNDS_MINOR + 1)
    shop.money.request_withdrawal("A2", 100, "CNY", "w-1", actor="test")
    counts = shop.alerts.evaluate()
    assert counts["fired"] == 2
    assert [key for key, _ in notices(shop, agent_user("A1"))] == ["low_balance:A1"]
    assert next(key for key, _ in notices(shop, agent_user("A2"))).startswith("withdrawal:")
    assert len(notices(shop)) == 2


# ----- mail through the outbox -------------------------------------------------------------


def person(shop: Runtime, login: str, role: str, agent_id: str | None = None,
           email: str | None = None) -> Principal:
    """An active user (role, agent) with its alert address set through the domain call."""
    with shop.db.write() as session:
        row = User(user_id=f"u-{login}", login=login, display_name=login, role=role,
                   agent_id=agent_id, status="active", failed_logins=0, lockouts=0,
                   created_at_ms=0, updated_at_ms=0)
        session.add(row)
        session.flush()
        principal = principal_of_user(row)
    if email is not None:
        set_own_email(shop.db, principal, email, locale="en")
    return principal


def alert_mails(shop: Runtime) -> list[dict[str, Any]]:
    """Every queued alert mail's payload, oldest first."""
    with shop.db.read() as session:
        return [dict(row.payload) for row in session.scalars(
            select(OutboxEvent).where(OutboxEvent.kind == ALERT_MAIL_KIND)
            .order_by(OutboxEvent.event_id))]


def mailed_notices(mail: dict[str, Any]) -> list[tuple[str, str]]:
    return [(notice["key"], notice["notice"]) for notice in mail["notices"]]


def low_stock(shop: Runtime, low: bool = True) -> None:
    shop.catalog.update_sku("VIP", {"low_stock_threshold": len(SHOP_CODES) if low else 1},
                            actor="test")


def test_a_fired_alert_queues_one_mail_per_recipient(shop: Runtime) -> None:
    person(shop, "owner1", "owner", email="owner@example.com")
    person(shop, "oper1", "operator", email="oper@example.com")
    person(shop, "oper2", "operator")  # no address: no mail
    person(shop, "fin1", "finance", email="fin@example.com")  # stock is not finance's work
    low_stock(shop)
    assert shop.alerts.evaluate()["mails"] == 2
    mails = alert_mails(shop)
    assert sorted(mail["user_id"] for mail in mails) == ["u-oper1", "u-owner1"]
    assert all(mailed_notices(mail) == [("low_stock:VIP:0", "fired")] for mail in mails)
    assert {mail["email"] for mail in mails} == {"owner@example.com", "oper@example.com"}
    assert shop.alerts.events(STAFF).items[0]["mails_queued"] == 2


def test_a_repeat_within_the_cooldown_queues_no_mail_and_after_it_one(shop: Runtime) -> None:
    person(shop, "owner1", "owner", email="owner@example.com")
    low_stock(shop)
    shop.alerts.evaluate()
    shop.engine.set_clock_ms(shop.engine.now_ms() + shop.alerts.cooldown_ms - 1)
    assert shop.alerts.evaluate()["mails"] == 0
    assert len(alert_mails(shop)) == 1
    shop.engine.set_clock_ms(shop.engine.now_ms() + 1)
    assert shop.alerts.evaluate()["mails"] == 1
    assert mailed_notices(alert_mails(shop)[-1]) == [("low_stock:VIP:0", "repeated")]


def test_a_recovery_mails_the_recovery_notice(shop: Runtime) -> None:
    person(shop, "owner1", "owner", email="owner@example.com")
    low_stock(shop)
    shop.alerts.evaluate()
    low_stock(shop, low=False)
    assert shop.alerts.evaluate() == {"fired": 0, "repeated": 0, "resolved": 1, "mails": 1}
    assert mailed_notices(alert_mails(shop)[-1]) == [("low_stock:VIP:0", "resolved")]


def test_a_crash_between_the_notice_and_its_mail_loses_and_duplicates_nothing(
        shop: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox write fails (a crash at that point): the notice's transaction rolls back
    with it, so the next round fires it again, with its mail, exactly once."""
    person(shop, "owner1", "owner", email="owner@example.com")
    low_stock(shop)

    def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("crash before the outbox write")

    monkeypatch.setattr(alerts_module.events, "emit", crash)
    with pytest.raises(RuntimeError):
        shop.alerts.evaluate()
    assert notices(shop) == [] and alert_mails(shop) == [] and shop.alerts.firing(STAFF) == []
    monkeypatch.undo()
    assert shop.alerts.evaluate()["mails"] == 1
    assert shop.alerts.evaluate()["mails"] == 0
    assert notices(shop) == [("low_stock:VIP:0", "fired")]
    assert [mailed_notices(mail) for mail in alert_mails(shop)] == [
        [("low_stock:VIP:0", "fired")]]


def test_an_agents_alert_never_goes_to_another_agents_users(shop: Runtime) -> None:
    a1 = person(shop, "a1user", "agent", "A1", email="a1@example.com")
    a2 = person(shop, "a2user", "agent", "A2", email="a2@example.com")
    person(shop, "a2quiet", "agent", "A2", email="a2q@example.com")  # no subscription
    shop.alerts.subscribe(a1, user_id="u-a1user", kind="low_balance",
                          threshold_minor=FUNDS_MINOR + 1)
    shop.alerts.subscribe(a2, user_id="u-a2user", kind="low_balance", threshold_minor=1)
    shop.money.request_withdrawal("A2", 100, "CNY", "w-1", actor="test")  # finance's, not A2's
    assert shop.alerts.evaluate()["fired"] == 2
    mails = alert_mails(shop)
    assert [(mail["user_id"], mailed_notices(mail)) for mail in mails] == [
        ("u-a1user", [("low_balance:A1", "fired")])]
    assert mails[0]["area"] == "portal"


def test_low_stock_reaches_subscribed_agents_users_of_agents_that_buy_the_sku(
        shop: Runtime) -> None:
    a1 = person(shop, "a1user", "agent", "A1", email="a1@example.com")
    person(shop, "a2user", "agent", "A2", email="a2@example.com")  # not subscribed
    shop.alerts.subscribe(a1, user_id="u-a1user", kind="low_stock")
    low_stock(shop)
    shop.alerts.evaluate()
    assert [mail["user_id"] for mail in alert_mails(shop)] == ["u-a1user"]


def test_a_stuck_payment_fires_and_resolves(shop: Runtime) -> None:
    person(shop, "fin1", "finance", email="fin@example.com")
    person(shop, "oper1", "operator", email="oper@example.com")  # payments are finance's
    now_ms = shop.engine.now_ms()
    with shop.db.write() as session:
        session.add(retail_order("r-wait", "pending", now_ms))
        session.add(attempt("r-wait", "pending", expires_at_ms=now_ms + 60_000, now_ms=now_ms))
        session.add(retail_order("r-paid", "paid", now_ms))
        session.add(attempt("r-paid", "paid", expires_at_ms=now_ms + 60_000, now_ms=now_ms))
    assert shop.alerts.evaluate()["fired"] == 0
    shop.engine.set_clock_ms(now_ms + 60_000 + shop.alerts.stuck_payment_ms + 1)
    assert shop.alerts.evaluate()["fired"] == 2
    assert sorted(s["key"] for s in shop.alerts.firing(STAFF)) == [
        "stuck_payment:r-paid", "stuck_payment:r-wait"]
    assert [mail["user_id"] for mail in alert_mails(shop)] == ["u-fin1"]
    with shop.db.write() as session:
        session.execute(update(PaymentAttempt).where(PaymentAttempt.order_id == "r-wait")
                        .values(state="expired"))
        session.execute(update(RetailOrder).where(RetailOrder.order_id == "r-paid")
                        .values(status="delivered"))
    counts = shop.alerts.evaluate()
    assert (counts["resolved"], counts["mails"]) == (2, 1)
    assert shop.alerts.firing(STAFF) == []


def test_a_buyers_mail_that_failed_for_good_is_an_alert_until_it_ages_out(
        shop: Runtime) -> None:
    now_ms = shop.engine.now_ms()
    with shop.db.write() as session:
        session.add(Delivery(order_id="r-1", channel="email", template="delivered", seq=0,
                             state="failed", address="b@example.com", locale="en",
                             attempts=6, last_error="smtp 550", created_at_ms=now_ms,
                             updated_at_ms=now_ms, done_at_ms=None))
    assert shop.alerts.evaluate()["fired"] == 1
    assert shop.alerts.firing(STAFF)[0]["kind"] == "stuck_delivery"
    shop.engine.set_clock_ms(now_ms + alerts_module.STUCK_DELIVERY_WINDOW_MS + 1)
    assert shop.alerts.evaluate()["resolved"] == 1


def test_a_flood_of_notices_is_one_bounded_mail_per_recipient_per_round(
        shop: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_module, "NOTICES_PER_MAIL_MAX", 3)
    monkeypatch.setattr(alerts_module, "RECIPIENTS_MAX", 2)
    for index in range(3):
        person(shop, f"owner{index}", "owner", email=f"owner{index}@example.com")
    for index in range(5):
        shop.money.request_withdrawal("A1", 10 + index, "CNY", f"w-{index}", actor="test")
    counts = shop.alerts.evaluate()
    assert (counts["fired"], counts["mails"]) == (5, 2)
    mails = alert_mails(shop)
    assert [(len(mail["notices"]), mail["more"]) for mail in mails] == [(3, 2), (3, 2)]
    assert alerts_module.CONDITIONS_MAX >= 5


def test_a_condition_a_capped_round_did_not_read_is_not_resolved(
        shop: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_module, "CONDITIONS_MAX", 3)
    for index in range(2):
        shop.money.request_withdrawal("A1", 10 + index, "CNY", f"w-{index}", actor="test")
    assert shop.alerts.evaluate()["fired"] == 2
    for agent_id in ("A1", "A2"):  # read before the withdrawals: the cap cuts one of those
        shop.alerts.subscribe(agent_user(agent_id), user_id=f"u-{agent_id}",
                              kind="low_balance", threshold_minor=FUNDS_MINOR * 10)
    counts = shop.alerts.evaluate()
    assert (counts["fired"], counts["resolved"]) == (2, 0)
    assert len([s for s in shop.alerts.firing(STAFF)
                if s["key"].startswith("withdrawal:")]) == 2
    monkeypatch.setattr(alerts_module, "CONDITIONS_MAX", 100)
    assert shop.alerts.evaluate()["fired"] == 0  # nothing resolved, so nothing fires again
    decided = shop.money.list_withdrawals(status="requested", actor_agent_id=None).items
    shop.money.decide_withdrawal(decided[0].withdrawal_id, "reject", actor="test", note="no")
    assert shop.alerts.evaluate()["resolved"] == 1  # a complete round still resolves


def retail_order(order_id: str, status: str, now_ms: int) -> RetailOrder:
    return RetailOrder(order_id=order_id, status=status, sku="VIP", product_name="vip",
                       quantity=1, pool_id=0, unit_price_minor=100, total_minor=100,
                       unit_cost_minor=None, currency="CNY", email="buyer@example.com",
                       password_hash=None, locale="en", channel_id="sandbox",
                       attempt_id=f"t-{order_id}", hold_ref=f"retail/{order_id}",
                       hold_expires_at_ms=now_ms + 60_000, code_ids=None, late=False,
                       created_at_ms=now_ms, updated_at_ms=now_ms)


def attempt(order_id: str, state: str, *, expires_at_ms: int, now_ms: int) -> PaymentAttempt:
    return PaymentAttempt(out_trade_no=f"t-{order_id}", order_id=order_id,
                          channel_id="sandbox", provider="sandbox", amount_minor=100,
                          currency="CNY", state=state, expires_at_ms=expires_at_ms,
                          secret_version=1, queries=0, created_at_ms=now_ms,
                          updated_at_ms=now_ms)
