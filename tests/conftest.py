"""Shared test setup: hypothesis profiles and a fresh engine on a manual clock.

Profiles (select with ``HYPOTHESIS_PROFILE``): ``fast`` (the default, for every test run) and
``slow`` (many more and longer random histories, for a nightly or pre-release run).

The other shared fixtures live in ``tests/fixtures/`` (registered as plugins by the repository's
``conftest.py``): ``postgres`` (the private PostgreSQL server and a database per test on each
dialect), ``http`` (the app, an authenticated client, the codes of the test shop), ``serving``
(a real ``cardsvc serve`` process), ``leak_watch`` (no code or PIN in any log or error body).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from cardsvc.engine import Engine

settings.register_profile(
    "fast",
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "slow",
    max_examples=3_000,
    stateful_step_count=150,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

# A fixed engine secret and start time keep failures reproducible.
LOOKUP_KEY = bytes(range(32))
T0_MS = 1_700_000_000_000


@pytest.fixture
def engine() -> Engine:
    """A fresh engine whose clock is stopped at ``T0_MS``."""
    # Imported here so that tests which do not need the extension still collect without it.
    from cardsvc.engine import Engine

    eng = Engine(LOOKUP_KEY)
    eng.set_clock_ms(T0_MS)
    return eng
