"""Goal: every string a user stores (SKU names, agent names, a batch's supplier, audit details)
renders inert on every page that shows it: ``<script>``, an ``<img onerror>`` and quote tricks
that would close an attribute come out escaped. Method: plant the payloads through the domain,
fetch the console and portal pages that show them, and look for the raw markup (absent) and its
escaped form (present)."""

from __future__ import annotations

from typing import Any

import pytest

from cardsvc import audit
from cardsvc.catalog import BatchMeta, CodeInput
from tests.web.console.conftest import Service, add_agent_user

pytestmark = pytest.mark.anyio

PAYLOAD = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\" onmouseover=\"alert(3)"
RAW = ("<script>alert(1)", "<img src=x", "\" onmouseover=\"")


def assert_inert(html: str, where: str) -> None:
    for raw in RAW:
        assert raw not in html, (where, raw)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, where


async def test_planted_strings_render_inert_everywhere(shop: Service, visit: Any) -> None:
    runtime = shop.runtime
    actor = "user:" + shop.people["owner"].user_id
    runtime.catalog.create_sku("XSS", PAYLOAD, actor=actor)
    batch = runtime.batches.import_codes(BatchMeta(sku="XSS", supplier=PAYLOAD),
                                         [CodeInput("XSSCODE-0001-ABCD")], actor=actor)
    runtime.price_lists.set_price(sku="XSS", price_minor=100, currency="CNY", grade="standard",
                                  agent_id=None, visible=True, actor=actor, actor_agent_id=None)
    runtime.agent_updates.create("AX", PAYLOAD, {}, actor=actor, actor_agent_id=None)
    add_agent_user(shop, "axuser", "AX")
    audit.record(runtime.db, actor=actor, action="note", object_type="sku", object_id="XSS",
                 details={"note": PAYLOAD}, at_ms=shop.clock())
    owner = await visit("owner")
    for path in ("/console/skus", "/console/skus/XSS", f"/console/batches/{batch.batch_id}",
                 "/console/agents", "/console/agents/AX", "/console/audit?object_id=XSS",
                 "/console/audit?action=agent.create"):
        page = await owner.get(path)
        assert page.status_code == 200, path
        assert_inert(page.text, path)
    agent = await visit("axuser")
    for path in ("/portal/prices", "/portal/buy"):
        page = await agent.get(path)
        assert page.status_code == 200, path
        assert_inert(page.text, path)
