"""CSV downloads of the data behind a chart or a table, safe to open in a spreadsheet.

**Formula injection.** Every cell goes through the one rule of ``cardsvc.csv_safe`` (the same
as exports, batch reports and statements): a text cell that a spreadsheet would run as a formula
(leading ``=``, ``+``, ``-``, ``@``, tab or CR), or that begins with an apostrophe, gets a leading
apostrophe; numbers (``int``, ``Decimal``) are written as they are, so callers pass amounts as
numbers, not as preformatted text.

**Encoding.** UTF-8 with a byte-order mark, so Excel on Windows opens Chinese text correctly
instead of guessing a legacy code page; other tools ignore the mark. Lines end in CRLF
(RFC 4180). The file name is sent both as an ASCII fallback and RFC 5987 ``filename*``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from urllib.parse import quote

from starlette.responses import Response

from cardsvc.csv_safe import FORMULA_PREFIXES, Cell, cell, neutralise
from web.charts import BarSeries, Series

__all__ = ["CSV_ROWS_MAX", "FORMULA_PREFIXES", "Cell", "bar_rows", "csv_response", "csv_text",
           "neutralise", "series_rows"]

CSV_ROWS_MAX = 100_000
"""Downloads here are built in memory (a chart's or a page's data, a few thousand rows); bulk
exports of codes are jobs of the domain with their own streaming writer."""
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """The CSV text (with BOM) of ``header`` and ``rows``. Raises ValueError beyond
    :data:`CSV_ROWS_MAX` rows."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([cell(name) for name in header])
    for count, row in enumerate(rows, start=1):
        if count > CSV_ROWS_MAX:
            raise ValueError(f"a CSV download has at most {CSV_ROWS_MAX} rows")
        writer.writerow([cell(value) for value in row])
    return buffer.getvalue()


def csv_response(filename: str, header: Sequence[str],
                 rows: Iterable[Sequence[Cell]]) -> Response:
    """A download of ``rows`` named ``filename`` (``.csv`` is added when missing)."""
    if not filename.endswith(".csv"):
        filename += ".csv"
    fallback = _UNSAFE_NAME.sub("_", filename) or "download.csv"
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
    return Response(csv_text(header, rows).encode("utf-8"),
                    media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": disposition, "cache-control": "no-store"})


def series_rows(series: Sequence[Series]) -> tuple[list[str], list[list[Cell]]]:
    """A line chart's data for :func:`csv_response`: a ``time_ms`` column (Unix ms, exact and
    time-zone free) and one column per series, empty where a series has no point."""
    by_time: dict[int, dict[int, int | float]] = {}
    for index, one in enumerate(series):
        for time, value in one.points:
            by_time.setdefault(time, {})[index] = value
    header = ["time_ms", *(one.name for one in series)]
    rows: list[list[Cell]] = [
        [time, *(_number(cells.get(i)) for i in range(len(series)))]
        for time, cells in sorted(by_time.items())]
    return header, rows


def bar_rows(categories: Sequence[str],
             series: Sequence[BarSeries]) -> tuple[list[str], list[list[Cell]]]:
    """A bar chart's data for :func:`csv_response`: a category column, one column per series."""
    header = ["category", *(one.name for one in series)]
    rows: list[list[Cell]] = [[category, *(_number(one.values[i]) for one in series)]
                              for i, category in enumerate(categories)]
    return header, rows


def _number(value: int | float | None) -> Cell:
    """Chart values as CSV numbers: floats through ``Decimal(repr)`` (exact, never ``1e-05``
    style surprises for integers)."""
    if value is None or isinstance(value, int):
        return value
    return Decimal(repr(value))
