"""The console page-time benchmark (issue 14) checks what it measures and reports it.

Goal: ``bench.console_bench`` loads its orders, retail orders, people, alert notices and codes,
times a readers' round that finds the seeded stuck payments, logs in through the form, gets every
console page with its marker (asserted before timing) and writes its figures; speed is not
asserted (``python -m bench.console_bench`` measures at 1M orders and 10M codes). Method:
``main`` at a small size into a temporary JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import console_bench

pytestmark = pytest.mark.timeout(300)


def test_small_run_times_every_console_page(tmp_path: Path) -> None:
    out = tmp_path / "console.json"
    assert console_bench.main(["--orders", "3000", "--retail-orders", "20000", "--codes",
                               "2000", "--batch-codes", "1000", "--repeat", "1", "--out",
                               str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["orders"] == 3000 and summary["codes"] == 2000
    assert summary["readers_round"]["stuck_payments_firing"] == 42
    assert {page["path"] for page in summary["pages"]} == {p for p, _ in console_bench.PAGES}
    assert all(page["median_ms"] > 0 for page in summary["pages"])
