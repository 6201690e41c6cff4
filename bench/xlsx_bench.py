"""XLSX readers side by side: openpyxl, python-calamine and cardsvc's bounded reader.

Goal: choose the XLSX reader on measured speed, memory and behaviour on hostile files, all in
one run. The candidates:

* ``openpyxl``: ``load_workbook(read_only=True, data_only=True)``, ``reset_dimensions()``,
  ``iter_rows(values_only=True)`` (the reader until issue 10);
* ``calamine``: python-calamine (Rust), ``CalamineWorkbook.from_path(...).get_sheet_by_index(0)
  .iter_rows()``;
* ``guard+calamine``: cardsvc's bounded reader run to the end first (every bound checked), then
  calamine: what keeping calamine behind a pre-parse guard would cost;
* ``cardsvc``: ``cardsvc.catalog.codefile.xlsx_file.xlsx_records`` (the zip checked, then the
  sheet streamed through expat, no padding, every cell bounded while parsing);
* ``cardsvc scan``: ``codefile.scan`` on the same file (the reader plus validation and the
  in-file duplicate table), to compare with the CSV figure of issue 5.

Files (written once, outside any clock, by ``bench.xlsx_files``): ``code,pin`` workbooks of
100k and 1M rows (text in the shared-strings table, as Excel writes it); ``xfd``: a code per row
and one cell in column XFD (the tester's file); ``huge_string``: one inline string of 1 GiB
(~1 MB on disk); ``zip_bomb``: a 1 GiB member of zeros.

Method: each (reader, file) pair runs in a fresh interpreter (``--measure``), so its peak RSS
(VmHWM growth) is its own, under an address-space limit (``--memory-gib``, default 6) and a
wall-clock timeout (``--timeout-s``, default 120): a reader that exhausts either is reported
with that outcome instead of taking the machine down. The child checks what it read: every
row of a good workbook, in order, with the right first code; for cardsvc on a hostile file the
coded refusal. Output: JSON (``--out``) and a Markdown table on stdout.

    .venv/bin/python -m bench.xlsx_bench                  # full run (~5 min)
    .venv/bin/python -m bench.xlsx_bench --rows 2000 --hostile-small   # seconds
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import xlsx_files
from bench.common import REPO, read_status_kib

READERS = ("openpyxl", "calamine", "cardsvc", "openpyxl scan", "calamine scan",
           "guard+calamine scan", "cardsvc scan")
ROWS_DEFAULT = (100_000, 1_000_000)
GIB = 1 << 30


def _openpyxl_cells(path: Path) -> Iterator[tuple[int, Sequence[object]]]:
    import openpyxl  # type: ignore[import-untyped]

    workbook = openpyxl.load_workbook(path.open("rb"), read_only=True, data_only=True)
    sheet = workbook.worksheets[0]
    sheet.reset_dimensions()
    yield from enumerate(sheet.iter_rows(values_only=True), start=1)
    workbook.close()


def _calamine_cells(path: Path) -> Iterator[tuple[int, Sequence[object]]]:
    from python_calamine import CalamineWorkbook

    workbook = CalamineWorkbook.from_path(str(path))
    yield from enumerate(workbook.get_sheet_by_index(0).iter_rows(), start=1)
    workbook.close()


def _cardsvc_cells(path: Path) -> Iterator[tuple[int, Sequence[object]]]:
    from cardsvc.catalog.codefile import CodeFileLimits
    from cardsvc.catalog.codefile.xlsx_file import xlsx_records

    yield from xlsx_records(path, CodeFileLimits())


def _count(records: Iterator[tuple[int, Sequence[object]]]) -> tuple[int, object]:
    """Rows read and the first cell of the second row (the first code)."""
    count, second = 0, None
    for _, cells in records:
        count += 1
        if count == 2:
            second = cells[0]
    return count, second


def _scan_cells(records: Iterator[tuple[int, Sequence[object]]]) -> tuple[int, object]:
    """What ``codefile.scan`` does with the rows of any reader: the header's layout, each row
    checked, valid rows into the in-file duplicate table (before issue 10 this was ``scan``
    over openpyxl). Returns the rows read and the problem count."""
    from cardsvc.catalog.codefile import CodeFileLimits
    from cardsvc.catalog.codefile.duplicates import DuplicateFinder
    from cardsvc.catalog.codefile.rows import check_row, is_blank, layout_of

    limits = CodeFileLimits()
    duplicates = DuplicateFinder()
    seen = problems = 0
    layout = None
    for line, cells in records:
        seen += 1
        if layout is None:
            if not is_blank(cells):
                layout = layout_of(line, cells, limits)
            continue
        result = check_row(line, cells, layout)
        if isinstance(result, list):
            problems += len(result)
        elif result is not None:
            duplicates.add(line, result[1])
    duplicates.finish(limits.duplicates_listed_max)
    return seen, problems


def _guarded_calamine_scan(path: Path) -> tuple[int, object]:
    _count(_cardsvc_cells(path))  # every bound checked first; raises if one is exceeded
    return _scan_cells(_calamine_cells(path))


def _cardsvc_scan(path: Path) -> tuple[int, object]:
    from cardsvc.catalog.codefile import scan

    report = scan(path)
    return report.rows + 1, report.problem_count


RUNS: dict[str, Callable[[Path], tuple[int, object]]] = {
    "openpyxl": lambda path: _count(_openpyxl_cells(path)),
    "calamine": lambda path: _count(_calamine_cells(path)),
    "cardsvc": lambda path: _count(_cardsvc_cells(path)),
    "openpyxl scan": lambda path: _scan_cells(_openpyxl_cells(path)),
    "calamine scan": lambda path: _scan_cells(_calamine_cells(path)),
    "guard+calamine scan": _guarded_calamine_scan,
    "cardsvc scan": _cardsvc_scan,
}
SCANS = frozenset(name for name in RUNS if name.endswith("scan"))
_ROWS = "cardsvc.catalog.codefile.rows"
_MODULES = {
    "openpyxl": ("openpyxl",), "calamine": ("python_calamine",),
    "cardsvc": ("cardsvc.catalog.codefile.xlsx_file",),
    "openpyxl scan": ("openpyxl", _ROWS), "calamine scan": ("python_calamine", _ROWS),
    "guard+calamine scan": ("python_calamine", "cardsvc.catalog.codefile.xlsx_file", _ROWS),
    "cardsvc scan": ("cardsvc.catalog.codefile",),
}


def measure(reader: str, path: Path, rows: int | None, first_code: str | None) -> dict[str, Any]:
    """Runs ``reader`` over ``path`` here; checks it and returns its figures."""
    from cardsvc.errors import CardsvcError

    for module in _MODULES[reader]:  # imported outside the clock and the RSS baseline
        importlib.import_module(module)
    rss_before_kib = read_status_kib("VmRSS")
    start = time.perf_counter()
    outcome: str = "read"
    count = 0
    try:
        count, second = RUNS[reader](path)
        if rows is not None:
            assert count == rows + 1, (count, rows)
            if reader in SCANS:
                assert second == 0, f"{second} problems in a clean workbook"
            else:
                assert second == first_code, (second, first_code)
        elif reader in SCANS:
            outcome = f"read, {second} problems"
    except CardsvcError as error:
        outcome = (f"refused {error.code.value} {error.details.get('field')}:"
                   f"{error.details.get('reason', error.details.get('max'))}")
    except MemoryError:
        outcome = "MemoryError"
    seconds = time.perf_counter() - start
    return {
        "reader": reader, "file": path.name, "outcome": outcome, "rows": count,
        "seconds": round(seconds, 3),
        "rows_per_second": round(count / seconds) if count and outcome == "read" else None,
        "peak_rss_growth_mib": round((read_status_kib("VmHWM") - rss_before_kib) / 1024, 1),
    }


def _limit_memory(gib: float) -> Callable[[], None]:
    def apply() -> None:
        limit = int(gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def measure_in_subprocess(reader: str, path: Path, rows: int | None, first_code: str | None,
                          memory_gib: float, timeout_s: float) -> dict[str, Any]:
    """``measure`` in a fresh interpreter under the memory and time limits."""
    command = [sys.executable, "-m", "bench.xlsx_bench", "--measure", reader, "--file",
               str(path), "--memory-gib", str(memory_gib)]
    if rows is not None and first_code is not None:
        command += ["--expect-rows", str(rows), "--expect-first", first_code]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout_s, check=False,
                              preexec_fn=_limit_memory(memory_gib))
    except subprocess.TimeoutExpired:
        return {"reader": reader, "file": path.name, "outcome": f"timeout after {timeout_s:g} s",
                "rows": None, "seconds": round(time.perf_counter() - start, 1),
                "rows_per_second": None, "peak_rss_growth_mib": None}
    if proc.returncode != 0:
        died = (f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
                else f"exit {proc.returncode}")
        last = (proc.stderr.strip().splitlines() or [""])[-1][:160]
        return {"reader": reader, "file": path.name, "outcome": f"{died}: {last}",
                "rows": None, "seconds": round(time.perf_counter() - start, 1),
                "rows_per_second": None, "peak_rss_growth_mib": None}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def write_files(folder: Path, rows: list[int], small: bool) -> list[tuple[Path, int | None]]:
    """The benchmark's files with their expected data rows (None: a hostile file)."""
    files: list[tuple[Path, int | None]] = []
    for count in rows:
        files.append((xlsx_files.write_big_xlsx(folder / f"codes-{count}.xlsx", count), count))
    scale = 1 / 64 if small else 1.0
    files.append((xlsx_files.xfd_columns(folder / "xfd.xlsx", int(20_000 * scale)), None))
    files.append((xlsx_files.huge_inline_string(folder / "huge_string.xlsx", int(GIB * scale)),
                  None))
    files.append((xlsx_files.zip_bomb(folder / "zip_bomb.xlsx", int(GIB * scale),
                                      in_sheet=True), None))
    return files


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| file | reader | outcome | seconds | rows/s | peak RSS growth MiB |",
             "|---|---|---|--:|--:|--:|"]
    for r in results:
        rate = f"{r['rows_per_second']:,}" if r["rows_per_second"] else "-"
        rss = r["peak_rss_growth_mib"] if r["peak_rss_growth_mib"] is not None else "-"
        lines.append(f"| {r['file']} | {r['reader']} | {r['outcome']} | {r['seconds']} | "
                     f"{rate} | {rss} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS_DEFAULT))
    parser.add_argument("--hostile-small", action="store_true",
                        help="hostile files at 1/64 of their size (for the tests)")
    parser.add_argument("--readers", nargs="+", choices=READERS, default=list(READERS))
    parser.add_argument("--memory-gib", type=float, default=6.0)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--measure", choices=READERS, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--expect-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expect-first", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.file, args.expect_rows, args.expect_first)))
        return 0
    first_code = next(xlsx_files.random_codes(1))[0]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="xlsx-bench-") as tmp:
        files = write_files(Path(tmp), args.rows, args.hostile_small)
        sizes = {path.name: path.stat().st_size for path, _ in files}
        for path, rows in files:
            for reader in args.readers:
                if rows is None and reader == "guard+calamine scan":
                    continue  # the guard's outcome is the "cardsvc" row's
                results.append(measure_in_subprocess(
                    reader, path, rows, first_code if rows else None, args.memory_gib,
                    args.timeout_s))
    summary = {"file_bytes": sizes, "memory_gib": args.memory_gib, "timeout_s": args.timeout_s,
               "results": results}
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
