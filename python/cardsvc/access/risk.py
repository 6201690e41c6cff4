"""Risk limits: rate limits, the brute-force guard, open-hold caps and order quotas.

All of it is in-memory state of the one serving process (DESIGN.md: one process owns a data
directory), kept bounded, and guarded by one lock held for a few dictionary operations per call.
Every refusal is ``RATE_LIMITED`` with ``details.limit`` naming the limit, ``details.max`` and
``details.retry_after_s`` (the HTTP layer turns that into ``Retry-After``); nothing is changed by
a refused request.

* **Rate limits** (token buckets, capacity = rate x ``burst_s``): per key and per client IP, for
  verify and redeem. A batch call costs one token per item, so batching does not bypass them.
* **Brute-force guard**: failed lookups (``CODE_NOT_FOUND``) and ``PIN_MISMATCH`` are counted per
  key and per IP in a fixed window; reaching the maximum locks that key or IP out of verify and
  redeem for ``lockout_s``. :meth:`RiskGuard.record_failures` returns each lockout it starts, so
  the caller records it in the audit log.
* **Open holds**: units held by open holds, per agent and per buyer (the agent's customer), are
  capped, so nobody can lock up a flash sale's stock; capacity returns when holds are confirmed,
  released or expire.
* **Order quotas**: orders per agent per UTC day.

Defaults are sized for busy production callers (a platform aggregating many shop terminals
behind one key); each key may carry overrides (``api_keys.limits``), and
``CARDSVC_RISK_LIMITS=off`` disables everything (benchmarks only).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cardsvc.access.apikeys import Principal
from cardsvc.errors import ErrorCode, make_error

RISK_ENV = "CARDSVC_RISK_LIMITS"
TRACKED_SUBJECTS_MAX = 200_000
"""Buckets and failure windows kept (about 200 bytes each: at most ~40 MB); idle ones are
dropped first when the bound is reached."""
DAY_MS = 86_400_000


@dataclass(frozen=True)
class RiskLimits:
    """The limits in force for one caller. Every rate is per second; 0 disables that limit."""

    enabled: bool = True
    verify_per_s_per_key: float = 2_000.0
    redeem_per_s_per_key: float = 1_000.0
    requests_per_s_per_ip: float = 5_000.0
    burst_s: float = 2.0
    failures_max_per_key: int = 30
    failures_max_per_ip: int = 100
    failure_window_s: float = 60.0
    lockout_s: float = 300.0
    open_hold_units_per_agent_max: int = 50_000
    open_hold_units_per_buyer_max: int = 20
    orders_per_agent_per_day_max: int = 500_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "enabled" and (
                not isinstance(value, int | float) or isinstance(value, bool) or value < 0
            ):
                raise make_error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"risk limit {field.name} must be a non-negative number",
                    {"field": f"limits.{field.name}"},
                )
        if self.burst_s <= 0 or self.failure_window_s <= 0:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                "burst_s and failure_window_s must be positive",
                {"field": "limits.burst_s"},
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RiskLimits:
        """The defaults, or everything off when ``CARDSVC_RISK_LIMITS`` is ``off``."""
        env = os.environ if environ is None else environ
        return cls(enabled=env.get(RISK_ENV, "on").strip().lower() not in ("off", "0", "false"))

    def with_overrides(self, overrides: Mapping[str, Any]) -> RiskLimits:
        """These limits with a key's overrides. Raises INVALID_ARGUMENT for an unknown name or
        a bad value (details: ``field``)."""
        if not overrides:
            return self
        names = {field.name for field in dataclasses.fields(self)}
        for name in overrides:
            if name not in names:
                raise make_error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"unknown risk limit {name}",
                    {"field": f"limits.{name}"},
                )
        return dataclasses.replace(self, **dict(overrides))


@dataclass(frozen=True)
class Lockout:
    """A lockout the brute-force guard just started (for the audit log)."""

    subject: str  # "key:<key_id>" or "ip:<address>"
    failures: int
    until_s: float
    lockout_s: float


def _refuse(limit: str, maximum: float, retry_after_s: float) -> Exception:
    return make_error(
        ErrorCode.RATE_LIMITED,
        "too many requests; retry later",
        {"limit": limit, "max": maximum, "retry_after_s": max(1, math.ceil(retry_after_s))},
    )


def _cap(limit: str, maximum: int, held: int) -> Exception:
    return make_error(ErrorCode.LIMIT_EXCEEDED, "this would hold more units than the cap allows",
                      {"limit": limit, "max": maximum, "held": held})


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class _Failures:
    __slots__ = ("count", "locked_until", "window_start")

    def __init__(self, window_start: float) -> None:
        self.window_start = window_start
        self.count = 0
        self.locked_until = 0.0


@dataclass
class _Hold:
    agent_id: str
    buyer_id: str | None
    units: int
    expires_at_ms: int


class RiskGuard:
    """The process's risk state. ``clock`` (seconds, monotonic) and ``wall_ms`` are injectable
    for tests."""

    def __init__(
        self,
        limits: RiskLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._failures: dict[str, _Failures] = {}
        self._holds: dict[str, _Hold] = {}
        self._held_by_agent: dict[str, int] = {}
        self._held_by_buyer: dict[tuple[str, str], int] = {}
        self._orders_today: dict[str, tuple[int, int]] = {}  # agent -> (day, count)
        self._per_key: dict[str, tuple[int, RiskLimits]] = {}

    def limits_for(self, key_id: str, overrides: Mapping[str, Any]) -> RiskLimits:
        """The limits in force for a key (the defaults with its overrides), cached."""
        if not overrides:
            return self.limits
        cached = self._per_key.get(key_id)
        marker = hash(tuple(sorted((k, repr(v)) for k, v in overrides.items())))
        if cached is None or cached[0] != marker:
            cached = (marker, self.limits.with_overrides(overrides))
            self._per_key[key_id] = cached
        return cached[1]

    def limits_of(self, caller: Principal) -> RiskLimits:
        """The limits in force for ``caller``'s key (:meth:`limits_for`)."""
        return self.limits_for(caller.key_id, caller.limits)

    # ----- rate limits and the brute-force guard -----

    def admit(
        self, action: str, key_id: str, ip: str, limits: RiskLimits, cost: int = 1
    ) -> None:
        """Admits ``cost`` verify or redeem operations from ``key_id`` at ``ip``, or raises
        RATE_LIMITED (lockout first, then the key's and the IP's rate). Takes tokens only when
        every check passes."""
        if not limits.enabled:
            return
        now = self._clock()
        per_key = (
            limits.redeem_per_s_per_key if action == "redeem" else limits.verify_per_s_per_key
        )
        key_subject = f"key:{key_id}"
        ip_subject = f"ip:{ip}"
        with self._lock:
            for subject in (key_subject, ip_subject):
                failures = self._failures.get(subject)
                if failures is not None and failures.locked_until > now:
                    raise _refuse("failed_attempts", self._failures_max(subject, limits),
                                  failures.locked_until - now)
            key_bucket = self._take_check(f"{action}:{key_subject}", per_key, limits, cost, now)
            ip_bucket = self._take_check(
                f"ip:{ip_subject}", limits.requests_per_s_per_ip, limits, cost, now
            )
            if key_bucket is not None and key_bucket.tokens < cost:
                raise _refuse(f"{action}_per_s_per_key", per_key,
                              (cost - key_bucket.tokens) / per_key)
            if ip_bucket is not None and ip_bucket.tokens < cost:
                raise _refuse("requests_per_s_per_ip", limits.requests_per_s_per_ip,
                              (cost - ip_bucket.tokens) / limits.requests_per_s_per_ip)
            for bucket in (key_bucket, ip_bucket):
                if bucket is not None:
                    bucket.tokens -= cost

    def _take_check(
        self, name: str, rate: float, limits: RiskLimits, cost: int, now: float
    ) -> _Bucket | None:
        """The refilled bucket ``name`` (not yet debited), or None when ``rate`` is 0 (off).
        A cost above the capacity is admitted from a full bucket (it then runs negative), so a
        legal batch is never refused forever."""
        if rate <= 0:
            return None
        capacity = rate * limits.burst_s
        bucket = self._buckets.get(name)
        if bucket is None:
            self._bound(self._buckets)
            bucket = self._buckets[name] = _Bucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if cost > capacity and bucket.tokens >= capacity:
            bucket.tokens = float(cost)
        return bucket

    @staticmethod
    def _failures_max(subject: str, limits: RiskLimits) -> int:
        return limits.failures_max_per_key if subject.startswith("key:") else (
            limits.failures_max_per_ip
        )

    def admit_auth(self, ip: str, limits: RiskLimits) -> None:
        """Raises RATE_LIMITED while ``ip`` is locked out (failed keys, lookups or PINs)."""
        if not limits.enabled:
            return
        now = self._clock()
        failures = self._failures.get(f"ip:{ip}")
        if failures is not None and failures.locked_until > now:
            raise _refuse("failed_attempts", limits.failures_max_per_ip,
                          failures.locked_until - now)

    def record_failures(
        self, key_id: str | None, ip: str, limits: RiskLimits, count: int = 1
    ) -> list[Lockout]:
        """Counts ``count`` failed attempts (unknown codes, PIN mismatches; with ``key_id``
        None, invalid API keys) against the key and the IP; returns the lockouts this starts
        (empty when none). A maximum of 0 disables that guard."""
        if not limits.enabled or count <= 0:
            return []
        now = self._clock()
        started: list[Lockout] = []
        subjects = [f"ip:{ip}"] if key_id is None else [f"key:{key_id}", f"ip:{ip}"]
        with self._lock:
            for subject in subjects:
                maximum = self._failures_max(subject, limits)
                if maximum <= 0:
                    continue
                failures = self._failures.get(subject)
                if failures is None or now - failures.window_start >= limits.failure_window_s:
                    if failures is None:
                        self._bound(self._failures)
                    locked_until = 0.0 if failures is None else failures.locked_until
                    failures = self._failures[subject] = _Failures(now)
                    failures.locked_until = locked_until
                failures.count += count
                if failures.count >= maximum and failures.locked_until <= now:
                    failures.locked_until = now + limits.lockout_s
                    started.append(
                        Lockout(subject, failures.count, failures.locked_until, limits.lockout_s)
                    )
        return started

    def _bound(self, table: dict[str, Any]) -> None:
        """Keeps ``table`` under TRACKED_SUBJECTS_MAX by dropping its oldest half (insertion
        order approximates idleness well enough for a safety bound)."""
        if len(table) < TRACKED_SUBJECTS_MAX:
            return
        for name in list(table)[: TRACKED_SUBJECTS_MAX // 2]:
            entry = table[name]
            if isinstance(entry, _Failures) and entry.locked_until > self._clock():
                continue
            del table[name]

    # ----- open holds -----

    def reserve_hold(
        self,
        hold_ref: str,
        agent_id: str,
        buyer_id: str | None,
        units: int,
        expires_at_ms: int,
        limits: RiskLimits,
    ) -> None:
        """Counts a new hold against its agent's and buyer's caps, or raises LIMIT_EXCEEDED
        (details ``limit``: ``open_hold_units_per_agent_max`` / ``..._per_buyer_max``, ``max``,
        ``held``): a cap on what may be held at once, which waiting alone does not lift (the
        holder ends or confirms its holds, or they expire). Call :meth:`end_hold` if the hold is
        then not created."""
        if not limits.enabled:
            return
        now_ms = self._wall_ms()
        with self._lock:
            if hold_ref in self._holds:
                return  # a retry of a hold already counted
            self._expire_holds(now_ms)
            held = self._held_by_agent.get(agent_id, 0)
            cap = limits.open_hold_units_per_agent_max
            if cap and held + units > cap:
                raise _cap("open_hold_units_per_agent_max", cap, held)
            if buyer_id is not None:
                cap = limits.open_hold_units_per_buyer_max
                held = self._held_by_buyer.get((agent_id, buyer_id), 0)
                if cap and held + units > cap:
                    raise _cap("open_hold_units_per_buyer_max", cap, held)
            self._holds[hold_ref] = _Hold(agent_id, buyer_id, units, expires_at_ms)
            self._adjust(self._holds[hold_ref], units)

    def end_hold(self, hold_ref: str) -> None:
        """A hold was confirmed, released, expired or never created: its units count no more."""
        with self._lock:
            hold = self._holds.pop(hold_ref, None)
            if hold is not None:
                self._adjust(hold, -hold.units)

    def open_hold_units(self, agent_id: str) -> int:
        with self._lock:
            self._expire_holds(self._wall_ms())
            return self._held_by_agent.get(agent_id, 0)

    def _adjust(self, hold: _Hold, delta: int) -> None:
        self._held_by_agent[hold.agent_id] = self._held_by_agent.get(hold.agent_id, 0) + delta
        if self._held_by_agent[hold.agent_id] <= 0:
            del self._held_by_agent[hold.agent_id]
        if hold.buyer_id is not None:
            buyer = (hold.agent_id, hold.buyer_id)
            self._held_by_buyer[buyer] = self._held_by_buyer.get(buyer, 0) + delta
            if self._held_by_buyer[buyer] <= 0:
                del self._held_by_buyer[buyer]

    def _expire_holds(self, now_ms: int) -> None:
        expired = [ref for ref, hold in self._holds.items() if hold.expires_at_ms <= now_ms]
        for ref in expired:
            hold = self._holds.pop(ref)
            self._adjust(hold, -hold.units)

    # ----- order quotas -----

    def admit_order(
        self, agent_id: str, limits: RiskLimits, orders_today: Callable[[], int]
    ) -> None:
        """Counts one order against the agent's daily quota, or raises RATE_LIMITED
        (``orders_per_agent_per_day_max``, retry after the next UTC midnight). ``orders_today``
        gives the count already in the SQL store; it is called once per agent per day."""
        cap = limits.orders_per_agent_per_day_max
        if not limits.enabled or cap <= 0:
            return
        now_ms = self._wall_ms()
        day = now_ms // DAY_MS
        with self._lock:
            known = self._orders_today.get(agent_id)
        count = known[1] if known is not None and known[0] == day else None
        if count is None:
            count = orders_today()
        with self._lock:
            known = self._orders_today.get(agent_id)
            if known is not None and known[0] == day:
                count = max(count, known[1])
            if count >= cap:
                raise _refuse("orders_per_agent_per_day_max", cap,
                              ((day + 1) * DAY_MS - now_ms) / 1000)
            self._orders_today[agent_id] = (day, count + 1)
