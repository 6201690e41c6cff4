"""Goal: an agent's user issues API keys only for its own agent or a direct sub-agent, only
with an agent key's scopes, and needs the ``sub_agents`` scope. Method: domain calls on the
shop Runtime (tests/fixtures/runtime.py: T over A1, and A2), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from cardsvc.access import Principal
from cardsvc.agents import create_agent_user, credentials
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.runtime import Runtime


def user_of(agent_id: str, *scopes: str) -> Principal:
    return Principal(f"user:{agent_id}", "agent", agent_id,
                     frozenset(scopes or ("orders", "holds", "sub_agents")), None, {})


def test_an_agent_keys_itself_and_its_direct_sub_agent(shop: Runtime) -> None:
    for target in ("T", "A1"):
        principal, text = shop.credentials.create_agent_key(user_of("T"), agent_id=target,
                                                            name="k")
        assert shop.keys.authenticate(text).agent_id == target == principal.agent_id


@pytest.mark.parametrize(("who", "target", "scopes"), [
    ("A1", "T", None), ("T", "A2", None), ("A1", "NOPE", None), ("T", "A1", ("admin",)),
    ("T", "A1", ("export",))])
def test_keys_beyond_the_agents_reach_are_forbidden(shop: Runtime, who: str, target: str,
                                                    scopes: tuple[str, ...] | None) -> None:
    with pytest.raises(CardsvcError) as refused:
        shop.credentials.create_agent_key(user_of(who), agent_id=target, name="k",
                                          scopes=scopes)
    assert refused.value.code == ErrorCode.FORBIDDEN


def test_without_the_sub_agents_scope_no_key(shop: Runtime) -> None:
    with pytest.raises(CardsvcError) as refused:
        shop.credentials.create_agent_key(user_of("T", "orders"), agent_id="T", name="k")
    assert refused.value.code == ErrorCode.FORBIDDEN


def test_an_agents_keys_and_users_are_bounded_per_agent(
        shop: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """One login cannot fill the tables: live keys and users per agent stop at their bound
    (revoking or disabling frees a place); platform callers are not bound."""
    monkeypatch.setattr(credentials, "AGENT_KEYS_MAX", 2)
    monkeypatch.setattr(credentials, "AGENT_USERS_MAX", 2)
    made = [shop.credentials.create_agent_key(user_of("T"), agent_id="A1", name=f"k{i}")[0]
            for i in range(2)]
    with pytest.raises(CardsvcError) as refused:
        shop.credentials.create_agent_key(user_of("T"), agent_id="A1", name="k3")
    assert (refused.value.code, refused.value.details["field"]) == (
        ErrorCode.LIMIT_EXCEEDED, "keys")
    shop.credentials.revoke(made[0].key_id, actor="test")
    shop.credentials.create_agent_key(user_of("T"), agent_id="A1", name="k3")
    for index in range(2):
        create_agent_user(shop.db, user_of("T"), agent_id="A1", login=f"user{index}",
                          display_name="U")
    with pytest.raises(CardsvcError) as full:
        create_agent_user(shop.db, user_of("T"), agent_id="A1", login="user3", display_name="U")
    assert full.value.code == ErrorCode.LIMIT_EXCEEDED
    staff = Principal("user:owner", "owner", None, frozenset({"users"}), None, {})
    create_agent_user(shop.db, staff, agent_id="A1", login="user4", display_name="U")
