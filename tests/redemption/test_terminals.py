"""Goal: terminals see opaque redemption ids and one refusal for every redemption that is not
theirs; a replay after a rollback is REDEMPTION_ROLLED_BACK, single and batch; the PIN lockout
starts after the configured failures and is audited once, naming only the code's id and masked
text (issue 10, items 9, 13 and 14); a batch, built from the core's result columns, gives every
outcome (successes, replays, refusals with their details, lockouts, counts) that the same items
redeemed one by one give.

Method: domain calls of ``Terminals`` on a Runtime (tests/fixtures/runtime.py) with a terminal
principal, on SQLite and PostgreSQL; the lockout policy comes from ServiceConfig as the server
sets it. The batch is compared with its twin: a second runtime with the same catalog, where
the same items are redeemed one request at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cardsvc import audit
from cardsvc.access import Principal, RiskLimits
from cardsvc.catalog import BatchMeta, CodeInput
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.masking import mask_code
from cardsvc.redemption import RedeemItem, RedemptionView
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


LIMITED = Principal(key_id="till-1", role="terminal", agent_id=None,
                    scopes=frozenset({"verify", "redeem", "rollback"}), skus=frozenset({"VIP"}),
                    limits={})


def _twin(path: Path) -> tuple[Runtime, list[RedeemItem]]:
    """A shop (its own SQLite database in ``path``) with a second SKU outside LIMITED's scope,
    six sold VIP codes (one used by a request ``pre-2``, one used up by ``pre-3``), and the
    batch of the test below."""
    services = open_runtime(path, None, pin_failures_max=2, pin_lockout_ms=60_000,
                            pin_lockout_max_ms=120_000)
    stock_shop(services)
    services.catalog.create_sku("GAME", "game", actor="test")
    services.batches.import_codes(BatchMeta("GAME"), [CodeInput("GAMECODE-0001-WXYZ", None)],
                                  actor="test")
    codes = sold(services, 6)
    for index, request_id in ((2, "pre-2"), (3, "pre-3")):
        code, pin = codes[index]
        asyncio.run(services.terminals.redeem(LIMITED, "ip", code, pin, request_id))
    (c0, p0), (c1, p1), (c2, p2), (c3, p3), (c4, p4), (c5, p5) = codes
    items = [
        RedeemItem(c0, p0, "b-0"),                  # redeemed
        RedeemItem(c1, "WRONG-1", "b-1"),           # PIN_MISMATCH
        RedeemItem(c1, "WRONG-2", "b-2"),           # CODE_LOCKED, the lockout starts (audited)
        RedeemItem(c1, p1, "b-3"),                  # CODE_LOCKED during the lockout
        RedeemItem(c2, p2, "pre-2"),                # a replay of the first redemption
        RedeemItem("NOSUCH-0000-WXYZ", None, "b-5"),  # CODE_NOT_FOUND
        RedeemItem(c3, p3, "b-6"),                  # ALREADY_REDEEMED (used up before)
        RedeemItem("GAMECODE-0001-WXYZ", None, "b-7"),  # another SKU: CODE_NOT_FOUND
        RedeemItem(c0, p0, "b-8"),                  # ALREADY_REDEEMED by item 0
        RedeemItem(c4, p4, "pre-3"),                # IDEMPOTENCY_KEY_REUSED (another code's id)
        RedeemItem(c5, p5, "b-10"),                 # redeemed
    ]
    return services, items


def _outcome(services: Runtime, result: RedemptionView | CardsvcError) -> tuple[object, ...]:
    """``result`` with public redemption ids turned into the core's numbers (each runtime has
    its own key for public ids)."""
    terminals = services.terminals
    if isinstance(result, CardsvcError):
        details = dict(result.details)
        if "redemption_id" in details:
            details["redemption_id"] = terminals.redemption_number(details["redemption_id"])
        return (result.code, result.message, details)
    return (terminals.redemption_number(result.redemption_id), *result[1:])


def test_a_batch_gives_the_outcomes_of_the_same_items_redeemed_one_by_one(
    tmp_path: Path,
) -> None:
    batched, items = _twin(tmp_path / "batched")
    single, same_items = _twin(tmp_path / "single")
    try:
        batch = asyncio.run(batched.terminals.redeem_batch(LIMITED, "ip", items))
        one_by_one: list[RedemptionView | CardsvcError] = []
        for item in same_items:
            try:
                one_by_one.append(asyncio.run(single.terminals.redeem(
                    LIMITED, "ip", item.code, item.pin, item.request_id)))
            except CardsvcError as error:
                one_by_one.append(error)
        got = [_outcome(batched, result) for result in batch]
        want = [_outcome(single, result) for result in one_by_one]
        assert got == want
        assert [row[0] for row in got if isinstance(row[0], ErrorCode)] == [
            ErrorCode.PIN_MISMATCH, ErrorCode.CODE_LOCKED, ErrorCode.CODE_LOCKED,
            ErrorCode.CODE_NOT_FOUND, ErrorCode.ALREADY_REDEEMED, ErrorCode.CODE_NOT_FOUND,
            ErrorCode.ALREADY_REDEEMED, ErrorCode.IDEMPOTENCY_KEY_REUSED]
        assert batch.redeemed == 3 and len(batch.errors) == 8
        for position, result in enumerate(batch):
            public_id = batch.redemption_ids[position]
            assert (public_id is None) == isinstance(result, CardsvcError)
            assert public_id is None or public_id.startswith("rdm_")
        for services in (batched, single):
            with services.db.read() as session:
                assert len(audit.query(session, action="code.locked")) == 1
        assert batched.terminals.counts.drain() == single.terminals.counts.drain()
        [refused] = asyncio.run(batched.terminals.redeem_batch(LIMITED, "ip", [
            RedeemItem("GAMECODE-0001-WXYZ", None, "b-x")]))  # nothing reaches the core
        assert isinstance(refused, CardsvcError) and refused.code is ErrorCode.CODE_NOT_FOUND
    finally:
        batched.close()
        single.close()
