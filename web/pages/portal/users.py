"""People of an agent in the portal: its own agent's users (role, state, whether TOTP is set up:
``access.list_users``) and inviting a user for the agent itself or one of its direct sub-agents
(``agents.create_agent_user``, which decides who may: never a grandchild or an agent elsewhere;
the invitation link is shown on that response only). Scope ``sub_agents``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.access import list_users
from cardsvc.agents import create_agent_user
from cardsvc.errors import CardsvcError
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import redirect, refusal_text
from web.render import render_page
from web.sessions import Visitor, portal_page, runtime_of

INVITE_FIELDS = (TextField("login", 64), TextField("display_name", 128),
                 TextField("agent_id", 64, required=False))


async def _page(request: Request, me: Visitor, invited: dict[str, str] | None) -> Response:
    agent_id = me.agent_id
    assert agent_id is not None  # portal_page refuses users without an agent
    people = await asyncio.to_thread(list_users, runtime_of(request).db, agent_id=agent_id)
    return await render_page(request, "portal/users.html", {
        "users": people, "invited": invited, "own_agent": agent_id})


@portal_page("sub_agents")
async def users(request: Request, me: Visitor) -> Response:
    return await _page(request, me, None)


@portal_page("sub_agents")
async def invite(request: Request, me: Visitor) -> Response:
    form = await read_form(request, INVITE_FIELDS)
    if not form.ok:
        return redirect(request, "/portal/users", flash=gettext("Check this value."),
                        level="error")
    agent_id = form.value("agent_id") or me.agent_id or ""
    try:
        invitation = await asyncio.to_thread(
            create_agent_user, runtime_of(request).db, me.principal, agent_id=agent_id,
            login=form.value("login"), display_name=form.value("display_name"))
    except CardsvcError as error:
        return redirect(request, "/portal/users", flash=refusal_text(error), level="error")
    root = str(request.scope.get("root_path", ""))
    return await _page(request, me, {"login": form.value("login"), "agent_id": agent_id,
                                     "link": f"{root}/auth/invitation/{invitation.token}"})


ROUTES = [
    Route("/portal/users", users, methods=["GET"], name="portal_users"),
    Route("/portal/users", invite, methods=["POST"], name="portal_user_invite"),
]
