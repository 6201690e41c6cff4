"""Batch redemption under one key: ``Engine.redeem_batch``.

Goal: prove the batch contract of docs/engine.md: one result per item as if redeemed one by one;
a retry with the same key returns the first results item by item (and changes nothing); the same
key with a different terminal or items is IDEMPOTENCY_KEY_REUSED naming the first differing
index; an item whose redemption was rolled back since replays as REDEMPTION_ROLLED_BACK; uses
reported are the uses true now; the journal holds one record per block, not one per item, and
replay and snapshots reproduce the state; racing retries of one batch redeem nothing twice.

Method: small engines on a manual clock (the ``engine`` fixture); results are compared with the
per-item path (``redeem_many``) on a twin engine, and with ``state_digest()`` after replay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cardsvc.engine import REDEEM_BATCH_MAX, Engine, scan_journal
from cardsvc.errors import CardsvcError

LOOKUP_KEY = bytes(range(32))
T0_MS = 1_700_000_000_000

pytestmark = pytest.mark.timeout(60)


def error_of(call: Callable[[], object]) -> CardsvcError:
    with pytest.raises(CardsvcError) as info:
        call()
    return info.value


def sold(eng: Engine, n: int, *, uses: int = 1, tag: str = "BT") -> list[str]:
    eng.create_sku("S", uses, True)
    texts = [f"{tag}{i:05d}" for i in range(n)]
    eng.import_codes("S", texts)
    eng.allocate("S", n, "order-all")
    return texts


def fresh() -> Engine:
    eng = Engine(LOOKUP_KEY)
    eng.set_clock_ms(T0_MS)
    return eng


def test_batch_items_get_the_results_of_one_by_one_redemption(engine: Engine) -> None:
    texts = sold(engine, 5)
    twin = fresh()
    sold(twin, 5)
    items = [texts[0], texts[1], "NOSUCHCODE", texts[1], "", texts[4]]
    batch = engine.redeem_batch("b-1", items, "t1")
    many = twin.redeem_many(items, [f"r{i}" for i in range(len(items))], "t1")
    assert batch.error_codes() == many.error_codes()
    assert batch.error_codes() == ["", "", "CODE_NOT_FOUND", "ALREADY_REDEEMED", "INVALID_CODE", ""]
    assert batch.uses_left() == many.uses_left()
    assert batch.ok_count == 3
    first = batch[0]
    assert not isinstance(first, CardsvcError)
    assert first.request_id == "b-1#0"
    assert engine.get_redemption(first.redemption_id).terminal == "t1"


def test_retry_returns_the_first_results_and_changes_nothing(engine: Engine) -> None:
    texts = sold(engine, 4)
    items = [texts[0], texts[0], texts[2], "BAD CODE \u00e9"]
    first = engine.redeem_batch("b-2", items, "t1")
    digest, journal = engine.state_digest(), engine.journal_len()
    again = engine.redeem_batch("b-2", items, "t1")
    assert again.error_codes() == first.error_codes()
    assert again.redemption_ids() == first.redemption_ids()
    assert (engine.state_digest(), engine.journal_len()) == (digest, journal)


@pytest.mark.parametrize(
    ("change", "field", "index"),
    [("terminal", "terminal", None), ("item", "codes", 2), ("shorter", "codes", 2)],
)
def test_same_key_with_other_contents_is_refused_naming_the_index(
    engine: Engine, change: str, field: str, index: int | None
) -> None:
    texts = sold(engine, 4)
    engine.redeem_batch("b-3", texts[:3], "t1")
    items, terminal = texts[:3], "t1"
    if change == "terminal":
        terminal = "t2"
    elif change == "item":
        items = [texts[0], texts[1], texts[3]]
    else:
        items = texts[:2]
    err = error_of(lambda: engine.redeem_batch("b-3", items, terminal))
    assert err.code == "IDEMPOTENCY_KEY_REUSED"
    assert err.details["field"] == field
    assert err.details.get("index") == index


def test_a_rolled_back_item_replays_as_rolled_back_and_uses_are_true_now(engine: Engine) -> None:
    texts = sold(engine, 2, uses=3)
    first = engine.redeem_batch("b-4", texts, "t1")
    assert first.uses_left() == [2, 2]
    engine.redeem(texts[1], "later", "t1")
    rid = first.redemption_ids()[0]
    assert rid is not None
    engine.set_clock_ms(T0_MS + 5)
    engine.rollback(rid, "refund")
    again = engine.redeem_batch("b-4", texts, "t1")
    err = again[0]
    assert isinstance(err, CardsvcError)
    assert err.code == "REDEMPTION_ROLLED_BACK"
    assert err.details == {"redemption_id": rid, "rolled_back_at_ms": T0_MS + 5}
    # Item 1's replay reports the uses left now (a later redemption took one).
    assert again.uses_left() == [None, 1]
    assert engine.code_info(engine.lookup(texts[0])).uses_left == 3


def test_batch_journal_is_compact_and_replay_and_snapshot_reproduce_it(engine: Engine) -> None:
    texts = sold(engine, 3_000)
    engine.drain_journal()
    engine.redeem_batch("b-5", texts, "t1")
    data = engine.drain_journal()
    _, records, _, _, error, _ = scan_journal(data)
    assert error is None
    assert records == 1 + 3, "one opening and one record per block of 1,024 items"
    assert len(data) < 3_000 * 20
    twin = fresh()
    sold(twin, 3_000)
    twin.drain_journal()
    twin.apply_journal(data)
    assert twin.state_digest() == engine.state_digest()
    restored = fresh()
    restored.restore(engine.snapshot())
    assert restored.state_digest() == engine.state_digest()
    restored.set_clock_ms(T0_MS)
    again = restored.redeem_batch("b-5", texts, "t1")
    assert again.ok_count == 3_000


def test_bad_arguments_refuse_the_whole_batch(engine: Engine) -> None:
    texts = sold(engine, 2)
    assert error_of(lambda: engine.redeem_batch("", texts, "t1")).code == "INVALID_ARGUMENT"
    assert error_of(lambda: engine.redeem_batch("b", texts, "")).code == "INVALID_ARGUMENT"
    assert error_of(lambda: engine.redeem_batch("b", texts, "t", [None])).code == (
        "INVALID_ARGUMENT"
    )
    too_many = ["X"] * (REDEEM_BATCH_MAX + 1)
    assert error_of(lambda: engine.redeem_batch("b", too_many, "t")).code == "LIMIT_EXCEEDED"
    assert engine.stock("S")["redeemed"] == 0


def test_racing_retries_of_one_batch_redeem_each_code_once(engine: Engine) -> None:
    texts = sold(engine, 2_000)
    results: list[list[int | None]] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        results.append(engine.redeem_batch("b-race", texts, "t1").redemption_ids())

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(r == results[0] for r in results)
    assert None not in results[0]
    assert engine.stock("S")["redeemed"] == 2_000
    engine.check_invariants()
