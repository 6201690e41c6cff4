"""The end-to-end import benchmark (issue 5) checks what it measures and reports it.

Goal: ``bench.import_bench`` must refuse a run whose import did not leave every row sellable
and decryptable, and must write its figures; speed is not asserted (``python -m
bench.import_bench`` measures the 1M-row figure). Method: ``main`` with small sizes into a
temporary JSON file (each size in a child process, as in the real run).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import import_bench

pytestmark = pytest.mark.timeout(300)


def test_small_import_runs_checked_and_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "import.json"
    assert import_bench.main(["--rows", "2000", "5000", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert [run["rows"] for run in summary["runs"]] == [2000, 5000]
    assert all(run["seconds"] > 0 and run["peak_rss_growth_mib"] > 0 for run in summary["runs"])
    assert summary["verdict"].startswith("n/a")


def test_check_refuses_an_import_that_lost_codes(tmp_path: Path) -> None:
    class Batches:
        def get(self, batch_id: int) -> dict[str, object]:
            return {"status": "ready", "imported": 9}

    class Fake:
        batches = Batches()

    with pytest.raises(AssertionError):
        import_bench.check(Fake(), tmp_path / "none.csv", 10, 1)
