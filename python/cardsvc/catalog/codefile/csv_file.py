"""CSV files: UTF-8 (BOM optional), UTF-16 with a BOM, or GB18030 when the caller says so; the
delimiter sniffed from the header line (or named by Excel's ``sep=`` line); bounded lines."""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from cardsvc.catalog.codefile.values import (
    BUDGET_CHECK_EVERY_ROWS,
    DELIMITERS,
    QUOTED,
    SNIFF_BYTES,
    SNIFF_LINES_MAX,
    Budget,
    CodeFileLimits,
    FileEncoding,
    Records,
    over_bound,
    too_many_rows,
)
from cardsvc.errors import CardsvcError, ErrorCode, make_error

_MARK_ERRORS = "cardsvc.codefile.mark"
"""A decoding error handler that puts a lone surrogate where the bytes do not decode: a strict
decode never yields one, so the first line holding it is the first undecodable line."""
_MARK = "\udfff"
codecs.register_error(_MARK_ERRORS, lambda error: (_MARK, getattr(error, "end", 0)))

_SEP_LINE = re.compile(r"sep=(.)\s*", re.IGNORECASE)
"""Excel's first line naming the delimiter (``sep=;``)."""
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_NOT_DECODED_HINT = {
    FileEncoding.UTF8: "save the file as CSV UTF-8 (Excel: Save As, \"CSV UTF-8\"), or import a "
                       "GBK/GB18030 file with encoding gb18030",
    FileEncoding.GB18030: "check the encoding: the file is not GB18030 (or GBK) either",
}


def csv_records(path: Path, limits: CodeFileLimits,
                encoding: FileEncoding = FileEncoding.UTF8,
                budget: Budget | None = None) -> Records:
    """Each CSV row with its line number. Raises INVALID_ARGUMENT (``malformed_csv``,
    ``not_utf8``/``not_utf16``/``not_gb18030`` with the line, ``utf32``, ``utf16_without_bom``,
    ``not_text``, ``encoding_conflict``) or LIMIT_EXCEEDED (``rows``, ``line_length`` for a
    line or a record spanning lines, ``cpu_seconds``). Checks ``budget`` every
    BUDGET_CHECK_EVERY_ROWS rows."""
    codec, name = _codec_of(path, encoding)
    line = 0
    record = [0]  # characters read for the record being parsed (a quoted field spans lines)
    with path.open("r", encoding=codec, errors="strict", newline="") as handle:
        try:
            lines = _bounded_lines(handle, limits.line_len_max, record, lambda: line + 1)
            leading, delimiter = _sniff_delimiter(lines)
            record[0] = 0
            reader = csv.reader(
                itertools.chain(leading, lines),
                delimiter=delimiter,
                quotechar='"',
                doublequote=True,
                skipinitialspace=False,
                strict=True,
            )
            for line, cells in enumerate(reader, start=1):
                record[0] = 0
                if line > limits.rows_max:
                    raise too_many_rows(limits)
                if budget is not None and not line % BUDGET_CHECK_EVERY_ROWS:
                    budget.check(line)
                yield line, cells
        except csv.Error:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"line {line + 1} is not valid CSV (check its quotes)",
                {"field": "file", "reason": "malformed_csv", "line": line + 1},
            ) from None
        except UnicodeDecodeError:
            # Text is decoded in blocks, so the failing line is found again in a second pass.
            bad_line = _first_undecodable_line(path, codec, limits.line_len_max)
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"line {bad_line} is not {name} text: {_NOT_DECODED_HINT[encoding]}",
                {"field": "file", "reason": f"not_{name.lower().replace('-', '')}",
                 "line": bad_line},
            ) from None


def _codec_of(path: Path, encoding: FileEncoding) -> tuple[str, str]:
    """The Python codec to read the file with and the encoding's name for messages, from the
    caller's ``encoding`` and the file's first bytes. Raises INVALID_ARGUMENT for UTF-32, for
    NUL bytes (UTF-16 without a byte order mark, or not text) and for a byte order mark that
    contradicts an explicit GB18030."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if head.startswith(_UTF32_BOMS):
        raise _refusal("utf32", "the file is UTF-32: save it as CSV UTF-8")
    if encoding is FileEncoding.GB18030:
        if head.startswith((codecs.BOM_UTF8, *_UTF16_BOMS)):
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                "encoding gb18030 was given, but the file starts with a UTF-8 or UTF-16 byte "
                "order mark: import it without an encoding",
                {"field": "encoding", "reason": "encoding_conflict"},
            )
        codec, name = "gb18030", "GB18030"
    elif head.startswith(_UTF16_BOMS):
        return "utf-16", "UTF-16"  # the BOM says which byte order; NUL bytes are expected
    else:
        codec, name = "utf-8-sig", "UTF-8"
    if b"\x00" in head:
        if _looks_like_utf16(head):
            raise _refusal("utf16_without_bom", "the file looks like UTF-16 without a byte "
                           "order mark: save it as CSV UTF-8")
        raise _refusal("not_text", "the file holds NUL bytes, so it is not a CSV text file: "
                       "save it as CSV UTF-8 or XLSX")
    return codec, name


def _looks_like_utf16(head: bytes) -> bool:
    """True when at least a third of the even or of the odd bytes are NUL, as in mostly-ASCII
    text in UTF-16 of either byte order."""
    half = len(head) // 2
    return half > 0 and max(head[0::2].count(0), head[1::2].count(0)) * 3 >= half


def _refusal(reason: str, message: str) -> CardsvcError:
    return make_error(ErrorCode.INVALID_ARGUMENT, message, {"field": "file", "reason": reason})


def _first_undecodable_line(path: Path, codec: str, line_len_max: int) -> int:
    """The physical line (counting line ends) of the first bytes that ``codec`` cannot decode,
    or 0 if there are none (the file changed). Reads bounded pieces of text decoded with the
    marking error handler, so it never fails half-way."""
    physical = 1
    with path.open("r", encoding=codec, errors=_MARK_ERRORS, newline="") as handle:
        while piece := handle.readline(line_len_max + 2):
            if _MARK in piece:
                return physical
            physical += piece.endswith(("\n", "\r"))
    return 0


def _bounded_lines(handle: TextIO, line_len_max: int, record: list[int],
                   record_line: Callable[[], int]) -> Iterator[str]:
    """The handle's lines, each read with a length limit so that no line longer than
    ``line_len_max`` (terminator excluded) is ever held whole; ``record[0]`` adds up the
    characters since the caller last reset it (one CSV record), which may not exceed
    ``line_len_max`` plus one line end either, so a quoted field spanning many lines stops at
    the row bound too. A GB18030 byte order mark (its codec keeps it as U+FEFF) is dropped.
    Raises LIMIT_EXCEEDED ``line_length`` (the physical line, or the record's line)."""
    read = handle.readline
    limit = line_len_max + 2  # room for "\r\n"
    physical = 0
    while text := read(limit):
        physical += 1
        if physical == 1:
            text = text.removeprefix("\ufeff")
        if len(text) > line_len_max and len(text.rstrip("\r\n")) > line_len_max:
            raise over_bound("line_length", line_len_max,
                             f"line {physical} is longer than {line_len_max} characters",
                             line=physical)
        record[0] += len(text)
        if record[0] > limit:
            line = record_line()
            raise over_bound("line_length", line_len_max,
                             f"row {line} (a quoted field spanning lines) is longer than "
                             f"{line_len_max} characters", line=line)
        yield text


def _sniff_delimiter(lines: Iterator[str]) -> tuple[list[str], str]:
    """Reads up to the first non-blank line (at most ``SNIFF_LINES_MAX``) and returns the
    lines read and the delimiter: the one Excel's ``sep=X`` line names (that line then reads as
    blank), else the most frequent of comma, semicolon and tab outside quotes in that line
    (ties go to the earlier one), or a comma when the header has one column."""
    leading: list[str] = []
    for text in lines:
        leading.append(text)
        if text.strip() or len(leading) >= SNIFF_LINES_MAX:
            break
    header = leading[-1] if leading else ""
    declared = _SEP_LINE.fullmatch(header)
    if declared is not None and declared.group(1) in DELIMITERS:
        leading[-1] = "\n"
        return leading, declared.group(1)
    unquoted = QUOTED.sub("", header)
    count, delimiter = max((unquoted.count(d), -i) for i, d in enumerate(DELIMITERS))
    return leading, DELIMITERS[-delimiter] if count else ","
