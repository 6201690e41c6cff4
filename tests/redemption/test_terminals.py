"""Goal: terminals see opaque redemption ids and one refusal for every redemption that is not
theirs; a replay after a rollback is REDEMPTION_ROLLED_BACK, single and batch; the PIN lockout
starts after the configured failures and is audited once, naming only the code's id and masked
text (issue 10, items 9, 13 and 14).

Method: domain calls of ``Terminals`` on a Runtime (tests/fixtures/runtime.py) with a terminal
principal, on SQLite and PostgreSQL; the lockout policy comes from ServiceConfig as the server
sets it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cardsvc import audit
from cardsvc.access import Principal, RiskLimits
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.masking import mask_code
from cardsvc.redemption import RedeemItem
from cardsvc.runtime import Runtime
from cardsvc.sales import OrderRequest
from tests.fixtures.runtime import open_runtime, stock_shop

TILL = Principal(key_id="till-1", role="terminal", agent_id=None,
                 scopes=frozenset({"verify", "redeem", "rollback"}), skus=None, limits={})
OTHER = Principal(key_id="till-2", role="terminal", agent_id=None,
                  scopes=frozenset({"verify", "redeem", "rollback"}), skus=None, limits={})


def sold(services: Runtime, quantity: int = 2) -> list[tuple[str, str | None]]:
    order, _ = asyncio.run(services.orders.place(OrderRequest("A1", "o-1", "VIP", quantity),
                                                 actor="t", limits=RiskLimits(enabled=False)))
    return [(code.code, code.pin) for code in order.codes]


def test_redemption_ids_are_opaque_and_map_back(shop: Runtime) -> None:
    (code, pin), (code2, pin2) = sold(shop)
    first = asyncio.run(shop.terminals.redeem(TILL, "1.2.3.4", code, pin, "r-1"))
    second = asyncio.run(shop.terminals.redeem(TILL, "1.2.3.4", code2, pin2, "r-2"))
    for view in (first, second):
        assert view.redemption_id.startswith("rdm_") and len(view.redemption_id) == 30
        assert not view.redemption_id[4:].isdigit()
    assert first.redemption_id != second.redemption_id
    rolled = asyncio.run(shop.terminals.rollback(TILL, first.redemption_id, "refund"))
    assert rolled.redemption.redemption_id == first.redemption_id and rolled.uses_left == 1
    with pytest.raises(CardsvcError) as again:
        asyncio.run(shop.terminals.redeem(TILL, "1.2.3.4", code2, pin2, "r-3"))
    assert again.value.code is ErrorCode.ALREADY_REDEEMED
    assert again.value.details["redemption_id"] == second.redemption_id


def test_not_found_is_one_answer_for_unknown_forged_and_anothers_redemptions(
    shop: Runtime,
) -> None:
    (code, pin), _ = sold(shop)
    mine = asyncio.run(shop.terminals.redeem(TILL, "1.2.3.4", code, pin, "r-1"))
    unknown = shop.terminals.public_id(999)
    middle = mine.redemption_id[10]
    forged = mine.redemption_id[:10] + ("a" if middle != "a" else "b") + mine.redemption_id[11:]
    answers = []
    for caller, redemption_id in ((OTHER, mine.redemption_id), (TILL, unknown),
                                  (TILL, forged), (TILL, "999"), (TILL, "rdm_x")):
        with pytest.raises(CardsvcError) as refused:
            asyncio.run(shop.terminals.rollback(caller, redemption_id, "probe"))
        error = refused.value
        answers.append((error.code, error.message, tuple(sorted(error.details))))
    assert len(set(answers)) == 1
    assert answers[0][0] is ErrorCode.REDEMPTION_NOT_FOUND


def test_replay_after_rollback_is_redemption_rolled_back_single_and_batch(
    shop: Runtime,
) -> None:
    (code, pin), (code2, pin2) = sold(shop)
    first = asyncio.run(shop.terminals.redeem(TILL, "ip", code, pin, "r-1"))
    asyncio.run(shop.terminals.rollback(TILL, first.redemption_id, "refund"))
    with pytest.raises(CardsvcError) as replay:
        asyncio.run(shop.terminals.redeem(TILL, "ip", code, pin, "r-1"))
    assert replay.value.code is ErrorCode.REDEMPTION_ROLLED_BACK
    assert replay.value.details["redemption_id"] == first.redemption_id
    assert isinstance(replay.value.details["rolled_back_at_ms"], int)
    [batch_first] = asyncio.run(shop.terminals.redeem_batch(TILL, "ip", [RedeemItem(
        code2, pin2, "b-1")]))
    assert not isinstance(batch_first, CardsvcError)
    asyncio.run(shop.terminals.rollback(TILL, batch_first.redemption_id, "refund"))
    [batch_replay] = asyncio.run(shop.terminals.redeem_batch(TILL, "ip", [RedeemItem(
        code2, pin2, "b-1")]))
    assert isinstance(batch_replay, CardsvcError)
    assert batch_replay.code is ErrorCode.REDEMPTION_ROLLED_BACK
    assert batch_replay.details["redemption_id"] == batch_first.redemption_id


def test_pin_lockout_follows_the_settings_and_is_audited_once(
    tmp_path: Path, database_url: str,
) -> None:
    services = open_runtime(tmp_path / "data", database_url, pin_failures_max=3,
                            pin_lockout_ms=60_000, pin_lockout_max_ms=120_000)
    try:
        stock_shop(services)
        assert services.engine.pin_policy() == (3, 60_000, 120_000)
        (code, pin), _ = sold(services)
        codes = []
        for attempt in range(5):
            try:
                asyncio.run(services.terminals.verify(TILL, "ip", code, f"WRONG{attempt}"))
            except CardsvcError as error:
                codes.append(error.code)
        assert codes == [ErrorCode.PIN_MISMATCH] * 2 + [ErrorCode.CODE_LOCKED] * 3
        with pytest.raises(CardsvcError) as locked:
            asyncio.run(services.terminals.redeem(TILL, "ip", code, pin, "r-1"))
        assert locked.value.code is ErrorCode.CODE_LOCKED  # the right PIN too, while locked
        assert locked.value.details["retry_after_s"] >= 1
        code_id = services.engine.lookup(code)
        with services.db.read() as session:
            [entry] = audit.query(session, action="code.locked")
        assert entry.object_id == str(code_id)
        assert entry.details["code"] == mask_code(code) and code not in str(entry.details)
        page = services.catalog.locked_codes()
        assert [item["code_id"] for item in page.items] == [code_id]
        assert services.catalog.unlock(code_ids=[code_id], actor="admin") == {
            "unlocked": 1, "unchanged": 0}
        view = asyncio.run(services.terminals.redeem(TILL, "ip", code, pin, "r-1"))
        assert view.uses_left == 0
        with services.db.read() as session:
            assert len(audit.query(session, action="code.unlock")) == 1
    finally:
        services.close()
