"""Helpers shared by the ``bench/test_bench_*.py`` suites.

Goal: keep the test modules short and typed. Method: ``in_ci`` reads ``CI`` as CI sets it;
``pedantic`` is a typed front of pytest-benchmark's untyped ``BenchmarkFixture.pedantic``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where Redis-backed benchmarks must run."""
    return os.environ.get("CI", "").lower() == "true"


def pedantic(benchmark: Any, target: Callable[..., T], **options: Any) -> T:
    """``benchmark.pedantic(target, **options)``; one call under ``--benchmark-disable``."""
    result: T = benchmark.pedantic(target, **options)
    return result
