"""Goal: prove the agent tree's rules. Agents form a tree up to AGENT_DEPTH_MAX deep whose
ancestors and descendants agree; no move can close a cycle, at any depth, even when two opposite
moves race; suspending an agent blocks buying for its whole subtree until it is reactivated; an
agent acts only on its direct sub-agents and cannot undo an admin's suspension; every change is
validated and audited; and every refused change leaves the tables exactly as they were.

Method: on SQLite and PostgreSQL (``database`` fixture), call ``cardsvc.agents`` inside
``Database.write()`` transactions, as the routes will. Refusals are checked by their error code
and by comparing snapshots of the agents, prices, grades, pools and audit tables taken before
and after. Buying is checked through ``cardsvc.agents.pricing.effective_price``. The race holds one
move's transaction open while a second thread tries the opposite move.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cardsvc import agents
from cardsvc.agents import pricing
from cardsvc.agents.tables import Agent, Grade, Price
from cardsvc.audit.tables import AuditEntry
from cardsvc.catalog.tables import Pool, Sku
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode

T0_MS = 1_700_000_000_000
TABLES = (Agent, Price, Grade, Pool, AuditEntry)


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables an agent change may touch, in a comparable form."""
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


def add_agent(database: Database, agent_id: str, parent_id: str | None = None,
              **settings: Any) -> dict[str, Any]:
    with database.write() as session:
        return agents.create_agent(session, agent_id, agent_id.lower(), parent_id=parent_id,
                                   actor="admin-key", now_ms=T0_MS, **settings)


def add_chain(database: Database, ids: list[str], parent_id: str | None = None) -> None:
    """Agents ``ids[0] > ids[1] > ...`` under ``parent_id``, in one transaction."""
    with database.write() as session:
        for agent_id in ids:
            agents.create_agent(session, agent_id, agent_id, parent_id=parent_id,
                                actor="admin-key", now_ms=T0_MS)
            parent_id = agent_id


def priced_sku(database: Database, sku: str = "VIP", price_minor: int = 100) -> None:
    """A SKU on sale with a standard-grade price."""
    with database.write() as session:
        session.add(Sku(sku=sku, name=sku, uses_per_code=1, redeem_requires_sale=False,
                        validity_days_after_sale=None, created_at_ms=T0_MS))
    with database.write() as session:
        pricing.set_price(session, sku=sku, grade="standard", price_minor=price_minor,
                          currency="CNY", actor="admin-key", now_ms=T0_MS)


def set_status(database: Database, agent_id: str, status: str,
               actor_agent_id: str | None = None) -> dict[str, Any]:
    with database.write() as session:
        return agents.set_status(session, agent_id, status, actor="key", now_ms=T0_MS,
                                 actor_agent_id=actor_agent_id)


def audit_actions(database: Database, object_id: str) -> list[tuple[str, dict[str, Any]]]:
    with database.read() as session:
        rows = session.execute(select(AuditEntry.action, AuditEntry.details)
                               .where(AuditEntry.object_id == object_id)
                               .order_by(AuditEntry.seq))
        return [(action, details) for action, details in rows]


def ids(rows: list[Agent]) -> list[str]:
    return [row.agent_id for row in rows]


# ----- the tree ------------------------------------------------------------------------------


def test_tree_of_depth_five_links_every_agent_to_its_ancestors(database: Database) -> None:
    add_chain(database, ["L1", "L2", "L3", "L4", "L5"])
    add_agent(database, "L2b", "L1")
    with database.read() as session:
        assert ids(agents.ancestors(session, "L5")) == ["L5", "L4", "L3", "L2", "L1"]
        assert ids(agents.ancestors(session, "L1")) == ["L1"]
        assert ids(agents.descendants(session, "L1")) == ["L2", "L2b", "L3", "L4", "L5"]
        assert ids(agents.descendants(session, "L5")) == []
        assert ids(agents.sub_agents(session, "L1")) == ["L2", "L2b"]
        assert agents.subtree_height(session, "L1") == 4
        assert agents.subtree_height(session, "L5") == 0
        assert agents.is_descendant(session, "L5", "L1")
        assert not agents.is_descendant(session, "L1", "L5")
        assert not agents.is_descendant(session, "L1", "L1")
        assert not agents.is_descendant(session, "L2b", "L2")
        with pytest.raises(CardsvcError) as caught:
            agents.ancestors(session, "nobody")
        assert caught.value.code == ErrorCode.AGENT_NOT_FOUND


def test_new_agent_takes_the_defaults_and_its_parents_currency(database: Database) -> None:
    top = add_agent(database, "TOP", currency="USD", credit_limit_minor=5_000,
                    daily_order_quota=10, pool_policy="own_only")
    assert top == {"agent_id": "TOP", "name": "top", "parent_id": None, "status": "active",
                   "created_at_ms": T0_MS, "grade": "standard", "currency": "USD",
                   "credit_limit_minor": 5_000, "daily_order_quota": 10, "pool_id": None,
                   "pool_policy": "own_only"}
    child = add_agent(database, "CHILD", "TOP")
    assert (child["currency"], child["credit_limit_minor"], child["pool_policy"]) == \
        ("USD", 0, "own_then_shared")
    assert add_agent(database, "PLAIN")["currency"] == agents.DEFAULT_CURRENCY
    # Callers may pass the Database itself.
    created = agents.create_agent(database, "LEGACY", "legacy", parent_id="TOP", actor="k",
                                  now_ms=T0_MS)
    assert created["currency"] == "USD"
    assert agents.get_agent(database, "LEGACY") == created
    assert [agent["agent_id"] for agent in agents.list_agents(database)] == \
        ["CHILD", "LEGACY", "PLAIN", "TOP"]
    assert audit_actions(database, "CHILD") == [("agent.create", {
        "name": "child", "parent_id": "TOP", "grade": "standard", "currency": "USD",
        "credit_limit_minor": 0, "daily_order_quota": None, "pool_policy": "own_then_shared"})]


def test_bad_new_agents_are_refused_and_change_nothing(database: Database) -> None:
    add_agent(database, "TOP")
    add_agent(database, "OFF")
    set_status(database, "OFF", "suspended")

    def create(agent_id: str = "NEW", **overrides: Any) -> Callable[[Session], object]:
        settings: dict[str, Any] = {"parent_id": "TOP", **overrides}
        name = settings.pop("name", "new")
        return lambda session: agents.create_agent(session, agent_id, name, actor="k",
                                                   now_ms=T0_MS, **settings)

    cases: list[tuple[ErrorCode, Callable[[Session], object]]] = [
        (ErrorCode.AGENT_EXISTS, create("TOP", parent_id=None)),
        (ErrorCode.GRADE_NOT_FOUND, create(grade="gold")),
        (ErrorCode.AGENT_NOT_FOUND, create(parent_id="nobody")),
        (ErrorCode.AGENT_SUSPENDED, create(parent_id="OFF")),
        (ErrorCode.CURRENCY_MISMATCH, create(currency="USD")),
        (ErrorCode.INVALID_ARGUMENT, create("bad id")),
        (ErrorCode.LIMIT_EXCEEDED, create("X" * 65)),
        (ErrorCode.INVALID_ARGUMENT, create(name="")),
        (ErrorCode.INVALID_ARGUMENT, create(currency="usd")),
        (ErrorCode.INVALID_ARGUMENT, create(credit_limit_minor=-1)),
        (ErrorCode.INVALID_ARGUMENT, create(credit_limit_minor=True)),
        (ErrorCode.INVALID_ARGUMENT, create(credit_limit_minor=10**15 + 1)),
        (ErrorCode.INVALID_ARGUMENT, create(daily_order_quota=-1)),
        (ErrorCode.INVALID_ARGUMENT, create(pool_policy="own_first")),
    ]
    for code, change in cases:
        refused(database, code, change)


def test_tree_deeper_than_the_maximum_is_refused(database: Database) -> None:
    chain = [f"D{i:02d}" for i in range(1, agents.AGENT_DEPTH_MAX + 1)]
    add_chain(database, chain)
    with database.read() as session:
        assert ids(agents.ancestors(session, chain[-1])) == chain[::-1]
    error = refused(database, ErrorCode.LIMIT_EXCEEDED, lambda session: agents.create_agent(
        session, "TOO-DEEP", "x", parent_id=chain[-1], actor="k", now_ms=T0_MS))
    assert error.details["max"] == agents.AGENT_DEPTH_MAX


def test_a_cycle_written_behind_the_domains_back_cannot_hang_the_walk(
    database: Database,
) -> None:
    add_chain(database, ["C1", "C2"])
    with database.write() as session:
        session.execute(update(Agent).where(Agent.agent_id == "C1").values(parent_id="C2"))
    with database.read() as session, pytest.raises(CardsvcError) as caught:
        agents.ancestors(session, "C1")
    assert caught.value.code == ErrorCode.LIMIT_EXCEEDED


# ----- moves ---------------------------------------------------------------------------------


def move(agent_id: str, parent_id: str | None) -> Callable[[Session], object]:
    return lambda session: agents.move_agent(session, agent_id, parent_id, actor="k",
                                             now_ms=T0_MS)


def test_move_under_itself_a_child_or_a_deep_descendant_is_refused(database: Database) -> None:
    add_chain(database, ["L1", "L2", "L3", "L4", "L5"])
    for agent_id, parent_id in (("L1", "L1"), ("L3", "L3"), ("L1", "L2"), ("L1", "L5"),
                                ("L2", "L5")):
        error = refused(database, ErrorCode.AGENT_CYCLE, move(agent_id, parent_id))
        assert error.details == {"agent_id": agent_id, "parent_id": parent_id}


def test_move_takes_the_whole_subtree_to_the_new_parent(database: Database) -> None:
    add_chain(database, ["L1", "L2", "L3", "L4"])
    add_agent(database, "OTHER")
    with database.write() as session:
        moved = move("L3", "OTHER")(session)
    assert isinstance(moved, dict) and moved["parent_id"] == "OTHER"
    with database.read() as session:
        assert ids(agents.ancestors(session, "L4")) == ["L4", "L3", "OTHER"]
        assert ids(agents.descendants(session, "L1")) == ["L2"]
    with database.write() as session:
        move("L3", None)(session)
    with database.read() as session:
        assert ids(agents.ancestors(session, "L4")) == ["L4", "L3"]
    assert [entry for entry in audit_actions(database, "L3") if entry[0] == "agent.move"] == [
        ("agent.move", {"parent_id": "OTHER", "before": "L2"}),
        ("agent.move", {"parent_id": None, "before": "OTHER"}),
    ]


def test_move_that_would_exceed_the_depth_or_change_currency_is_refused(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_chain(database, ["L1", "L2", "L3", "L4", "L5"])
    add_chain(database, ["T1", "T2"])
    add_agent(database, "DOLLAR", currency="USD")
    add_agent(database, "OFF")
    set_status(database, "OFF", "suspended")
    monkeypatch.setattr(agents.tree, "AGENT_DEPTH_MAX", 6)
    refused(database, ErrorCode.LIMIT_EXCEEDED, move("T1", "L5"))  # T2 would be 7 deep
    refused(database, ErrorCode.CURRENCY_MISMATCH, move("T1", "DOLLAR"))
    refused(database, ErrorCode.AGENT_SUSPENDED, move("T1", "OFF"))
    refused(database, ErrorCode.AGENT_NOT_FOUND, move("T1", "nobody"))
    refused(database, ErrorCode.AGENT_NOT_FOUND, move("nobody", "T1"))
    with database.write() as session:
        move("T2", "L5")(session)  # 6 deep: allowed


def hold_open_while(database: Database, first: Callable[[Session], object],
                    second: Callable[[Session], object]) -> CardsvcError | None:
    """Runs ``first`` in a write transaction kept open while another thread runs ``second`` in
    its own; returns what ``second`` raised (None if nothing). Asserts ``second`` had to wait
    for ``first``'s transaction to end."""
    started = threading.Event()
    outcome: list[CardsvcError | None] = []

    def run_second() -> None:
        started.set()
        try:
            with database.write() as session:
                second(session)
            outcome.append(None)
        except CardsvcError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run_second)
    with database.write() as session:
        first(session)
        session.flush()
        thread.start()
        assert started.wait(5)
        time.sleep(0.3)
        assert thread.is_alive(), "the second change did not wait for the first"
    thread.join(15)
    assert not thread.is_alive()
    return outcome[0]


def test_opposite_moves_racing_cannot_close_a_cycle(database: Database) -> None:
    add_agent(database, "X")
    add_agent(database, "Y")
    error = hold_open_while(database, move("X", "Y"), move("Y", "X"))
    assert error is not None and error.code == ErrorCode.AGENT_CYCLE
    with database.read() as session:
        assert ids(agents.ancestors(session, "X")) == ["X", "Y"]
        assert ids(agents.ancestors(session, "Y")) == ["Y"]


# ----- suspension and who manages whom -------------------------------------------------------


def test_suspending_an_agent_blocks_buying_for_its_whole_subtree(database: Database) -> None:
    add_chain(database, ["A", "B", "C"])
    priced_sku(database)
    set_status(database, "B", "suspended")
    for agent_id in ("B", "C"):
        with database.read() as session, pytest.raises(CardsvcError) as caught:
            pricing.effective_price(session, agent_id, "VIP")
        assert caught.value.code == ErrorCode.AGENT_SUSPENDED
        assert caught.value.details == {"agent_id": agent_id, "suspended_agent_id": "B"}
    with database.read() as session:
        assert pricing.effective_price(session, "A", "VIP") == (100, "CNY")
        assert agents.get_agent(session, "C")["status"] == "active"  # rows are not touched
    refused(database, ErrorCode.AGENT_SUSPENDED, lambda session: agents.create_sub_agent(
        session, "C", "D", "d", actor="k", now_ms=T0_MS))
    set_status(database, "B", "active")
    with database.read() as session:
        assert pricing.price_chain(session, "C", "VIP") == [("C", 100), ("B", 100), ("A", 100)]


def test_an_agent_manages_only_its_direct_sub_agents(database: Database) -> None:
    add_chain(database, ["A", "B", "C"])
    add_agent(database, "OTHER")
    with database.read() as session:
        assert agents.may_manage(session, "A", "B")
        assert agents.may_manage(session, "B", "C")
        assert not agents.may_manage(session, "A", "C")  # a grandchild
        assert not agents.may_manage(session, "B", "A")  # its parent
        assert not agents.may_manage(session, "A", "A")  # itself
        assert not agents.may_manage(session, "A", "OTHER")
        assert not agents.may_manage(session, "A", "nobody")


def test_an_agent_suspends_its_sub_agents_and_no_one_else(database: Database) -> None:
    add_chain(database, ["A", "B", "C"])
    add_agent(database, "OTHER")
    def suspend(target: str, actor: str) -> Callable[[Session], object]:
        return lambda session: agents.set_status(session, target, "suspended", actor="key",
                                                 now_ms=T0_MS, actor_agent_id=actor)

    for actor, target in (("B", "A"), ("A", "C"), ("B", "B"), ("B", "OTHER"), ("B", "nobody")):
        refused(database, ErrorCode.FORBIDDEN, suspend(target, actor))
    assert set_status(database, "C", "suspended", actor_agent_id="B")["status"] == "suspended"
    assert set_status(database, "C", "active", actor_agent_id="B")["status"] == "active"
    assert audit_actions(database, "C")[1:] == [
        ("agent.status", {"status": "suspended", "before": "active", "by_agent": "B"}),
        ("agent.status", {"status": "active", "before": "suspended", "by_agent": "B"}),
    ]


def test_an_agent_cannot_reactivate_a_sub_agent_an_admin_suspended(database: Database) -> None:
    add_chain(database, ["A", "B", "C"])
    set_status(database, "C", "suspended")
    error = refused(database, ErrorCode.FORBIDDEN, lambda session: agents.set_status(
        session, "C", "active", actor="key", now_ms=T0_MS, actor_agent_id="B"))
    assert error.details["reason"] == "suspended_by_admin"
    assert set_status(database, "C", "active")["status"] == "active"


def test_a_suspended_agent_cannot_manage_its_sub_agents(database: Database) -> None:
    add_chain(database, ["A", "B", "C"])
    set_status(database, "A", "suspended")
    refused(database, ErrorCode.AGENT_SUSPENDED, lambda session: agents.set_status(
        session, "C", "suspended", actor="key", now_ms=T0_MS, actor_agent_id="B"))
    refused(database, ErrorCode.AGENT_SUSPENDED, lambda session: agents.create_sub_agent(
        session, "B", "D", "d", actor="key", now_ms=T0_MS))


def test_setting_the_current_status_again_writes_nothing(database: Database) -> None:
    add_agent(database, "A")
    before = snapshot(database)
    set_status(database, "A", "active")
    assert snapshot(database) == before
    refused(database, ErrorCode.INVALID_ARGUMENT, lambda session: agents.set_status(
        session, "A", "paused", actor="k", now_ms=T0_MS))
    refused(database, ErrorCode.AGENT_NOT_FOUND, lambda session: agents.set_status(
        session, "nobody", "suspended", actor="k", now_ms=T0_MS))


def test_sub_agent_takes_its_parents_grade_and_currency_and_no_credit(
    database: Database,
) -> None:
    with database.write() as session:
        session.add(Grade(grade="gold", name="Gold", created_at_ms=T0_MS))
    add_agent(database, "A", grade="gold", currency="EUR", credit_limit_minor=9_000)
    with database.write() as session:
        created = agents.create_sub_agent(session, "A", "S", "sub", actor="agent-key",
                                          now_ms=T0_MS, daily_order_quota=50)
    assert (created["parent_id"], created["grade"], created["currency"],
            created["credit_limit_minor"], created["daily_order_quota"]) == \
        ("A", "gold", "EUR", 0, 50)
    assert audit_actions(database, "S")[0][1]["by_agent"] == "A"
    refused(database, ErrorCode.AGENT_NOT_FOUND, lambda session: agents.create_sub_agent(
        session, "nobody", "S2", "x", actor="k", now_ms=T0_MS))


# ----- settings ------------------------------------------------------------------------------


def test_settings_changes_are_stored_and_audited_once(database: Database) -> None:
    add_agent(database, "A")
    with database.write() as session:
        session.add(Grade(grade="gold", name="Gold", created_at_ms=T0_MS))
    with database.write() as session:
        agents.set_credit_limit(session, "A", 50_000, actor="k", now_ms=T0_MS)
        agents.set_daily_quota(session, "A", 20, actor="k", now_ms=T0_MS)
        agents.set_pool_policy(session, "A", "shared_only", actor="k", now_ms=T0_MS)
        agents.set_grade(session, "A", "gold", actor="k", now_ms=T0_MS)
    with database.write() as session:  # the same values again: no entries
        agents.set_credit_limit(session, "A", 50_000, actor="k", now_ms=T0_MS)
        agents.set_grade(session, "A", "gold", actor="k", now_ms=T0_MS)
        final = agents.set_daily_quota(session, "A", None, actor="k", now_ms=T0_MS)
    assert (final["credit_limit_minor"], final["daily_order_quota"], final["pool_policy"],
            final["grade"]) == (50_000, None, "shared_only", "gold")
    assert audit_actions(database, "A")[1:] == [
        ("agent.credit_limit", {"credit_limit_minor": 50_000, "before": 0}),
        ("agent.daily_quota", {"daily_order_quota": 20, "before": None}),
        ("agent.pool_policy", {"pool_policy": "shared_only", "before": "own_then_shared"}),
        ("agent.grade", {"grade": "gold", "before": "standard"}),
        ("agent.daily_quota", {"daily_order_quota": None, "before": 20}),
    ]


def test_credit_limit_set_through_a_ledger_hook_is_audited_after_it(database: Database) -> None:
    add_agent(database, "A")
    calls: list[tuple[str, int]] = []

    def ledger_set(session: Session, agent_id: str, credit_limit_minor: int) -> None:
        calls.append((agent_id, credit_limit_minor))
        row = session.get(Agent, agent_id)
        assert row is not None
        row.credit_limit_minor = credit_limit_minor

    for _ in range(2):  # the second time changes nothing
        with database.write() as session:
            changed = agents.set_credit_limit(session, "A", 7_000, actor="k", now_ms=T0_MS,
                                              apply=ledger_set)
    assert changed["credit_limit_minor"] == 7_000
    assert calls == [("A", 7_000)]
    assert audit_actions(database, "A")[1:] == [
        ("agent.credit_limit", {"credit_limit_minor": 7_000, "before": 0})]


def test_bad_settings_are_refused_and_change_nothing(database: Database) -> None:
    add_agent(database, "A")
    cases: list[tuple[ErrorCode, Callable[[Session], object]]] = [
        (ErrorCode.INVALID_ARGUMENT, lambda s: agents.set_credit_limit(
            s, "A", -1, actor="k", now_ms=T0_MS)),
        (ErrorCode.INVALID_ARGUMENT, lambda s: agents.set_credit_limit(
            s, "A", 10**15 + 1, actor="k", now_ms=T0_MS)),
        (ErrorCode.AGENT_NOT_FOUND, lambda s: agents.set_credit_limit(
            s, "nobody", 1, actor="k", now_ms=T0_MS)),
        (ErrorCode.INVALID_ARGUMENT, lambda s: agents.set_daily_quota(
            s, "A", -5, actor="k", now_ms=T0_MS)),
        (ErrorCode.INVALID_ARGUMENT, lambda s: agents.set_pool_policy(
            s, "A", "anything", actor="k", now_ms=T0_MS)),
        (ErrorCode.GRADE_NOT_FOUND, lambda s: agents.set_grade(
            s, "A", "platinum", actor="k", now_ms=T0_MS)),
        (ErrorCode.AGENT_NOT_FOUND, lambda s: agents.set_grade(
            s, "nobody", "standard", actor="k", now_ms=T0_MS)),
    ]
    for code, change in cases:
        refused(database, code, change)


def test_assigning_a_pool_gives_the_agent_one_pool_and_the_pool_one_agent(
    database: Database,
) -> None:
    add_agent(database, "A")
    add_agent(database, "B")
    with database.write() as session:
        for pool_id, owner in ((1, None), (2, None), (3, "B")):
            session.add(Pool(pool_id=pool_id, name=f"p{pool_id}", agent_id=owner,
                             created_at_ms=T0_MS))

    def assign(pool_id: int | None) -> Callable[[Session], object]:
        return lambda session: agents.assign_pool(session, "A", pool_id, actor="k",
                                                  now_ms=T0_MS)

    def owners() -> dict[int, str | None]:
        with database.read() as session:
            return {row.pool_id: row.agent_id
                    for row in session.execute(select(Pool.pool_id, Pool.agent_id))}

    with database.write() as session:
        assert assign(1)(session)["pool_id"] == 1  # type: ignore[index]
    assert owners() == {1: "A", 2: None, 3: "B"}
    with database.write() as session:
        assign(2)(session)
    assert owners() == {1: None, 2: "A", 3: "B"}
    error = refused(database, ErrorCode.INVALID_ARGUMENT, assign(3))
    assert error.details["reason"] == "owned_by_another_agent"
    refused(database, ErrorCode.INVALID_ARGUMENT, assign(agents.SHARED_POOL_ID))
    refused(database, ErrorCode.POOL_NOT_FOUND, assign(99))
    with database.write() as session:
        assert assign(None)(session)["pool_id"] is None  # type: ignore[index]
    assert owners() == {1: None, 2: None, 3: "B"}
    assert [details for action, details in audit_actions(database, "A")
            if action == "agent.pool"] == [{"pool_id": 1, "before": None},
                                           {"pool_id": 2, "before": 1},
                                           {"pool_id": None, "before": 2}]
