"""Goal: the bounded XLSX reader (``codefile.xlsx_file``) reads what openpyxl reads from the
workbooks openpyxl writes: text (XML specials, whitespace, CJK, rich text), integers, floats,
booleans, dates, datetimes, times, styled numbers, empty cells and gaps between rows, so
replacing openpyxl as the reader changed no value.

Method: hypothesis draws small sheets of such cells; openpyxl writes each, then both openpyxl's
read-only reader (``values_only``, padded rows) and ours read it; rows are compared with
trailing empty cells dropped, and rows that are empty in both are ignored.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import openpyxl  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.catalog.codefile import CodeFileLimits
from cardsvc.catalog.codefile.xlsx_file import xlsx_records

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from(
    list("&<>\"' \t卡号")), max_size=12)
CELL = st.one_of(
    st.none(), TEXT, st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False,
                                                          width=64),
    st.booleans(),
    st.dates(datetime.date(1901, 1, 1), datetime.date(2099, 12, 31)),
    st.datetimes(datetime.datetime(1901, 1, 1), datetime.datetime(2099, 12, 31)).map(
        lambda moment: moment.replace(microsecond=0)),
)
SHEETS = st.lists(st.lists(CELL, max_size=6), min_size=1, max_size=8)


def trimmed(cells: Any) -> list[Any]:
    row = list(cells)
    while row and row[-1] is None:
        row.pop()
    return row


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=SHEETS, gap=st.integers(0, 3))
def test_our_reader_reads_what_openpyxl_reads(tmp_path: Path, rows: list[list[Any]],
                                              gap: int) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for number, row in enumerate(rows, start=1):
        for column, value in enumerate(row, start=1):
            if value is not None and not (isinstance(value, str) and value == ""):
                sheet.cell(row=number + (gap if number > 1 else 0), column=column, value=value)
    path = tmp_path / "agree.xlsx"
    workbook.save(path)
    theirs_book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        theirs_sheet = theirs_book.worksheets[0]
        theirs_sheet.reset_dimensions()
        theirs = {line: trimmed(cells) for line, cells in
                  enumerate(theirs_sheet.iter_rows(values_only=True), start=1)}
    finally:
        theirs_book.close()
    ours = {line: trimmed(cells) for line, cells in xlsx_records(path, CodeFileLimits())}
    lines = {line for line, cells in theirs.items() if cells} | {
        line for line, cells in ours.items() if cells}
    for line in sorted(lines):
        assert ours.get(line, []) == theirs.get(line, []), line
