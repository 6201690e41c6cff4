"""Freeze, unfreeze and void by order and by batch act on exactly that order's or batch's codes.

Method: two batches in one SKU, one order drawn from each; each by-order/by-batch call is checked
against the per-code states (``code_info``) and stock counts, and repeated to show it is
idempotent; an unknown order is ORDER_NOT_FOUND and changes nothing.
"""

from __future__ import annotations

import pytest

from cardsvc.engine import Engine
from cardsvc.errors import CardsvcError


def states(eng: Engine, ids: list[int]) -> list[str]:
    return [eng.code_info(i).state for i in ids]


def test_freeze_and_void_by_order_and_by_batch_touch_only_their_codes() -> None:
    eng = Engine(bytes(range(32)))
    eng.create_sku("A")
    batch1, _ = eng.import_codes("A", [f"B1-{i:04d}" for i in range(6)], batch=1)
    batch2, _ = eng.import_codes("A", [f"B2-{i:04d}" for i in range(6)], batch=2)
    order = eng.allocate("A", 3, "o-1")
    others = [i for i in batch1 + batch2 if i not in order]

    assert eng.freeze_order("o-1") == (3, 0)
    assert states(eng, order) == ["frozen"] * 3
    assert "frozen" not in states(eng, others)
    assert eng.freeze_order("o-1") == (0, 3)
    assert eng.unfreeze_order("o-1") == (3, 0)
    assert states(eng, order) == ["allocated"] * 3

    changed, skipped = eng.freeze_batch(2)
    assert changed + skipped == 6
    assert set(states(eng, batch2)) == {"frozen"}
    assert eng.unfreeze_batch(2)[0] == 6
    assert eng.void_batch(1) == (6, 0)
    assert set(states(eng, batch1)) == {"void"}
    assert eng.void_order("o-1")[1] == sum(1 for i in order if i in batch1)
    eng.check_invariants()
    stock = eng.stock("A")
    assert stock["void"] == 6 + sum(1 for i in order if i in batch2)


def test_unknown_order_is_order_not_found_and_changes_nothing() -> None:
    eng = Engine(bytes(range(32)))
    eng.create_sku("A")
    eng.import_codes("A", ["X-0001"])
    before = eng.state_digest()
    with pytest.raises(CardsvcError) as info:
        eng.freeze_order("nope")
    assert info.value.code == "ORDER_NOT_FOUND"
    assert eng.state_digest() == before
    assert eng.freeze_batch(99) == (0, 0)
