"""Shared pieces of the benchmarks: code texts, timing, and the measurement record.

Goal: every implementation (engine, plain-dict baseline, Redis + Lua) is measured the same way so
that their ratios within one run mean something on a shared, noisy machine.

Method: inputs are generated before the clock starts, as fresh string objects (so no string has a
cached hash from the import, as a request arriving from the network would not); the timed region
runs with the garbage collector disabled, as ``timeit`` does; each figure is measured ``repeats``
times on fresh data and the best sample is reported next to the median (for speed-ups, which
are ratios of back-to-back runs, the median).
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
CODE_DIGITS = 14


def code_texts(prefix: str, start: int, count: int) -> list[str]:
    """``count`` code texts ``prefix + 14 digits`` from number ``start``, already normalised.

    Each call builds new string objects, so their hashes are not cached yet.
    """
    return [f"{prefix}{i:0{CODE_DIGITS}d}" for i in range(start, start + count)]


def ref_texts(prefix: str, start: int, count: int) -> list[str]:
    """``count`` distinct order refs or request ids, as new string objects."""
    return [f"{prefix}-{i}" for i in range(start, start + count)]


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn`` with the garbage collector off; return its result and the seconds it took."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    finally:
        if was_enabled:
            gc.enable()
    return out, seconds


@dataclass
class Measurement:
    """One figure of one implementation, with every sample taken in this run.

    ``unit`` is ``ops/s`` or ``codes/s`` (higher is better), ``bytes/code`` (lower is better) or
    ``x`` (a speed-up, higher is better).
    """

    name: str
    impl: str
    unit: str
    samples: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def lower_is_better(self) -> bool:
        return self.unit == "bytes/code"

    @property
    def best(self) -> float:
        if not self.samples:
            raise ValueError(f"{self.impl} {self.name}: no samples")
        return min(self.samples) if self.lower_is_better else max(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def figure(self) -> float:
        """The reported value: the best sample, except for a speed-up (unit ``x``), whose
        samples are already ratios of back-to-back runs: their best would pick the repeat that
        noise favoured most, so the median is reported."""
        return self.median if self.unit == "x" else self.best

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["best"] = self.best
        out["median"] = self.median
        out["figure"] = self.figure
        return out


def rate(count: int, seconds: float) -> float:
    """Items per second; a zero duration (clock too coarse) is a broken measurement."""
    if seconds <= 0:
        raise ValueError("measured duration is not positive")
    return count / seconds


def machine_description() -> dict[str, Any]:
    """CPU count, CPU model and total RAM, for the results file."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_gib": round(mem_total_kib / 1024 / 1024, 1),
        "loadavg_1min": load_average(),
    }


def load_average() -> float:
    """The 1-minute load average: other work on a shared machine skews thread ratios most."""
    return os.getloadavg()[0]


def read_status_kib(field_name: str) -> int:
    """A ``/proc/self/status`` field in KiB, e.g. ``VmRSS`` or ``VmHWM``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise LookupError(field_name)


def find_program(env_var: str, script: str, name: str, install: bool) -> str | None:
    """The path of a program the benchmarks run, or ``None``: ``$env_var`` when it names an
    executable, then ``scripts/<script>`` (which installs the Debian package providing it and
    prints its path) when ``install``, then ``PATH``."""
    configured = os.environ.get(env_var, "")
    if configured and os.access(configured, os.X_OK):
        return configured
    path = REPO / "scripts" / script
    if install and path.exists():
        proc = subprocess.run(
            ["bash", str(path)], capture_output=True, text=True, timeout=900, check=False
        )
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode == 0 and lines and os.access(lines[-1], os.X_OK):
            return lines[-1]
    return shutil.which(name)
