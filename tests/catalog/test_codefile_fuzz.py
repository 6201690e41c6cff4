"""Goal: the code-file reader, fed any bytes as CSV or XLSX, raises nothing but coded errors
(CardsvcError subclasses) and stays within bounded memory and time per input.

Method: atheris (libFuzzer for Python) runs ``tests/catalog/fuzz_codefile.py`` in a child
process (libFuzzer ends its process when done): a few seconds in every test run, five minutes
with ``--run-slow``; an uncoded exception, a MemoryError under the harness's 2 GiB address-space
limit, an allocation over 512 MiB or an input over 20 s is a finding,
which fails the test and names the file to copy into ``tests/catalog/fuzz_corpus/``. Every file
of that corpus (seeds and past findings) is replayed here in-process, each under tracemalloc with
a generous peak bound. The inputs' forms are described in ``tests/catalog/fuzz_target.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from tests.catalog.fuzz_target import run_one

CORPUS = Path(__file__).parent / "fuzz_corpus"
REPO = Path(__file__).resolve().parents[2]
PEAK_MAX = 64 << 20


@pytest.mark.parametrize("name", sorted(path.name for path in CORPUS.iterdir()))
def test_every_corpus_input_gives_a_coded_result_in_bounded_memory(
    tmp_path: Path, name: str
) -> None:
    data = (CORPUS / name).read_bytes()
    tracemalloc.start()
    try:
        outcome = run_one(data, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome == "ok" or outcome.isupper(), outcome
    assert peak < PEAK_MAX, peak


def fuzz(tmp_path: Path, seconds: int) -> None:
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("atheris is not installed (pip install -e '.[dev]')")
        pytest.skip("atheris is not installed (pip install -e '.[dev]')")
    found, new = tmp_path / "findings", tmp_path / "new"
    found.mkdir()
    new.mkdir()
    command = [sys.executable, "-m", "tests.catalog.fuzz_codefile",
               # -rss_limit_mb reads ru_maxrss, inherited from this (large) process across
               # execve; the harness bounds its address space instead (fuzz_codefile.py).
               f"-max_total_time={seconds}", "-rss_limit_mb=0", "-malloc_limit_mb=512",
               "-timeout=20", "-max_len=24576",
               f"-artifact_prefix={found}/", "-print_final_stats=1", str(new), str(CORPUS)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          timeout=seconds + 120, check=False)
    findings = sorted(path.name for path in found.iterdir())
    assert proc.returncode == 0 and not findings, (
        f"the fuzzer found {findings} (exit {proc.returncode}); copy them from {found} into "
        f"{CORPUS} and fix the reader:\n{proc.stderr[-4000:]}")
    assert "Done" in proc.stderr, proc.stderr[-2000:]


def test_a_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    fuzz(tmp_path, seconds=5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_long_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    fuzz(tmp_path, seconds=300)
