"""The XLSX reader comparison checks what it measures and reports it.

Goal: ``bench.xlsx_bench`` must read every row of a good workbook with each reader (a reader that
lost rows fails the child's check), must record cardsvc's coded refusals of the hostile files,
and must write its figures. Speed and memory are not asserted (``python -m bench.xlsx_bench``
measures them at 100k and 1M rows). Method: ``main`` with a small workbook and the hostile files
at 1/64 of their size, each pair in a child process as in the real run; python-calamine is
included only when it is installed (it is not a dependency of the service).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench import xlsx_bench

pytestmark = pytest.mark.timeout(300)


def test_small_comparison_runs_checked_and_writes_figures(tmp_path: Path) -> None:
    readers = ["openpyxl", "cardsvc", "cardsvc scan"]
    if importlib.util.find_spec("python_calamine") is not None:
        readers.append("calamine")
    out = tmp_path / "xlsx.json"
    assert xlsx_bench.main(["--rows", "300", "--hostile-small", "--readers", *readers,
                            "--timeout-s", "60", "--out", str(out)]) == 0
    results = {(r["file"], r["reader"]): r for r in json.loads(out.read_text())["results"]}
    for reader in readers:
        assert results[("codes-300.xlsx", reader)]["outcome"] == "read", reader
        assert results[("codes-300.xlsx", reader)]["rows"] == 301
    for hostile in ("huge_string.xlsx", "zip_bomb.xlsx"):
        assert results[(hostile, "cardsvc")]["outcome"].startswith("refused LIMIT_EXCEEDED")
    assert results[("xfd.xlsx", "cardsvc scan")]["outcome"] == "read, 312 problems"
