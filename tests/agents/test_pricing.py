"""Goal: prove what an agent pays and who may set it. An override beats the grade price; a
hidden row, an ancestor without a price, a grade price in another currency, a SKU off sale or a
suspended chain each make a SKU not for sale; the price chain lists the buyer and every ancestor
with prices never falling towards the buyer, and no setter (agent or admin, override or grade,
grade change or move, racing or not) can make a price fall below the parent's; an agent prices
only its own sub-agents, for SKUs it can buy; the catalog lists exactly what the agent can buy;
every change is audited and every refused one changes nothing; and the in-process cache never
serves a price older than a committed change.

Method: on SQLite and PostgreSQL (``database`` fixture), a small shop: SKUs inserted directly,
the tree A > B > C plus a second top agent X, and a standard price of 100 for VIP. Calls go
through ``Database.write()``/``read()`` as the routes and the order saga will. Refusals compare
snapshots of the tables before and after; cache hits are shown by counting the SQL statements a
call sends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session

from cardsvc import agents
from cardsvc.agents import PriceCache, pricing
from cardsvc.agents.tables import Agent, Grade, Price
from cardsvc.audit.tables import AuditEntry
from cardsvc.catalog.tables import Pool, Sku
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode

T0_MS = 1_700_000_000_000
TABLES = (Agent, Price, Grade, Pool, Sku, AuditEntry)


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    with database.read() as session:
        return {model.__tablename__: sorted((tuple(row) for row in
                                             session.execute(select(model.__table__))), key=repr)
                for model in TABLES}


def refused(database: Database, code: ErrorCode, change: Callable[[Session], object]) -> \
        CardsvcError:
    """Runs ``change`` in a write transaction; asserts it raised ``code`` and changed nothing."""
    before = snapshot(database)
    with pytest.raises(CardsvcError) as caught, database.write() as session:
        change(session)
    assert caught.value.code == code, caught.value
    assert snapshot(database) == before
    return caught.value


def add_sku(database: Database, sku: str, *, on_sale: bool = True) -> None:
    with database.write() as session:
        session.add(Sku(sku=sku, name=f"{sku} card", uses_per_code=1, redeem_requires_sale=False,
                        validity_days_after_sale=None, created_at_ms=T0_MS, on_sale=on_sale,
                        face_value_minor=1_000))


def add_grade(database: Database, grade: str) -> None:
    with database.write() as session:
        pricing.create_grade(session, grade, grade.title(), actor="admin-key", now_ms=T0_MS)


def add_agent(database: Database, agent_id: str, parent_id: str | None = None,
              **settings: Any) -> None:
    with database.write() as session:
        agents.create_agent(session, agent_id, agent_id, parent_id=parent_id, actor="admin-key",
                            now_ms=T0_MS, **settings)


def price(sku: str = "VIP", price_minor: Any = 100, *, by: str | None = None,
          currency: str = "CNY", visible: Any = True,
          **owner: str) -> Callable[[Session], dict[str, Any]]:
    """``set_price`` for ``owner`` (``grade=`` or ``agent_id=``), by an admin or agent ``by``
    (``Any`` where tests pass values of the wrong type on purpose)."""
    return lambda session: pricing.set_price(
        session, sku=sku, price_minor=price_minor, currency=currency, visible=visible,
        actor="key", actor_agent_id=by, now_ms=T0_MS, **owner)


def apply(database: Database, *changes: Callable[[Session], object]) -> None:
    for change in changes:
        with database.write() as session:
            change(session)


def buy(database: Database, agent_id: str, sku: str = "VIP") -> tuple[int, str]:
    with database.read() as session:
        return pricing.effective_price(session, agent_id, sku)


def chain(database: Database, agent_id: str, sku: str = "VIP") -> list[tuple[str, int]]:
    with database.read() as session:
        return pricing.price_chain(session, agent_id, sku)


def not_buyable(database: Database, agent_id: str, sku: str = "VIP") -> CardsvcError:
    with database.read() as session, pytest.raises(CardsvcError) as caught:
        pricing.effective_price(session, agent_id, sku)
    return caught.value


@pytest.fixture
def price_cache(database: Database) -> PriceCache:
    """The price cache attached to the test's database, as the runtime attaches it."""
    cache = PriceCache()
    cache.attach(database)
    return cache


@pytest.fixture
def shop(database: Database, price_cache: PriceCache) -> Database:
    """SKU VIP on sale at standard 100; agents A > B > C and X, all standard, CNY (prices
    cached as in the running service)."""
    add_sku(database, "VIP")
    add_agent(database, "A")
    add_agent(database, "B", "A")
    add_agent(database, "C", "B")
    add_agent(database, "X")
    apply(database, price(grade="standard"))
    return database


# ----- precedence and visibility -------------------------------------------------------------


def test_grade_price_applies_to_every_agent_of_the_grade(shop: Database) -> None:
    assert {agent_id: buy(shop, agent_id) for agent_id in "ABCX"} == \
        dict.fromkeys("ABCX", (100, "CNY"))
    assert chain(shop, "C") == [("C", 100), ("B", 100), ("A", 100)]


def test_override_beats_the_grade_price_down_a_three_level_chain(shop: Database) -> None:
    apply(shop, price(price_minor=130, agent_id="C"), price(price_minor=110, agent_id="B"))
    assert chain(shop, "C") == [("C", 130), ("B", 110), ("A", 100)]
    assert chain(shop, "B") == [("B", 110), ("A", 100)]
    assert buy(shop, "C") == (130, "CNY")


def test_agent_of_another_grade_pays_that_grades_price(shop: Database) -> None:
    add_grade(shop, "gold")
    apply(shop, price(price_minor=90, grade="gold"))
    with shop.write() as session:
        agents.set_grade(session, "X", "gold", actor="k", now_ms=T0_MS)
    assert buy(shop, "X") == (90, "CNY")
    assert buy(shop, "A") == (100, "CNY")


def test_grade_price_in_another_currency_applies_only_to_agents_of_that_currency(
    shop: Database,
) -> None:
    add_grade(shop, "intl")
    apply(shop, price(price_minor=15, grade="intl", currency="USD"))
    add_agent(shop, "CN", grade="intl")
    add_agent(shop, "US", grade="intl", currency="USD")
    assert buy(shop, "US") == (15, "USD")
    error = not_buyable(shop, "CN")
    assert (error.code, error.details["reason"]) == (ErrorCode.NOT_FOR_SALE, "currency")


def test_hidden_rows_hide_the_sku_from_the_agent_and_everyone_below(shop: Database) -> None:
    apply(shop, price(agent_id="B", visible=False))
    for agent_id in ("B", "C"):
        error = not_buyable(shop, agent_id)
        assert error.code == ErrorCode.NOT_FOR_SALE
        assert (error.details["reason"], error.details["at_agent_id"]) == ("hidden", "B")
    assert buy(shop, "A") == (100, "CNY")
    # A hidden grade row hides the SKU from the whole grade; an override shows it again.
    apply(shop, price(grade="standard", visible=False),
          price(agent_id="B", visible=True), price(agent_id="A"))
    assert buy(shop, "B") == (100, "CNY")
    assert not_buyable(shop, "X").details["reason"] == "hidden"
    assert not_buyable(shop, "C").details["at_agent_id"] == "C"


def test_sku_off_sale_or_unknown_is_not_for_sale(shop: Database) -> None:
    add_sku(shop, "OFF", on_sale=False)
    apply(shop, price("OFF", grade="standard"))
    error = not_buyable(shop, "A", "OFF")
    assert (error.code, error.details["reason"]) == (ErrorCode.NOT_FOR_SALE, "off_sale")
    with shop.write() as session:  # as cardsvc.catalog edits a SKU
        row = session.get(Sku, "OFF")
        assert row is not None
        row.on_sale = True
    assert buy(shop, "C", "OFF") == (100, "CNY")
    assert not_buyable(shop, "A", "NOPE").code == ErrorCode.SKU_NOT_FOUND
    assert not_buyable(shop, "nobody").code == ErrorCode.AGENT_NOT_FOUND


def test_ancestor_without_a_price_makes_the_sku_not_for_sale(shop: Database) -> None:
    add_sku(shop, "RARE")
    apply(shop, price("RARE", agent_id="C"))
    error = not_buyable(shop, "C", "RARE")
    assert error.code == ErrorCode.NOT_FOR_SALE
    assert error.details == {"agent_id": "C", "sku": "RARE", "at_agent_id": "B",
                             "reason": "no_price"}


# ----- who may set which price ---------------------------------------------------------------


def test_agent_prices_its_sub_agent_and_the_chain_follows(shop: Database) -> None:
    apply(shop, price(price_minor=125, agent_id="C", by="B"))
    assert chain(shop, "C") == [("C", 125), ("B", 100), ("A", 100)]
    with shop.read() as session:
        rows = pricing.list_prices(session, agent_id="C")
    assert [(row["price_minor"], row["set_by"]) for row in rows] == [(125, "key")]


def test_price_below_the_parents_is_refused_for_agents_and_admins(shop: Database) -> None:
    for by in ("B", None):
        error = refused(shop, ErrorCode.PRICE_BELOW_PARENT,
                        price(price_minor=99, agent_id="C", by=by))
        assert error.details == {"sku": "VIP", "agent_id": "C", "price_minor": 99,
                                 "parent_id": "B", "parent_price_minor": 100}


def test_an_agent_prices_only_its_own_sub_agents(shop: Database) -> None:
    add_agent(shop, "Y", "X")
    for by, owner in (("B", {"agent_id": "A"}), ("B", {"agent_id": "Y"}),
                      ("A", {"agent_id": "C"}), ("B", {"agent_id": "B"}),
                      ("B", {"agent_id": "nobody"}), ("B", {"grade": "standard"})):
        refused(shop, ErrorCode.FORBIDDEN, price(price_minor=150, by=by, **owner))


def test_an_agent_cannot_price_a_sku_it_cannot_buy(shop: Database) -> None:
    add_sku(shop, "NEW")
    error = refused(shop, ErrorCode.NOT_FOR_SALE, price("NEW", 150, agent_id="C", by="B"))
    assert error.details["agent_id"] == "B"
    with shop.write() as session:
        agents.set_status(session, "A", "suspended", actor="k", now_ms=T0_MS)
    refused(shop, ErrorCode.AGENT_SUSPENDED, price(price_minor=150, agent_id="C", by="B"))


def test_raising_a_parents_price_above_a_sub_agents_is_refused(shop: Database) -> None:
    apply(shop, price(price_minor=105, agent_id="C", by="B"))
    error = refused(shop, ErrorCode.PRICE_BELOW_PARENT, price(price_minor=110, agent_id="B"))
    assert error.details == {"sku": "VIP", "agent_id": "C", "price_minor": 105,
                             "parent_id": "B", "parent_price_minor": 110}
    apply(shop, price(price_minor=105, agent_id="B"))  # equal is allowed: no commission
    assert chain(shop, "C") == [("C", 105), ("B", 105), ("A", 100)]
    # Removing C's override would put it back at 100, below B.
    refused(shop, ErrorCode.PRICE_BELOW_PARENT, lambda session: pricing.remove_price(
        session, sku="VIP", agent_id="C", actor="k", actor_agent_id="B", now_ms=T0_MS))


def test_grade_price_change_that_inverts_any_edge_is_refused(shop: Database) -> None:
    add_grade(shop, "gold")
    apply(shop, price(price_minor=90, grade="gold"))
    with shop.write() as session:
        agents.set_grade(session, "A", "gold", actor="k", now_ms=T0_MS)
    assert chain(shop, "B") == [("B", 100), ("A", 90)]
    error = refused(shop, ErrorCode.PRICE_BELOW_PARENT, price(price_minor=80, grade="standard"))
    assert (error.details["agent_id"], error.details["parent_id"]) == ("B", "A")
    refused(shop, ErrorCode.PRICE_BELOW_PARENT, price(price_minor=101, grade="gold"))
    apply(shop, price(price_minor=95, grade="gold"), price(price_minor=95, grade="standard"))
    assert chain(shop, "C") == [("C", 95), ("B", 95), ("A", 95)]


def test_grade_change_or_move_that_would_invert_is_refused(shop: Database) -> None:
    add_grade(shop, "cheap")
    apply(shop, price(price_minor=50, grade="cheap"), price(price_minor=120, agent_id="X"))
    refused(shop, ErrorCode.PRICE_BELOW_PARENT, lambda session: agents.set_grade(
        session, "C", "cheap", actor="k", now_ms=T0_MS))
    refused(shop, ErrorCode.PRICE_BELOW_PARENT, lambda session: agents.set_grade(
        session, "B", "cheap", actor="k", now_ms=T0_MS))
    error = refused(shop, ErrorCode.PRICE_BELOW_PARENT, lambda session: agents.move_agent(
        session, "C", "X", actor="k", now_ms=T0_MS))
    assert error.details == {"sku": "VIP", "agent_id": "C", "price_minor": 100,
                             "parent_id": "X", "parent_price_minor": 120}
    apply(shop, price(price_minor=120, agent_id="C"))
    with shop.write() as session:
        agents.move_agent(session, "C", "X", actor="k", now_ms=T0_MS)
    assert chain(shop, "C") == [("C", 120), ("X", 120)]


def test_new_sub_agent_below_its_parent_cannot_buy_until_priced(shop: Database) -> None:
    apply(shop, price(price_minor=120, agent_id="X"))
    with shop.write() as session:
        agents.create_sub_agent(session, "X", "S", "sub", actor="agent-key", now_ms=T0_MS)
    error = not_buyable(shop, "S")
    assert error.code == ErrorCode.PRICE_BELOW_PARENT
    assert (error.details["price_minor"], error.details["parent_price_minor"]) == (100, 120)
    apply(shop, price(price_minor=125, agent_id="S", by="X"))
    assert chain(shop, "S") == [("S", 125), ("X", 120)]


def test_concurrent_parent_raise_and_child_cut_cannot_invert(shop: Database) -> None:
    apply(shop, price(price_minor=120, agent_id="C"))
    started = threading.Event()
    outcome: list[CardsvcError | None] = []

    def cut_child() -> None:
        started.set()
        try:
            apply(shop, price(price_minor=112, agent_id="C", by="B"))
            outcome.append(None)
        except CardsvcError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=cut_child)
    with shop.write() as session:
        price(price_minor=115, agent_id="B")(session)
        thread.start()
        assert started.wait(5)
        time.sleep(0.3)
        assert thread.is_alive(), "the second price change did not wait for the first"
    thread.join(15)
    assert outcome[0] is not None and outcome[0].code == ErrorCode.PRICE_BELOW_PARENT
    assert chain(shop, "C") == [("C", 120), ("B", 115), ("A", 100)]


def test_bad_price_arguments_are_refused_and_change_nothing(shop: Database) -> None:
    add_agent(shop, "DOLLAR", currency="USD")
    cases: list[tuple[ErrorCode, Callable[[Session], object]]] = [
        (ErrorCode.INVALID_ARGUMENT, price(grade="standard", agent_id="A")),
        (ErrorCode.INVALID_ARGUMENT, price()),
        (ErrorCode.INVALID_ARGUMENT, price(price_minor=-1, agent_id="A")),
        (ErrorCode.INVALID_ARGUMENT, price(price_minor=True, agent_id="A")),
        (ErrorCode.INVALID_ARGUMENT, price(price_minor=10**15 + 1, agent_id="A")),
        (ErrorCode.INVALID_ARGUMENT, price(currency="cny", agent_id="A")),
        (ErrorCode.INVALID_ARGUMENT, price(agent_id="A", visible="yes")),
        (ErrorCode.CURRENCY_MISMATCH, price(agent_id="DOLLAR")),
        (ErrorCode.SKU_NOT_FOUND, price("NOPE", agent_id="A")),
        (ErrorCode.GRADE_NOT_FOUND, price(grade="platinum")),
        (ErrorCode.AGENT_NOT_FOUND, price(agent_id="nobody")),
    ]
    for code, change in cases:
        refused(shop, code, change)


def test_price_changes_are_audited_with_before_and_after(shop: Database) -> None:
    apply(shop, price(price_minor=120, agent_id="C", by="B"),
          price(price_minor=130, agent_id="C", by="B"))
    before = snapshot(shop)
    apply(shop, price(price_minor=130, agent_id="C", by="B"))  # the same again: nothing
    assert snapshot(shop) == before
    with shop.write() as session:
        assert pricing.remove_price(session, sku="VIP", agent_id="C", actor="key",
                                    actor_agent_id="B", now_ms=T0_MS)
        assert not pricing.remove_price(session, sku="VIP", agent_id="C", actor="key",
                                        now_ms=T0_MS)
    with shop.read() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.object_type == "price")
                                  .order_by(AuditEntry.seq)).all()
    assert [entry.action for entry in entries] == ["price.set"] * 3 + ["price.remove"]
    first, second, removal = entries[1].details, entries[2].details, entries[3].details
    assert (first["before"], first["after"]["price_minor"], first["by_agent"]) == \
        (None, 120, "B")
    assert (second["before"]["price_minor"], second["after"]["price_minor"]) == (120, 130)
    assert removal["before"]["price_minor"] == 130
    assert {entry.actor for entry in entries} == {"key"}


def test_grades_are_created_once_and_listed(shop: Database) -> None:
    add_grade(shop, "gold")
    refused(shop, ErrorCode.GRADE_EXISTS, lambda session: pricing.create_grade(
        session, "gold", "Again", actor="k", now_ms=T0_MS))
    refused(shop, ErrorCode.INVALID_ARGUMENT, lambda session: pricing.create_grade(
        session, "no spaces", "x", actor="k", now_ms=T0_MS))
    with shop.read() as session:
        assert [grade["grade"] for grade in pricing.list_grades(session)] == \
            ["gold", "standard"]


# ----- catalog and pools ---------------------------------------------------------------------


def test_catalog_lists_only_visible_priced_on_sale_skus(shop: Database) -> None:
    for sku, on_sale in (("HIDDEN", True), ("NOPRICE", True), ("OFF", False),
                         ("PARENTLESS", True), ("ZZZ", True)):
        add_sku(shop, sku, on_sale=on_sale)
    apply(shop, price("HIDDEN", agent_id="C", visible=False), price("OFF", agent_id="C"),
          price("PARENTLESS", agent_id="C"), price("ZZZ", 300, grade="standard"),
          price(price_minor=140, agent_id="C"))
    with shop.read() as session:
        view = pricing.catalog_view(session, "C")
        assert [(row["sku"], row["price_minor"]) for row in view] == [("VIP", 140), ("ZZZ", 300)]
        assert view[0] == {"sku": "VIP", "name": "VIP card", "kind": "card_key",
                           "price_minor": 140, "currency": "CNY", "face_value_minor": 1_000,
                           "face_currency": "CNY"}
        assert [row["sku"] for row in pricing.catalog_view(session, "C", limit=1)] == ["VIP"]
        assert [row["sku"] for row in pricing.catalog_view(session, "C", after_sku="VIP")] == \
            ["ZZZ"]
        with pytest.raises(CardsvcError) as caught:
            pricing.catalog_view(session, "C", limit=pricing.LIST_LIMIT_MAX + 1)
        assert caught.value.code == ErrorCode.LIMIT_EXCEEDED
    with shop.write() as session:
        agents.set_status(session, "B", "suspended", actor="k", now_ms=T0_MS)
    with shop.read() as session, pytest.raises(CardsvcError) as caught:
        pricing.catalog_view(session, "C")
    assert caught.value.code == ErrorCode.AGENT_SUSPENDED


def test_order_pools_follow_the_agents_pool_and_policy(shop: Database) -> None:
    with shop.write() as session:
        session.add(Pool(pool_id=7, name="a-pool", agent_id=None, created_at_ms=T0_MS))
    with shop.read() as session:
        assert pricing.order_pools(session, "A") == [0]
    expected = {"own_then_shared": [7, 0], "own_only": [7], "shared_only": [0]}
    with shop.write() as session:
        agents.assign_pool(session, "A", 7, actor="k", now_ms=T0_MS)
    for policy, pools in expected.items():
        with shop.write() as session:
            agents.set_pool_policy(session, "A", policy, actor="k", now_ms=T0_MS)
        with shop.read() as session:
            assert pricing.order_pools(session, "A") == pools
    with shop.read() as session, pytest.raises(CardsvcError) as caught:
        pricing.order_pools(session, "nobody")
    assert caught.value.code == ErrorCode.AGENT_NOT_FOUND


# ----- the cache -----------------------------------------------------------------------------


@contextmanager
def counted(session: Session) -> Iterator[list[str]]:
    """The SQL statements ``session``'s engine sends while the block runs."""
    statements: list[str] = []
    engine = session.get_bind()

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_repeated_price_chain_is_served_from_the_cache(shop: Database) -> None:
    with shop.read() as session:
        first = pricing.price_chain(session, "C", "VIP")
        with counted(session) as statements:
            assert pricing.price_chain(session, "C", "VIP") == first
            assert pricing.effective_price(session, "C", "VIP") == (100, "CNY")
        assert statements == []
        not_buyable(shop, "A", "NOPE")
    with shop.read() as session, counted(session) as statements:
        with pytest.raises(CardsvcError):
            pricing.effective_price(session, "A", "NOPE")  # refusals are cached too
        assert pricing.price_chain(session, "C", "VIP") == first
    assert statements == []


def test_price_chain_reflects_every_kind_of_change_at_once(shop: Database) -> None:
    assert chain(shop, "C") == [("C", 100), ("B", 100), ("A", 100)]
    apply(shop, price(price_minor=140, agent_id="C"))
    assert chain(shop, "C") == [("C", 140), ("B", 100), ("A", 100)]
    apply(shop, price(price_minor=90, grade="standard"))
    assert chain(shop, "C") == [("C", 140), ("B", 90), ("A", 90)]
    with shop.write() as session:
        agents.move_agent(session, "C", "A", actor="k", now_ms=T0_MS)
    assert chain(shop, "C") == [("C", 140), ("A", 90)]
    with shop.write() as session:
        agents.set_status(session, "A", "suspended", actor="k", now_ms=T0_MS)
    assert not_buyable(shop, "C").code == ErrorCode.AGENT_SUSPENDED
    with shop.write() as session:  # a bulk ORM update is seen too
        session.execute(update(Agent).where(Agent.agent_id == "A").values(status="active"))
    assert chain(shop, "C") == [("C", 140), ("A", 90)]


def test_a_transaction_sees_its_own_change_and_a_rollback_leaves_the_old_price(
    shop: Database,
) -> None:
    with shop.write() as session:  # cached for the write engine, which the next block uses
        assert pricing.price_chain(session, "C", "VIP") == [("C", 100), ("B", 100), ("A", 100)]
    with pytest.raises(RuntimeError), shop.write() as session:
        price(price_minor=150, agent_id="C")(session)
        assert pricing.price_chain(session, "C", "VIP") == [("C", 150), ("B", 100), ("A", 100)]
        raise RuntimeError("roll back")
    with shop.write() as session:
        assert pricing.price_chain(session, "C", "VIP") == [("C", 100), ("B", 100), ("A", 100)]


def test_changes_behind_the_orm_are_seen_after_clear_cache(shop: Database,
                                                           price_cache: PriceCache) -> None:
    assert chain(shop, "A") == [("A", 100)]
    with shop.write() as session:
        session.execute(text("UPDATE prices SET price_minor = 77"))
    assert chain(shop, "A") == [("A", 100)]  # stale until the TTL or clear_cache
    price_cache.clear()
    assert chain(shop, "A") == [("A", 77)]


def test_a_reader_with_a_snapshot_older_than_a_change_does_not_fill_the_cache(
    shop: Database,
) -> None:
    with shop.read() as old_reader:
        old_reader.execute(select(Agent.agent_id)).all()  # its snapshot starts here on SQLite
        apply(shop, price(price_minor=150, agent_id="X"))
        seen = pricing.price_chain(old_reader, "X", "VIP")
        assert seen == ([("X", 100)] if shop.dialect == "sqlite" else [("X", 150)])
    assert chain(shop, "X") == [("X", 150)]


def test_the_worked_example_of_docs_agents_md_holds(shop: Database) -> None:
    apply(shop, price(price_minor=130, agent_id="C", by="B"))
    assert chain(shop, "C") == [("C", 130), ("B", 100), ("A", 100)]
    apply(shop, price(price_minor=110, agent_id="B"))
    assert chain(shop, "C") == [("C", 130), ("B", 110), ("A", 100)]
    error = refused(shop, ErrorCode.PRICE_BELOW_PARENT, price(price_minor=105, agent_id="C",
                                                              by="B"))
    assert (error.details["price_minor"], error.details["parent_price_minor"]) == (105, 110)
    error = refused(shop, ErrorCode.PRICE_BELOW_PARENT, price(price_minor=140, agent_id="B"))
    assert (error.details["agent_id"], error.details["price_minor"]) == ("C", 130)
    refused(shop, ErrorCode.FORBIDDEN, price(price_minor=150, agent_id="C", by="A"))
    with shop.write() as session:
        agents.set_status(session, "B", "suspended", actor="k", now_ms=T0_MS)
    assert {not_buyable(shop, agent_id).code for agent_id in "BC"} == {ErrorCode.AGENT_SUSPENDED}
    assert buy(shop, "A") == (100, "CNY")
    refused(shop, ErrorCode.AGENT_SUSPENDED, lambda session: agents.set_status(
        session, "C", "active", actor="k", now_ms=T0_MS, actor_agent_id="B"))
    with shop.write() as session:
        agents.set_status(session, "B", "active", actor="k", now_ms=T0_MS)
    assert chain(shop, "C") == [("C", 130), ("B", 110), ("A", 100)]
    apply(shop, price(price_minor=140, agent_id="X"))
    refused(shop, ErrorCode.PRICE_BELOW_PARENT, lambda session: agents.move_agent(
        session, "C", "X", actor="k", now_ms=T0_MS))
