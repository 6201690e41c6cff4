"""PIN attempt limit per code: failures counted in the core, lockout with back-off.

Goal: prove docs/engine.md's PIN lockout: wrong PINs are counted per code whatever the caller;
the Nth failure locks the code (CODE_LOCKED, ``locked: true``, ``retry_after_s``); during the
lockout every PIN check is refused without saying whether the PIN was right; a right PIN outside
a lockout clears the count; lockouts double up to the cap; the count and lockout survive journal
replay and snapshots (a kill -9 resets nothing); admins list and lift lockouts; threads racing
wrong PINs never get more than N failures counted before the lock.

Method: an engine on a manual clock with a small policy (3 failures, 60 s, cap 150 s).
"""

from __future__ import annotations

import threading

import pytest

from cardsvc.engine import PIN_FAILURES_DEFAULT, PIN_LOCKOUT_MS_DEFAULT, Engine
from cardsvc.errors import CardsvcError, ErrorCode, RateLimited

LOOKUP_KEY = bytes(range(32))
T0_MS = 1_700_000_000_000

pytestmark = pytest.mark.timeout(60)

PIN = "4321"


def pinned(eng: Engine) -> tuple[str, int]:
    eng.set_pin_lockout(failures_max=3, lockout_seconds=60, lockout_max_seconds=150)
    eng.create_sku("P", 5, True)
    ids, _ = eng.import_codes("P", ["PINNED0001"], pins=[PIN])
    eng.allocate("P", 1, "o1")
    return "PINNED0001", ids[0]


def code_of(call: object) -> str:
    assert callable(call)
    try:
        call()
    except CardsvcError as exc:
        return exc.code.value
    return "OK"


def test_the_default_policy_is_ten_failures_and_fifteen_minutes() -> None:
    eng = Engine(LOOKUP_KEY)
    assert eng.pin_policy() == (PIN_FAILURES_DEFAULT, PIN_LOCKOUT_MS_DEFAULT, 86_400_000)
    assert (PIN_FAILURES_DEFAULT, PIN_LOCKOUT_MS_DEFAULT) == (10, 900_000)
    with pytest.raises(CardsvcError) as bad:
        eng.set_pin_policy(0, 1_000, 2_000)
    assert bad.value.code is ErrorCode.INVALID_ARGUMENT


def test_the_nth_wrong_pin_locks_the_code_and_says_so(engine: Engine) -> None:
    text, code_id = pinned(engine)
    assert code_of(lambda: engine.verify(text, "0000")) == "PIN_MISMATCH"
    assert code_of(lambda: engine.redeem(text, "r1", "t1", "0001")) == "PIN_MISMATCH"
    with pytest.raises(RateLimited) as locked:
        engine.verify(text, "0002")
    assert locked.value.code is ErrorCode.CODE_LOCKED
    assert locked.value.details == {
        "retry_after_s": 60,
        "locked_until_ms": T0_MS + 60_000,
        "locked": True,
    }
    with pytest.raises(RateLimited) as refused:
        engine.redeem(text, "r2", "t1", PIN)
    assert refused.value.details["locked"] is False, "the right PIN is refused too"
    assert engine.locked_codes() == [(code_id, T0_MS + 60_000, 1)]
    assert engine.code_info(code_id).locked_until_ms == T0_MS + 60_000
    engine.set_clock_ms(T0_MS + 60_000)
    assert engine.redeem(text, "r3", "t1", PIN).uses_left == 4
    assert engine.code_info(code_id).pin_failures == 0


def test_a_right_pin_resets_the_count_and_lockouts_double_up_to_the_cap(engine: Engine) -> None:
    text, code_id = pinned(engine)
    for _ in range(2):
        assert code_of(lambda: engine.verify(text, "0000")) == "PIN_MISMATCH"
    assert engine.verify(text, PIN).status == "valid"
    assert engine.code_info(code_id).pin_failures == 0
    now = T0_MS
    for length in (60_000, 120_000, 150_000):
        for _ in range(3):
            code_of(lambda: engine.verify(text, "0000"))
        until = engine.code_info(code_id).locked_until_ms
        assert until == now + length
        now = until
        engine.set_clock_ms(now)


def test_failures_and_lockouts_survive_replay_and_snapshots(engine: Engine) -> None:
    text, code_id = pinned(engine)
    for _ in range(3):
        code_of(lambda: engine.verify(text, "0000"))
    twin = Engine(LOOKUP_KEY)
    twin.set_clock_ms(T0_MS)
    twin.apply_journal(engine.drain_journal())
    assert twin.state_digest() == engine.state_digest()
    assert code_of(lambda: twin.redeem(text, "r1", "t1", PIN)) == "CODE_LOCKED"
    restored = Engine(LOOKUP_KEY, snapshot=engine.snapshot())
    restored.set_clock_ms(T0_MS)
    assert code_of(lambda: restored.verify(text, PIN)) == "CODE_LOCKED"
    assert restored.unlock([code_id]) == (1, 0)
    assert restored.verify(text, PIN).status == "valid"
    assert restored.locked_codes("P") == []


def test_batch_items_count_pin_failures_like_single_calls(engine: Engine) -> None:
    text, code_id = pinned(engine)
    batch = engine.redeem_batch("b-pin", [text, text, text, text], "t1", ["1", "2", "3", PIN])
    assert batch.error_codes() == ["PIN_MISMATCH", "PIN_MISMATCH", "CODE_LOCKED", "CODE_LOCKED"]
    started = batch[2]
    assert isinstance(started, CardsvcError) and started.details["locked"] is True
    assert engine.code_info(code_id).locked_until_ms == T0_MS + 60_000


def test_threads_racing_wrong_pins_get_at_most_n_failures_before_the_lock(engine: Engine) -> None:
    text, _ = pinned(engine)
    barrier = threading.Barrier(6)
    codes: list[str] = []
    lock = threading.Lock()

    def guess(worker: int) -> None:
        barrier.wait()
        for i in range(30):
            rid, pin = f"r{worker}-{i}", f"{i:04d}"
            got = code_of(lambda: engine.redeem(text, rid, f"t{worker}", pin))  # noqa: B023
            with lock:
                codes.append(got)

    threads = [threading.Thread(target=guess, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes.count("PIN_MISMATCH") == 2
    assert codes.count("CODE_LOCKED") == 180 - 2
    assert len(engine.locked_codes()) == 1
    engine.check_invariants()


def test_a_wrong_pin_changes_only_the_codes_failure_count(engine: Engine) -> None:
    text, code_id = pinned(engine)
    before = engine.code_info(code_id)
    stock = engine.stock("P")
    journal = engine.journal_len()
    assert code_of(lambda: engine.redeem(text, "r1", "t1", "0000")) == "PIN_MISMATCH"
    after = engine.code_info(code_id)
    assert (after.state, after.uses_left, after.redemption_ids) == (
        before.state,
        before.uses_left,
        before.redemption_ids,
    )
    assert (before.pin_failures, after.pin_failures) == (0, 1)
    assert engine.stock("P") == stock
    assert engine.journal_len() == journal + 1, "one PinFail record"
    # A refusal during a lockout writes nothing.
    for _ in range(2):
        code_of(lambda: engine.verify(text, "0000"))
    locked_journal = engine.journal_len()
    assert code_of(lambda: engine.verify(text, "0000")) == "CODE_LOCKED"
    assert engine.journal_len() == locked_journal
