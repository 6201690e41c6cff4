"""The generation benchmark (issue 5) measures correct output and reports what it measured.

Goal: a fast but wrong generator must not pass ``bench.codegen_bench``: its batch check must
refuse duplicates, a wrong check character, a PIN where the format has none and a wrong layout,
and the command must write its figure and verdict.

Method: pytest-benchmark times ``generate`` of ``COUNT`` default-format codes (one round under
``--benchmark-disable``) and the result passes the benchmark's own full check; then the check is
fed damaged batches, each of which must fail it; then ``main`` runs with a small ``--count`` into
a temporary JSON file. Speed is not asserted: small counts on a shared machine say nothing about
the 1,000,000-code target (``python -m bench.codegen_bench`` measures that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import codegen_bench
from bench.codegen_bench import check_batch
from bench.testing import pedantic
from cardsvc.catalog.codegen import CodeFormat, generate

pytestmark = pytest.mark.timeout(120)

COUNT = 20_000
FORMAT = CodeFormat()


def test_generated_batch_passes_the_full_check_then_is_timed(benchmark: BenchmarkFixture) -> None:
    pairs = pedantic(benchmark, lambda: generate(FORMAT, COUNT), rounds=3)
    check_batch(FORMAT, pairs, COUNT)


def damaged_batches() -> dict[str, list[tuple[str, str | None]]]:
    pairs = generate(FORMAT, 100)
    code = pairs[0][0]
    last = FORMAT.alphabet[(FORMAT.alphabet.index(code[-1]) + 1) % len(FORMAT.alphabet)]
    return {
        "duplicate": [pairs[0], *pairs[:-1]],
        "wrong check": [(code[:-1] + last, None), *pairs[1:]],
        "pin": [(code, "1234"), *pairs[1:]],
        "layout": [(code.replace("-", ""), None), *pairs[1:]],
        "too few": pairs[:-1],
    }


@pytest.mark.parametrize("damage", list(damaged_batches()))
def test_batch_check_refuses_a_damaged_batch(damage: str) -> None:
    with pytest.raises(AssertionError):
        check_batch(FORMAT, damaged_batches()[damage], 100)


def test_main_writes_the_figure_and_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "codegen.json"
    assert codegen_bench.main(["--count", "5000", "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    result = report["result"]
    assert result["count"] == 5000 and len(result["samples_s"]) == 2
    assert result["scaled"] is True and result["threshold_s"] == pytest.approx(0.025)
    assert result["best_s"] == min(result["samples_s"]) and result["codes_per_s"] > 0
    assert report["format"] == FORMAT.to_dict()
    verdict = "PASS" if result["passed"] else "MISS"
    assert verdict in capsys.readouterr().out
