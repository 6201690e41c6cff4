"""Goal: a code's story (``cardsvc.reports.trace_code``) without HTTP: its batch and supplier,
its order and agent and delivery, each redemption and rollback and freeze in one timeline
ordered by time; never the code's text (only masked) nor its PIN; the trace itself audited; an
unknown code refused without an audit entry.

Method: the ``services`` runtime of conftest; a code is ordered, redeemed, rolled back and
frozen through the domain's use cases, then traced.
"""

from __future__ import annotations

import asyncio

import pytest

from cardsvc import audit
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.masking import mask_code
from cardsvc.reports import trace_code
from cardsvc.runtime import Runtime
from tests.fixtures.shop import request, run
from tests.reports.conftest import CODES, TERMINAL, order_one
from tests.sales.test_checkout import notify, notify_body


def test_the_story_joins_batch_order_redemptions_and_freezes_in_time_order(
        services: Runtime) -> None:
    order = order_one(services)
    [delivered] = order.codes
    redeemed = asyncio.run(services.terminals.redeem(TERMINAL, "10.0.0.1", delivered.code,
                                                     None, "r-1"))
    asyncio.run(services.terminals.rollback(TERMINAL, redeemed.redemption_id, "mistake"))
    services.catalog.set_state("freeze", code=delivered.code, actor="test")
    story = trace_code(services.store, services.db, delivered.code, actor="auditor")
    assert story["code"] == mask_code(delivered.code) and delivered.code not in str(story)
    assert (story["sku"], story["state"]) == ("VIP", "frozen")
    assert story["batch"]["supplier"] == "ACME" and story["batch"]["unit_cost_minor"] == 40
    assert story["order"]["order_id"] == order.order_id and story["order"]["agent_id"] == "A1"
    [redemption] = story["redemptions"]
    assert redemption["terminal"] == "till-1" and redemption["rollback_reason"] == "mistake"
    events = [event["event"] for event in story["timeline"]]
    for earlier, later in (("ordered", "redeemed"), ("redeemed", "rolled_back"),
                           ("rolled_back", "code.freeze")):
        assert events.index(earlier) < events.index(later), events
    times = [event["at_ms"] for event in story["timeline"]]
    assert times == sorted(times)
    with services.db.read() as session:
        [traced] = audit.query(session, action="code.trace")
    assert traced.actor == "auditor" and traced.details == {"code": mask_code(delivered.code)}


def test_an_unsold_code_has_no_order_and_an_unknown_code_is_refused_unaudited(
        services: Runtime) -> None:
    story = trace_code(services.store, services.db, CODES[2], actor="auditor")
    assert story["order"] is None and story["redemptions"] == []
    assert story["state"] == "available"
    with pytest.raises(CardsvcError) as caught:
        trace_code(services.store, services.db, "NO-SUCH-CODE-9999", actor="auditor")
    assert caught.value.code == ErrorCode.CODE_NOT_FOUND
    with services.db.read() as session:
        assert len(audit.query(session, action="code.trace")) == 1


def test_a_retail_codes_trace_shows_its_reveal_to_the_buyer(shop_runtime: Runtime) -> None:
    """A code sold in the shop goes to an order with no ``orders`` row (``ro_...``): its
    trace still shows what happened on that order, here the buyer's audited re-reveal."""
    result = run(shop_runtime.checkout.start(request(1)))
    run(notify(shop_runtime, *notify_body(shop_runtime, result)))
    order_id = result.order.order_id
    _, codes, _ = run(shop_runtime.checkout.codes(order_id, result.token, full=False,
                                                  channel="page", ip="198.51.100.7"))
    run(shop_runtime.checkout.codes(order_id, result.token, full=True, channel="page",
                                    ip="198.51.100.7"))
    story = trace_code(shop_runtime.store, shop_runtime.db, codes[0].code, actor="support")
    actions = [(e["action"], e["object_id"]) for e in story["audit"]]
    assert ("code.reveal", order_id) in actions, actions
