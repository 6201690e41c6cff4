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

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cardsvc.cli import all_commands
from server.cli import SERVE

START_DEADLINE_S = 10.0
STOP_DEADLINE_S = 10.0


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "cardsvc serve exited during start-up"
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"cardsvc serve did not answer {url}/healthz in {START_DEADLINE_S}s")


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return int(process.returncode)


def start_server(data_dir: Path, port: int, log: Path,
                 crash_at: str = "") -> subprocess.Popen[bytes]:
    """``cardsvc serve`` on ``port`` with risk limits off (tests hammer from one IP), its
    output appended to ``log``; ``crash_at`` names a saga fault-injection point
    (``cardsvc.orders.CRASH_POINTS``). Returns once it answers its health probe."""
    env = {**os.environ, "CARDSVC_RISK_LIMITS": "off", "CARDSVC_CRASH_AT": crash_at}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cardsvc", "serve", "--data-dir", str(data_dir),
             "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    _wait_healthy(process, f"http://127.0.0.1:{port}")
    return process


def create_cli_key(data_dir: Path, *args: str) -> str:
    """A new API key from ``cardsvc keys create`` (its last output line)."""
    out = subprocess.run([sys.executable, "-m", "cardsvc", "keys", "create", "--data-dir",
                          str(data_dir), *args], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def test_serve_is_a_cardsvc_command_found_through_its_entry_point() -> None:
    assert SERVE in all_commands()


def test_serve_runs_answers_probes_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "cardsvc", "serve", "--data-dir", str(data_dir)]
    out_path, err_path = tmp_path / "serve.out", tmp_path / "serve.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=tmp_path, stdout=out, stderr=err
        )
        try:
            _wait_healthy(process, url)
            ready = httpx.get(f"{url}/readyz", timeout=5.0)
            assert ready.status_code == 200
            assert ready.json()["durability"]["guarantee"]["level"] == "no_loss"

            second = subprocess.run(
                [*command, "--port", str(_free_loopback_port())],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=START_DEADLINE_S,
            )
            assert second.returncode == 1
            assert "DATA_DIR_LOCKED" in second.stderr
        finally:
            status = _stop(process)
    log = err_path.read_text(errors="replace")
    # uvicorn shuts down gracefully (the lifespan closes the store), then re-raises SIGTERM.
    assert status in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log
    banner = out_path.read_text()
    assert url in banner
    assert str(data_dir.resolve()) in banner
    assert "no_loss" in banner
