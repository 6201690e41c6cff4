"""Reading a code file: detect its format, scan it whole, then read it in chunks of valid rows."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path
from typing import TextIO

from cardsvc.catalog.codefile.csv_file import csv_records
from cardsvc.catalog.codefile.duplicates import DuplicateFinder
from cardsvc.catalog.codefile.report import write_report_rows
from cardsvc.catalog.codefile.rows import check_row, is_blank, layout_of
from cardsvc.catalog.codefile.values import (
    CHUNK_ROWS_DEFAULT,
    DEFAULT_LIMITS,
    PROGRESS_EVERY_ROWS,
    XLS_MAGIC,
    XLSX_MAGIC,
    XLSX_SUFFIXES,
    Budget,
    CodeFileLimits,
    CodeRow,
    DuplicateRow,
    FileEncoding,
    FileFormat,
    ImportMode,
    Layout,
    Records,
    RowProblem,
    ScanReport,
    encoding_of,
    mode_of,
)
from cardsvc.catalog.codefile.xlsx_file import xlsx_records
from cardsvc.engine import BATCH_ITEMS_MAX
from cardsvc.errors import CardsvcError, ErrorCode, make_error

# --- public functions --------------------------------------------------------------------------


def detect_format(path: Path) -> FileFormat:
    """The format of the file at ``path``: magic bytes first, then the extension.

    Raises INVALID_ARGUMENT (``details["reason"]`` ``unsupported_format``) for the old binary
    XLS format or an ``.xlsx`` name on a file that is not a zip; OSError if unreadable.
    """
    with path.open("rb") as handle:
        magic = handle.read(len(XLSX_MAGIC))
    if magic == XLSX_MAGIC:
        return FileFormat.XLSX
    if magic == XLS_MAGIC or path.suffix.lower() in XLSX_SUFFIXES:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "the file is not CSV or XLSX (an old .xls, or a workbook with a password): save "
            "it as .xlsx without a password, or as CSV UTF-8",
            {"field": "file", "reason": "unsupported_format"},
        )
    return FileFormat.CSV


def scan(
    path: Path,
    *,
    limits: CodeFileLimits = DEFAULT_LIMITS,
    progress: Callable[[int], None] | None = None,
    encoding: FileEncoding | str = FileEncoding.UTF8,
    budget: Budget | None = None,
) -> ScanReport:
    """Reads the whole file once and reports rows, problems and duplicates within the file.

    Reads only; memory as the module docstring says. ``progress`` (if given) is called with the
    line number reached every ``PROGRESS_EVERY_ROWS`` lines. ``encoding`` applies to CSV only.
    ``budget`` (default: a new one of ``limits.cpu_seconds_max``) is checked while reading; pass
    the same one to :func:`read_codes` to bound both passes together.
    Raises INVALID_ARGUMENT (``details["reason"]``: a bad header, malformed CSV quoting, an
    encoding problem, an empty or blank file, unreadable XLSX, an unsupported format; see
    docs/import.md) or LIMIT_EXCEEDED (``details`` ``{"field": "rows" | "line_length" |
    "columns" | "xlsx_*" | "cpu_seconds", "max": n}``); OSError if the file cannot be read.
    """
    duplicates = DuplicateFinder()
    problems: list[RowProblem] = []
    problem_count = rows = valid_rows = 0
    budget = budget if budget is not None else Budget(limits.cpu_seconds_max)
    opened = _open_rows(path, limits, encoding_of(encoding), budget)
    with opened as (file_format, layout, records):
        for line, cells in records:
            if progress is not None and line % PROGRESS_EVERY_ROWS == 0:
                progress(line)
            result = check_row(line, cells, layout)
            if result is None:
                continue
            rows += 1
            if isinstance(result, list):
                problem_count += len(result)
                room = limits.problems_listed_max - len(problems)
                problems.extend(result[:room] if room > 0 else ())
            else:
                valid_rows += 1
                duplicates.add(line, result[1])
    listed, duplicate_count = duplicates.finish(limits.duplicates_listed_max)
    return ScanReport(
        format=file_format,
        rows=rows,
        valid_rows=valid_rows,
        problems=tuple(problems),
        problem_count=problem_count,
        duplicates=listed,
        duplicate_count=duplicate_count,
        has_pin=layout.pin is not None,
        has_valid_until=layout.valid_until is not None,
        ignored_columns=layout.ignored,
    )


def read_codes(
    path: Path,
    *,
    chunk_rows: int = CHUNK_ROWS_DEFAULT,
    mode: ImportMode | str = ImportMode.ALL_OR_NOTHING,
    limits: CodeFileLimits = DEFAULT_LIMITS,
    encoding: FileEncoding | str = FileEncoding.UTF8,
    budget: Budget | None = None,
) -> Iterator[list[CodeRow]]:
    """Yields the file's valid rows in line order, in lists of at most ``chunk_rows``.

    Reads only; builds one chunk at a time. In ``all_or_nothing`` mode the first invalid row
    raises INVALID_CODE, INVALID_PIN or INVALID_ARGUMENT with details ``{"line", "field",
    "reason"}`` (rows before it were already yielded: run :func:`scan` first); in ``per_row``
    mode invalid rows are skipped. Duplicates are yielded (the core rejects them). Also raises
    what :func:`scan` raises, and LIMIT_EXCEEDED / INVALID_ARGUMENT for ``chunk_rows`` outside
    1..BATCH_ITEMS_MAX. The file is closed when the iterator is exhausted or closed.
    """
    if chunk_rows > BATCH_ITEMS_MAX:
        raise make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"chunk_rows must be at most {BATCH_ITEMS_MAX}",
            {"field": "chunk_rows", "max": BATCH_ITEMS_MAX},
        )
    if chunk_rows < 1:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "chunk_rows must be positive",
            {"field": "chunk_rows", "reason": "not_positive"},
        )
    return _read_chunks(path, chunk_rows, mode_of(mode), limits, encoding_of(encoding), budget)


def merge_by_line(*sources: Iterable[DuplicateRow]) -> Iterator[DuplicateRow]:
    """The rows of ``sources`` (each in ascending line order) in one ascending line order, e.g.
    a scan's in-file duplicates with the core's earlier-batch ones. Lazy; raises nothing."""
    return heapq.merge(*sources, key=attrgetter("line"))


def write_report(
    target: Path | TextIO,
    problems: Iterable[RowProblem],
    duplicates: Iterable[DuplicateRow],
    *,
    problems_not_listed: int = 0,
    duplicates_not_listed: int = 0,
) -> int:
    """Writes the downloadable CSV report (:data:`REPORT_COLUMNS`) and returns its data rows.

    ``problems`` and ``duplicates`` must each be in ascending line order (as :func:`scan` and
    :func:`merge_by_line` give them); they are merged by line, problems first on a tie. A
    ``Path`` is created or replaced (UTF-8, CRLF rows); a stream is written to and left open.
    Every value written is a number, a machine word or a masked code (which starts with ``*``,
    so no cell is read as a spreadsheet formula). Raises OSError on write failure.
    """
    if isinstance(target, Path):
        with target.open("w", encoding="utf-8", newline="") as handle:
            return write_report_rows(
                handle, problems, duplicates, problems_not_listed, duplicates_not_listed
            )
    return write_report_rows(
        target, problems, duplicates, problems_not_listed, duplicates_not_listed
    )


# --- reading rows ------------------------------------------------------------------------------


def _read_chunks(
    path: Path, chunk_rows: int, mode: ImportMode, limits: CodeFileLimits,
    encoding: FileEncoding, budget: Budget | None,
) -> Iterator[list[CodeRow]]:
    stop_on_problem = mode is ImportMode.ALL_OR_NOTHING
    chunk: list[CodeRow] = []
    # Created here, on the reading thread, at the first next() (thread_time is per thread).
    budget = budget if budget is not None else Budget(limits.cpu_seconds_max)
    with _open_rows(path, limits, encoding, budget) as (_, layout, records):
        for line, cells in records:
            result = check_row(line, cells, layout)
            if result is None:
                continue
            if isinstance(result, list):
                if stop_on_problem:
                    raise _row_error(result[0])
                continue
            chunk.append(CodeRow(line, result[0], result[2], result[3]))
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _row_error(problem: RowProblem) -> CardsvcError:
    code = {"code": ErrorCode.INVALID_CODE, "pin": ErrorCode.INVALID_PIN}.get(
        problem.field, ErrorCode.INVALID_ARGUMENT
    )
    return make_error(
        code,
        f"line {problem.line}: {problem.field} is invalid ({problem.reason})",
        {"line": problem.line, "field": problem.field, "reason": problem.reason},
    )


@contextmanager
def _open_rows(
    path: Path, limits: CodeFileLimits, encoding: FileEncoding, budget: Budget
) -> Iterator[tuple[FileFormat, Layout, Records]]:
    """Opens the file, reads its header and yields the format, the layout and the rows after
    the header. Closes the file on exit. Raises INVALID_ARGUMENT ``empty_file`` (no row at all)
    or ``only_blank_rows`` (rows, every one blank) before any header."""
    file_format = detect_format(path)
    if file_format is FileFormat.XLSX:
        records = xlsx_records(path, limits, budget)
    else:
        records = csv_records(path, limits, encoding, budget)
    try:
        seen = 0
        for line, cells in records:
            seen = line
            if not is_blank(cells):
                yield file_format, layout_of(line, cells, limits), records
                return
        if not seen:
            raise make_error(ErrorCode.INVALID_ARGUMENT, "the file is empty",
                             {"field": "file", "reason": "empty_file"})
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            f"the file's {seen} row(s) are all blank: it holds no header and no code",
            {"field": "file", "reason": "only_blank_rows"},
        )
    finally:
        records.close()
