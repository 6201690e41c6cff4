"""Goal: an agent's user issues API keys only for its own agent or a direct sub-agent, only
with an agent key's scopes, and needs the ``sub_agents`` scope. Method: domain calls on the
shop Runtime (tests/fixtures/runtime.py: T over A1, and A2), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from cardsvc.access import Principal
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
