"""Retail buyers' limits, enforced in memory before anything reaches the core's hold or SQL:
open units per buyer (by email, by the order token the browser already holds, by IP), the
checkout rate per IP, and the order lookup's throttles (per IP and per order).

A guest has no account, so a "buyer" is each of the three subjects; a checkout must fit under
all three caps. Units count while their checkout is open (its hold unexpired and unpaid); a
checkout that is paid, expires or fails gives them back. Rates are fixed windows. Everything is
bounded in memory (``SUBJECTS_MAX``), guarded by one lock held for a few dictionary operations,
and refused with ``RATE_LIMITED`` whose ``details.limit`` names the limit and ``retry_after_s``
says when to come back; a refusal changes nothing.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from cardsvc.errors import CardsvcError, ErrorCode, make_error

SUBJECTS_MAX = 200_000
"""Subjects tracked per table (about 150 bytes each: ~30 MB at most); beyond it the oldest half
of the windows is dropped."""
RETAIL_LIMITS_ENV = "CARDSVC_RETAIL_LIMITS"


@dataclass(frozen=True)
class RetailLimits:
    """The storefront's limits. Units are codes in open checkouts; rates are per window."""

    enabled: bool = True
    units_per_email_max: int = 10
    units_per_token_max: int = 10
    units_per_ip_max: int = 20
    checkouts_per_ip_max: int = 30
    checkout_window_s: int = 60
    lookups_per_ip_max: int = 30
    lookups_per_order_max: int = 8
    lookup_window_s: int = 600
    reveals_per_order_max: int = 20
    resends_per_order_max: int = 3
    resend_window_s: int = 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetailLimits:
        """The defaults, or all off with ``CARDSVC_RETAIL_LIMITS=off`` (load tests only)."""
        env = os.environ if environ is None else environ
        return cls(enabled=env.get(RETAIL_LIMITS_ENV, "on").strip().lower()
                   not in ("off", "0", "false"))

    def replace(self, **changes: Any) -> RetailLimits:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return RetailLimits(**values)


@dataclass
class _Open:
    subjects: tuple[str, ...]
    units: int
    expires_at_ms: int


def _refuse(limit: str, maximum: int, retry_after_s: float) -> CardsvcError:
    return make_error(ErrorCode.RATE_LIMITED, "too many requests; retry later",
                      {"limit": limit, "max": maximum,
                       "retry_after_s": max(1, math.ceil(retry_after_s))})


class BuyerGuard:
    """The limits' state in this process (one process owns a data directory)."""

    def __init__(self, limits: RetailLimits, *,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.limits = limits
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._units: dict[str, int] = {}
        self._windows: dict[str, tuple[int, int]] = {}  # subject -> (window start ms, count)

    # ----- open units -----

    def reserve(self, checkout_ref: str, *, email: str, token: str | None, ip: str,
                units: int, expires_at_ms: int) -> None:
        """Counts a new checkout's units against its buyer's caps, or raises RATE_LIMITED
        (``units_per_email_max``, ``units_per_token_max``, ``units_per_ip_max``). Call
        :meth:`end` when the checkout ends (or was not made)."""
        limits = self.limits
        if not limits.enabled:
            return
        now_ms = self._wall_ms()
        caps = [(f"email:{email}", limits.units_per_email_max, "units_per_email_max"),
                (f"ip:{ip}", limits.units_per_ip_max, "units_per_ip_max")]
        if token:
            caps.append((f"token:{token}", limits.units_per_token_max, "units_per_token_max"))
        with self._lock:
            if checkout_ref in self._open:
                return
            self._expire(now_ms)
            for subject, cap, name in caps:
                if cap and self._units.get(subject, 0) + units > cap:
                    raise _refuse(name, cap, self._next_expiry_s(subject, now_ms))
            if len(self._open) >= SUBJECTS_MAX:
                raise _refuse("open_checkouts", SUBJECTS_MAX, 1)
            entry = _Open(tuple(subject for subject, _, _ in caps), units, expires_at_ms)
            self._open[checkout_ref] = entry
            for subject in entry.subjects:
                self._units[subject] = self._units.get(subject, 0) + units

    def end(self, checkout_ref: str) -> None:
        """The checkout was paid, expired, failed or never made: its units count no more."""
        with self._lock:
            entry = self._open.pop(checkout_ref, None)
            if entry is not None:
                self._release(entry)

    def _release(self, entry: _Open) -> None:
        for subject in entry.subjects:
            left = self._units.get(subject, 0) - entry.units
            if left > 0:
                self._units[subject] = left
            else:
                self._units.pop(subject, None)

    def _expire(self, now_ms: int) -> None:
        for ref in [ref for ref, entry in self._open.items() if entry.expires_at_ms <= now_ms]:
            self._release(self._open.pop(ref))

    def _next_expiry_s(self, subject: str, now_ms: int) -> float:
        expiries = [entry.expires_at_ms for entry in self._open.values()
                    if subject in entry.subjects]
        return (min(expiries, default=now_ms + 1000) - now_ms) / 1000

    # ----- rates -----

    def admit(self, limit: str, subject: str, maximum: int, window_s: int) -> None:
        """Counts one event of ``subject`` against ``maximum`` per ``window_s``, or raises
        RATE_LIMITED naming ``limit`` (nothing is counted then)."""
        if not self.limits.enabled or maximum <= 0:
            return
        now_ms = self._wall_ms()
        window_ms = window_s * 1000
        key = f"{limit}:{subject}"
        with self._lock:
            start, count = self._windows.get(key, (now_ms, 0))
            if now_ms - start >= window_ms:
                start, count = now_ms, 0
            if count >= maximum:
                raise _refuse(limit, maximum, (start + window_ms - now_ms) / 1000)
            if key not in self._windows and len(self._windows) >= SUBJECTS_MAX:
                for old in list(self._windows)[:SUBJECTS_MAX // 2]:
                    del self._windows[old]
            self._windows[key] = (start, count + 1)

    def admit_checkout(self, ip: str) -> None:
        """One checkout from ``ip`` (``checkouts_per_ip_max`` per ``checkout_window_s``)."""
        limits = self.limits
        self.admit("checkouts_per_ip_max", ip, limits.checkouts_per_ip_max,
                   limits.checkout_window_s)

    def admit_lookup(self, ip: str, order_key: str | None) -> None:
        """One order lookup from ``ip`` (and for one order, when it names one)."""
        limits = self.limits
        self.admit("lookups_per_ip_max", ip, limits.lookups_per_ip_max, limits.lookup_window_s)
        if order_key is not None:
            self.admit("lookups_per_order_max", order_key, limits.lookups_per_order_max,
                       limits.lookup_window_s)

    def open_units(self, subject: str) -> int:
        with self._lock:
            return self._units.get(subject, 0)
