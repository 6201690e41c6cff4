"""Goal: plaintext leaves only through the Revealer, and only to an order's owner or to an
audited reveal by a holder of ``export``; an admin's read is masked (issue 10, item 1).

Method: domain calls on a Runtime (tests/fixtures/runtime.py, SQLite and PostgreSQL): the
Revealer directly, then the order use cases with an admin principal with and without
``export``; the audit log is read after each.
"""

from __future__ import annotations

import asyncio

import pytest

from cardsvc import audit
from cardsvc.access import Principal, RiskLimits
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.masking import mask_code
from cardsvc.runtime import Runtime
from cardsvc.sales import OrderRequest, OrderView
from tests.fixtures.runtime import SHOP_CODES, SHOP_PINS

ADMIN = Principal(key_id="admin-1", role="admin", agent_id=None, scopes=frozenset({"admin"}),
                  skus=None, limits={})
SUPPORT = Principal(key_id="support-1", role="admin", agent_id=None,
                    scopes=frozenset({"admin", "export"}), skus=None, limits={})


def placed(services: Runtime) -> OrderView:
    order, _ = asyncio.run(services.orders.place(OrderRequest("A1", "o-1", "VIP", 2),
                                                 actor="agent-key", limits=RiskLimits()))
    return order


def test_the_revealer_opens_codes_in_the_order_asked_and_streams_in_chunks(
    shop: Runtime,
) -> None:
    ids = sorted(shop.engine.batch_code_ids(1))
    opened = dict(zip(SHOP_CODES, SHOP_PINS, strict=True))
    assert shop.revealer.reveal(list(reversed(ids))) == [
        (code, opened[code]) for code in reversed(SHOP_CODES)]
    chunks = list(shop.revealer.stream(ids, chunk_codes=5))
    assert [len(chunk) for chunk in chunks] == [5, 5, 2]
    assert [item.code for chunk in chunks for item in chunk] == SHOP_CODES
    with pytest.raises(CardsvcError) as missing:
        shop.revealer.reveal([ids[0], 10**9])
    assert missing.value.code is ErrorCode.INTERNAL_ERROR


def test_an_admin_read_is_masked_and_the_owners_is_audited_plaintext(shop: Runtime) -> None:
    order = placed(shop)
    masked = asyncio.run(shop.orders.get(order.order_id, agent_id=None, actor=ADMIN.actor))
    assert masked.masked and [c.code for c in masked.codes] == [mask_code(c.code)
                                                                for c in order.codes]
    assert all(c.pin is None and c.has_pin for c in masked.codes)
    found = asyncio.run(shop.orders.find("A1", "o-1", masked=True, actor="admin"))
    assert found.masked and found.codes == masked.codes
    again = asyncio.run(shop.orders.get(order.order_id, agent_id="A1", actor="agent-key"))
    assert again.codes == order.codes and not again.masked
    with pytest.raises(CardsvcError) as other:
        asyncio.run(shop.orders.get(order.order_id, agent_id="A2", actor="other-key"))
    assert other.value.code is ErrorCode.ORDER_NOT_FOUND
    with shop.db.read() as session:
        [entry] = audit.query(session, action="order.redeliver")
    assert (entry.actor, entry.object_id, entry.details["codes"]) == ("agent-key",
                                                                      order.order_id, 2)


def test_a_reveal_needs_export_and_is_audited_before_the_codes_leave(shop: Runtime) -> None:
    order = placed(shop)
    with pytest.raises(CardsvcError) as denied:
        asyncio.run(shop.orders.reveal(order.order_id, ADMIN, reason="ticket 1"))
    assert denied.value.code is ErrorCode.FORBIDDEN
    shown = asyncio.run(shop.orders.reveal(order.order_id, SUPPORT, reason="ticket 2"))
    assert shown.codes == order.codes
    with shop.db.read() as session:
        [entry] = audit.query(session, action="order.reveal")
    assert entry.actor == "support-1" and entry.object_id == order.order_id
    assert entry.details == {"agent_id": "A1", "codes": 2, "reason": "ticket 2"}
    with pytest.raises(CardsvcError) as unknown:
        asyncio.run(shop.orders.reveal("ord_missing", SUPPORT, reason="x"))
    assert unknown.value.code is ErrorCode.ORDER_NOT_FOUND
