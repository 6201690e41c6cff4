"""Exported codes leave sale: ``withdraw`` and ``restore_to_sale``.

Goal: prove docs/engine.md's withdrawn state: available codes become ``withdrawn`` (counted in
``stock``, shown by ``code_info``), are never allocated or held, stay redeemable like sold codes
(a rollback returns them to ``withdrawn``), held and sold codes are refused and reported, the
call is idempotent, only never-redeemed codes are restored, and all of it survives journal
replay and snapshots; threads withdrawing while others allocate never sell a withdrawn code.

Method: a small engine on a manual clock; a twin engine replays the journal.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest

from cardsvc.engine import STATES, Engine
from cardsvc.errors import CardsvcError

LOOKUP_KEY = bytes(range(32))
T0_MS = 1_700_000_000_000

pytestmark = pytest.mark.timeout(60)


def stocked(eng: Engine, n: int, *, uses: int = 1) -> tuple[list[str], list[int]]:
    eng.create_sku("W", uses, True)
    texts = [f"WD{i:05d}" for i in range(n)]
    ids, _ = eng.import_codes("W", texts)
    return texts, list(ids)


def test_withdrawn_is_a_state_with_its_own_count() -> None:
    assert STATES[-1] == "withdrawn"


def test_withdraw_takes_codes_out_of_sale_and_reports_refusals(engine: Engine) -> None:
    _, ids = stocked(engine, 6)
    hold = engine.hold("W", 1, hold_ref="h1", ttl_seconds=60)
    sold = engine.allocate("W", 1, "o1")
    withdrawn, unchanged, refused = engine.withdraw(ids)
    assert (withdrawn, unchanged) == (4, 0)
    assert sorted(refused) == sorted([(hold.code_ids[0], "held"), (sold[0], "allocated")])
    assert engine.withdraw(ids)[:2] == (0, 4)
    stock = engine.stock("W")
    assert (stock["available"], stock["withdrawn"], stock["total"]) == (0, 4, 6)
    assert engine.stock_by_pool("W")[0]["withdrawn"] == 4
    assert error_of_code(lambda: engine.allocate("W", 1, "o2")) == "OUT_OF_STOCK"
    assert error_of_code(lambda: engine.hold("W", 1, hold_ref="h2", ttl_seconds=60)) == (
        "OUT_OF_STOCK"
    )
    assert error_of_code(lambda: engine.withdraw([10**9])) == "CODE_NOT_FOUND"
    code = next(i for i in ids if i not in (hold.code_ids[0], sold[0]))
    info = engine.code_info(code)
    assert (info.state, info.was_withdrawn, info.order_ref) == ("withdrawn", True, None)


def error_of_code(call: Callable[[], object]) -> str:
    with pytest.raises(CardsvcError) as caught:
        call()
    return caught.value.code.value


def test_withdrawn_codes_are_redeemable_and_roll_back_to_withdrawn(engine: Engine) -> None:
    texts, ids = stocked(engine, 2, uses=2)
    engine.withdraw(ids)
    assert engine.verify(texts[0]).status == "valid"
    first = engine.redeem(texts[0], "r1", "t1")
    assert engine.code_info(ids[0]).state == "withdrawn"
    engine.redeem(texts[0], "r2", "t1")
    assert engine.code_info(ids[0]).state == "redeemed"
    engine.rollback(first.redemption_id, "refund")
    assert engine.code_info(ids[0]).state == "withdrawn"
    restored, unchanged, refused = engine.restore_to_sale(ids)
    assert (restored, unchanged, refused) == (1, 0, [(ids[0], "withdrawn")])
    assert engine.stock("W")["available"] == 1
    assert engine.restore_to_sale([ids[1]])[:2] == (0, 1)


def test_frozen_withdrawn_codes_unfreeze_to_withdrawn(engine: Engine) -> None:
    _, ids = stocked(engine, 1)
    engine.withdraw(ids)
    assert engine.freeze(ids) == (1, 0)
    assert engine.code_info(ids[0]).frozen_from == "withdrawn"
    engine.unfreeze(ids)
    assert engine.code_info(ids[0]).state == "withdrawn"
    assert engine.stock("W")["available"] == 0


def test_withdrawals_survive_replay_and_snapshots(engine: Engine) -> None:
    texts, ids = stocked(engine, 5, uses=2)
    engine.withdraw(ids[:3])
    engine.redeem(texts[0], "r1", "t1")
    engine.restore_to_sale([ids[2]])
    twin = Engine(LOOKUP_KEY)
    twin.set_clock_ms(T0_MS)
    twin.apply_journal(engine.drain_journal())
    assert twin.state_digest() == engine.state_digest()
    restored = Engine(LOOKUP_KEY, snapshot=engine.snapshot())
    assert restored.state_digest() == engine.state_digest()
    assert restored.stock("W") == engine.stock("W")


def test_withdraw_racing_allocate_never_sells_a_withdrawn_code(engine: Engine) -> None:
    _, ids = stocked(engine, 3_000)
    barrier = threading.Barrier(2)
    sold: list[int] = []
    exported: list[int] = []

    def sell() -> None:
        barrier.wait()
        for i in range(1_500):
            with contextlib.suppress(CardsvcError):  # OUT_OF_STOCK once everything is gone
                sold.extend(engine.allocate("W", 1, f"o{i}"))

    def export() -> None:
        barrier.wait()
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            _, _, refused = engine.withdraw(chunk)
            gone = {code_id for code_id, _ in refused}
            exported.extend(i for i in chunk if i not in gone)

    threads = [threading.Thread(target=sell), threading.Thread(target=export)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(sold) & set(exported), "a withdrawn code was sold"
    assert len(sold) + len(exported) == 3_000
    assert all(engine.code_info(i).state == "withdrawn" for i in exported)
    engine.check_invariants()
