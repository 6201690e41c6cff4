"""Issue 4's HTTP benchmark: our API's verify and redeem beside three plain ASGI reference points.

Goal: the issue asks for figures measured on this machine with one uvicorn worker (uvloop,
httptools) and wrk with 64 connections on the same machine, where it quotes a raw ASGI app at
about 29,000 requests/s, a FastAPI endpoint that does nothing at about 8,500/s and a FastAPI
redeem on an in-memory dict with a pydantic body at about 6,000/s. Our API's ``POST /v1/verify``
and ``POST /v1/redeem`` are measured beside those three in the same run; since the 2-CPU machine
is shared and noisy, the figures that mean something are the ratios within one run.

Method: targets are measured one at a time, interleaved per repeat (repeat 1: every target, then
repeat 2: every target, ...), each sample on a fresh server:

* Server: the baselines (``bench.http_apps``) under ``python -m uvicorn --workers 1 --loop uvloop
  --http httptools --no-access-log --log-level warning --no-server-header`` on 127.0.0.1 and a
  free port; our API under ``cardsvc serve`` (uvicorn: one worker, uvloop, httptools, no access
  log, no server header) over a temporary data directory, with an admin key and a terminal key
  made by ``cardsvc keys create`` and ``CARDSVC_RISK_LIMITS=off`` (the per-key and per-IP rate
  limits and the brute-force guard would otherwise refuse a load generator; the report says so).
  Before measuring, each server must prove it is the app it claims to be (a response header or
  its OpenAPI title and paths).
* Data: codes are ``BENCH`` and 10 digits (``bench.http_apps.bench_code``). The dict app seeds
  its codes at start-up (``BENCH_HTTP_CODES``, enough for ``RATE_CAP`` requests/s for the whole
  warm-up and run); our API imports its codes through ``POST /v1/batches`` (5,000 per call) into
  SKU ``BENCH`` (single use, redeemable unsold): for redeem enough for the warm-up, then, sized
  from the warm-up's rate, enough for the run.
* Load: ``wrk --threads T --connections C --duration D --timeout 2s --latency`` with a script in
  ``bench/wrk/``: ``static.lua`` (the same small JSON POST; raw and no-op), ``redeem.lua`` (each
  request a code no other request uses and a fresh request id) and ``verify.lua`` (codes drawn at
  random from the seeded range). A warm-up of ``--warmup`` seconds precedes the measured run on
  the same server. wrk's report gives requests/s, the latency distribution (p50, p99), the
  non-2xx-or-3xx count and the socket errors; the scripts' ``done()`` adds how many requests the
  threads built. The server's CPU time per request (``/proc/PID/stat``) and wrk's own CPU time
  are recorded too: CPU per request is less sensitive to other work than requests/s is.
* Checks, before a sample counts: wrk ran requests, every response was 2xx and there was no
  socket error (warm-up included). For redeem, after the run the server's count of redemptions
  (``GET /bench/stats``; ``GET /v1/skus/BENCH/stock`` for our API) lies between the 2xx responses
  and the requests built: wrk stops with up to one request in flight per connection, which the
  server completes but wrk never counts, so exact equality cannot be asked of a closed-loop load
  generator; the difference (at most the connection count per wrk run) is recorded. The dict app
  must also have refused nothing. For verify, a few codes checked after the run answer
  ``"valid"``. A sample that fails a check is reported as rejected (with the reason) and not
  used; the command then exits 1.
* Figures: per target the best requests/s of its accepted samples, with the p50 and p99 latency
  of that sample; ratios to the raw ASGI app and the FastAPI no-op are the median of the
  per-repeat ratios (samples taken a minute apart, not the best of each).

Expected cost, sketched before building: the issue's figures are 34 µs of server time per request
for raw ASGI (uvicorn's HTTP parsing and the event loop), 118 µs through FastAPI's routing,
dependency solving and response serialisation, and 167 µs with a validated body and a validated
response. Our verify and redeem add authentication, the engine call (a few µs) and, for redeem,
waiting for the journal group commit (hundreds of µs of latency, little CPU); their ceiling is the
dict redeem's figure. wrk itself takes a good part of the second CPU.

Usage::

    python -m bench.http_bench            # 3 repeats x (2 s warm-up + 10 s) per target, ~4 min
    python -m bench.http_bench --quick    # 1 repeat x (1 s + 1 s), a smoke run
    python -m bench.http_bench --targets raw,noop,dict_redeem --duration 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import REPO, Measurement, find_program, machine_description
from bench.http_apps import (
    ENV_CODES,
    RAW_APP_HEADER,
    SKU,
    TITLE_NOOP,
    TITLE_REDEEM,
    bench_code,
)
from bench.run_all import RESULTS_DIR, git_commit, log

WRK_DIR = Path(__file__).resolve().parent / "wrk"
HOST = "127.0.0.1"
RATE_CAP = 30_000
"""Requests/s no redeem target reaches (the raw ASGI app's rate); codes are seeded for it."""
VERIFY_CODES = 50_000
IMPORT_BATCH_MAX = 5_000
"""Codes per ``POST /v1/batches``: the API's own bound on one import call."""
SPOT_CHECKS = (0, VERIFY_CODES // 2, VERIFY_CODES - 1)
"""Codes of the verified range checked one by one after a verify run."""
WRK_TIMEOUT = "2s"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 10.0
ENV_RISK_LIMITS = "CARDSVC_RISK_LIMITS"
UVICORN_ARGS = [
    "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
    "--log-level", "warning", "--no-server-header", "--lifespan", "on",
]  # fmt: skip
ISSUE_FIGURES = {"raw": 29_000, "noop": 8_500, "dict_redeem": 6_000}
"""Issue 4's requests/s for the three reference points on this machine."""


@dataclass(frozen=True)
class Target:
    """One thing measured: ``service`` runs it, ``script`` (``bench/wrk/``) loads it."""

    key: str
    label: str
    service: str  # raw, noop, dict, cardsvc
    path: str
    script: str  # static, redeem, verify


TARGETS = (
    Target("raw", "raw ASGI", "raw", "/", "static"),
    Target("noop", "FastAPI no-op", "noop", "/noop", "static"),
    Target("dict_redeem", "FastAPI redeem (dict, pydantic)", "dict", "/v1/redeem", "redeem"),
    Target("cardsvc_verify", "cardsvc POST /v1/verify", "cardsvc", "/v1/verify", "verify"),
    Target("cardsvc_redeem", "cardsvc POST /v1/redeem", "cardsvc", "/v1/redeem", "redeem"),
)
TARGET_KEYS = tuple(t.key for t in TARGETS)


@dataclass(frozen=True)
class Sizes:
    """How long and how hard each sample runs; see ``--help``."""

    duration_s: int
    warmup_s: int
    repeats: int
    connections: int
    threads: int


FULL = Sizes(duration_s=10, warmup_s=2, repeats=3, connections=64, threads=2)
QUICK = Sizes(duration_s=1, warmup_s=1, repeats=1, connections=64, threads=2)


class NotMeasured(Exception):
    """A target that could not be started or prepared (e.g. endpoints not built yet)."""


# ----- wrk ---------------------------------------------------------------------------------------


@dataclass
class WrkRun:
    """What one wrk run reported. Latencies in ms; ``non_2xx`` is wrk's "Non-2xx or 3xx
    responses" (it counts statuses of 400 and up; no target here redirects)."""

    requests: int
    duration_s: float
    rps: float
    latency_ms: dict[str, float]
    non_2xx: int
    socket_errors: dict[str, int]
    sent: int | None = None
    sent_max: int | None = None
    threads: int | None = None
    wrk_cpu_s: float | None = None

    @property
    def ok_responses(self) -> int:
        return self.requests - self.non_2xx

    @property
    def socket_error_count(self) -> int:
        return sum(self.socket_errors.values())


TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY_ROW = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)\s*$", re.MULTILINE)
_SOCKET = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)
_SUMMARY = re.compile(r"^http_bench: (.*)$", re.MULTILINE)


def parse_wrk(text: str) -> WrkRun:
    """wrk 4's report (run with ``--latency``), with the ``http_bench:`` line of
    ``bench/wrk/common.lua`` when present. Raises ValueError when the report is incomplete,
    e.g. wrk could not connect."""
    requests, rps = _REQUESTS.search(text), _RPS.search(text)
    rows = {
        m.group(1): float(m.group(2)) * TIME_UNITS[m.group(3)] for m in _LATENCY_ROW.finditer(text)
    }
    if requests is None or rps is None or set(rows) != {"50", "75", "90", "99"}:
        raise ValueError(f"not a complete wrk --latency report: {text[-500:]!r}")
    non_2xx = _NON_2XX.search(text)
    sockets = _SOCKET.search(text)
    counts = [int(g) for g in sockets.groups()] if sockets else [0, 0, 0, 0]
    run = WrkRun(
        requests=int(requests.group(1)),
        duration_s=float(requests.group(2)) * TIME_UNITS[requests.group(3)] / 1e3,
        rps=float(rps.group(1)),
        latency_ms={f"p{q}": rows[q] for q in ("50", "75", "90", "99")},
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
    )
    summary = _SUMMARY.search(text)
    if summary is not None:
        fields = dict(item.split("=", 1) for item in summary.group(1).split())
        run.threads, run.sent = int(fields["threads"]), int(fields["sent"])
        run.sent_max = int(fields["sent_max"])
        if int(fields["completed"]) != run.requests or int(fields["status_errors"]) != run.non_2xx:
            raise ValueError(f"wrk's report and its done() summary disagree: {text[-500:]!r}")
    return run


def find_wrk(install: bool = False) -> str | None:
    """The path of wrk, or ``None``: ``$CARDSVC_WRK`` (``scripts/bench_http.sh`` sets it), then
    ``scripts/ensure_wrk.sh`` (which installs Debian's package) when ``install``, then PATH."""
    return find_program("CARDSVC_WRK", "ensure_wrk.sh", "wrk", install)


def wrk_version(wrk: str) -> str:
    """wrk's version line (``wrk -v`` prints it before the usage and exits 1)."""
    proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=30, check=False)
    return (proc.stdout + proc.stderr).splitlines()[0].strip()


def run_wrk(
    wrk: str,
    sizes: Sizes,
    seconds: int,
    url: str,
    script: str,
    script_args: list[str],
    headers: dict[str, str],
) -> WrkRun:
    """Run wrk once and parse its report; wrk's CPU time comes from RUSAGE_CHILDREN (the only
    child that ends meanwhile). Raises ValueError (with wrk's output) when wrk failed."""
    args = [
        wrk, "--threads", str(sizes.threads), "--connections", str(sizes.connections),
        "--duration", f"{seconds}s", "--timeout", WRK_TIMEOUT, "--latency",
        "--script", str(WRK_DIR / f"{script}.lua"),
    ]  # fmt: skip
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    args += [url, "--", *script_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise ValueError(f"wrk exited with {proc.returncode}: {(proc.stdout + proc.stderr)[-800:]}")
    run = parse_wrk(proc.stdout)
    run.wrk_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if run.threads is not None and run.threads != sizes.threads:
        raise ValueError(f"wrk ran {run.threads} threads, not {sizes.threads}")
    return run


# ----- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# Loopback only: never send the benchmark's requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """One HTTP request with a JSON body (when given); the reply's body parsed as JSON when it
    is JSON. Raises OSError when the server does not answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=CALL_TIMEOUT_S) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        status, raw, got = err.code, err.read(), dict(err.headers)
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Reply(status, parsed, {k.lower(): v for k, v in got.items()})


@dataclass
class Server:
    """A running server of one target; ``headers`` authenticate the measured calls."""

    proc: subprocess.Popen[bytes]
    port: int
    command: list[str]
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)
    admin_headers: dict[str, str] = field(default_factory=dict)
    codes: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """The server process's user + system CPU time so far (``/proc/PID/stat``)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(server: Server, probe: str) -> None:
    """Poll ``GET probe`` until it answers 2xx. Raises NotMeasured (with the server's log) when
    the process exits or does not answer in time."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise NotMeasured(f"server exited with {server.proc.returncode}: {server.log_tail()}")
        try:
            if 200 <= call("GET", server.base_url + probe).status < 300:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise NotMeasured(f"server did not answer GET {probe}: {server.log_tail()}")
        time.sleep(0.05)


def stop(server: Server) -> None:
    """SIGTERM our own child (uvicorn shuts down gracefully), SIGKILL if it does not end."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=STOP_TIMEOUT_S)


def launch(command: list[str], env: dict[str, str], work_dir: Path) -> Server:
    port = free_port()
    command = [*command, "--host", HOST, "--port", str(port)]
    log_path = work_dir / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Server(proc, port, command, log_path)


@contextmanager
def baseline_server(target: Target, sizes: Sizes, work_dir: Path) -> Iterator[Server]:
    """A uvicorn server of one ``bench.http_apps`` app, identified before it is returned."""
    env = dict(os.environ)
    app = {
        "raw": ["bench.http_apps:raw_app"],
        "noop": ["--factory", "bench.http_apps:create_noop_app"],
        "dict": ["--factory", "bench.http_apps:create_redeem_app_from_env"],
    }[target.service]
    codes = 0
    if target.service == "dict":
        codes = redeem_codes_needed(RATE_CAP, sizes.warmup_s + sizes.duration_s, sizes)
        env[ENV_CODES] = str(codes)
    server = launch([sys.executable, "-m", "uvicorn", *app, *UVICORN_ARGS], env, work_dir)
    server.codes = codes
    try:
        wait_ready(server, "/" if target.service == "raw" else "/openapi.json")
        check_baseline_identity(target, server)
        yield server
    finally:
        stop(server)


def check_baseline_identity(target: Target, server: Server) -> None:
    """Assert the server runs the app the target names (STYLE.md: comparisons assert which
    implementation ran)."""
    if target.service == "raw":
        reply = call("POST", server.base_url + "/", {"code": bench_code(0)})
        header = reply.headers.get(RAW_APP_HEADER[0].decode())
        assert reply.status == 200 and reply.body == {"ok": True}, reply
        assert header == RAW_APP_HEADER[1].decode(), reply.headers
        return
    title = call("GET", server.base_url + "/openapi.json").body["info"]["title"]
    assert title == (TITLE_NOOP if target.service == "noop" else TITLE_REDEEM), title
    if target.service == "dict":
        stats = call("GET", server.base_url + "/bench/stats").body
        assert stats == {"codes": server.codes, "redeemed": 0, "replayed": 0, "refused": {}}, stats


def cardsvc_bin() -> Path:
    return Path(sys.executable).with_name("cardsvc")


def create_key(data_dir: Path, role: str, name: str) -> str:
    """``cardsvc keys create``: the API key is the last line of its output."""
    proc = subprocess.run(
        [str(cardsvc_bin()), "keys", "create", "--data-dir", str(data_dir), "--role", role,
         "--name", name],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        output = (proc.stdout + proc.stderr).strip().splitlines() or ["no output"]
        raise NotMeasured(f"`cardsvc keys create --role {role}` failed: {output[-1][:300]}")
    return lines[-1]


@contextmanager
def cardsvc_server(target: Target, work_dir: Path) -> Iterator[Server]:
    """``cardsvc serve`` over a fresh data directory with SKU BENCH, risk limits off."""
    data_dir = work_dir / "data"
    admin = create_key(data_dir, "admin", "bench")
    terminal = create_key(data_dir, "terminal", "bench-terminal")
    env = dict(os.environ) | {ENV_RISK_LIMITS: "off"}
    command = [str(cardsvc_bin()), "serve", "--data-dir", str(data_dir)]
    server = launch(command, env, work_dir)
    server.headers = {"Authorization": f"Bearer {terminal}"}
    server.admin_headers = {"Authorization": f"Bearer {admin}"}
    try:
        wait_ready(server, "/healthz")
        check_cardsvc_identity(target, server)
        sku = {"sku": SKU, "name": "bench", "uses_per_code": 1, "redeem_requires_sale": False}
        reply = call("POST", server.base_url + "/v1/skus", sku, server.admin_headers)
        if reply.status not in (200, 201):
            raise NotMeasured(f"POST /v1/skus answered {reply.status}: {reply.body}")
        yield server
    finally:
        stop(server)


def check_cardsvc_identity(target: Target, server: Server) -> None:
    spec = call("GET", server.base_url + "/openapi.json").body
    title, paths = spec["info"]["title"], spec.get("paths", {})
    assert title == "cardsvc", title
    missing = [p for p in ("/v1/skus", "/v1/batches", target.path) if p not in paths]
    if missing:
        raise NotMeasured(f"cardsvc has no {', '.join(missing)} yet (api/routes/)")


def import_codes(server: Server, upto: int) -> None:
    """Import codes ``bench_code(server.codes) .. bench_code(upto - 1)`` through the API, in
    calls of at most ``IMPORT_BATCH_MAX``; each call must report every code imported."""
    while server.codes < upto:
        count = min(IMPORT_BATCH_MAX, upto - server.codes)
        codes = [{"code": bench_code(server.codes + i), "pin": None} for i in range(count)]
        body = {"sku": SKU, "codes": codes}
        reply = call("POST", server.base_url + "/v1/batches", body, server.admin_headers)
        imported = reply.body.get("imported") if isinstance(reply.body, dict) else None
        if reply.status not in (200, 201) or imported != count:
            raise NotMeasured(f"POST /v1/batches answered {reply.status}: {str(reply.body)[:300]}")
        server.codes += count


# ----- one sample --------------------------------------------------------------------------------


def redeem_codes_needed(rate: float, seconds: int, sizes: Sizes) -> int:
    """Codes for ``seconds`` of redeems at ``rate``/s: each thread takes every ``threads``-th
    code, so allow one more round per thread, and the requests in flight at the end."""
    return math.ceil(rate * seconds) + sizes.threads + sizes.connections


def count_redeemed(target: Target, server: Server) -> int:
    """Redemptions the server has made: the dict app's counter or the SKU's stock."""
    if target.service == "dict":
        return int(call("GET", server.base_url + "/bench/stats").body["redeemed"])
    reply = call("GET", server.base_url + f"/v1/skus/{SKU}/stock", None, server.admin_headers)
    if reply.status != 200:
        raise ValueError(f"GET /v1/skus/{SKU}/stock answered {reply.status}: {reply.body}")
    return int(find_field(reply.body, "redeemed"))


def find_field(body: Any, name: str) -> Any:
    """``body[name]``, or the first nested dict's ``name`` (the stock shape is not fixed yet)."""
    if isinstance(body, dict):
        if name in body:
            return body[name]
        for value in body.values():
            if isinstance(value, dict) and name in value:
                return value[name]
    raise ValueError(f"no {name!r} in {str(body)[:300]}")


def settled_redeemed(target: Target, server: Server) -> int:
    """The redemption count once it stops moving: requests in flight when wrk stopped finish
    on the server just after."""
    last = count_redeemed(target, server)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = count_redeemed(target, server)
        if now == last:
            return now
        last = now
    raise ValueError(f"redemption count still moving after {SETTLE_TIMEOUT_S} s")


@dataclass
class Sample:
    """One measured run of one target, with its checks; only ``ok`` samples are figures."""

    target: str
    repeat: int
    ok: bool
    reasons: list[str]
    run: WrkRun
    warmup: WrkRun | None
    server_cpu_us_per_request: float
    loadavg_before: list[float]
    checks: dict[str, Any]


def response_checks(run: WrkRun, phase: str) -> list[str]:
    """Why a wrk run cannot count, if it cannot: no requests, a non-2xx, a socket error."""
    reasons = []
    if run.requests <= 0:
        reasons.append(f"{phase}: no requests completed")
    if run.non_2xx:
        reasons.append(f"{phase}: {run.non_2xx} non-2xx responses")
    if run.socket_error_count:
        reasons.append(f"{phase}: socket errors {run.socket_errors}")
    return reasons


def script_args(target: Target, start: int, sizes: Sizes, tag: str) -> list[str]:
    """The arguments after ``--`` of the target's wrk script (see ``bench/wrk/*.lua``)."""
    if target.script == "redeem":
        return [str(start), str(sizes.threads), tag]
    if target.script == "verify":
        return ["0", str(VERIFY_CODES)]
    return []


def next_start(run: WrkRun, start: int, sizes: Sizes) -> int:
    """The first code after every code a redeem run may have reached."""
    assert run.sent_max is not None, "redeem.lua did not report sent_max"
    return start + run.sent_max * sizes.threads


def prepare_codes(target: Target, server: Server, upto: int) -> None:
    """Make codes below ``upto`` exist: our API imports them; the dict app's codes are fixed at
    start-up (sized for ``RATE_CAP``), and the after-run check reports a shortfall."""
    if target.service == "cardsvc":
        import_codes(server, upto)


def measure_on(target: Target, server: Server, wrk: str, sizes: Sizes, repeat: int) -> Sample:
    """Warm up, measure and check one target on its running server."""
    url = server.base_url + target.path
    tag = f"r{repeat}"
    warmup: WrkRun | None = None
    start = 0
    if target.script == "verify":
        prepare_codes(target, server, VERIFY_CODES)
    if target.script == "redeem":
        prepare_codes(target, server, redeem_codes_needed(RATE_CAP, sizes.warmup_s, sizes))
    if sizes.warmup_s > 0:
        args = script_args(target, start, sizes, f"{tag}w")
        warmup = run_wrk(wrk, sizes, sizes.warmup_s, url, target.script, args, server.headers)
        if target.script == "redeem":
            start = next_start(warmup, start, sizes)
            rate = max(warmup.rps * 2, 1_000)
            prepare_codes(
                target, server, start + redeem_codes_needed(rate, sizes.duration_s, sizes)
            )
    load = list(os.getloadavg())
    cpu_before = server.cpu_seconds()
    args = script_args(target, start, sizes, tag)
    run = run_wrk(wrk, sizes, sizes.duration_s, url, target.script, args, server.headers)
    cpu = server.cpu_seconds() - cpu_before
    reasons = response_checks(run, "run") + (response_checks(warmup, "warm-up") if warmup else [])
    checks = after_run_checks(target, server, run, warmup, start, sizes, reasons)
    return Sample(
        target=target.key,
        repeat=repeat,
        ok=not reasons,
        reasons=reasons,
        run=run,
        warmup=warmup,
        server_cpu_us_per_request=cpu / max(run.requests, 1) * 1e6,
        loadavg_before=load,
        checks=checks,
    )


def after_run_checks(
    target: Target,
    server: Server,
    run: WrkRun,
    warmup: WrkRun | None,
    start: int,
    sizes: Sizes,
    reasons: list[str],
) -> dict[str, Any]:
    """The checks after a run; failures are appended to ``reasons``. Returns what was checked."""
    if target.script == "verify":
        return verify_spot_check(server, target, reasons)
    if target.script != "redeem":
        return {}
    runs = [r for r in (warmup, run) if r is not None]
    ok = sum(r.ok_responses for r in runs)
    sent = sum(r.sent or 0 for r in runs)
    redeemed = settled_redeemed(target, server)
    reached = next_start(run, start, sizes)
    reasons += redeem_count_reasons(redeemed, ok, sent, reached, server.codes)
    if target.service == "dict":
        stats = call("GET", server.base_url + "/bench/stats").body
        if stats["replayed"] or stats["refused"]:
            reasons.append(f"the dict app replayed or refused requests: {stats}")
    return {
        "redeemed": redeemed,
        "ok_responses": ok,
        "requests_built": sent,
        "in_flight_at_stop": redeemed - ok,
        "codes_seeded": server.codes,
        "codes_reached": reached,
    }


def redeem_count_reasons(redeemed: int, ok: int, sent: int, reached: int, seeded: int) -> list[str]:
    """Why the server's redemption count does not match what wrk saw, if it does not: every 2xx
    is a redemption, and nothing but the requests built (sent or in flight) can be one; and the
    codes the run may have reached were all seeded."""
    reasons = []
    if not ok <= redeemed <= sent:
        reasons.append(f"redeemed {redeemed} outside [2xx {ok}, requests built {sent}]")
    if reached > seeded:
        reasons.append(f"ran out of codes: reached {reached}, seeded {seeded}")
    return reasons


def verify_spot_check(server: Server, target: Target, reasons: list[str]) -> dict[str, Any]:
    """A few codes of the verified range, verified again: each must answer 200 ``valid``."""
    statuses = []
    for index in SPOT_CHECKS:
        body = {"code": bench_code(index)}
        reply = call("POST", server.base_url + target.path, body, server.headers)
        status = reply.body.get("status") if isinstance(reply.body, dict) else None
        statuses.append([reply.status, status])
        if reply.status != 200 or status != "valid":
            reasons.append(f"verify of a seeded code answered {reply.status} {reply.body}")
    return {"spot_checks": statuses}


def measure_sample(target: Target, wrk: str, sizes: Sizes, repeat: int) -> Sample:
    """Start a fresh server for ``target``, measure it once and stop it.

    Raises NotMeasured when the server does not start, wrk fails, or (our API only, which is
    being built beside this benchmark) an answer lacks what the contract promises."""
    unexpected: tuple[type[Exception], ...] = (OSError, ValueError)
    if target.service == "cardsvc":
        unexpected += (KeyError, TypeError, AssertionError)
    with tempfile.TemporaryDirectory(prefix=f"cardsvc-http-{target.key}-") as tmp:
        work_dir = Path(tmp)
        try:
            if target.service == "cardsvc":
                context = cardsvc_server(target, work_dir)
            else:
                context = baseline_server(target, sizes, work_dir)
            with context as server:
                return measure_on(target, server, wrk, sizes, repeat)
        except NotMeasured:
            raise
        except unexpected as err:
            log_path = work_dir / "server.log"
            tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
            raise NotMeasured(f"{type(err).__name__}: {err}; server log: {tail}") from err


# ----- report ------------------------------------------------------------------------------------


@dataclass
class Report:
    """Every sample of the run, the targets that were not measured and why."""

    samples: list[Sample] = field(default_factory=list)
    not_measured: dict[str, str] = field(default_factory=dict)

    def accepted(self, key: str) -> list[Sample]:
        return [s for s in self.samples if s.target == key and s.ok]

    def measurement(self, key: str) -> Measurement | None:
        accepted = self.accepted(key)
        if not accepted:
            return None
        found = Measurement(key, "http", "req/s", [s.run.rps for s in accepted])
        found.info["samples"] = [s.repeat for s in accepted]
        return found

    def best(self, key: str) -> Sample | None:
        accepted = self.accepted(key)
        return max(accepted, key=lambda s: s.run.rps) if accepted else None

    def median_ratio(self, key: str, base: str) -> float | None:
        """The median over repeats of this target's rate over ``base``'s in the same repeat."""
        bases = {s.repeat: s.run.rps for s in self.accepted(base)}
        ratios = [s.run.rps / bases[s.repeat] for s in self.accepted(key) if s.repeat in bases]
        return statistics.median(ratios) if ratios else None


def fmt_ms(value: float) -> str:
    return f"{value:,.1f} ms" if value >= 10 else f"{value:,.2f} ms"


def issue_figure(key: str) -> str:
    figure = ISSUE_FIGURES.get(key)
    if figure is None:
        return "-"
    parts = [f"{figure / ISSUE_FIGURES['raw']:.2f}x raw"] if key != "raw" else []
    if key == "dict_redeem":
        parts.append(f"{figure / ISSUE_FIGURES['noop']:.2f}x no-op")
    return f"{figure:,}" + (f" ({', '.join(parts)})" if parts else "")


def errors_cell(report: Report, key: str) -> str:
    samples = [s for s in report.samples if s.target == key]
    non_2xx = sum(s.run.non_2xx for s in samples)
    sockets = sum(s.run.socket_error_count for s in samples)
    rejected = sum(not s.ok for s in samples)
    cell = f"{non_2xx} non-2xx, {sockets} socket"
    return cell + (f"; {rejected} of {len(samples)} samples rejected" if rejected else "")


def markdown(report: Report, targets: list[Target]) -> str:
    """One row per target: best req/s, median ratios, latency, server CPU, errors."""
    lines = [
        "| target | req/s (best) | / raw ASGI (median) | / FastAPI no-op (median) | p50 | p99 "
        "| server CPU / request | errors | issue 4's figure |",
        "|---|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for target in targets:
        best = report.best(target.key)
        if best is None:
            reason = report.not_measured.get(target.key, "no sample passed its checks")
            reason = reason.replace("|", "/").replace("\n", " ")[:200]
            lines.append(f"| {target.label} | not measured: {reason} | | | | | | | |")
            continue
        ratios = [report.median_ratio(target.key, base) for base in ("raw", "noop")]
        cells = [
            target.label,
            f"{best.run.rps:,.0f}",
            *("-" if r is None else f"{r:.2f}x" for r in ratios),
            fmt_ms(best.run.latency_ms["p50"]),
            fmt_ms(best.run.latency_ms["p99"]),
            f"{best.server_cpu_us_per_request:,.0f} µs",
            errors_cell(report, target.key),
            issue_figure(target.key),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions(wrk: str) -> dict[str, str]:
    out = {"python": sys.version.split()[0], "wrk": wrk_version(wrk), "wrk_path": wrk}
    for name in ("uvicorn", "fastapi", "starlette", "pydantic", "uvloop", "httptools"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def short_commit() -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        return None  # not a git checkout: the results then carry no commit
    return proc.stdout.strip() or None


# ----- main --------------------------------------------------------------------------------------


def parse_targets(text: str) -> list[str]:
    """``--targets``: target keys, comma-separated; they run in ``TARGETS`` order."""
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = sorted(set(keys) - set(TARGET_KEYS))
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"targets are some of {', '.join(TARGET_KEYS)}")
    return [key for key in TARGET_KEYS if key in keys]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="HTTP figures of issue 4 with wrk")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 1 s (a smoke run)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up before it (default 2)")
    parser.add_argument("--repeats", type=int, help="samples per target (default 3)")
    parser.add_argument("--connections", type=int, help="wrk connections (default 64)")
    parser.add_argument("--threads", type=int, help="wrk threads (default 2)")
    parser.add_argument(
        "--targets", type=parse_targets, default=list(TARGET_KEYS),
        help=f"comma-separated, some of {','.join(TARGET_KEYS)} (default all)",
    )  # fmt: skip
    parser.add_argument("--wrk", help="wrk binary (default $CARDSVC_WRK, then PATH)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "http_latest.json")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    overrides = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeats": args.repeats,
        "connections": args.connections,
        "threads": args.threads,
    }
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    if sizes.duration_s < 1 or sizes.warmup_s < 0 or sizes.repeats < 1:
        raise SystemExit(
            "--duration must be >= 1 s, --warmup >= 0 s, --repeats >= 1 (wrk: whole s)"
        )
    if sizes.threads < 1 or sizes.connections < sizes.threads:
        raise SystemExit("need --threads >= 1 and --connections >= --threads")
    return sizes


def measure_all(targets: list[Target], wrk: str, sizes: Sizes) -> Report:
    """Every target once per repeat, interleaved; a target that cannot start is not retried."""
    report = Report()
    for repeat in range(sizes.repeats):
        for target in targets:
            if target.key in report.not_measured:
                continue
            try:
                sample = measure_sample(target, wrk, sizes, repeat)
            except NotMeasured as err:
                report.not_measured[target.key] = str(err)
                log(f"{target.label}: not measured: {str(err)[:300]}")
                continue
            report.samples.append(sample)
            verdict = "ok" if sample.ok else "REJECTED: " + "; ".join(sample.reasons)
            log(
                f"repeat {repeat} {target.label}: {sample.run.rps:,.0f} req/s, p50 "
                f"{fmt_ms(sample.run.latency_ms['p50'])}, p99 "
                f"{fmt_ms(sample.run.latency_ms['p99'])}, server CPU "
                f"{sample.server_cpu_us_per_request:,.0f} µs/req, {verdict}"
            )
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    wrk = args.wrk or find_wrk()
    if wrk is None:
        raise SystemExit("wrk not found: run scripts/ensure_wrk.sh (or scripts/bench_http.sh)")
    targets = [t for t in TARGETS if t.key in args.targets]
    machine = machine_description() | {"loadavg_start": list(os.getloadavg())}
    report = measure_all(targets, wrk, sizes)
    machine["loadavg_end"] = list(os.getloadavg())
    cardsvc_targets = [t for t in targets if t.service == "cardsvc"]
    table = markdown(report, targets) + (
        f"\n\nwrk {sizes.threads} threads, {sizes.connections} connections, {sizes.warmup_s} s "
        f"warm-up + {sizes.duration_s} s per sample, {sizes.repeats} repeat(s) interleaved, each "
        "sample on a fresh server (one uvicorn worker, uvloop, httptools); best sample shown."
        + (f" cardsvc runs with {ENV_RISK_LIMITS}=off." if cardsvc_targets else "")
        + f"\nLoad average (1, 5, 15 min) at start / end: "
        f"{', '.join(f'{v:.2f}' for v in machine['loadavg_start'])} / "
        f"{', '.join(f'{v:.2f}' for v in machine['loadavg_end'])} on {machine['nproc']} CPUs."
    )
    measurements = [m for m in map(report.measurement, (t.key for t in targets)) if m]
    out = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit() | {"short": short_commit()},
        "machine": machine,
        "versions": versions(wrk),
        "args": {k: str(v) for k, v in vars(args).items()},
        "sizes": asdict(sizes),
        "config": {
            "uvicorn_args": UVICORN_ARGS,
            "wrk_timeout": WRK_TIMEOUT,
            "cardsvc_env": {ENV_RISK_LIMITS: "off"} if cardsvc_targets else {},
            "issue_figures": ISSUE_FIGURES,
        },
        "targets": [asdict(t) for t in targets],
        "not_measured": report.not_measured,
        "measurements": [m.to_json() for m in measurements],
        "ratios_median": {
            t.key: {base: report.median_ratio(t.key, base) for base in ("raw", "noop")}
            for t in targets
        },
        "samples": [asdict(s) for s in report.samples],
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(table)
    log(f"wrote {args.out}")
    rejected = [s for s in report.samples if not s.ok]
    baselines_missing = [
        t.key
        for t in targets
        if t.service != "cardsvc" and (t.key in report.not_measured or not report.best(t.key))
    ]
    return 1 if rejected or baselines_missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
