"""Goal: the risk guard refuses exactly what its limits say and nothing else: token buckets
refill at their rate, a batch costs one token per item, lockouts start at the K-th failure in a
window and end after the cool-down, a key's budget and an address's budget for requests without
a valid key never mix, lockouts are listed newest first and lifted, hold caps count only open
holds, quotas reset each UTC day.

Method: ``RiskGuard`` with injected clocks (no sleeping), each limit driven to its edge.
"""

from __future__ import annotations

import pytest

from cardsvc.access.risk import DAY_MS, RiskGuard, RiskLimits
from cardsvc.errors import CardsvcError, ErrorCode


class Clock:
    def __init__(self) -> None:
        self.s = 1000.0
        self.ms = 1_700_000_000_000

    def advance(self, seconds: float) -> None:
        self.s += seconds
        self.ms += int(seconds * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def guard(clock: Clock, **limits: float) -> tuple[RiskGuard, RiskLimits]:
    chosen = RiskLimits(**limits)  # type: ignore[arg-type]
    return RiskGuard(chosen, clock=lambda: clock.s, wall_ms=lambda: clock.ms), chosen


def refused(call: object, code: ErrorCode = ErrorCode.RATE_LIMITED) -> dict[str, object]:
    with pytest.raises(CardsvcError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code == code
    return caught.value.details


def capped(call: object) -> dict[str, object]:
    """A cap: LIMIT_EXCEEDED, with no retry-after that waiting could honour."""
    details = refused(call, ErrorCode.LIMIT_EXCEEDED)
    assert "retry_after_s" not in details
    return details


def test_bucket_admits_its_burst_then_refills_at_its_rate(clock: Clock) -> None:
    risk, limits = guard(clock, redeem_per_s_per_key=10, burst_s=1)
    for _ in range(10):
        risk.admit("redeem", "k", limits)
    details = refused(lambda: risk.admit("redeem", "k", limits))
    assert details["limit"] == "redeem_per_s_per_key"
    assert details["retry_after_s"] == 1
    clock.advance(0.5)
    for _ in range(5):
        risk.admit("redeem", "k", limits)
    refused(lambda: risk.admit("redeem", "k", limits))
    risk.admit("redeem", "other-key", limits)  # buckets are per key


def test_batch_costs_one_token_per_item_and_a_refusal_takes_none(clock: Clock) -> None:
    risk, limits = guard(clock, redeem_per_s_per_key=100, burst_s=1)
    risk.admit("redeem", "k", limits, cost=60)
    refused(lambda: risk.admit("redeem", "k", limits, cost=60))
    risk.admit("redeem", "k", limits, cost=40)  # the refusal took nothing


def test_the_address_bucket_counts_requests_without_a_valid_key_only(clock: Clock) -> None:
    risk, limits = guard(clock, requests_per_s_per_ip=5, burst_s=1, failures_max_per_ip=1000)
    for i in range(10):
        risk.admit("verify", f"k{i}", limits)  # valid keys: their own budgets only
    for _ in range(5):
        risk.refuse_unauthenticated("ip", limits)
    assert refused(lambda: risk.refuse_unauthenticated("ip", limits))["limit"] == (
        "requests_per_s_per_ip")
    risk.refuse_unauthenticated("ip2", limits)
    clock.advance(1)
    risk.refuse_unauthenticated("ip", limits)


def test_lockout_starts_at_the_kth_failure_and_ends_after_cooldown(clock: Clock) -> None:
    risk, limits = guard(clock, failures_max_per_key=3, failures_max_per_ip=100, lockout_s=60)
    assert risk.record_failures("k", limits, 2) == []
    started = risk.record_failures("k", limits, 1)
    assert [lockout.subject for lockout in started] == ["key:k"]
    assert refused(lambda: risk.admit("verify", "k", limits))["limit"] == "failed_attempts"
    risk.admit("verify", "k2", limits)
    assert risk.record_failures("k", limits, 5) == []  # already locked: no new event
    clock.advance(61)
    risk.admit("verify", "k", limits)


def test_failures_outside_the_window_do_not_add_up(clock: Clock) -> None:
    risk, limits = guard(clock, failures_max_per_key=3, failure_window_s=10)
    risk.record_failures("k", limits, 2)
    clock.advance(11)
    assert risk.record_failures("k", limits, 2) == []
    risk.admit("verify", "k", limits)


def test_invalid_keys_lock_out_requests_without_a_valid_key_from_the_address(
        clock: Clock) -> None:
    risk, limits = guard(clock, failures_max_per_ip=2, lockout_s=60)
    assert risk.refuse_unauthenticated("ip", limits) == []
    started = risk.refuse_unauthenticated("ip", limits)
    assert [(lockout.subject, lockout.lockout_s) for lockout in started] == [("ip:ip", 60)]
    assert refused(lambda: risk.refuse_unauthenticated("ip", limits))["limit"] == (
        "failed_attempts")
    risk.refuse_unauthenticated("other-ip", limits)
    risk.admit("verify", "k", limits)  # a valid key is judged by its key alone
    assert risk.record_failures("k", limits) == []
    clock.advance(61)
    risk.refuse_unauthenticated("ip", limits)


def test_lockouts_are_listed_newest_first_and_lifted(clock: Clock) -> None:
    risk, limits = guard(clock, failures_max_per_key=1, failures_max_per_ip=1, lockout_s=60)
    risk.record_failures("k1", limits)
    clock.advance(1)
    risk.refuse_unauthenticated("10.0.0.1", limits)
    clock.advance(1)
    risk.record_failures("k2", limits)
    listed = risk.lockouts(limit=10)
    assert [lockout.subject for lockout in listed] == ["key:k2", "ip:10.0.0.1", "key:k1"]
    assert listed[0].until_ms - listed[0].locked_at_ms == 60_000
    after = (listed[0].locked_at_ms, listed[0].subject)
    assert [lockout.subject for lockout in risk.lockouts(after=after, limit=1)] == [
        "ip:10.0.0.1"]
    assert risk.lift("key:k2") is not None
    assert risk.lift("key:k2") is None  # nothing to lift: nothing changes
    risk.admit("verify", "k2", limits)
    assert risk.record_failures("k2", limits)  # its failures were forgotten: it starts again
    clock.advance(61)
    assert risk.lockouts(limit=10) == []


def test_hold_caps_count_open_holds_only(clock: Clock) -> None:
    risk, limits = guard(clock, open_hold_units_per_agent_max=5,
                         open_hold_units_per_buyer_max=2)
    risk.reserve_hold("h1", "A", "b1", 2, clock.ms + 10_000, limits)
    assert capped(lambda: risk.reserve_hold("h2", "A", "b1", 1, clock.ms + 10_000, limits))[
        "limit"] == "open_hold_units_per_buyer_max"
    risk.reserve_hold("h1", "A", "b1", 2, clock.ms + 10_000, limits)  # a retry: counted once
    risk.reserve_hold("h3", "A", None, 3, clock.ms + 5_000, limits)
    details = capped(lambda: risk.reserve_hold("h4", "A", None, 1, clock.ms + 5_000, limits))
    assert details["limit"] == "open_hold_units_per_agent_max"
    assert details["held"] == 5
    risk.end_hold("h3")
    risk.reserve_hold("h4", "A", None, 3, clock.ms + 5_000, limits)
    clock.advance(6)  # h4 expired
    assert risk.open_hold_units("A") == 2
    risk.reserve_hold("h5", "B", "b1", 2, clock.ms + 5_000, limits)  # per agent


def test_daily_order_quota_resets_at_utc_midnight(clock: Clock) -> None:
    clock.ms = (clock.ms // DAY_MS + 1) * DAY_MS - 1000  # one second before midnight
    risk, limits = guard(clock, orders_per_agent_per_day_max=2)
    risk.admit_order("A", limits, lambda: 1)
    details = refused(lambda: risk.admit_order("A", limits, lambda: 1))
    assert details["retry_after_s"] == 1
    clock.advance(1)
    risk.admit_order("A", limits, lambda: 0)


def test_disabled_limits_admit_everything(clock: Clock) -> None:
    risk, limits = guard(clock, enabled=False, redeem_per_s_per_key=1)
    for _ in range(100):
        risk.admit("redeem", "k", limits)
    assert risk.record_failures("k", limits, 1000) == []


@pytest.mark.parametrize("overrides", [{"nope": 1}, {"burst_s": 0}, {"lockout_s": -1},
                                       {"failures_max_per_key": "3"}])
def test_bad_overrides_are_invalid_arguments(overrides: dict[str, object]) -> None:
    with pytest.raises(CardsvcError) as caught:
        RiskLimits().with_overrides(overrides)
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT


def test_env_switch_turns_limits_off() -> None:
    assert RiskLimits.from_env({"CARDSVC_RISK_LIMITS": "off"}).enabled is False
    assert RiskLimits.from_env({}).enabled is True
