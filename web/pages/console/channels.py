"""Payment channels in the console: every channel (provider, merchant, enabled, sandbox, its
notify URL; never a secret, only the secrets' names) from ``payments.Channels.all``, and
switching one on or off (``Channels.update``, audited with what changed). Creating a channel and
setting its secrets stay with the API and the CLI (``cardsvc channels``), where secrets are
typed once. Scope ``admin``.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError
from web.forms import read_form
from web.i18n import gettext
from web.pages.common import error_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of


@console_page("admin")
async def channels(request: Request, me: Visitor) -> Response:
    shown = await asyncio.to_thread(runtime_of(request).channels.all)
    return await render_page(request, "console/channels.html", {"channels": shown})


async def _switch(request: Request, me: Visitor, enabled: bool) -> Response:
    await read_form(request, ())
    runtime = runtime_of(request)
    try:
        await asyncio.to_thread(runtime.channels.update, request.path_params["channel_id"],
                                {"enabled": enabled}, actor=me.actor)
    except CardsvcError as error:
        return redirect(request, "/console/channels", flash=error_text(error), level="error")
    return redirect(request, "/console/channels", flash=gettext("Saved."))


@console_page("admin")
async def enable(request: Request, me: Visitor) -> Response:
    return await _switch(request, me, True)


@console_page("admin")
async def disable(request: Request, me: Visitor) -> Response:
    return await _switch(request, me, False)


ROUTES = [
    Route("/console/channels", channels, methods=["GET"], name="console_channels"),
    Route("/console/channels/{channel_id}/enable", enable, methods=["POST"],
          name="console_channel_enable"),
    Route("/console/channels/{channel_id}/disable", disable, methods=["POST"],
          name="console_channel_disable"),
]
