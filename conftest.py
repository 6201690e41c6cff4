"""Repo-wide pytest configuration for ``tests/`` and ``bench/``.

* ``slow`` tests are long variants; they run only with ``--run-slow`` or ``CARDSVC_SLOW=1``.
* ``redis_server`` starts one private ``redis-server`` on a free loopback port for the session
  (never the system's), with ``appendonly yes`` and ``appendfsync always``, in a temporary
  directory. The binary is ``$CARDSVC_REDIS_SERVER`` (``scripts/test.sh`` sets it from
  ``scripts/ensure_redis.sh``) or ``redis-server`` on PATH; with neither, tests that use the
  fixture are skipped, but a ``CARDSVC_REDIS_SERVER`` that does not work fails them. Tests that
  use the fixture get the ``redis`` marker, so ``-m "not redis"`` deselects them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Shared fixtures (tests/fixtures/): the leak watch, PostgreSQL, the HTTP app, a real server.
pytest_plugins = [
    "tests.fixtures.leak_watch",
    "tests.fixtures.postgres",
    "tests.fixtures.http",
    "tests.fixtures.serving",
    "tests.fixtures.runtime",
    "tests.fixtures.shop",
]

REDIS_START_TIMEOUT_S = 15.0
REDIS_STOP_TIMEOUT_S = 10.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (same as CARDSVC_SLOW=1)",
    )


def _run_slow(config: pytest.Config) -> bool:
    return bool(config.getoption("--run-slow")) or os.environ.get("CARDSVC_SLOW") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = _run_slow(config)
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow or CARDSVC_SLOW=1")
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
        if not run_slow and item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)


@dataclass(frozen=True)
class RedisServer:
    """A running private redis-server: connect with ``url`` (or ``host``/``port``)."""

    host: str
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def _redis_binary() -> str | None:
    configured = os.environ.get("CARDSVC_REDIS_SERVER")
    if configured:
        return configured
    return shutil.which("redis-server")


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis(binary: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_loopback_port()
    args = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--daemonize", "no",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if _answers_ping(port):
            return process, port
        time.sleep(0.05)
    _stop(process)
    log = (data_dir / "redis.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{binary} did not answer on 127.0.0.1:{port}; its log ends:\n{log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(REDIS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = _redis_binary()
    if binary is None:
        pytest.skip("no redis-server: run scripts/ensure_redis.sh or set CARDSVC_REDIS_SERVER")
    data_dir = tmp_path_factory.mktemp("redis")
    process, port = _start_redis(binary, data_dir)
    try:
        yield RedisServer(host="127.0.0.1", port=port, data_dir=data_dir)
    finally:
        _stop(process)
