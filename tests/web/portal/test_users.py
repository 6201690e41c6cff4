"""The portal's people page: an agent's user sees its own agent's users and invites one for
its agent or a direct sub-agent (the link shown once, a user of that agent made); a grandchild,
another agent or an unknown id is refused and nothing is made; a planted name renders inert;
a form without its CSRF token is refused.

Method: the whole service over ASGITransport with the test shop's people (``visit``); users
read back through ``access.list_users``."""

from __future__ import annotations

from typing import Any

import pytest

from cardsvc.access import list_users
from tests.web.console.conftest import Service, error_of
from tests.web.console.test_stored_xss import PAYLOAD, assert_inert
from tests.web.portal.test_portal_pages import _family

pytestmark = pytest.mark.anyio


def logins(shop: Service, agent_id: str) -> set[str]:
    return {user["login"] for user in list_users(shop.runtime.db, agent_id=agent_id)}


async def test_an_agent_invites_people_for_itself_and_a_direct_sub_agent_only(
        shop: Service, visit: Any) -> None:
    _family(shop)
    agent = await visit("a1user")
    page = await agent.get("/portal/users")
    assert page.status_code == 200 and "a1user" in page.text and "a2user" not in page.text
    mine = await agent.post("/portal/users", {"login": "a1clerk", "display_name": "Clerk"},
                            form_page="/portal/users")
    assert mine.status_code == 200 and "data-invitation-link" in mine.text
    link = mine.text.split("data-invitation-link>")[1].split("<")[0]
    assert link.startswith("/auth/invitation/") and link not in (
        await agent.get("/portal/users")).text
    kid = await agent.post("/portal/users", {"login": "kidclerk", "display_name": "Kid",
                                             "agent_id": "A1-KID"}, form_page="/portal/users")
    assert kid.status_code == 200 and "data-invitation-link" in kid.text
    assert "a1clerk" in logins(shop, "A1") and "kidclerk" in logins(shop, "A1-KID")
    for agent_id in ("A1-GK", "A2", "NOPE"):
        refused = await agent.post("/portal/users", {
            "login": f"x{agent_id.lower()}", "display_name": "X", "agent_id": agent_id},
            form_page="/portal/users")
        assert refused.status_code == 303
        assert f"x{agent_id.lower()}" not in logins(shop, agent_id)
    planted = await agent.post("/portal/users", {"login": "planted", "display_name": PAYLOAD},
                               form_page="/portal/users")
    assert planted.status_code == 200
    assert_inert((await agent.get("/portal/users")).text, "portal users")


async def test_people_need_the_sub_agents_scope_and_the_token(shop: Service,
                                                              visit: Any) -> None:
    agent = await visit("a1user")
    forged = await agent.post("/portal/users", {"login": "forged", "display_name": "F"},
                              form_page="/portal/users", token=False)
    assert forged.status_code == 403 and "forged" not in logins(shop, "A1")
    owner = await visit("owner")
    assert error_of((await owner.get("/portal/users")).text) == "FORBIDDEN"
