"""Fixtures for the durability tests: a private Redis that a test may kill -9 and restart.

The session-wide ``redis_server`` of the repo-root conftest must survive the whole session, so it
cannot be killed. ``controlled_redis`` is function-scoped and belongs to one test alone. It starts
the same binary (``$CARDSVC_REDIS_SERVER`` or ``redis-server`` on PATH) on a free loopback port,
in a temporary directory, with ``appendonly yes`` and ``appendfsync always``.
``ControlledRedis.kill()`` sends SIGKILL, and ``start()`` brings the server back on the same port,
over the same directory and append-only file, which is what a crashed production Redis does on
restart. The port search, the PING probe and the graceful stop come from the root conftest (found
through the plugin manager, since conftest modules cannot be imported by name). Skipping follows
the root fixture: with no binary the test is skipped, but a ``CARDSVC_REDIS_SERVER`` that does not
work fails it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest


def root_conftest(config: pytest.Config) -> ModuleType:
    """The repo-root conftest module, as pytest loaded it."""
    path = (config.rootpath / "conftest.py").resolve()
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if isinstance(plugin, ModuleType) and file and Path(file).resolve() == path:
            return plugin
    raise RuntimeError(f"the root conftest {path} is not loaded")


@dataclass
class ControlledRedis:
    """A private redis-server that the test owns: ``kill()`` it and ``start()`` it again."""

    binary: str
    port: int
    data_dir: Path
    helpers: ModuleType
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        """Starts the server on ``port`` over ``data_dir`` and waits until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("redis-server is already running")
        args = [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--aof-load-truncated", "yes",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + float(self.helpers.REDIS_START_TIMEOUT_S)
        while time.monotonic() < deadline and self.process.poll() is None:
            if self.helpers._answers_ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not answer on port {self.port}; its log ends:\n{log}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF rewrite, like a crash of the Redis process."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("redis-server is not running")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None:
            self.helpers._stop(self.process)


@pytest.fixture
def controlled_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControlledRedis]:
    """A redis-server owned by this test (appendonly yes, appendfsync always), killable."""
    helpers = root_conftest(request.config)
    binary = helpers._redis_binary()
    if binary is None:
        pytest.skip("no redis-server: run scripts/ensure_redis.sh or set CARDSVC_REDIS_SERVER")
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    server = ControlledRedis(
        binary=binary, port=helpers._free_loopback_port(), data_dir=data_dir, helpers=helpers
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
