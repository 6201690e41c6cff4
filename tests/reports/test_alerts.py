"""Goal: alerts fire once when a condition starts, repeat only after the cooldown, send a
recovery notice when it clears, and show each agent only its own. Method: domain calls on the
shop Runtime (tests/fixtures/runtime.py; engine on a manual clock), on SQLite and PostgreSQL;
conditions made through the use cases (a low-stock threshold, a withdrawal request, a
subscription over the balance)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.access import Principal
from cardsvc.runtime import Runtime
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
    assert shop.alerts.evaluate() == {"fired": 0, "repeated": 0, "resolved": 0}
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
