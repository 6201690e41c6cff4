"""Goal: the agents' reads of the console and portal show the tree, balances, price lists beside
sub-agents' prices and commissions, and let an agent's user see only its own agent and its
direct sub-agents (FORBIDDEN otherwise, known agent or not). Method: domain calls on the shop
Runtime (tests/fixtures/runtime.py: T over A1, and A2), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.access import Principal
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.runtime import Runtime
from tests.fixtures.runtime import (
    FUNDS_MINOR,
    PRICE_MINOR,
    TOP_PRICE_MINOR,
    open_runtime,
    stock_shop,
)


@pytest.fixture
def shop(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """The shop of tests/fixtures/runtime.py (T over A1, and A2), not tests/reports' own."""
    opened = open_runtime(tmp_path / "data", database_url)
    try:
        stock_shop(opened)
        yield opened
    finally:
        opened.close()


STAFF = Principal("user:staff", "support", None, frozenset({"masked_views"}), None, {})


def agent_user(agent_id: str) -> Principal:
    return Principal(f"user:{agent_id}", "agent", agent_id, frozenset({"orders"}), None, {})


def test_the_tree_level_shows_balances_and_sub_agent_counts(shop: Runtime) -> None:
    top = shop.agent_reports.children(STAFF, None)
    rows = {row.agent_id: row for row in top.items}
    assert set(rows) == {"T", "A2"} and rows["T"].sub_agents == 1
    assert rows["A2"].available_minor == FUNDS_MINOR
    under = shop.agent_reports.children(STAFF, "T")
    assert [row.agent_id for row in under.items] == ["A1"]


def test_a_price_list_shows_the_sub_agents_prices_beside_its_own(shop: Runtime) -> None:
    lines = shop.agent_reports.price_list(agent_user("T"), "T")
    vip = next(line for line in lines if line.sku == "VIP")
    assert vip.own_price_minor == TOP_PRICE_MINOR
    assert vip.sub_prices == {"A1": PRICE_MINOR}


def test_an_agent_user_sees_its_own_and_its_sub_agents_only(shop: Runtime) -> None:
    assert shop.agent_reports.dossier(agent_user("T"), "A1")["agent"]["agent_id"] == "A1"
    page = shop.agent_reports.agent_page(agent_user("A1"), "A1")
    assert page.dossier["balances"]["available"] == FUNDS_MINOR
    for who, whom in (("A1", "T"), ("A1", "A2"), ("A2", "A1"), ("A1", "NOPE")):
        with pytest.raises(CardsvcError) as refused:
            shop.agent_reports.dossier(agent_user(who), whom)
        assert refused.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(CardsvcError) as top:
        shop.agent_reports.children(agent_user("T"), None)
    assert top.value.code == ErrorCode.FORBIDDEN


def test_a_suspended_agents_page_opens_with_an_empty_price_list(shop: Runtime) -> None:
    shop.agent_updates.change("A1", {"status": "suspended"}, actor="test", actor_agent_id=None)
    with pytest.raises(CardsvcError) as refused:
        shop.agent_reports.price_list(STAFF, "A1")
    assert refused.value.code == ErrorCode.AGENT_SUSPENDED
    page = shop.agent_reports.agent_page(STAFF, "A1")
    assert page.dossier["agent"]["status"] == "suspended" and page.prices == []
    with pytest.raises(CardsvcError) as hidden:
        shop.agent_reports.agent_page(agent_user("A2"), "A1")
    assert hidden.value.code == ErrorCode.FORBIDDEN
