"""The console's pages in process: each renders for the roles whose scopes open it and is
refused (403) to the others, and its forms call the domain (changes visible afterwards).

Method: the whole service over ASGITransport with the test shop's people (``visit``); the
assertions read statuses, ``data-error-code`` and the domain's state, never page text beyond
ids the shop made.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.console.conftest import Service, error_of

pytestmark = pytest.mark.anyio


async def test_the_dashboard_shows_each_role_its_sections(shop: Service, visit: Any) -> None:
    owner = await visit("owner")
    page = await owner.get("/console")
    assert page.status_code == 200
    assert 'id="money-title"' in page.text and 'id="stock-title"' in page.text
    for name in ("hourly", "channel", "sku", "stock"):
        csv = await owner.get(f"/console/charts/{name}.csv?range=7d")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    support = await visit("sue")
    page = await support.get("/console")
    assert page.status_code == 200 and 'id="money-title"' not in page.text
    assert (await support.get("/console/charts/channel.csv")).status_code == 404


async def test_catalog_pages_create_and_edit_a_product(shop: Service, visit: Any) -> None:
    operator = await visit("oscar")
    assert (await operator.get("/console/skus")).status_code == 200
    made = await operator.post("/console/skus", {
        "sku": "GAME100", "name": "Game points 100", "kind": "voucher", "currency": "CNY",
        "retail_price": "12.50", "low_stock_threshold": "3", "uses_per_code": "1",
        "on_sale": "yes", "redeem_requires_sale": "yes"}, form_page="/console/skus/new")
    assert made.status_code == 303, made.text[:300]
    sku = shop.runtime.catalog.get_sku("GAME100")
    assert (sku["retail_price_minor"], sku["kind"], sku["low_stock_threshold"]) == (
        1250, "voucher", 3)
    bad = await operator.post("/console/skus/GAME100", {"name": "Game points", "cost": "x"},
                              form_page="/console/skus/GAME100")
    assert bad.status_code == 422
    saved = await operator.post("/console/skus/GAME100", {
        "name": "Game points", "currency": "CNY", "cost": "8", "kind": "voucher"},
        form_page="/console/skus/GAME100")
    assert saved.status_code == 303
    sku = shop.runtime.catalog.get_sku("GAME100")
    assert (sku["name"], sku["cost_minor"], sku["on_sale"]) == ("Game points", 800, False)
    again = await operator.post("/console/skus", {"sku": "GAME100", "name": "dup"},
                                form_page="/console/skus/new")
    assert again.status_code == 422
    finance = await visit("fiona")
    assert error_of((await finance.get("/console/skus")).text) == "FORBIDDEN"
