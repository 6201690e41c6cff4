"""Risk limits: rate limits, the brute-force guard, open-hold caps and order quotas.

All of it is in-memory state of the one serving process (DESIGN.md: one process owns a data
directory), kept bounded, and guarded by one lock held for a few dictionary operations per call.
Every refusal is ``RATE_LIMITED`` with ``details.limit`` naming the limit, ``details.max`` and
``details.retry_after_s`` (the HTTP layer turns that into ``Retry-After``); nothing is changed by
a refused request.

Two kinds of caller, two budgets that never mix (docs/security.md, Authentication and lockouts):

* **A request with a valid key** is judged by its key alone: token buckets per key for verify and
  redeem (capacity = rate x ``burst_s``; a batch costs one token per item), and its failed
  lookups (``CODE_NOT_FOUND``, ``PIN_MISMATCH``) counted in a fixed window; reaching
  ``failures_max_per_key`` locks that key out of verify and redeem for ``lockout_s``. Whatever
  other callers at the same address do costs it nothing: a shop behind one NAT, or every client
  behind a reverse proxy, shares an address but not a budget.
* **A request without a valid key** (none, malformed, unknown or revoked) is judged by its
  client address: a token bucket (``requests_per_s_per_ip``) and a failure window
  (``failures_max_per_ip``); reaching the maximum makes every further request *without a valid
  key* from that address ``RATE_LIMITED`` for ``lockout_s``, while valid keys from the same
  address keep working.

:meth:`RiskGuard.record_failures` and :meth:`RiskGuard.refuse_unauthenticated` return each
lockout they start, and :func:`audit_lockouts` writes them to the audit log (``risk.lockout``);
:meth:`RiskGuard.lockouts` lists the lockouts in force and :meth:`RiskGuard.lift` ends one
(``cardsvc.access.gate.AccessGate`` audits that as ``risk.unlock``).

* **Open holds**: units held by open holds, per agent and per buyer (the agent's customer), are
  capped, so nobody can lock up a flash sale's stock; capacity returns when holds are confirmed,
  released or expire.
* **Order quotas**: orders per agent per UTC day.

Defaults are sized for busy production callers (a platform aggregating many shop terminals
behind one key); each key may carry overrides (``api_keys.limits``, each bounded by
:data:`LIMITS_MAX`), and ``CARDSVC_RISK_LIMITS=off`` disables everything (benchmarks only).
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


LIMITS_MAX: dict[str, float] = {
    "verify_per_s_per_key": 1_000_000.0,
    "redeem_per_s_per_key": 1_000_000.0,
    "requests_per_s_per_ip": 1_000_000.0,
    "burst_s": 3_600.0,
    "failures_max_per_key": 1_000_000,
    "failures_max_per_ip": 1_000_000,
    "failure_window_s": 86_400.0,
    "lockout_s": 7 * 86_400.0,
    "open_hold_units_per_agent_max": 100_000_000,
    "open_hold_units_per_buyer_max": 100_000_000,
    "orders_per_agent_per_day_max": 1_000_000_000,
}
"""The largest value each limit may take (default or a key's override): a million requests a
second is beyond what one process serves, a lockout longer than a week or a window longer than
a day is a mistake, and finite bounds keep every product of limits (a bucket's capacity is rate
x ``burst_s``) far from float overflow. Over it is LIMIT_EXCEEDED."""


def _check_limit(name: str, value: object, integral: bool) -> None:
    """Raises INVALID_ARGUMENT unless ``value`` is a finite non-negative number (an int where
    ``integral``), LIMIT_EXCEEDED above LIMITS_MAX."""
    field = f"limits.{name}"
    kinds = (int,) if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
            or value < 0:
        kind = "a non-negative integer" if integral else "a finite non-negative number"
        raise make_error(ErrorCode.INVALID_ARGUMENT, f"risk limit {name} must be {kind}",
                         {"field": field})
    if value > LIMITS_MAX[name]:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"risk limit {name} is too large",
                         {"field": field, "max": LIMITS_MAX[name]})


@dataclass(frozen=True)
class RiskLimits:
    """The limits in force for one caller. Every rate is per second; 0 disables that limit.

    The ``*_per_key`` limits judge requests with a valid key; the ``*_per_ip`` ones judge only
    requests without one (from the process's default limits, since such a request has no key
    whose overrides could apply)."""

    enabled: bool = True
    verify_per_s_per_key: float = 2_000.0
    redeem_per_s_per_key: float = 1_000.0
    requests_per_s_per_ip: float = 5_000.0  # requests without a valid key, per client address
    burst_s: float = 2.0
    failures_max_per_key: int = 30  # failed lookups (unknown code, wrong PIN) by one key
    failures_max_per_ip: int = 100  # requests without a valid key, per client address
    failure_window_s: float = 60.0
    lockout_s: float = 300.0
    open_hold_units_per_agent_max: int = 50_000
    open_hold_units_per_buyer_max: int = 20
    orders_per_agent_per_day_max: int = 500_000

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise make_error(ErrorCode.INVALID_ARGUMENT, "risk limit enabled must be a boolean",
                             {"field": "limits.enabled"})
        for field in dataclasses.fields(self):
            if field.name != "enabled":
                _check_limit(field.name, getattr(self, field.name), field.type == "int")
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
    """A brute-force lockout: just started (for the audit log), listed or lifted. Times are Unix
    ms of the wall clock; ``subject`` is ``key:<key_id>`` (failed lookups by a valid key) or
    ``ip:<address>`` (requests without a valid key from that address)."""

    subject: str  # "key:<key_id>" or "ip:<address>"
    failures: int
    locked_at_ms: int
    until_ms: int
    lockout_s: float


SUBJECT_LEN_MAX = 4 + 128
"""``key:`` or ``ip:`` and a key id (16 hex) or an address (at most 45 characters for IPv6 with
a zone; a trusted proxy's forwarded value is cut to 128)."""
LOCKOUT_CURSOR = (int, str)
"""The sort key of the lockout list: (``locked_at_ms``, ``subject``), newest first."""


def key_subject(key_id: str) -> str:
    """The subject of a key's failed lookups. Pure."""
    return f"key:{key_id}"


def ip_subject(ip: str) -> str:
    """The subject of the requests without a valid key from ``ip`` (cut to SUBJECT_LEN_MAX, so a
    forwarded address of any length is still one bounded entry). Pure."""
    return f"ip:{ip}"[:SUBJECT_LEN_MAX]


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
    __slots__ = ("count", "locked_at_ms", "locked_until", "until_ms", "window_start")

    def __init__(self, window_start: float) -> None:
        self.window_start = window_start
        self.count = 0
        self.locked_until = 0.0  # monotonic seconds: what enforcement reads
        self.locked_at_ms = 0  # wall clock: what the lockout list shows and sorts by
        self.until_ms = 0


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

    # ----- requests with a valid key -----

    def admit(self, action: str, key_id: str, limits: RiskLimits, cost: int = 1) -> None:
        """Admits ``cost`` verify or redeem operations by ``key_id``, or raises RATE_LIMITED
        (its lockout first, then its rate). Only the key's own budget counts: the address it
        calls from is not consulted. Takes tokens only when every check passes."""
        if not limits.enabled:
            return
        now = self._clock()
        per_key = (
            limits.redeem_per_s_per_key if action == "redeem" else limits.verify_per_s_per_key
        )
        subject = key_subject(key_id)
        with self._lock:
            self._refuse_locked(subject, limits.failures_max_per_key, now)
            bucket = self._take_check(f"{action}:{subject}", per_key, limits, cost, now)
            if bucket is not None and bucket.tokens < cost:
                raise _refuse(f"{action}_per_s_per_key", per_key,
                              (cost - bucket.tokens) / per_key)
            if bucket is not None:
                bucket.tokens -= cost

    def record_failures(self, key_id: str, limits: RiskLimits, count: int = 1) -> list[Lockout]:
        """Counts ``count`` failed lookups (unknown codes, PIN mismatches) by ``key_id``; returns
        the lockout this starts (empty when none). A maximum of 0 disables the guard."""
        if not limits.enabled or count <= 0:
            return []
        with self._lock:
            return self._count(key_subject(key_id), limits.failures_max_per_key, limits, count,
                               self._clock())

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

    # ----- requests without a valid key -----

    def refuse_unauthenticated(self, ip: str, limits: RiskLimits) -> list[Lockout]:
        """A request from ``ip`` had no valid key. Raises RATE_LIMITED while the address is
        locked out (``failed_attempts``) or over its bucket (``requests_per_s_per_ip``), counting
        nothing; otherwise counts the failure and returns the lockout it starts (empty when
        none), and the caller answers UNAUTHENTICATED. Requests with a valid key from the same
        address never pass here, so this budget cannot lock them out."""
        if not limits.enabled:
            return []
        now = self._clock()
        subject = ip_subject(ip)
        with self._lock:
            self._refuse_locked(subject, limits.failures_max_per_ip, now)
            rate = limits.requests_per_s_per_ip
            bucket = self._take_check(f"unauthenticated:{subject}", rate, limits, 1, now)
            if bucket is not None:
                if bucket.tokens < 1:
                    raise _refuse("requests_per_s_per_ip", rate, (1 - bucket.tokens) / rate)
                bucket.tokens -= 1
            return self._count(subject, limits.failures_max_per_ip, limits, 1, now)

    # ----- lockouts -----

    def lockouts(self, *, after: tuple[int, str] | None = None, limit: int) -> list[Lockout]:
        """The lockouts in force, newest first by (``locked_at_ms``, ``subject``), after the
        sort key ``after`` (None: from the newest); at most ``limit``."""
        now = self._clock()
        with self._lock:
            found = [self._lockout(subject, entry)
                     for subject, entry in self._failures.items() if entry.locked_until > now]
        found.sort(key=lambda lockout: (lockout.locked_at_ms, lockout.subject), reverse=True)
        if after is not None:
            found = [lockout for lockout in found
                     if (lockout.locked_at_ms, lockout.subject) < after]
        return found[:limit]

    def lift(self, subject: str) -> Lockout | None:
        """Ends the lockout of ``subject`` now and forgets its failures; returns it, or None
        when ``subject`` is not locked out (nothing changes then)."""
        now = self._clock()
        with self._lock:
            entry = self._failures.get(subject)
            if entry is None or entry.locked_until <= now:
                return None
            lifted = self._lockout(subject, entry)
            del self._failures[subject]
        return lifted

    @staticmethod
    def _lockout(subject: str, entry: _Failures) -> Lockout:
        return Lockout(subject, entry.count, entry.locked_at_ms, entry.until_ms,
                       (entry.until_ms - entry.locked_at_ms) / 1000)

    def _refuse_locked(self, subject: str, maximum: int, now: float) -> None:
        """Raises RATE_LIMITED (``failed_attempts``) while ``subject`` is locked out. Call with
        the lock held."""
        failures = self._failures.get(subject)
        if failures is not None and failures.locked_until > now:
            raise _refuse("failed_attempts", maximum, failures.locked_until - now)

    def _count(self, subject: str, maximum: int, limits: RiskLimits, count: int,
               now: float) -> list[Lockout]:
        """Adds ``count`` failures to ``subject``'s window; starts its lockout on reaching
        ``maximum`` (0: never). Call with the lock held."""
        if maximum <= 0:
            return []
        failures = self._failures.get(subject)
        if failures is None or now - failures.window_start >= limits.failure_window_s:
            if failures is None:
                self._bound(self._failures)
            previous = failures
            failures = self._failures[subject] = _Failures(now)
            if previous is not None:  # a lockout outlives the window that started it
                failures.locked_until = previous.locked_until
                failures.locked_at_ms, failures.until_ms = previous.locked_at_ms, previous.until_ms
        failures.count += count
        if failures.count < maximum or failures.locked_until > now:
            return []
        failures.locked_until = now + limits.lockout_s
        failures.locked_at_ms = self._wall_ms()
        failures.until_ms = failures.locked_at_ms + int(limits.lockout_s * 1000)
        return [Lockout(subject, failures.count, failures.locked_at_ms, failures.until_ms,
                        limits.lockout_s)]

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
