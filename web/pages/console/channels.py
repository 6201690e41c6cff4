"""Payment channels in the console: every channel (provider, merchant, enabled, sandbox, its
notify URL; never a secret, only the secrets' names) from ``payments.Channels.all``; creating
one (``Channels.create``: the adapter checks its settings, the secrets are sealed and never
shown again, not even on a refused form, which comes back empty) and switching one on or off
(``Channels.update``); both audited with the names of what changed, never a secret value.
Replacing a channel's secrets stays with the API and the CLI (``cardsvc channels``). Scope
``admin``.

The form carries up to SECRET_PAIRS secrets and VERIFY_PAIRS verification keys as name and
value pairs (values are multi-line: PEM keys) and the options as ``name=value`` lines.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.errors import CardsvcError, invalid
from cardsvc.payments import PROVIDERS
from web.forms import FormResult, TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

SECRET_PAIRS = 4
VERIFY_PAIRS = 2
SETTING_CHARS_MAX = 16_384
"""A secret's, key's or option's text (a PEM key is a few kB); the domain checks it again."""
OPTIONS_CHARS_MAX = 8_192
CREATE_FIELDS = (
    TextField("channel_id", 64), TextField("provider", 16), TextField("display_name", 100),
    TextField("merchant_id", 128, required=False),
    *(field for index in range(1, SECRET_PAIRS + 1) for field in (
        TextField(f"secret_{index}_name", 64, required=False),
        TextField(f"secret_{index}_value", SETTING_CHARS_MAX, required=False))),
    *(field for index in range(1, VERIFY_PAIRS + 1) for field in (
        TextField(f"verify_{index}_name", 64, required=False),
        TextField(f"verify_{index}_value", SETTING_CHARS_MAX, required=False))),
    TextField("options", OPTIONS_CHARS_MAX, required=False),
)


@console_page("admin")
async def channels(request: Request, me: Visitor) -> Response:
    shown = await asyncio.to_thread(runtime_of(request).channels.all)
    return await render_page(request, "console/channels.html", {
        "channels": shown, "providers": PROVIDERS, "secret_pairs": range(1, SECRET_PAIRS + 1),
        "verify_pairs": range(1, VERIFY_PAIRS + 1)})


def _pairs(form: FormResult, kind: str, count: int) -> dict[str, str]:
    """The form's ``<kind>_<n>_name`` / ``<kind>_<n>_value`` pairs given (a value without a name
    is INVALID_ARGUMENT: it would be dropped silently otherwise)."""
    pairs: dict[str, str] = {}
    for index in range(1, count + 1):
        name, value = form.value(f"{kind}_{index}_name"), form.value(f"{kind}_{index}_value")
        if value and not name:
            raise invalid(f"{kind}_{index}_name", "give the name of this value")
        if name:
            pairs[name] = value
    return pairs


def _options(text: str) -> dict[str, str]:
    """``name=value`` lines (blank lines skipped). Raises INVALID_ARGUMENT for another line."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise invalid("options", "write each option as name=value on its own line")
        options[name.strip()] = value.strip()
    return options


@console_page("admin")
async def create(request: Request, me: Visitor) -> Response:
    form = await read_form(request, CREATE_FIELDS)
    if not form.ok:
        return redirect(request, "/console/channels", flash=gettext(
            "Give the channel's id, provider and name (secrets are not kept on a refused "
            "form: type them again)."), level="error")
    runtime = runtime_of(request)
    try:
        made = await asyncio.to_thread(
            runtime.channels.create, form.value("channel_id"), form.value("provider"),
            display_name=form.value("display_name"), merchant_id=form.value("merchant_id"),
            secrets_=_pairs(form, "secret", SECRET_PAIRS),
            verify_keys=_pairs(form, "verify", VERIFY_PAIRS),
            options=_options(form.value("options")), actor=me.actor)
    except CardsvcError as error:
        return redirect(request, "/console/channels", flash=error_text(error), level="error")
    return redirect(request, "/console/channels", flash=gettext(
        "Channel %(id)s created. Give the provider its notify URL: %(url)s") % {
            "id": made.channel_id, "url": made.notify_url})


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
    Route("/console/channels", create, methods=["POST"], name="console_channel_create"),
    Route("/console/channels/{channel_id}/enable", enable, methods=["POST"],
          name="console_channel_enable"),
    Route("/console/channels/{channel_id}/disable", disable, methods=["POST"],
          name="console_channel_disable"),
]
