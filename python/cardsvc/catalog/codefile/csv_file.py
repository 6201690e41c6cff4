"""CSV files: UTF-8 (BOM optional), the delimiter sniffed from the header line, bounded lines."""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from cardsvc.catalog.codefile.values import (
    DELIMITERS,
    QUOTED,
    SNIFF_LINES_MAX,
    CodeFileLimits,
    Records,
    too_many_rows,
)
from cardsvc.errors import ErrorCode, make_error


def csv_records(path: Path, limits: CodeFileLimits) -> Records:
    """Each CSV row with its line number. Raises INVALID_ARGUMENT (``malformed_csv``,
    ``not_utf8``) or LIMIT_EXCEEDED (rows, line length)."""
    line = 0
    with path.open("r", encoding="utf-8-sig", errors="strict", newline="") as handle:
        try:
            lines = _bounded_lines(handle, limits.line_len_max)
            leading, delimiter = _sniff_delimiter(lines)
            reader = csv.reader(
                itertools.chain(leading, lines),
                delimiter=delimiter,
                quotechar='"',
                doublequote=True,
                skipinitialspace=False,
                strict=True,
            )
            for line, record in enumerate(reader, start=1):
                if line > limits.rows_max:
                    raise too_many_rows(limits)
                yield line, record
        except csv.Error:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"line {line + 1} is not valid CSV (check its quotes)",
                {"field": "file", "reason": "malformed_csv", "line": line + 1},
            ) from None
        except UnicodeDecodeError:
            # Text is decoded in blocks, so the failing line is found again in the raw bytes.
            bad_line = _first_line_not_utf8(path, limits.line_len_max)
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"line {bad_line} is not UTF-8 text (save the file as UTF-8 CSV)",
                {"field": "file", "reason": "not_utf8", "line": bad_line},
            ) from None


def _first_line_not_utf8(path: Path, line_len_max: int) -> int:
    """The line number (counting newline bytes) of the first bytes that are not UTF-8, or 0 if
    there are none (the file changed). Reads in bounded pieces through an incremental decoder,
    so a character split between two pieces is not mistaken for an error."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    physical = 1
    with path.open("rb") as handle:
        while piece := handle.readline(line_len_max + 2):
            try:
                decoder.decode(piece)
            except UnicodeDecodeError:
                return physical
            physical += piece.endswith(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return physical
    return 0


def _bounded_lines(handle: TextIO, line_len_max: int) -> Iterator[str]:
    """The handle's lines, each read with a length limit so that no line longer than
    ``line_len_max`` (terminator excluded) is ever held whole. Raises LIMIT_EXCEEDED."""
    read = handle.readline
    limit = line_len_max + 2  # room for "\r\n"
    physical = 0
    while text := read(limit):
        physical += 1
        if len(text) > line_len_max and len(text.rstrip("\r\n")) > line_len_max:
            raise make_error(
                ErrorCode.LIMIT_EXCEEDED,
                f"line {physical} is longer than {line_len_max} characters",
                {"field": "line_length", "max": line_len_max, "line": physical},
            )
        yield text


def _sniff_delimiter(lines: Iterator[str]) -> tuple[list[str], str]:
    """Reads up to the first non-blank line (at most ``SNIFF_LINES_MAX``) and returns the
    lines read and the delimiter: the most frequent of comma, semicolon and tab outside quotes
    in that line (ties go to the earlier one), or a comma when the header has one column."""
    leading: list[str] = []
    for text in lines:
        leading.append(text)
        if text.strip() or len(leading) >= SNIFF_LINES_MAX:
            break
    header = leading[-1] if leading else ""
    unquoted = QUOTED.sub("", header)
    count, delimiter = max((unquoted.count(d), -i) for i, d in enumerate(DELIMITERS))
    return leading, DELIMITERS[-delimiter] if count else ","
