"""Long fuzz runs of the journal and snapshot decoders (slow suite only).

Goal: the bounded fuzz loop of ``cargo test`` (core/src/fuzz_tests.rs) run for many more inputs,
so ``--run-slow``/``CARDSVC_SLOW=1`` searches longer for panics and wrong accepts.

Method: run ``cargo test --release fuzz`` with ``CARDSVC_SLOW=1`` (200,000 inputs per decoder);
a failing input is kept under ``core/fuzz/regressions/`` by the Rust test itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(3_600)
def test_long_fuzz_run_finds_no_panic_and_no_wrong_accept() -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed")
    env = {**os.environ, "CARDSVC_SLOW": "1"}
    run = subprocess.run(
        [cargo, "test", "--release", "--package", "cardsvc-core", "fuzz"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
