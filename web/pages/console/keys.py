"""API keys in the console: every key's public facts (never a secret), a new key (its text shown
on that response only) and revoking one. One call of ``agents.Credentials`` each, with the
visitor as granter (only a holder of ``export`` may grant it). Scope ``admin``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from web.forms import TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

KEY_FIELDS = (TextField("role", 16), TextField("agent_id", 64, required=False),
              TextField("name", 128, required=False), TextField("scopes", 256, required=False))
ROLES = ("admin", "agent", "terminal")


async def _page(request: Request, created: dict[str, object] | None) -> Response:
    runtime = runtime_of(request)
    keys = await asyncio.to_thread(runtime.credentials.list_keys, include_revoked=False)
    return await render_page(request, "console/keys.html", {
        "keys": list(reversed(keys)), "created": created, "roles": ROLES})


@console_page("admin")
async def key_list(request: Request, me: Visitor) -> Response:
    return await _page(request, None)


@console_page("admin")
async def key_create(request: Request, me: Visitor) -> Response:
    form = await read_form(request, KEY_FIELDS)
    if not form.ok:
        return redirect(request, "/console/keys", flash=gettext("Check this value."),
                        level="error")
    scopes = [s for s in form.value("scopes").replace(",", " ").split() if s] or None
    runtime = runtime_of(request)
    try:
        principal, text = await asyncio.to_thread(
            runtime.credentials.create_key, role=form.value("role"),
            agent_id=form.value("agent_id") or None, name=form.value("name"), scopes=scopes,
            skus=None, limits=None, actor=me.actor, granter=me.principal)
    except CardsvcError as error:
        return redirect(request, "/console/keys", flash=error_text(error), level="error")
    return await _page(request, {"key_id": principal.key_id, "text": text})


@console_page("admin")
async def key_revoke(request: Request, me: Visitor) -> Response:
    await read_form(request, ())
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.credentials.revoke, request.path_params["key_id"],
                                actor=me.actor)
    except CardsvcError as error:
        return redirect(request, "/console/keys", flash=error_text(error), level="error")
    return redirect(request, "/console/keys", flash=gettext("The key is revoked."))


ROUTES = [
    Route("/console/keys", key_list, methods=["GET"], name="console_keys"),
    Route("/console/keys", key_create, methods=["POST"], name="console_key_create"),
    Route("/console/keys/{key_id}/revoke", key_revoke, methods=["POST"],
          name="console_key_revoke"),
]
