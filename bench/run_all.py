"""Issue 2's side-by-side: the engine, a Redis + Lua baseline and a plain-dict baseline, one run.

Goal: print each implementation's ops/s (or codes/s, bytes/code) and the ratios against issue 2's
targets, PASS or MISS, and keep the figures as JSON (``bench/results/latest.json``).

Method: start a private redis-server (``bench.redis_lua``), load the engine (``bench.engine_bench``)
and the dict baseline (``bench.baselines``), then for each repeat measure verify, redeem and
allocate on all three back to back, so that machine noise hits them alike; then the engine's
batch forms, two threads against one, bulk import, and finally memory per code in a subprocess
(``bench.memory``). Each figure is the best of ``--repeats`` samples on fresh data (speed-ups:
the median of the per-repeat ratios); every sample checked its result before it counted. Usage::

    python -m bench.run_all                 # full run: 10M codes for the memory test
    python -m bench.run_all --quick         # small sizes, a few seconds (used by tests)
    python -m bench.run_all --redis-persistence always   # AOF + fsync always (issue 3)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baselines import DictBench
from bench.common import REPO, Measurement, load_average, machine_description
from bench.redis_lua import (
    PERSISTENCE_MODES,
    LuaBench,
    RedisServer,
    find_redis_benchmark,
    find_redis_server,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
OPS_SINGLE = ("verify", "redeem", "allocate")


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; see ``--help``."""

    ops: int
    batch: int
    batch_items: int
    import_items: int
    redis_requests: int
    redis_codes: int
    memory_codes: int
    repeats: int


FULL = Sizes(
    ops=500_000,
    batch=10_000,
    batch_items=2_000_000,
    import_items=2_000_000,
    redis_requests=500_000,
    redis_codes=1_000_000,
    memory_codes=10_000_000,
    repeats=3,
)
QUICK = Sizes(
    ops=20_000,
    batch=1_000,
    batch_items=20_000,
    import_items=50_000,
    redis_requests=20_000,
    redis_codes=20_000,
    memory_codes=200_000,
    repeats=1,
)


@dataclass(frozen=True)
class Target:
    """One of issue 2's targets: ``value`` compared with ``threshold`` (``>=`` or ``<=``)."""

    name: str
    value: float
    threshold: float
    unit: str
    at_most: bool = False

    @property
    def passed(self) -> bool:
        return self.value <= self.threshold if self.at_most else self.value >= self.threshold


class Results:
    """The measurements of one run, keyed by (figure name, implementation)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], Measurement] = {}

    def add(self, name: str, impl: str, unit: str, value: float, **info: Any) -> None:
        key = (name, impl)
        if key not in self.by_key:
            self.by_key[key] = Measurement(name, impl, unit)
        self.by_key[key].samples.append(value)
        if info:
            self.by_key[key].info.setdefault("samples", []).append(info)

    def figure(self, name: str, impl: str) -> float | None:
        """The reported value of a figure (see ``Measurement.figure``), if it was measured."""
        found = self.by_key.get((name, impl))
        return found.figure if found is not None else None


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed_step(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    out = fn()
    log(f"{label}: {time.perf_counter() - start:.1f} s")
    return out


def run_single_ops(
    results: Results, sizes: Sizes, lua: LuaBench | None, dict_bench: DictBench, engine: Any
) -> None:
    """verify, redeem, allocate(qty=1) on every implementation, interleaved per repeat."""
    for repeat in range(sizes.repeats):
        for op in OPS_SINGLE:
            if lua is not None:
                out = getattr(lua, f"measure_{op}")(repeat)
                results.add(op, "redis_lua", "ops/s", out.pop("rps"), **out)
            results.add(op, "dict", "ops/s", getattr(dict_bench, f"measure_{op}")(repeat))
            results.add(op, "engine", "ops/s", getattr(engine, f"measure_{op}")(repeat))
            log(
                f"repeat {repeat} {op}: "
                + ", ".join(
                    f"{impl} {results.by_key[(op, impl)].samples[-1]:,.0f}"
                    for impl in ("redis_lua", "dict", "engine")
                    if (op, impl) in results.by_key
                )
            )


def run_engine_extras(results: Results, sizes: Sizes, engine: Any) -> None:
    """Batch forms, two threads against one, and bulk import, on the engine."""
    for repeat in range(sizes.repeats):
        results.add("verify_many", "engine", "codes/s", engine.measure_verify_many(repeat))
        results.add("redeem_many", "engine", "codes/s", engine.measure_redeem_many(repeat))
        results.add("redeem_batch", "engine", "codes/s", engine.measure_redeem_batch(repeat))
        many = results.by_key[("redeem_many", "engine")].samples[-1]
        batch = results.by_key[("redeem_batch", "engine")].samples[-1]
        results.add("redeem_batch / redeem_many", "engine", "x", batch / many)
        for op in ("redeem", "allocate", "verify", "redeem_many"):
            pair = getattr(engine, f"measure_threads_{op}")(repeat)
            results.add(f"{op} 1 thread (2 SKUs)", "engine", "ops/s", pair["one_thread"])
            results.add(f"{op} 2 threads (2 SKUs)", "engine", "ops/s", pair["two_threads"])
            results.add(f"{op} 2 threads / 1 thread", "engine", "x", pair["ratio"])
        results.add("import_codes", "engine", "codes/s", engine.measure_import(repeat))
        log(
            f"repeat {repeat} extras: "
            + ", ".join(
                f"{m.name} {m.samples[-1]:,.2f}"
                for m in results.by_key.values()
                if m.impl == "engine" and m.name not in OPS_SINGLE
            )
        )


def run_memory(results: Results, sizes: Sizes) -> dict[str, Any]:
    from bench.memory import measure_in_subprocess

    figures = measure_in_subprocess(sizes.memory_codes)
    results.add("core bytes/code", "engine", "bytes/code", figures["core_bytes_per_code"])
    results.add("RSS bytes/code", "engine", "bytes/code", figures["rss_bytes_per_code"])
    return figures


def targets(results: Results, memory_codes: int) -> list[Target]:
    """Issue 2's targets that this run has figures for."""
    out: list[Target] = []

    def ratio(name: str, a: str, b: str, threshold: float) -> None:
        va, vb = results.figure(name, a), results.figure(name, b)
        if va is not None and vb is not None:
            out.append(Target(f"{name}: {a} / {b}", va / vb, threshold, "x"))

    def absolute(name: str, threshold: float) -> None:
        found = results.by_key.get((name, "engine"))
        if found is not None:
            out.append(Target(f"{name}: engine", found.figure, threshold, found.unit))

    for op in OPS_SINGLE:
        ratio(op, "engine", "redis_lua", 10.0)
        ratio(op, "engine", "dict", 1.0)
    absolute("verify_many", 5_000_000)
    absolute("redeem_many", 5_000_000)
    absolute("redeem_batch", 3_000_000)
    absolute("redeem 2 threads / 1 thread", 1.6)
    absolute("allocate 2 threads / 1 thread", 1.6)
    absolute("import_codes", 2_000_000)
    for name in ("core bytes/code", "RSS bytes/code"):
        value = results.figure(name, "engine")
        if value is not None:
            out.append(Target(f"{name} at {memory_codes:,} codes", value, 64.0, "bytes/code", True))
    return out


def fmt(value: float | None, unit: str = "") -> str:
    """A figure for the tables: rates as integers, ratios with a trailing x."""
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:,.2f}x"
    if unit == "bytes/code":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def markdown(results: Results, checks: list[Target]) -> str:
    """The figures (with the engine's ratios to each baseline) and the targets, as markdown."""
    lines = [
        "| figure | unit | engine | Redis + Lua | dict | engine / Redis + Lua | engine / dict |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    names: list[str] = []
    for name, _ in results.by_key:
        if name not in names:
            names.append(name)
    for name in names:
        unit = next(m.unit for (n, _), m in results.by_key.items() if n == name)
        engine, lua, plain = (results.figure(name, i) for i in ("engine", "redis_lua", "dict"))
        ratios = [engine / base if engine and base else None for base in (lua, plain)]
        cells = [fmt(v, unit) for v in (engine, lua, plain)] + [fmt(r, "x") for r in ratios]
        lines.append(f"| {name} | {unit} | " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | threshold | result |", "|---|--:|--:|---|"]
    for check in checks:
        op = "<=" if check.at_most else ">="
        verdict = "PASS" if check.passed else "MISS"
        lines.append(
            f"| {check.name} | {fmt(check.value, check.unit)} "
            f"| {op} {fmt(check.threshold, check.unit)} | {verdict} |"
        )
    return "\n".join(lines)


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
            )
        except OSError:
            return ""  # No git here: the results then carry no commit.
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="engine vs Redis + Lua vs dict (issue 2)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--codes", type=int, help="codes for the memory test (default 10M)")
    parser.add_argument("--ops", type=int, help="operations per single-call sample")
    parser.add_argument("--repeats", type=int, help="samples per figure (the best is reported)")
    parser.add_argument("--redis-requests", type=int, help="redis-benchmark requests per sample")
    parser.add_argument(
        "--redis-persistence", choices=PERSISTENCE_MODES, default="none",
        help="none: --save '' --appendonly no (issue 2); everysec/always: AOF with that fsync",
    )  # fmt: skip
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis + Lua baseline")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory test")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    overrides = {
        "memory_codes": args.codes,
        "ops": args.ops,
        "repeats": args.repeats,
        "redis_requests": args.redis_requests,
    }
    return replace(sizes, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    from bench.engine_bench import EngineBench, engine_identity

    implementations: dict[str, Any] = {
        "engine": engine_identity(),
        "dict": "bench.baselines.DictCodeTable",
    }
    machine = machine_description()
    results = Results()
    memory: dict[str, Any] | None = None
    engine = timed_step(
        "engine load",
        lambda: EngineBench.prepare(
            sizes.ops, sizes.batch, sizes.batch_items, sizes.import_items, sizes.repeats
        ),
    )
    dict_bench = timed_step("dict load", lambda: DictBench.prepare(sizes.ops, sizes.repeats))
    if args.no_redis:
        run_single_ops(results, sizes, None, dict_bench, engine)
    else:
        server_path = find_redis_server()
        bench_path = find_redis_benchmark(server_path) if server_path else None
        if server_path is None or bench_path is None:
            raise SystemExit("redis-server/redis-benchmark not found (use --no-redis to skip)")
        with RedisServer(server_path, args.redis_persistence) as server:
            lua = timed_step(
                "redis load",
                lambda: LuaBench.prepare(
                    server, bench_path, sizes.redis_requests, sizes.repeats, sizes.redis_codes
                ),
            )
            implementations["redis_lua"] = lua.server_info()
            run_single_ops(results, sizes, lua, dict_bench, engine)
    del dict_bench
    run_engine_extras(results, sizes, engine)
    implementations["engine_journal_drain"] = dict(engine.journal)
    del engine
    if not args.no_memory:
        memory = timed_step("memory", lambda: run_memory(results, sizes))
    machine["loadavg_1min_end"] = load_average()
    checks = targets(results, sizes.memory_codes)
    table = markdown(results, checks) + (
        f"\n\nLoad average (1 min) at start / end: {machine['loadavg_1min']:.2f} / "
        f"{machine['loadavg_1min_end']:.2f} on {machine['nproc']} CPUs (other work skews the "
        "thread ratios most)."
    )
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine,
        "args": {k: str(v) for k, v in vars(args).items()},
        "sizes": asdict(sizes),
        "implementations": implementations,
        "measurements": [m.to_json() for m in results.by_key.values()],
        "memory": memory,
        "targets": [asdict(t) | {"passed": t.passed} for t in checks],
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
