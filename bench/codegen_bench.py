"""Issue 5's generation benchmark: how long ``cardsvc.catalog.codegen.generate`` takes for 1,000,000
codes of the default format (16 random characters of 32, a check character, groups of 4, no
PIN). Target: under 5 s on the 2-core reference machine. The figure and PASS/MISS are printed and
kept in ``bench/results/codegen_latest.json``.

Method: one untimed run first, checked in full (every code distinct, of the format's layout,
with a check character that folds to 0, and no PIN), so that a fast wrong generator cannot pass;
then ``--repeats`` timed runs, each checked for count and distinctness, and the best is reported
next to the median. The clock runs with the garbage collector enabled, as a caller sees it.
With ``--count`` other than 1,000,000 the 5 s target is scaled linearly and marked so.

Expected cost, sketched before building: 16 MB from the OS CSPRNG (getrandom, about 1 GB/s:
~20 ms), a few dozen C-speed passes over 1 MB columns for the mapping and the check fold
(``bytes.translate``, big-integer XOR; ~50 ms), one strided copy per character into the layout,
one decode and split (~150 ms), then the Python objects: a million strings, a set to prove them
distinct and a million tuples (~300 ms). About half a second in all, a tenth of the target.

Usage::

    python -m bench.codegen_bench                  # 1,000,000 codes, best of 3
    python -m bench.codegen_bench --count 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine_description, rate
from bench.run_all import RESULTS_DIR, git_commit, log
from cardsvc.catalog.codegen import CodeFormat, fold, generate, scheme_for

TARGET_COUNT = 1_000_000
TARGET_SECONDS = 5.0


@dataclass(frozen=True)
class Result:
    """The timed samples of one configuration, and the verdict against the target."""

    count: int
    samples_s: list[float]
    threshold_s: float
    scaled: bool

    @property
    def best_s(self) -> float:
        return min(self.samples_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def codes_per_s(self) -> float:
        return rate(self.count, self.best_s)

    @property
    def passed(self) -> bool:
        return self.best_s < self.threshold_s

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"best_s": self.best_s, "median_s": self.median_s,
                               "codes_per_s": self.codes_per_s, "passed": self.passed}


def layout_pattern(fmt: CodeFormat) -> re.Pattern[str]:
    """The displayed form of an unprefixed, grouped code: groups of ``fmt.group`` alphabet
    characters joined by the separator, the last group shorter."""
    char = "[" + re.escape(fmt.alphabet) + "]"
    full, last = divmod(fmt.length + int(fmt.check), fmt.group)
    groups = [f"{char}{{{fmt.group}}}"] * full + ([f"{char}{{{last}}}"] if last else [])
    return re.compile(re.escape(fmt.separator).join(groups))


def check_batch(fmt: CodeFormat, pairs: list[tuple[str, str | None]], count: int) -> None:
    """Asserts that ``pairs`` is ``count`` distinct codes of ``fmt`` (an unprefixed, grouped
    format with a check character and no PIN), every one laid out and checked correctly."""
    assert len(pairs) == count, len(pairs)
    codes = [code for code, _ in pairs]
    assert len(set(codes)) == count, "duplicate codes"
    assert all(pin is None for _, pin in pairs), "a PIN where the format has none"
    pattern = layout_pattern(fmt)
    assert all(pattern.fullmatch(code) for code in codes), "a code is not of the layout"
    scheme = scheme_for(len(fmt.alphabet))
    index = {char: i for i, char in enumerate(fmt.alphabet)}
    for code in codes:
        values = [index[char] for char in code.replace(fmt.separator, "")]
        assert fold(scheme, values) == 0, "a check character does not fold to 0"


def timed_generate(fmt: CodeFormat, count: int) -> tuple[list[tuple[str, str | None]], float]:
    gc.collect()
    start = time.perf_counter()
    pairs = generate(fmt, count)
    return pairs, time.perf_counter() - start


def measure(fmt: CodeFormat, count: int, repeats: int) -> Result:
    """Checks one full run, then times ``repeats`` runs (each checked for count and
    distinctness)."""
    check_batch(fmt, generate(fmt, count), count)
    log(f"checked {count:,} codes: distinct, laid out, check characters valid")
    samples: list[float] = []
    for repeat in range(repeats):
        pairs, seconds = timed_generate(fmt, count)
        assert len(pairs) == count and len({code for code, _ in pairs}) == count
        samples.append(seconds)
        log(f"sample {repeat + 1}/{repeats}: {seconds:.3f} s")
        del pairs
    threshold = TARGET_SECONDS * count / TARGET_COUNT
    return Result(count, samples, threshold, scaled=count != TARGET_COUNT)


def summary(result: Result) -> str:
    verdict = "PASS" if result.passed else "MISS"
    scaled = " (scaled to the count)" if result.scaled else ""
    return (
        f"generate {result.count:,} codes (default format): best {result.best_s:.3f} s, "
        f"median {result.median_s:.3f} s, {result.codes_per_s:,.0f} codes/s; "
        f"target < {result.threshold_s:.3g} s{scaled}: {verdict}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="generation of self-issued codes (issue 5)")
    parser.add_argument("--count", type=int, default=TARGET_COUNT, help="codes per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the best counts)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "codegen_latest.json")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeats < 1:
        parser.error("--count and --repeats must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fmt = CodeFormat()
    machine = machine_description()
    result = measure(fmt, args.count, args.repeats)
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine,
        "python": sys.version.split()[0],
        "args": {k: str(v) for k, v in vars(args).items()},
        "format": fmt.to_dict(),
        "result": result.to_json(),
        "summary": summary(result),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(result))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
