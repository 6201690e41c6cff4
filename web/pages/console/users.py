"""Staff users in the console: every staff and terminal user with role, state and whether TOTP
is enrolled (``access.list_users``), and inviting a new one (``access.invite_user``: the
invitation link is shown on that response only). Scope ``users`` (the owner).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.access import STAFF_ROLES, TERMINAL_ROLE, invite_user, list_users
from cardsvc.errors import CardsvcError
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

INVITE_FIELDS = (TextField("login", 64), TextField("display_name", 128), TextField("role", 16))


async def _page(request: Request, invited: dict[str, str] | None) -> Response:
    users = await asyncio.to_thread(list_users, runtime_of(request).db, staff=True)
    return await render_page(request, "console/users.html", {
        "users": users, "invited": invited, "roles": (*STAFF_ROLES, TERMINAL_ROLE)})


@console_page("users")
async def users(request: Request, me: Visitor) -> Response:
    return await _page(request, None)


@console_page("users")
async def invite(request: Request, me: Visitor) -> Response:
    form = await read_form(request, INVITE_FIELDS)
    if not form.ok:
        return redirect(request, "/console/users", flash=gettext("Check this value."),
                        level="error")
    try:
        invitation = await asyncio.to_thread(
            invite_user, runtime_of(request).db, me.principal, login=form.value("login"),
            display_name=form.value("display_name"), role=form.value("role"))
    except CardsvcError as error:
        return redirect(request, "/console/users", flash=error_text(error), level="error")
    root = str(request.scope.get("root_path", ""))
    return await _page(request, {"login": form.value("login"),
                                 "link": f"{root}/auth/invitation/{invitation.token}"})


ROUTES = [
    Route("/console/users", users, methods=["GET"], name="console_users"),
    Route("/console/users", invite, methods=["POST"], name="console_user_invite"),
]
