"""Goal: ``cardsvc serve`` starts the real server (uvicorn, uvloop, httptools) on the embedded
defaults, announces where it listens and the durability guarantee, answers its probes over TCP,
refuses a second server on the same data directory with ``DATA_DIR_LOCKED``, and stops cleanly on
SIGTERM. The ``serve`` command reaches the ``cardsvc`` command line through its entry point,
without the domain importing ``api``.

Method: ``python -m cardsvc serve`` in a subprocess, run from a temporary directory (so ``api``
is found through the environment, not the working directory), on a free loopback port; poll
``/healthz`` for at most ``START_DEADLINE_S``, check ``/readyz``, start a second server on the
same directory, then SIGTERM the first and wait for it, every step bounded in time. uvicorn
re-raises SIGTERM after its graceful shutdown, so the server ends with that signal's status.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cardsvc.cli import all_commands
from server.cli import SERVE
from tests.fixtures.serving import (
    START_DEADLINE_S,
    free_loopback_port,
    stop,
    wait_healthy,
)


def test_serve_is_a_cardsvc_command_found_through_its_entry_point() -> None:
    assert SERVE in all_commands()


def test_serve_runs_answers_probes_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "cardsvc", "serve", "--data-dir", str(data_dir)]
    out_path, err_path = tmp_path / "serve.out", tmp_path / "serve.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=tmp_path, stdout=out, stderr=err
        )
        try:
            wait_healthy(process, url)
            ready = httpx.get(f"{url}/readyz", timeout=5.0)
            assert ready.status_code == 200
            assert ready.json()["durability"]["guarantee"]["level"] == "no_loss"

            second = subprocess.run(
                [*command, "--port", str(free_loopback_port())],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=START_DEADLINE_S,
            )
            assert second.returncode == 1
            assert "DATA_DIR_LOCKED" in second.stderr
        finally:
            status = stop(process)
    log = err_path.read_text(errors="replace")
    # uvicorn shuts down gracefully (the lifespan closes the store), then re-raises SIGTERM.
    assert status in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log
    banner = out_path.read_text()
    assert url in banner
    assert str(data_dir.resolve()) in banner
    assert "no_loss" in banner
