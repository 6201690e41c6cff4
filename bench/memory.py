"""Memory per code: import N codes into a fresh engine in a fresh process and measure.

Goal: issue 2's "at most 64 bytes of RAM per code in the core at 10 million codes".

Method: run as ``python -m bench.memory --codes N`` (``measure_in_subprocess`` does this, so that
nothing else lives in the process). It reads VmRSS, imports N codes in chunks (each chunk's
Python strings are freed before the next, so at most one chunk of input is alive, and the
chunk's journal records are drained as the service's journal writer would), collects
garbage, reads VmRSS and VmHWM again and prints one JSON object: the core's own accounting
(``memory_bytes()``) and the RSS growth, each divided by N. RSS growth also counts allocator slack
and any input memory Python kept, so it is an upper bound on what the core holds.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO, code_texts, read_status_kib

CHUNK = 1_000_000


def measure(codes: int, chunk: int = CHUNK) -> dict[str, Any]:
    """Import ``codes`` codes into a fresh engine here; returns the figures (see module doc)."""
    from bench.engine_bench import engine_identity, new_engine

    eng = new_engine()
    eng.create_sku("MEM", 1, True, None)
    gc.collect()
    core_before = eng.memory_bytes()
    rss_before_kib = read_status_kib("VmRSS")
    start = time.perf_counter()
    for first in range(0, codes, chunk):
        n = min(chunk, codes - first)
        batch = code_texts("MM", first, n)
        ids, duplicates = eng.import_codes("MEM", batch)
        assert len(ids) == n and not duplicates
        # The journal writer drains the journal continuously in a running service; the figure
        # is the steady state, not the import records waiting in memory for their sink.
        assert eng.drain_journal()
        del batch, ids, duplicates
    seconds = time.perf_counter() - start
    gc.collect()
    rss_after_kib = read_status_kib("VmRSS")
    assert eng.code_count() == codes
    assert eng.stock("MEM")["available"] == codes
    core_bytes = eng.memory_bytes() - core_before
    rss_bytes = (rss_after_kib - rss_before_kib) * 1024
    return {
        "codes": codes,
        "core_bytes": core_bytes,
        "core_bytes_per_code": core_bytes / codes,
        "rss_delta_bytes": rss_bytes,
        "rss_bytes_per_code": rss_bytes / codes,
        "rss_before_kib": rss_before_kib,
        "rss_after_kib": rss_after_kib,
        "peak_rss_kib": read_status_kib("VmHWM"),
        "import_seconds": seconds,
        "engine": engine_identity(),
    }


def measure_in_subprocess(codes: int, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run ``measure`` in a fresh interpreter (this one's executable) and return its figures."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--codes", str(codes)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memory failed ({proc.returncode}): {proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=CHUNK)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.codes, args.chunk)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
