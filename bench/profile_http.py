"""Where a target's microseconds go: py-spy samples of the server while wrk loads it (issue 12).

One target of ``bench.http_bench`` (its server, seeding and wrk script, exactly as the benchmark
runs it) is warmed up, then ``py-spy record --pid`` samples the server process for the measured
run; the samples are summed per function, inclusive (the share of samples whose stack holds it)
and self (the share where it is the innermost frame)::

    python -m bench.profile_http cardsvc_redeem              # 6 s, GIL-holding samples
    python -m bench.profile_http cardsvc_batch_1000 --all    # every active thread's samples

``--gil`` (the default) keeps only samples of the thread holding the GIL: close to where the
process's Python CPU goes. ``--all`` counts every thread that is not idle, which includes native
waits (the journal's fdatasync, the core's calls with the GIL released).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import http_bench as hb

_SITE = re.compile(r" \(/.*?/site-packages/")
_LINE = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class Profile:
    """Sample counts per function (``name (file)``): inclusive and self, of ``total``."""

    total: int
    inclusive: Counter[str]
    own: Counter[str]

    def table(self, rows: int) -> str:
        lines = [f"{self.total} samples", "inclusive:"]
        lines += [f"{100 * n / self.total:5.1f}% {name}"
                  for name, n in self.inclusive.most_common(rows)]
        lines.append("self:")
        lines += [f"{100 * n / self.total:5.1f}% {name}" for name, n in self.own.most_common(rows)]
        return "\n".join(lines)


def summarise(raw: str) -> Profile:
    """py-spy's ``--format raw`` output (``frame;frame;... count`` per line) summed per
    function, line numbers and site-packages paths dropped."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.strip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        names = [_LINE.sub(")", _SITE.sub(" (", frame)) for frame in stack.split(";")]
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    return Profile(max(total, 1), inclusive, own)


def profile(key: str, seconds: int, gil: bool) -> tuple[Profile, hb.WrkRun]:
    """Run target ``key`` (warm-up 1 s) and sample its server for ``seconds``."""
    target = {t.key: t for t in hb.TARGETS}[key]
    if target.service != "cardsvc":
        raise SystemExit("only cardsvc targets are profiled")
    wrk = hb.find_wrk()
    if wrk is None:
        raise SystemExit("wrk not found (scripts/ensure_wrk.sh)")
    sizes = target.sized(replace_sizes(seconds))
    with tempfile.TemporaryDirectory(prefix="cardsvc-profile-") as tmp:
        work = Path(tmp)
        with hb.cardsvc_server(target, hb.ServerDatabase(work / "data"), work) as server:
            url = server.base_url + target.path
            hb.prepare_before_warmup(target, server, sizes)
            warm = hb.run_wrk(wrk, sizes, 1, url, target.script,
                              hb.script_args(target, 0, sizes, "pw"), server.headers)
            start = hb.prepare_after_warmup(target, server, warm, sizes)
            out = work / "profile.txt"
            spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                   str(server.proc.pid), "--duration", str(seconds), "--rate", "250",
                   "--format", "raw", "--nonblocking", "-o", str(out)]
            with subprocess.Popen([*spy, *(["--gil"] if gil else [])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
                run = hb.run_wrk(wrk, sizes, seconds, url, target.script,
                                 hb.script_args(target, start, sizes, "pm"), server.headers)
                _, err = proc.communicate(timeout=seconds + 60)
            if not out.exists():
                raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
            return summarise(out.read_text()), run


def replace_sizes(seconds: int) -> hb.Sizes:
    return hb.Sizes(duration_s=seconds, warmup_s=1, repeats=1, connections=64, threads=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=[t.key for t in hb.TARGETS if t.service == "cardsvc"])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--all", action="store_true", help="every active thread, not only the "
                        "GIL holder")
    args = parser.parse_args(argv)
    found, run = profile(args.target, args.seconds, gil=not args.all)
    print(f"{args.target}: {run.rps:,.0f} req/s, p99 {run.latency_ms['p99']:.1f} ms")
    print(found.table(args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
