"""Goal: the catalog's use cases on SKUs, stock and codes, tested as domain calls (they were
tested only over HTTP): fields and their bounds (a unit price above PRICE_MINOR_MAX is
LIMIT_EXCEEDED), stock counts by every state including ``withdrawn``, freezing by target,
and the PIN lockouts' list and unlock.

Method: ``Catalog`` on a Runtime (tests/fixtures/runtime.py), SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest

from cardsvc import audit
from cardsvc.catalog import STATES
from cardsvc.checks import PRICE_MINOR_MAX
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.runtime import Runtime
from tests.fixtures.runtime import SHOP_CODES, SHOP_PINS


def test_sku_fields_are_checked_and_edits_audited(services: Runtime) -> None:
    created = services.catalog.create_sku("S1", "one", actor="t", face_value_minor=500)
    assert created["currency"] == "CNY" and created["face_value_minor"] == 500
    with pytest.raises(CardsvcError) as exists:
        services.catalog.create_sku("S1", "again", actor="t")
    assert exists.value.code is ErrorCode.SKU_EXISTS
    for field, value, code in (("cost_minor", PRICE_MINOR_MAX + 1, ErrorCode.LIMIT_EXCEEDED),
                               ("currency", "XXX", ErrorCode.INVALID_ARGUMENT),
                               ("kind", "gold", ErrorCode.INVALID_ARGUMENT),
                               ("uses_per_code", 3, ErrorCode.INVALID_ARGUMENT)):
        with pytest.raises(CardsvcError) as refused:
            services.catalog.update_sku("S1", {field: value}, actor="t")
        assert refused.value.code is code, field
    services.catalog.update_sku("S1", {"retail_price_minor": 900}, actor="t")
    with services.db.read() as session:
        [entry] = audit.query(session, action="sku.update")
    assert entry.details == {"before": {"retail_price_minor": None},
                             "after": {"retail_price_minor": 900}}


def test_stock_counts_every_state_and_withdrawn_codes(shop: Runtime) -> None:
    stock = shop.catalog.stock("VIP")
    assert set(STATES) <= set(stock) and "withdrawn" in STATES
    assert stock["available"] == len(SHOP_CODES)
    ids = shop.engine.batch_code_ids(1)
    shop.engine.withdraw(ids[:3])
    shop.catalog.set_state("freeze", code=SHOP_CODES[5], actor="t")
    stock = shop.catalog.stock("VIP")
    assert (stock["withdrawn"], stock["frozen"], stock["available"]) == (3, 1,
                                                                         len(SHOP_CODES) - 4)
    with pytest.raises(CardsvcError) as unknown:
        shop.catalog.stock("NOPE")
    assert unknown.value.code is ErrorCode.SKU_NOT_FOUND


def test_locked_codes_page_and_unlock_by_code(shop: Runtime) -> None:
    shop.engine.set_pin_policy(1, 60_000, 60_000)
    for code in SHOP_CODES[:3]:
        with pytest.raises(CardsvcError):
            shop.engine.verify(code, "wrong")
    first = shop.catalog.locked_codes(limit=2)
    assert len(first.items) == 2 and first.next is not None
    rest = shop.catalog.locked_codes(limit=2, cursor=first.next)
    assert len(rest.items) == 1 and rest.next is None
    assert {item["code_id"] for item in first.items + rest.items} == {
        shop.engine.lookup(code) for code in SHOP_CODES[:3]}
    assert all(item["lockouts"] == 1 for item in first.items)
    assert shop.catalog.unlock(code=SHOP_CODES[0], actor="admin")["unlocked"] == 1
    assert shop.engine.verify(SHOP_CODES[0], SHOP_PINS[0]).status == "not_sold"
    with pytest.raises(CardsvcError) as neither:
        shop.catalog.unlock(actor="admin")
    assert neither.value.code is ErrorCode.INVALID_ARGUMENT
