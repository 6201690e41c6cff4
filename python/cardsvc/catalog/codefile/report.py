"""The downloadable report of a code file: problems and duplicates by line, codes masked."""

from __future__ import annotations

import csv
import heapq
from collections.abc import Iterable, Iterator
from typing import TextIO

from cardsvc.catalog.codefile.values import REPORT_COLUMNS, DuplicateRow, RowProblem

# --- report ------------------------------------------------------------------------------------


def write_report_rows(
    handle: TextIO,
    problems: Iterable[RowProblem],
    duplicates: Iterable[DuplicateRow],
    problems_not_listed: int,
    duplicates_not_listed: int,
) -> int:
    writer = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(REPORT_COLUMNS)
    written = 0
    for row in heapq.merge(
        _problem_cells(problems), _duplicate_cells(duplicates), key=_report_order
    ):
        writer.writerow(row[:1] + row[2:])
        written += 1
    for field, count in (("problems", problems_not_listed), ("duplicates", duplicates_not_listed)):
        if count > 0:
            writer.writerow(("", field, "not_listed", "", "", count))
            written += 1
    return written


_ReportCells = tuple[int, int, str, str, str, int | str, str]
"""A report row with a sort tag after the line (0: problem, 1: duplicate)."""


def _report_order(row: _ReportCells) -> tuple[int, int]:
    return row[0], row[1]


def _problem_cells(problems: Iterable[RowProblem]) -> Iterator[_ReportCells]:
    for problem in problems:
        yield problem.line, 0, problem.field, problem.reason, "", "", ""


def _duplicate_cells(duplicates: Iterable[DuplicateRow]) -> Iterator[_ReportCells]:
    for duplicate in duplicates:
        first: int | str = "" if duplicate.first_line is None else duplicate.first_line
        reason = duplicate.reason.value
        yield duplicate.line, 1, "code", reason, duplicate.masked_code, first, ""
