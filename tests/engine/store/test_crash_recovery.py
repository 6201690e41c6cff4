"""Kill -9 at random moments, restart, and every acknowledged effect is still there.

Goal: prove DESIGN.md invariant 3 (ack after durable) for both journal sinks, along with the
no-oversell and exactly-once invariants across crashes. A child process (``crash_worker``) runs
a mix of allocations, holds, confirmations, releases, redemptions, rollbacks, retries, imports
and snapshots. It acknowledges an effect by appending a side-file line only after
``store.wait_last()`` returned. The test kills it with SIGKILL at random moments, at least
``kills_min`` times per sink. After every kill it opens the store itself, which proves the data
directory lock was freed by the kernel, and checks against the recovered engine (see ``checks``)
that every acknowledged effect is present, that no code is in two orders, that no code is
redeemed more often than allowed, and that stock counts equal codes by state. Then it starts the
next incarnation, which re-sends earlier acknowledged requests and must get the original results.
For the Redis sink the test also kills the Redis server itself with SIGKILL in the middle of
traffic (``appendonly yes``, ``appendfsync always``) and restarts it on the same port and
directory. The worker must ride out the outage (waits time out or succeed) and go on
acknowledging, and nothing acknowledged may be lost. Some outages also kill the worker while Redis
is down.

Method: most kills come 0.05-0.5 s after the incarnation's first durable acknowledgement; about
one in ten comes 0-0.4 s after start instead, landing in recovery or set-up. Every loop is bounded
in time and in count. Every child and every Redis process is killed in ``finally``. The default
run does ``DEFAULT_PLAN.kills`` kills per sink within ``DEFAULT_PLAN.seconds_max``; the ``slow``
variant (``--run-slow``) does many more.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cardsvc.engine.store import RecoveryReport, Store

from . import crash_worker
from .checks import DURABLE_ACK_OPS, check_acknowledged, check_consistency, uses_by_sku
from .conftest import ControlledRedis

REPO_ROOT = Path(__file__).resolve().parents[2]
ACK_TIMEOUT_S = 30.0
"""How long an incarnation may take to acknowledge its first effect (start-up, recovery, and a
Redis outage of up to a second, which holds the journal writer in its back-off)."""
POLL_S = 0.01
KILL_DELAY_S = (0.05, 0.5)
EARLY_KILL_DELAY_S = (0.0, 0.4)
REDIS_DOWN_S = (0.1, 1.0)


@dataclass(frozen=True)
class CrashPlan:
    """How hard one run pushes: kill counts, time bound, Redis outages."""

    kills: int
    kills_min: int
    seconds_max: float
    redis_outages: int
    early_kill_probability: float = 0.1


DEFAULT_PLAN = CrashPlan(kills=30, kills_min=20, seconds_max=60.0, redis_outages=5)
SLOW_PLAN = CrashPlan(kills=200, kills_min=150, seconds_max=600.0, redis_outages=30)


@dataclass
class CrashStats:
    kills: int = 0
    early_kills: int = 0
    outages: int = 0
    killed_during_outage: int = 0
    verifications: int = 0
    torn_tails: int = 0
    snapshot_recoveries: int = 0
    snapshots_rejected: int = 0
    records_replayed_max: int = 0
    acked: Counter[str] = field(default_factory=Counter)


class CrashRun:
    """One data directory, one side file, and the incarnations of the worker over them."""

    def __init__(
        self, tmp_path: Path, sink: str, redis: ControlledRedis | None, rng: random.Random
    ) -> None:
        self.sink = sink
        self.redis = redis
        self.rng = rng
        self.data_dir = tmp_path / "data"
        self.side_file = tmp_path / "acked.jsonl"
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.incarnation = 0
        self.stats = CrashStats()

    @property
    def redis_url(self) -> str | None:
        return self.redis.url if self.redis is not None else None

    def spawn(self) -> subprocess.Popen[bytes]:
        self.incarnation += 1
        args = [
            sys.executable, "-m", "tests.engine.store.crash_worker",
            "--data-dir", str(self.data_dir), "--journal", self.sink,
            "--side-file", str(self.side_file), "--seed", str(self.incarnation),
        ]  # fmt: skip
        if self.redis_url is not None:
            args += ["--redis-url", self.redis_url]
        with open(self.log_path(), "wb") as stderr:
            return subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr)

    def log_path(self) -> Path:
        return self.logs / f"worker-{self.incarnation}.stderr"

    def side_size(self) -> int:
        return self.side_file.stat().st_size if self.side_file.exists() else 0

    def durable_acks_since(self, offset: int) -> int:
        """Side-file lines after ``offset`` that the worker wrote only after a durable wait."""
        with open(self.side_file, "rb") as side:
            side.seek(offset)
            data = side.read()
        whole = data[: data.rfind(b"\n") + 1]
        return sum(json.loads(line)["op"] in DURABLE_ACK_OPS for line in whole.splitlines())

    def fail_worker(self, proc: subprocess.Popen[bytes], why: str) -> None:
        log = self.log_path().read_text(errors="replace")[-3000:]
        pytest.fail(f"incarnation {self.incarnation}: {why} (exit {proc.returncode}):\n{log}")

    def assert_alive(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            self.fail_worker(proc, "the worker exited by itself")

    def wait_for_durable_ack(self, proc: subprocess.Popen[bytes], offset: int) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while time.monotonic() < deadline:
            self.assert_alive(proc)
            if self.side_size() > offset and self.durable_acks_since(offset) > 0:
                return
            time.sleep(POLL_S)
        self.fail_worker(proc, f"no durable acknowledgement within {ACK_TIMEOUT_S} s")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        self.assert_alive(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def redis_outage(self, proc: subprocess.Popen[bytes]) -> bool:
        """Kills Redis mid-traffic and restarts it. Every third outage also kills the worker
        while Redis is down. Returns whether the worker was killed."""
        assert self.redis is not None
        self.redis.kill()
        self.stats.outages += 1
        time.sleep(self.rng.uniform(*REDIS_DOWN_S))
        if self.stats.outages % 3 == 2:
            self.kill(proc)
            self.stats.killed_during_outage += 1
            self.redis.start()
            return True
        offset = self.side_size()
        self.redis.start()
        # The worker survived the outage and acknowledges durable effects again.
        self.wait_for_durable_ack(proc, offset)
        return False

    def cycle(self, outage: bool, early: bool) -> None:
        """One incarnation: start, let it acknowledge, maybe take Redis down, kill it."""
        offset = self.side_size()
        proc = self.spawn()
        try:
            if early:
                time.sleep(self.rng.uniform(*EARLY_KILL_DELAY_S))
                self.kill(proc)
                self.stats.early_kills += 1
                return
            self.wait_for_durable_ack(proc, offset)
            if outage and self.redis_outage(proc):
                self.stats.kills += 1
                return
            time.sleep(self.rng.uniform(*KILL_DELAY_S))
            self.kill(proc)
            self.stats.kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def verify(self) -> RecoveryReport:
        """Opens the store in this process (the dead worker's lock must be free) and checks
        every acknowledged effect and every invariant."""
        config = crash_worker.store_config(self.data_dir, self.sink, self.redis_url)
        with Store.open(config) as store:
            lines = crash_worker.read_side_file(self.side_file)
            check_consistency(store.engine, uses_by_sku())
            self.stats.acked = check_acknowledged(store.engine, lines)
            report = store.recovery
        self.stats.verifications += 1
        self.stats.torn_tails += report.torn_tail is not None
        self.stats.snapshot_recoveries += report.snapshot_seq > 0
        self.stats.snapshots_rejected += len(report.snapshots_rejected)
        self.stats.records_replayed_max = max(
            self.stats.records_replayed_max, report.records_replayed
        )
        return report

    def run(self, plan: CrashPlan) -> CrashStats:
        started = time.monotonic()
        # Redis outages happen at random points of the run, never in an early-kill cycle.
        outages = plan.redis_outages if self.redis is not None else 0
        outage_at = sorted(self.rng.sample(range(1, plan.kills), min(outages, plan.kills - 1)))
        while self.stats.kills < plan.kills and time.monotonic() - started < plan.seconds_max:
            outage = bool(outage_at) and self.stats.kills >= outage_at[0]
            if outage:
                outage_at.pop(0)
            early = not outage and self.rng.random() < plan.early_kill_probability
            self.cycle(outage, early)
            self.verify()
        return self.stats


def run_and_check(
    tmp_path: Path, sink: str, redis: ControlledRedis | None, plan: CrashPlan, seed: int
) -> None:
    started = time.monotonic()
    run = CrashRun(tmp_path, sink, redis, random.Random(seed))
    stats = run.run(plan)
    elapsed = time.monotonic() - started
    print(f"{sink}: {elapsed:.1f} s, {stats}")
    assert stats.kills >= plan.kills_min, f"only {stats.kills} kills in {elapsed:.0f} s: {stats}"
    # The run exercised what it claims to: durable effects of every kind, retries across
    # restarts, and recovery from snapshots.
    for op in ("import", "allocate", "hold", "confirm", "release", "redeem", "rollback", "retry"):
        assert stats.acked[op] > 0, f"no {op} was acknowledged: {stats}"
    assert stats.snapshot_recoveries > 0, stats
    if redis is not None:
        assert stats.outages >= 2 and stats.killed_during_outage >= 1, stats
        assert redis.kills == stats.outages, (redis.kills, stats.outages)


@pytest.mark.timeout(150)
def test_file_sink_keeps_every_acknowledged_effect_across_kill_9(tmp_path: Path) -> None:
    run_and_check(tmp_path, "file", None, DEFAULT_PLAN, seed=1)


@pytest.mark.redis
@pytest.mark.timeout(150)
def test_redis_sink_keeps_every_acknowledged_effect_across_worker_and_redis_kill_9(
    tmp_path: Path, controlled_redis: ControlledRedis
) -> None:
    run_and_check(tmp_path, "redis", controlled_redis, DEFAULT_PLAN, seed=2)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_file_sink_keeps_every_acknowledged_effect_across_many_kill_9(tmp_path: Path) -> None:
    run_and_check(tmp_path, "file", None, SLOW_PLAN, seed=11)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(900)
def test_redis_sink_keeps_every_acknowledged_effect_across_many_worker_and_redis_kill_9(
    tmp_path: Path, controlled_redis: ControlledRedis
) -> None:
    run_and_check(tmp_path, "redis", controlled_redis, SLOW_PLAN, seed=12)
