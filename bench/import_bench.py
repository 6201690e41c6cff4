"""End-to-end import of a CSV file of codes (issue 5): parse, dedup, encrypt, store, load into the
core. Target: 1,000,000 codes in under 20 s on this machine, memory flat.

Method: ``python -m bench.import_bench [--rows N ...]`` writes each CSV (16-character codes,
8-digit PINs; ``bench.codefile_bench.write_csv``) outside any clock, then runs each size in a fresh
interpreter (``--measure --file F``) that opens a ``Runtime`` on an empty data directory (SQLite,
file journal), creates a SKU and times ``cardsvc.catalog.file_import.import_file`` once. The child
checks the result before it counts (batch ``ready``, every row imported, stock available equals the
rows, the journal durable, a sample of codes decrypts to the file's text) and reports its peak RSS
growth (VmHWM - VmRSS at start). "Memory flat" is judged by the peak growth at two sizes: a flat
import grows by about the same at 250k and at 1M rows. Output: one JSON object per size and a
verdict line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.codefile_bench import write_csv
from bench.common import REPO, read_status_kib

TARGET_S = 20.0
ROWS_DEFAULT = (250_000, 1_000_000)
CHILD_TIMEOUT_S = 900.0


def measure(path: Path, rows: int) -> dict[str, Any]:
    """One import of ``path`` (``rows`` codes) into a fresh data directory, checked."""
    from cardsvc.catalog.batches import BatchMeta
    from cardsvc.catalog.file_import import import_file
    from cardsvc.engine.store import StoreConfig
    from cardsvc.runtime import Runtime, ServiceConfig

    rss_start = read_status_kib("VmRSS")
    with tempfile.TemporaryDirectory(prefix="cardsvc-import-") as tmp:
        services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=Path(tmp) / "data")))
        try:
            services.catalog.create_sku("BENCH", "bench", actor="bench")
            started = time.perf_counter()
            result = import_file(services.batches, path, BatchMeta("BENCH"), actor="bench")
            seconds = time.perf_counter() - started
            check(services, path, rows, result.batch_id)
        finally:
            services.close()
    return {"rows": rows, "seconds": seconds, "codes_per_s": rows / seconds,
            "peak_rss_growth_mib": (read_status_kib("VmHWM") - rss_start) / 1024}


def check(services: Any, path: Path, rows: int, batch_id: int) -> None:
    batch = services.batches.get(batch_id)
    if (batch["status"], batch["imported"]) != ("ready", rows):
        raise AssertionError(f"batch {batch}")
    if services.catalog.stock("BENCH")["available"] != rows:
        raise AssertionError("stock does not hold every imported code")
    if services.engine.durable() < services.engine.appended():
        raise AssertionError("the import returned before its journal records were durable")
    with path.open(encoding="utf-8") as handle:
        next(handle)
        first = [next(handle).split(",")[0] for _ in range(5)]
    ids = services.engine.batch_code_ids(batch_id)[:5]
    if [code for code, _ in services.revealer.reveal(ids)] != first:
        raise AssertionError("decrypted codes differ from the file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS_DEFAULT))
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "import.json")
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.file, args.rows[0])))
        return 0
    runs = []
    with tempfile.TemporaryDirectory(prefix="cardsvc-import-csv-") as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"codes-{rows}.csv"
            write_csv(path, rows)
            child = subprocess.run(
                [sys.executable, "-m", "bench.import_bench", "--measure", "--file", str(path),
                 "--rows", str(rows)], cwd=REPO, capture_output=True, text=True,
                timeout=CHILD_TIMEOUT_S, check=True)
            run = json.loads(child.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(json.dumps(run), flush=True)
    largest = max(runs, key=lambda run: run["rows"])
    verdict = "PASS" if largest["rows"] >= 1_000_000 and largest["seconds"] < TARGET_S else (
        "MISS" if largest["rows"] >= 1_000_000 else "n/a (fewer than 1M rows)")
    summary = {"runs": runs, "target_s": TARGET_S, "verdict": verdict}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"import of {largest['rows']:,} codes: {largest['seconds']:.1f} s "
          f"(target < {TARGET_S:.0f} s for 1M): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
