"""The Redis + Lua baseline: allocate, redeem and verify scripts driven by redis-benchmark.

Goal: measure issue 2's reference point, a Redis + Lua allocator/redeemer (SPOP allocation
idempotent on the order key, redemption idempotent on the request id), on this machine and in the
same run as the engine, and prove the scripts really did their work.

Method: start a private ``redis-server`` on a free 127.0.0.1 port in a temporary directory
(persistence ``none`` = ``--save "" --appendonly no``, or AOF with ``appendfsync everysec`` or
``always``), SCRIPT LOAD the scripts in ``bench/lua/`` (checking each SHA against the text), preload
codes with a server-side loader, then run ``redis-benchmark -c 50 -P 16 --csv EVALSHA ...`` and
parse requests/s from its CSV. After each run the Redis state is checked: EVALSHA was called the
requested number of times without one error reply, redemptions and orders were stored, uses went
down by exactly the number of redemptions, and no code belongs to two orders.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench.common import find_program

LUA_DIR = Path(__file__).resolve().parent / "lua"
PERSISTENCE_MODES = ("none", "everysec", "always")
# A draw range large enough that request ids and order refs are fresh: 500k draws from 2e9
# repeat about 60 times (birthday bound), and redis-benchmark reads -r as a C int.
FRESH_RANGE = 2_000_000_000
LOAD_CHUNK = 100_000
UNLIMITED_USES = 1_000_000
START_TIMEOUT_S = 20.0
# redis-py's defaults (5 s socket timeout, then a retry) would resend a slow script: be explicit.
SOCKET_TIMEOUT_S = 300.0
SUM_CHUNK = 100_000
CLIENTS = 50
PIPELINE = 16
# redis-benchmark sends whole pipelines, so a run may issue up to CLIENTS * PIPELINE requests more
# than asked; the allocation pool keeps that many codes (and more) to spare per run.
OVERSHOOT_MAX = CLIENTS * PIPELINE
POOL_SPARE = 1_000


def find_redis_server(install: bool = True) -> str | None:
    """The path of redis-server, or ``None``.

    In order: ``$CARDSVC_REDIS_SERVER`` (``scripts/test.sh`` sets it), ``scripts/ensure_redis.sh``
    (which installs Debian's package if missing) when ``install`` is true, then ``PATH``.
    """
    return find_program("CARDSVC_REDIS_SERVER", "ensure_redis.sh", "redis-server", install)


def find_redis_benchmark(server_path: str) -> str | None:
    """redis-benchmark next to ``server_path``, else from ``PATH``."""
    sibling = Path(server_path).with_name("redis-benchmark")
    if os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("redis-benchmark")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def persistence_args(mode: str) -> list[str]:
    """redis-server arguments for a persistence mode in ``PERSISTENCE_MODES``."""
    if mode == "none":
        return ["--save", "", "--appendonly", "no"]
    if mode in ("everysec", "always"):
        return ["--save", "", "--appendonly", "yes", "--appendfsync", mode]
    raise ValueError(f"unknown persistence mode {mode!r}; expected one of {PERSISTENCE_MODES}")


class RedisServer:
    """A private redis-server on 127.0.0.1 in a temporary directory; a context manager."""

    def __init__(self, server_path: str, persistence: str = "none") -> None:
        self.server_path = server_path
        self.persistence = persistence
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None

    def __enter__(self) -> RedisServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="cardsvc-bench-redis-")
        self.port = free_port()
        args = [
            self.server_path,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", self._tmp.name,
            "--logfile", "redis.log",
            *persistence_args(self.persistence),
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING: {self.log_tail()}")
            time.sleep(0.05)

    def client(self) -> redis.Redis:
        """The server's client (string replies), closed when the server stops."""
        if self._client is None:
            self._client = redis.Redis(
                host="127.0.0.1",
                port=self.port,
                decode_responses=True,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=START_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    def log_tail(self) -> str:
        if self._tmp is None:
            return ""
        log = Path(self._tmp.name) / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None and self._proc.poll() is None:
            # SIGTERM to our own child: redis-server shuts down cleanly (no save is configured).
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()


def script_text(name: str) -> str:
    """The text of ``bench/lua/<name>.lua``."""
    return (LUA_DIR / f"{name}.lua").read_text()


def bench_redeem_text() -> str:
    """redeem.lua with its ``-- entry`` line and below replaced by ``redeem_bench_entry.lua``."""
    body, marker, _ = script_text("redeem").partition("-- entry\n")
    assert marker, "redeem.lua has no '-- entry' line"
    return body + script_text("redeem_bench_entry")


SCRIPT_SOURCES: dict[str, Callable[[], str]] = {
    "allocate": lambda: script_text("allocate"),
    "redeem": lambda: script_text("redeem"),
    "redeem_bench": bench_redeem_text,
    "verify": lambda: script_text("verify"),
    "load_codes": lambda: script_text("load_codes"),
    "check_orders": lambda: script_text("check_orders"),
    "sum_uses": lambda: script_text("sum_uses"),
}


def load_scripts(client: redis.Redis) -> dict[str, str]:
    """SCRIPT LOAD every script; returns name -> SHA, each checked against its text."""
    shas: dict[str, str] = {}
    for name, source in SCRIPT_SOURCES.items():
        text = source()
        sha = str(client.script_load(text))
        assert sha == hashlib.sha1(text.encode()).hexdigest(), f"{name}: SHA mismatch"
        shas[name] = sha
    return shas


def run_redis_benchmark(
    bench_path: str,
    port: int,
    command: list[str],
    requests: int,
    rand_range: int,
    clients: int = CLIENTS,
    pipeline: int = PIPELINE,
) -> float:
    """Run redis-benchmark on ``command`` against 127.0.0.1:``port``; returns requests/s."""
    args = [
        bench_path, "-h", "127.0.0.1", "-p", str(port),
        "-c", str(clients), "-P", str(pipeline), "-n", str(requests), "-r", str(rand_range),
        "--csv", *command,
    ]  # fmt: skip
    timeout_s = 60 + requests / 2_000
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return parse_benchmark_csv(proc.stdout)


def parse_benchmark_csv(text: str) -> float:
    """requests/s from redis-benchmark ``--csv`` output (header row with a ``rps`` column)."""
    rows = [row for row in csv.reader(line for line in text.splitlines() if line.strip())]
    for i, row in enumerate(rows):
        if "rps" in row and i + 1 < len(rows):
            return float(rows[i + 1][row.index("rps")])
    raise ValueError(f"no rps column in redis-benchmark output: {text[:500]!r}")


def load_range(
    client: redis.Redis, sha: str, first: int, count: int, pool_key: str, sku: str, uses: int
) -> None:
    """Create codes ``first .. first+count-1`` server-side, in chunks that keep Redis responsive."""
    for start in range(first, first + count, LOAD_CHUNK):
        last = min(start + LOAD_CHUNK, first + count) - 1
        client.evalsha(sha, 1, pool_key, start, last, sku, uses)


def check_orders(client: redis.Redis, sha: str, pattern: str) -> list[int]:
    """[orders, codes, duplicates, mismatches] over the order keys matching ``pattern``.

    ``duplicates`` counts codes seen in more than one order; ``mismatches`` counts codes whose
    hash does not say sold to that very order. Pages through ``check_orders.lua``.
    """
    cursor, orders, mismatches = "0", 0, 0
    codes: list[str] = []
    while True:
        page = client.evalsha(sha, 0, cursor, pattern)
        cursor = str(page[0])
        orders += int(page[1])
        mismatches += int(page[2])
        codes.extend(page[3])
        if cursor == "0":
            return [orders, len(codes), len(codes) - len(set(codes)), mismatches]


def sum_uses(client: redis.Redis, sha: str, ncodes: int) -> int:
    """The total uses left over codes ``0 .. ncodes-1``, summed server-side in chunks."""
    total = 0
    for first in range(0, ncodes, SUM_CHUNK):
        last = min(first + SUM_CHUNK, ncodes) - 1
        total += int(client.evalsha(sha, 0, first, last))
    return total


def evalsha_stats(client: redis.Redis) -> tuple[int, int]:
    """(calls, failed_calls) of EVALSHA since the server started."""
    stats: dict[str, Any] = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("failed_calls", 0))


@dataclass
class LuaBench:
    """A loaded Redis with the codes for ``repeats`` runs of ``requests`` commands per operation.

    Codes ``0 .. ncodes-1`` are sold with ``UNLIMITED_USES`` uses (redeem and verify hit them at
    random, so every redemption takes the full success path); the next ``requests * repeats``
    codes are the allocation pool ``pool:ALLOC:0``.
    """

    server: RedisServer
    bench_path: str
    requests: int
    repeats: int
    ncodes: int
    shas: dict[str, str] = field(default_factory=dict)

    @classmethod
    def prepare(
        cls, server: RedisServer, bench_path: str, requests: int, repeats: int, ncodes: int
    ) -> LuaBench:
        client = server.client()
        shas = load_scripts(client)
        # Keep codes to spare: SPOP of a set's last member deletes the set key.
        pool_codes = (requests + OVERSHOOT_MAX) * repeats + POOL_SPARE
        load_range(client, shas["load_codes"], 0, ncodes, "", "REDEEM", UNLIMITED_USES)
        load_range(client, shas["load_codes"], ncodes, pool_codes, "pool:ALLOC:0", "ALLOC", 1)
        assert client.scard("pool:ALLOC:0") == pool_codes
        assert client.dbsize() == ncodes + pool_codes + 1
        return cls(server, bench_path, requests, repeats, ncodes, shas)

    def _run(self, command: list[str], rand_range: int) -> tuple[float, int]:
        client = self.server.client()
        calls_before, failed_before = evalsha_stats(client)
        rps = run_redis_benchmark(
            self.bench_path, self.server.port, command, self.requests, rand_range
        )
        calls_after, failed_after = evalsha_stats(client)
        calls = calls_after - calls_before
        assert self.requests <= calls < self.requests + OVERSHOOT_MAX, (calls, self.requests)
        assert failed_after == failed_before, "a script returned an error reply"
        return rps, calls

    def measure_verify(self, repeat: int) -> dict[str, Any]:
        """Verify random sold codes; returns {"rps", checks...}."""
        client = self.server.client()
        keys_before = client.dbsize()
        command = ["EVALSHA", self.shas["verify"], "1", "code:__rand_int__"]
        rps, calls = self._run(command, self.ncodes)
        assert client.dbsize() == keys_before, "verify changed the key count"
        status = client.evalsha(self.shas["verify"], 1, f"code:{self.ncodes - 1:012d}")
        assert status[0] == "valid", status
        return {"rps": rps, "calls": calls}

    def measure_redeem(self, repeat: int) -> dict[str, Any]:
        """Redeem random sold codes under fresh request ids; returns {"rps", checks...}."""
        client = self.server.client()
        keys_before = client.dbsize()
        seq_before = int(client.get("redemption_seq") or 0)
        uses_before = sum_uses(client, self.shas["sum_uses"], self.ncodes)
        command = [
            "EVALSHA", self.shas["redeem_bench"], "1", f"req:{repeat}:__rand_int__",
            "T1", str(self.ncodes),
        ]  # fmt: skip
        rps, calls = self._run(command, FRESH_RANGE)
        redemptions = int(client.get("redemption_seq") or 0) - seq_before
        new_keys = client.dbsize() - keys_before
        uses_after = sum_uses(client, self.shas["sum_uses"], self.ncodes)
        assert redemptions > 0.99 * calls, (redemptions, calls)
        assert new_keys == redemptions + (1 if seq_before == 0 else 0), (new_keys, redemptions)
        assert uses_before - uses_after == redemptions, (uses_before, uses_after, redemptions)
        return {"rps": rps, "calls": calls, "redemptions": redemptions}

    def measure_allocate(self, repeat: int) -> dict[str, Any]:
        """Allocate one code to each of fresh random order refs; returns {"rps", checks...}."""
        client = self.server.client()
        pool_before = client.scard("pool:ALLOC:0")
        keys_before = client.dbsize()
        command = [
            "EVALSHA", self.shas["allocate"], "2", "pool:ALLOC:0", f"order:{repeat}:__rand_int__",
            "1",
        ]  # fmt: skip
        rps, calls = self._run(command, FRESH_RANGE)
        orders = client.dbsize() - keys_before
        allocated = pool_before - client.scard("pool:ALLOC:0")
        checked = check_orders(client, self.shas["check_orders"], f"order:{repeat}:*")
        assert orders > 0.99 * calls, (orders, calls)
        assert allocated == orders, (allocated, orders)
        assert checked == [orders, orders, 0, 0], checked
        return {"rps": rps, "calls": calls, "orders": orders}

    def server_info(self) -> dict[str, Any]:
        """Which Redis ran, and how it was configured."""
        client = self.server.client()
        info: dict[str, Any] = client.info("server")
        config = {
            str(name): str(value)
            for pattern in ("appendonly", "appendfsync", "save")
            for name, value in client.config_get(pattern).items()
        }
        return {
            "redis_version": info.get("redis_version"),
            "executable": info.get("executable"),
            "config": config,
            "scripts": dict(self.shas),
        }
