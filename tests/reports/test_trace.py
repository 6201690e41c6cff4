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
from tests.reports.conftest import CODES, TERMINAL, order_one


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
