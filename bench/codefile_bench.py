"""Parsing of batch import files: ``cardsvc.catalog.codefile`` on a generated 1M-row CSV.

Goal: issue 5's figure "import of 1,000,000 codes from CSV end to end in under 20 s, memory flat"
gives the parse a small share: 1M rows parsed and validated in at most 3 s. This measures
:func:`cardsvc.catalog.codefile.scan` (parse, validate, in-file duplicate table) and
:func:`cardsvc.catalog.codefile.read_codes` (parse, validate, build ``CodeRow`` chunks) separately.

Method: ``python -m bench.codefile_bench [--rows N]`` writes a CSV of N rows (16-character codes
from a seeded generator, 8-digit PINs, a header) into a temporary directory, streaming, outside
any clock. Each phase then runs in a fresh interpreter (``--measure PHASE --file F``) so that its
peak RSS (VmHWM) is its own: the child reads VmRSS, runs the phase once under the clock, checks
the result (every row valid, no problem, no duplicate; every row yielded in line order) and
prints one JSON object. A third child repeats ``read_codes`` under tracemalloc for the peak of
Python allocations, which does not depend on the allocator's habits. Output: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import REPO, read_status_kib
from cardsvc.catalog.codefile import CHUNK_ROWS_DEFAULT, read_codes, scan

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LEN = 16
PIN_DIGITS = 8
ROWS_DEFAULT = 1_000_000
PHASES = ("scan", "read_codes", "read_codes_tracemalloc")
CHILD_TIMEOUT_S = 600.0


def write_csv(path: Path, rows: int, seed: int = 5) -> None:
    """Writes ``rows`` distinct random codes with PINs (a duplicate is regenerated)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("code,pin\n")
        batch: list[str] = []
        while len(seen) < rows:
            code = "".join(rng.choices(CODE_ALPHABET, k=CODE_LEN))
            if code in seen:
                continue
            seen.add(code)
            batch.append(f"{code},{rng.randrange(10**PIN_DIGITS):0{PIN_DIGITS}d}\n")
            if len(batch) == 10_000:
                handle.write("".join(batch))
                batch.clear()
        handle.write("".join(batch))


def measure(phase: str, path: Path, rows: int) -> dict[str, Any]:
    """Runs one phase over ``path`` in this process, checks it and returns its figures."""
    rss_before_kib = read_status_kib("VmRSS")
    if phase == "read_codes_tracemalloc":
        tracemalloc.start()
    start = time.perf_counter()
    if phase == "scan":
        report = scan(path)
        assert (report.rows, report.valid_rows) == (rows, rows), report
        assert report.problem_count == 0 and report.duplicate_count == 0, report
        seen = report.rows
    else:
        seen = 0
        for chunk in read_codes(path, chunk_rows=CHUNK_ROWS_DEFAULT):
            assert chunk[0].line == seen + 2 and chunk[-1].line == seen + len(chunk) + 1
            assert len(chunk[-1].code) == CODE_LEN and chunk[-1].pin is not None
            seen += len(chunk)
        assert seen == rows, seen
    seconds = time.perf_counter() - start
    figures: dict[str, Any] = {
        "phase": phase,
        "rows": seen,
        "seconds": round(seconds, 3),
        "rows_per_second": round(seen / seconds),
        "rss_before_mib": round(rss_before_kib / 1024, 1),
        "peak_rss_growth_mib": round((read_status_kib("VmHWM") - rss_before_kib) / 1024, 1),
    }
    if phase == "read_codes_tracemalloc":
        figures["tracemalloc_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return figures


def measure_in_subprocess(phase: str, path: Path, rows: int) -> dict[str, Any]:
    """``measure`` in a fresh interpreter (this one's executable)."""
    command = [sys.executable, "-m", "bench.codefile_bench", "--measure", phase]
    proc = subprocess.run(
        [*command, "--file", str(path), "--rows", str(rows)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS_DEFAULT)
    parser.add_argument("--measure", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.file, args.rows)))
        return 0
    with tempfile.TemporaryDirectory(prefix="codefile-bench-") as tmp:
        path = Path(tmp) / "codes.csv"
        write_csv(path, args.rows)
        results = {
            "rows": args.rows,
            "file_bytes": path.stat().st_size,
            "phases": [measure_in_subprocess(phase, path, args.rows) for phase in PHASES],
        }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
