"""The console's payment channels page: the owner creates a channel whose secrets are sealed
and never shown again (not in the page, the flash, the audit log, nor on a refused form), with
the adapter's own check of its settings (a refused form changes nothing); a planted name renders
inert; staff without ``admin`` and a form without its CSRF token are refused.

Method: the whole service over ASGITransport with the test shop's people (``visit``); an EPay
channel (secret ``key``, option ``gateway``), the domain's state read back through
``Channels``."""

from __future__ import annotations

from typing import Any

import pytest

from cardsvc import audit
from tests.web.console.conftest import Service, error_of
from tests.web.console.test_stored_xss import PAYLOAD, assert_inert

pytestmark = pytest.mark.anyio
SECRET = "epay-merchant-secret-typed-once"


def epay(channel_id: str, **changes: str) -> dict[str, str]:
    form = {"channel_id": channel_id, "provider": "epay", "display_name": "EPay",
            "merchant_id": "1001", "secret_1_name": "key", "secret_1_value": SECRET,
            "options": "gateway=https://pay.example.com/\npay_type=alipay"}
    form.update(changes)
    return form


async def test_the_owner_creates_a_channel_whose_secret_is_never_shown(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    owner = await visit("owner")
    made = await owner.post("/console/channels", epay("ep1"), form_page="/console/channels")
    assert made.status_code == 303
    channel = runtime.channels.get("ep1")
    assert (channel.provider, channel.secret_names, channel.options["gateway"]) == (
        "epay", ("key",), "https://pay.example.com/")
    page = await owner.get("/console/channels")
    assert channel.notify_url in page.text and SECRET not in page.text
    assert all(SECRET not in str(entry.details) for entry in audit.list_entries(runtime.db))
    again = await owner.post("/console/channels", epay("ep1"), form_page="/console/channels")
    assert again.status_code == 303 and SECRET not in (await owner.get(
        "/console/channels")).text


async def test_a_refused_channel_changes_nothing_and_echoes_no_secret(
        shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    before = {c.channel_id for c in runtime.channels.all()}
    owner = await visit("owner")
    for form in (epay("ep2", options="gateway=not a url"),  # the adapter's check
                 epay("ep3", options="no equals sign"),  # the form's options
                 epay("ep4", secret_1_name=""),  # a value without its name
                 epay("ep5", provider="nosuchpay")):
        refused = await owner.post("/console/channels", form, form_page="/console/channels")
        assert refused.status_code == 303
        shown = await owner.get("/console/channels")
        assert "flash-error" in shown.text and SECRET not in shown.text, form
    assert {c.channel_id for c in runtime.channels.all()} == before


async def test_a_planted_channel_name_renders_inert(shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    made = await owner.post("/console/channels", epay("ep6", display_name=PAYLOAD),
                            form_page="/console/channels")
    assert made.status_code == 303
    assert_inert((await owner.get("/console/channels")).text, "channels")


async def test_only_admins_create_channels_and_only_with_the_token(shop: Service,
                                                                   visit: Any) -> None:
    runtime = shop.runtime
    operator = await visit("oscar")
    refused = await operator.post("/console/channels", epay("ep7"), form_page="/console/")
    assert error_of(refused.text) == "FORBIDDEN"
    owner = await visit("owner")
    forged = await owner.post("/console/channels", epay("ep8"), form_page="/console/channels",
                              token=False)
    assert forged.status_code == 403
    assert {"ep7", "ep8"}.isdisjoint({c.channel_id for c in runtime.channels.all()})
