"""Batch import files (issue 5): read codes, PINs and validity ends from CSV or XLSX, streaming,
checked by the core's rules before anything is imported.

This module knows nothing of SQL or of the core's state. It turns a file into validated rows
(:func:`read_codes`, in chunks) and a first-pass report (:func:`scan`), and writes the
downloadable report (:func:`write_report`). The import pipeline runs ``scan`` first, then feeds
``read_codes`` chunks to the store and the core.

File format
-----------
* CSV: UTF-8 with or without BOM; the delimiter (comma, semicolon or tab) is sniffed from the
  header line; double-quoted fields with doubled quotes; LF, CRLF or CR line ends. Malformed
  quoting or bytes that are not UTF-8 stop the file with INVALID_ARGUMENT and the line number.
* XLSX: the first worksheet, read with openpyxl in read-only mode (cached formula values). A
  number cell in the code or PIN column becomes its exact digit string (``6225881234567890``,
  never ``6.22588123456789e+15`` or ``...890.0``). XLSX numbers are doubles, so a number that is
  not whole (``not_integer``) or whose magnitude is 2**53 or more (``lost_precision``: the digits
  stored need not be the code typed; Excel and openpyxl both round such numbers when saving)
  refuses the row. Two losses happen before the file is saved and cannot be seen here: Excel
  truncates numbers typed with more than 15 digits, and a number loses leading zeros. Codes and
  PINs belong in text cells.
* The format is found by magic bytes (XLSX is a zip, ``PK\\x03\\x04``; the old binary ``.xls`` is
  refused), then by extension; anything else is read as CSV. Upload names do not matter.

Header and columns
------------------
The first non-blank row is the header. Names are matched case-insensitively, with spaces and
``-`` read as ``_``: code (``code``, ``card``, ``card_no``, ``card_number``, ``cdkey``, ``卡号``,
``卡密``), pin (``pin``, ``password``, ``secret``, ``密码``), valid_until (``valid_until``,
``expires``, ``expiry``, ``有效期``). ``卡密`` ("card secret") names the code when it is the
only code column and the PIN when another column names the card (the usual ``卡号,卡密`` layout).
Other columns are ignored and listed in :attr:`ScanReport.ignored_columns`. No code column, or
two columns for one field, is INVALID_ARGUMENT with ``details["field"] == "header"``.

Values: surrounding whitespace is stripped; the code is kept as written (it is delivered as is)
and checked with the core's :func:`cardsvc.engine.normalise_code`, plus one stricter rule: a code
containing a control character (tab and newline included) is refused, since no printed code
holds one. An empty PIN cell means "no PIN". ``valid_until`` is Unix seconds, an ISO date (valid
through the end of that day, UTC; an XLSX date cell, which reads as midnight, likewise) or an ISO
datetime (UTC unless it carries an offset), between 2000-01-01 and the core's last second
(2**32 - 1). A blank row is skipped.

Line numbers count rows as a spreadsheet shows them: the header is line 1 when it is the first
row, and blank rows count (a quoted CSV field spanning several lines is one row). Errors about
the file's bytes (not UTF-8, a line too long) give the physical line instead; the two differ
only after a multi-line field.

Modes
-----
* ``all_or_nothing`` (the default): a batch is imported whole or not at all. The caller runs
  :func:`scan`; if it found any problem (``ScanReport.check`` raises), nothing is imported and
  the report lists every problem line. :func:`read_codes` in this mode raises on the first
  invalid row; after a clean scan that can only happen if the file changed in between, so callers
  read a private copy (the upload's temporary file).
* ``per_row``: invalid rows are skipped by :func:`read_codes` and listed (by :func:`scan`) in the
  report with their line numbers; every valid row is imported.

In both modes a duplicate code is rejected (not imported) and listed in the report, and does not
block the batch: :func:`scan` finds duplicates within the file (the first occurrence is kept, as
the core keeps it); the core finds duplicates of earlier batches at import, and the caller adds
them to the report with :meth:`DuplicateRow.of` and ``DUPLICATE_OF_EARLIER_BATCH``.

Memory
------
:func:`read_codes` builds one chunk of rows (``chunk_rows`` rows of ~220 bytes: ~11 MB at the
default 50,000; two are alive while the caller still holds the previous one) and one line.
:func:`scan` holds 21 bytes per valid row for in-file duplicate detection (a 96-bit keyed digest,
the line number, the normalised length and last four characters: 1M rows ~ 21 MB, 10M ~ 210 MB)
instead of a set of 16-byte digests (~85 bytes a row: 83 MB for 1M, measured), plus at most
``problems_listed_max`` problems and ``duplicates_listed_max`` duplicates. XLSX adds what
openpyxl keeps: the shared-strings table (every distinct text cell) is loaded whole, ~2.5x its
XML size, bounded by ``xlsx_part_bytes_max``.

Secrets
-------
Codes and PINs never appear in messages, details, problems or reports: problems carry a line,
a field name and a reason word; duplicates carry the masked form of the normalised code
(:func:`cardsvc.masking.mask_code`, at most its last four characters visible).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import heapq
import itertools
import os
import re
import struct
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from operator import attrgetter
from pathlib import Path
from typing import Any, TextIO
from xml.etree.ElementTree import ParseError

from cardsvc.engine import BATCH_ITEMS_MAX, CODE_LEN_MAX, PIN_LEN_MAX, normalise_code
from cardsvc.errors import BadInput, CardsvcError, ErrorCode, make_error
from cardsvc.masking import MASK_CHAR, VISIBLE_SUFFIX_LEN, mask_code

__all__ = [
    "CHUNK_ROWS_DEFAULT",
    "DEFAULT_LIMITS",
    "REPORT_COLUMNS",
    "CodeFileLimits",
    "CodeRow",
    "DuplicateReason",
    "DuplicateRow",
    "FileFormat",
    "ImportMode",
    "RowProblem",
    "ScanReport",
    "detect_format",
    "merge_by_line",
    "read_codes",
    "scan",
    "write_report",
]

ROWS_MAX = 10_000_000
"""Rows in one file, header and blank rows included: 10x the issue's 1M-code batch. Bounds the
in-file duplicate table of :func:`scan` (21 bytes a row: 210 MB at the bound)."""
LINE_LEN_MAX = 16_384
"""Characters in one CSV line (terminator excluded): a code (at most 512 raw characters), a PIN,
a date and room for wide exports' extra columns. Only one line is held at a time."""
COLUMNS_MAX = 256
"""Header columns: exports have a handful; the header and each row are held as lists."""
PROBLEMS_LISTED_MAX = 1_000
"""Problems :func:`scan` lists (all are counted): enough to diagnose a file, ~150 bytes each."""
DUPLICATES_LISTED_MAX = 100_000
"""In-file duplicates :func:`scan` lists (all are counted), ~250 bytes each: 25 MB at the bound.
A file with more is broken, not merely repetitive."""
XLSX_PART_BYTES_MAX = 128 * 1024 * 1024
"""Uncompressed size of any XLSX part openpyxl loads whole (shared strings, styles). Excel's own
limit of 1,048,576 rows with a code and a PIN as text needs ~70 MB; openpyxl holds ~2.5x that.
Worksheets are streamed and not bounded here (their rows are, by ``rows_max``)."""
CHUNK_ROWS_DEFAULT = 50_000
"""Rows per chunk of :func:`read_codes`: ~11 MB of rows, one core import call each."""
PROGRESS_EVERY_ROWS = 65_536
""":func:`scan` reports progress after every this many rows."""
VALID_UNTIL_MIN = 946_684_800
"""2000-01-01T00:00:00Z. Earlier values are refused: they are Excel serial numbers or typos, not
the end of a code's validity."""
VALID_UNTIL_MAX = 2**32 - 1
"""The core keeps validity as unsigned 32-bit Unix seconds."""
_EXACT_FLOAT_INT_LIMIT = 2**53
"""Every integer below this is exactly a double; at or above it a stored number need not be the
integer that was typed (XLSX stores numbers as doubles, whatever digits the XML shows)."""
_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0"
_XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
_DELIMITERS = (",", ";", "\t")
_SNIFF_LINES_MAX = 1_000
"""Blank lines read before the header to sniff the delimiter; they are kept to be parsed."""
_QUOTED = re.compile(r'"[^"]*"')
_EXCEL_ERROR_VALUES = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA"}
)
"""What an XLSX error cell (or a CSV exported from one) holds; never a code or PIN."""
_CORE_REASONS = {"empty": "empty", "too long": "too_long", "not printable ASCII": "not_printable"}
"""The core's INVALID_CODE reasons as problem reason words."""
_CODE_ALIASES = frozenset({"code", "card", "card_no", "card_number", "cdkey", "卡号", "卡密"})
_PIN_ALIASES = frozenset({"pin", "password", "secret", "密码"})
_VALID_UNTIL_ALIASES = frozenset({"valid_until", "expires", "expiry", "有效期"})
_CARD_SECRET = "卡密"

if CODE_LEN_MAX > 255:  # a build invariant, checked even under -O
    raise AssertionError("codefile stores normalised code lengths in one byte")


class ImportMode(StrEnum):
    """What an invalid row does to its batch (see the module docstring)."""

    ALL_OR_NOTHING = "all_or_nothing"
    PER_ROW = "per_row"


class FileFormat(StrEnum):
    """The import file's format."""

    CSV = "csv"
    XLSX = "xlsx"


class DuplicateReason(StrEnum):
    """Why a row's code was rejected as a duplicate."""

    DUPLICATE_IN_FILE = "duplicate_in_file"
    DUPLICATE_OF_EARLIER_BATCH = "duplicate_of_earlier_batch"


@dataclass(frozen=True, slots=True)
class CodeRow:
    """One valid row: the code as written (surrounding whitespace stripped), its PIN (None: no
    PIN) and the end of its validity in Unix seconds (None: the batch's default)."""

    line: int
    code: str
    pin: str | None
    valid_until: int | None


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a row is invalid. ``field`` is ``code``, ``pin``, ``valid_until`` or ``row``;
    ``reason`` a short machine word (``empty``, ``too_long``, ``not_printable``, ``bad_date``,
    ``extra_columns``, ...). Never the value."""

    line: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class DuplicateRow:
    """A rejected duplicate: its line, the masked form of its normalised code, the reason and,
    for a duplicate within the file, the line of the first occurrence (the one imported).

    Construct with :meth:`of`. Raises INVALID_ARGUMENT if ``masked_code`` shows more than its
    last four characters, so a full code cannot reach a report through this type.
    """

    line: int
    masked_code: str
    reason: DuplicateReason
    first_line: int | None = None

    def __post_init__(self) -> None:
        length = len(self.masked_code)
        hidden = length - VISIBLE_SUFFIX_LEN if length > VISIBLE_SUFFIX_LEN else length
        if self.masked_code[:hidden] != MASK_CHAR * hidden:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                "a duplicate row must carry a masked code",
                {"field": "masked_code", "reason": "not_masked"},
            )

    @classmethod
    def of(
        cls, row: CodeRow, reason: DuplicateReason, first_line: int | None = None
    ) -> DuplicateRow:
        """The report entry for ``row``. Pure. Precondition: ``row`` came from
        :func:`read_codes`, so its code is valid (otherwise INVALID_CODE is raised)."""
        return cls(row.line, mask_code(normalise_code(row.code)), reason, first_line)


@dataclass(frozen=True, slots=True)
class CodeFileLimits:
    """The bounds one read works under; the module constants say why each default is what it
    is. Exceeding ``rows_max``, ``line_len_max``, ``columns_max`` or ``xlsx_part_bytes_max``
    raises LIMIT_EXCEEDED; the two ``*_listed_max`` only cap what is listed."""

    rows_max: int = ROWS_MAX
    line_len_max: int = LINE_LEN_MAX
    columns_max: int = COLUMNS_MAX
    problems_listed_max: int = PROBLEMS_LISTED_MAX
    duplicates_listed_max: int = DUPLICATES_LISTED_MAX
    xlsx_part_bytes_max: int = XLSX_PART_BYTES_MAX


DEFAULT_LIMITS = CodeFileLimits()


@dataclass(frozen=True)
class ScanReport:
    """The first pass over a file. ``rows`` counts data rows (blank rows excluded): the
    ``valid_rows`` and ``rows - valid_rows`` rows with one or more problems each. ``problems``
    and ``duplicates`` are in line order and capped; ``problem_count`` and ``duplicate_count``
    are the totals. Valid rows include in-file duplicates, which the core will reject."""

    format: FileFormat
    rows: int
    valid_rows: int
    problems: tuple[RowProblem, ...]
    problem_count: int
    duplicates: tuple[DuplicateRow, ...]
    duplicate_count: int
    has_pin: bool
    has_valid_until: bool
    ignored_columns: tuple[str, ...]

    @property
    def problems_not_listed(self) -> int:
        """Problems counted but not listed."""
        return self.problem_count - len(self.problems)

    @property
    def duplicates_not_listed(self) -> int:
        """In-file duplicates counted but not listed."""
        return self.duplicate_count - len(self.duplicates)

    def check(self, mode: ImportMode | str) -> None:
        """Raises unless the file may be imported in ``mode``: INVALID_ARGUMENT with details
        ``{"field": "file", "reason": "invalid_rows", "problems": n, "first_line": l}`` when
        ``mode`` is all_or_nothing and a row is invalid, or ``{"field": "file", "reason":
        "no_codes"}`` when no row would be imported. Pure otherwise."""
        if _mode_of(mode) is ImportMode.ALL_OR_NOTHING and self.problem_count:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                f"{self.problem_count} problem(s) in the file; nothing was imported",
                {
                    "field": "file",
                    "reason": "invalid_rows",
                    "problems": self.problem_count,
                    "first_line": self.problems[0].line if self.problems else None,
                },
            )
        if self.valid_rows - self.duplicate_count <= 0:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                "the file holds no code to import",
                {"field": "file", "reason": "no_codes"},
            )


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the fields are: column indexes (0-based) and the header's width."""

    code: int
    pin: int | None
    valid_until: int | None
    width: int
    ignored: tuple[str, ...]


_Valid = tuple[str, str, str | None, int | None]
"""A valid row's code as written, normalised code, PIN and validity end."""
_Records = Generator[tuple[int, Sequence[object]], None, None]
"""(line, cells) of each row after the header."""


# --- public functions --------------------------------------------------------------------------


def detect_format(path: Path) -> FileFormat:
    """The format of the file at ``path``: magic bytes first, then the extension.

    Raises INVALID_ARGUMENT (``details["reason"]`` ``unsupported_format``) for the old binary
    XLS format or an ``.xlsx`` name on a file that is not a zip; OSError if unreadable.
    """
    with path.open("rb") as handle:
        magic = handle.read(len(_XLSX_MAGIC))
    if magic == _XLSX_MAGIC:
        return FileFormat.XLSX
    if magic == _XLS_MAGIC or path.suffix.lower() in _XLSX_SUFFIXES:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "the file is not CSV or XLSX (save it as .xlsx or UTF-8 CSV)",
            {"field": "file", "reason": "unsupported_format"},
        )
    return FileFormat.CSV


def scan(
    path: Path,
    *,
    limits: CodeFileLimits = DEFAULT_LIMITS,
    progress: Callable[[int], None] | None = None,
) -> ScanReport:
    """Reads the whole file once and reports rows, problems and duplicates within the file.

    Reads only; memory as the module docstring says. ``progress`` (if given) is called with the
    line number reached every ``PROGRESS_EVERY_ROWS`` lines. Raises INVALID_ARGUMENT (bad
    header, malformed CSV quoting, not UTF-8, unreadable XLSX, unsupported format) or
    LIMIT_EXCEEDED (``details`` ``{"field": "rows" | "line_length" | "columns" |
    "xlsx_part", "max": n}``); OSError if the file cannot be read.
    """
    duplicates = _DuplicateFinder()
    problems: list[RowProblem] = []
    problem_count = rows = valid_rows = 0
    with _open_rows(path, limits) as (file_format, layout, records):
        for line, cells in records:
            if progress is not None and line % PROGRESS_EVERY_ROWS == 0:
                progress(line)
            result = _check_row(line, cells, layout)
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
    return _read_chunks(path, chunk_rows, _mode_of(mode), limits)


def merge_by_line(*sources: Iterable[DuplicateRow]) -> Iterator[DuplicateRow]:
    """The rows of ``sources`` (each in ascending line order) in one ascending line order, e.g.
    a scan's in-file duplicates with the core's earlier-batch ones. Lazy; raises nothing."""
    return heapq.merge(*sources, key=attrgetter("line"))


REPORT_COLUMNS = ("line", "field", "reason", "masked_code", "first_line", "count")
"""The downloadable report's header. A problem fills line, field and reason; a duplicate also
masked_code and, within the file, first_line. A last row with reason ``not_listed`` and field
``problems`` or ``duplicates`` gives in ``count`` how many were found but not listed."""


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
            return _write_report_rows(
                handle, problems, duplicates, problems_not_listed, duplicates_not_listed
            )
    return _write_report_rows(
        target, problems, duplicates, problems_not_listed, duplicates_not_listed
    )


# --- reading rows ------------------------------------------------------------------------------


def _read_chunks(
    path: Path, chunk_rows: int, mode: ImportMode, limits: CodeFileLimits
) -> Iterator[list[CodeRow]]:
    stop_on_problem = mode is ImportMode.ALL_OR_NOTHING
    chunk: list[CodeRow] = []
    with _open_rows(path, limits) as (_, layout, records):
        for line, cells in records:
            result = _check_row(line, cells, layout)
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


def _mode_of(mode: ImportMode | str) -> ImportMode:
    """``mode`` as an ImportMode (callers may pass the plain string). Raises INVALID_ARGUMENT."""
    try:
        return ImportMode(mode)
    except ValueError:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "mode must be all_or_nothing or per_row",
            {"field": "mode", "reason": "unknown"},
        ) from None


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
    path: Path, limits: CodeFileLimits
) -> Iterator[tuple[FileFormat, _Layout, _Records]]:
    """Opens the file, reads its header and yields the format, the layout and the rows after
    the header. Closes the file on exit."""
    file_format = detect_format(path)
    opener = _xlsx_records if file_format is FileFormat.XLSX else _csv_records
    records = opener(path, limits)
    try:
        for line, cells in records:
            if not _is_blank(cells):
                yield file_format, _layout_of(line, cells, limits), records
                return
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "the file has no header row",
            {"field": "header", "reason": "missing"},
        )
    finally:
        records.close()


def _csv_records(path: Path, limits: CodeFileLimits) -> _Records:
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
                    raise _too_many_rows(limits)
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
    """Reads up to the first non-blank line (at most ``_SNIFF_LINES_MAX``) and returns the
    lines read and the delimiter: the most frequent of comma, semicolon and tab outside quotes
    in that line (ties go to the earlier one), or a comma when the header has one column."""
    leading: list[str] = []
    for text in lines:
        leading.append(text)
        if text.strip() or len(leading) >= _SNIFF_LINES_MAX:
            break
    header = leading[-1] if leading else ""
    unquoted = _QUOTED.sub("", header)
    count, delimiter = max((unquoted.count(d), -i) for i, d in enumerate(_DELIMITERS))
    return leading, _DELIMITERS[-delimiter] if count else ","


def _too_many_rows(limits: CodeFileLimits) -> CardsvcError:
    return make_error(
        ErrorCode.LIMIT_EXCEEDED,
        f"the file has more than {limits.rows_max} rows",
        {"field": "rows", "max": limits.rows_max},
    )


# --- XLSX --------------------------------------------------------------------------------------

_XLSX_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OSError,
    EOFError,
    ParseError,
)
"""What openpyxl raises inside its own code on a damaged or foreign file (with its
InvalidFileException). Only the openpyxl calls themselves are guarded by it."""


def _xlsx_records(path: Path, limits: CodeFileLimits) -> _Records:
    """Each row of the first worksheet with its line number. Raises INVALID_ARGUMENT
    (``bad_xlsx``) or LIMIT_EXCEEDED (rows, ``xlsx_part``)."""
    import openpyxl  # type: ignore[import-untyped]  # no stubs; confined to this function
    from openpyxl.utils.exceptions import (  # type: ignore[import-untyped]
        InvalidFileException,
    )

    damaged = (*_XLSX_ERRORS, InvalidFileException)
    _check_xlsx_parts(path, limits)
    line = 0
    with path.open("rb") as handle:
        try:
            # A file object, not a path: openpyxl refuses paths without an .xlsx name.
            workbook: Any = openpyxl.load_workbook(
                handle, read_only=True, data_only=True, keep_links=False, keep_vba=False
            )
        except damaged:
            raise _bad_xlsx(line) from None
        try:
            if not workbook.worksheets:
                raise _bad_xlsx(line)
            sheet = workbook.worksheets[0]
            sheet.reset_dimensions()  # never trust the stored size: read every row there is
            rows: Iterator[Sequence[object]] = sheet.iter_rows(values_only=True)
            while True:
                try:
                    cells = next(rows, None)
                except damaged:
                    raise _bad_xlsx(line + 1) from None
                if cells is None:
                    return
                line += 1
                if line > limits.rows_max:
                    raise _too_many_rows(limits)
                yield line, cells
        finally:
            workbook.close()


def _bad_xlsx(line: int) -> CardsvcError:
    details: dict[str, Any] = {"field": "file", "reason": "bad_xlsx"}
    if line:
        details["line"] = line
    return make_error(ErrorCode.INVALID_ARGUMENT, "the XLSX file cannot be read", details)


def _check_xlsx_parts(path: Path, limits: CodeFileLimits) -> None:
    """Refuses a zip whose parts that openpyxl loads whole (everything but worksheets) declare
    more than ``xlsx_part_bytes_max`` bytes; zipfile never inflates a part past its declared
    size, so the bound holds for lying headers too. Raises LIMIT_EXCEEDED or INVALID_ARGUMENT."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise _bad_xlsx(0) from None
    for info in infos:
        streamed = info.filename.startswith("xl/worksheets/")
        if not streamed and info.file_size > limits.xlsx_part_bytes_max:
            raise make_error(
                ErrorCode.LIMIT_EXCEEDED,
                f"a part of the XLSX file is larger than {limits.xlsx_part_bytes_max} bytes",
                {"field": "xlsx_part", "max": limits.xlsx_part_bytes_max},
            )


# --- header ------------------------------------------------------------------------------------


def _layout_of(line: int, cells: Sequence[object], limits: CodeFileLimits) -> _Layout:
    """The layout named by the header row at ``line``. Raises INVALID_ARGUMENT (details
    ``{"field": "header", "reason": "missing_code_column" | "duplicate_column", "line"}``) or
    LIMIT_EXCEEDED (``columns``). Never puts a header name in an error: a file without a header
    has a code in its first row."""
    names = [_header_text(cell) for cell in cells]
    width = max((i + 1 for i, name in enumerate(names) if name), default=0)
    if width > limits.columns_max:
        raise make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"the header has more than {limits.columns_max} columns",
            {"field": "columns", "max": limits.columns_max},
        )
    keys = [_header_key(name) for name in names[:width]]
    code_columns = [i for i, key in enumerate(keys) if key in _CODE_ALIASES]
    pin_columns = [i for i, key in enumerate(keys) if key in _PIN_ALIASES]
    if len(code_columns) > 1 and _CARD_SECRET in keys:
        # "卡号,卡密": card number and card secret; the secret is the PIN.
        secret = keys.index(_CARD_SECRET)
        code_columns.remove(secret)
        pin_columns.append(secret)
    until_columns = [i for i, key in enumerate(keys) if key in _VALID_UNTIL_ALIASES]
    if not code_columns:
        raise _header_error("missing_code_column", line, "the header names no code column")
    for found in (code_columns, pin_columns, until_columns):
        if len(found) > 1:
            raise _header_error("duplicate_column", line, "two header columns name one field")
    used = {*code_columns, *pin_columns, *until_columns}
    return _Layout(
        code=code_columns[0],
        pin=pin_columns[0] if pin_columns else None,
        valid_until=until_columns[0] if until_columns else None,
        width=width,
        ignored=tuple(name for i, name in enumerate(names[:width]) if name and i not in used),
    )


def _header_text(cell: object) -> str:
    if cell is None:
        return ""
    return (cell if isinstance(cell, str) else str(cell)).strip()


def _header_key(name: str) -> str:
    return name.casefold().replace(" ", "_").replace("-", "_")


def _header_error(reason: str, line: int, message: str) -> CardsvcError:
    return make_error(
        ErrorCode.INVALID_ARGUMENT, message, {"field": "header", "reason": reason, "line": line}
    )


# --- rows --------------------------------------------------------------------------------------


def _check_row(
    line: int, cells: Sequence[object], layout: _Layout
) -> _Valid | list[RowProblem] | None:
    """The row's valid fields, its problems, or None for a blank row. Pure."""
    count = len(cells)
    value = cells[layout.code] if layout.code < count else None
    code, reason = (value.strip(), None) if type(value) is str else _cell_text(value)
    normalised = ""
    if reason is None:
        normalised, reason = _normalised_code(code)
    problems: list[RowProblem] | None = None
    if reason is not None:
        if reason == "empty" and _is_blank(cells):
            return None
        problems = [RowProblem(line, "code", reason)]
    pin, reason = _pin_of(cells, layout.pin)
    if reason is not None:
        problems = _add(problems, RowProblem(line, "pin", reason))
    valid_until, reason = _valid_until_of(cells, layout.valid_until)
    if reason is not None:
        problems = _add(problems, RowProblem(line, "valid_until", reason))
    if count > layout.width and any(_header_text(cell) for cell in cells[layout.width :]):
        problems = _add(problems, RowProblem(line, "row", "extra_columns"))
    if problems is not None:
        return problems
    return code, normalised, pin, valid_until


def _add(problems: list[RowProblem] | None, problem: RowProblem) -> list[RowProblem]:
    if problems is None:
        return [problem]
    problems.append(problem)
    return problems


def _is_blank(cells: Sequence[object]) -> bool:
    return not any(_header_text(cell) for cell in cells)


def _normalised_code(code: str) -> tuple[str, str | None]:
    """(normalised code, None) or ("", reason). The core's rules, plus: no Excel error value
    and no control character anywhere (the core drops inner tabs and newlines; a printed code
    never holds one)."""
    if not code:
        return "", "empty"
    if code in _EXCEL_ERROR_VALUES:
        return "", "cell_error"
    if not code.isprintable():
        return "", "not_printable"
    try:
        return normalise_code(code), None
    except BadInput as exc:
        if exc.code is not ErrorCode.INVALID_CODE:
            raise
        return "", _CORE_REASONS.get(str(exc.details.get("reason")), "invalid")


def _pin_of(cells: Sequence[object], column: int | None) -> tuple[str | None, str | None]:
    """(PIN or None, None) or (None, reason), by the core's ``check_pin``: 1..PIN_LEN_MAX
    bytes of ASCII 0x21..0x7e."""
    if column is None or column >= len(cells):
        return None, None
    value = cells[column]
    if type(value) is str:
        pin = value.strip()
    else:
        pin, reason = _cell_text(value)
        if reason is not None:
            return None, reason
    if not pin:
        return None, None
    if pin in _EXCEL_ERROR_VALUES:
        return None, "cell_error"
    if len(pin) > PIN_LEN_MAX:
        return None, "too_long"
    if not (pin.isascii() and pin.isprintable()) or " " in pin:
        return None, "not_printable"
    return pin, None


def _cell_text(value: object) -> tuple[str, str | None]:
    """(text, None) or ("", reason) for a code or PIN cell that is not a string: None is empty,
    a whole number below 2**53 in magnitude its exact digits; other numbers (``not_integer``,
    ``lost_precision``), booleans and dates (``not_text``) have no text."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value.strip(), None
    if isinstance(value, bool):
        return "", "not_text"
    if isinstance(value, int | float):
        if isinstance(value, float) and not value.is_integer():
            return "", "not_integer"
        if abs(value) >= _EXACT_FLOAT_INT_LIMIT:
            return "", "lost_precision"
        return str(int(value)), None
    return "", "not_text"


def _valid_until_of(cells: Sequence[object], column: int | None) -> tuple[int | None, str | None]:
    """(Unix seconds or None, None) or (None, ``bad_date`` | ``out_of_range``)."""
    if column is None or column >= len(cells):
        return None, None
    value = cells[column]
    if isinstance(value, str):
        value = value.strip()
    elif isinstance(value, datetime) and value.tzinfo is None and value.time() == time.min:
        # openpyxl reads an XLSX date cell as midnight; a date means the end of that day.
        value = value.date()
    if value is None or value == "":
        return None, None
    seconds = _seconds_of(value)
    if seconds is None:
        return None, "bad_date"
    if not VALID_UNTIL_MIN <= seconds <= VALID_UNTIL_MAX:
        return None, "out_of_range"
    return seconds, None


def _seconds_of(value: object) -> int | None:
    """Unix seconds of a validity end: digits or an int are seconds; a date is the end of that
    day, UTC; a naive datetime is UTC. None when it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return int(value)
        parsed = _parse_iso(value)
        if parsed is None:
            return None
        value = parsed
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, date):  # an ISO date text, or a date cell (see _valid_until_of)
        return int(datetime.combine(value, time.max, UTC).timestamp())
    return None


def _parse_iso(text: str) -> date | datetime | None:
    """An ISO 8601 date (a ``date``) or datetime, or None."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# --- in-file duplicates ------------------------------------------------------------------------

_DIGEST_LEN = 12
_RECORD = struct.Struct(f"<{_DIGEST_LEN}sIB{VISIBLE_SUFFIX_LEN}s")
"""One valid row in the duplicate table: digest, line, normalised length, last characters."""
_BUCKETS = 256


class _DuplicateFinder:
    """Finds rows whose normalised codes are equal, in 21 bytes per row.

    Each row's record goes to one of 256 byte arrays by the digest's first byte; ``finish``
    then checks one bucket at a time with a set of its digests (a dict only for a bucket that
    holds a duplicate), so the transient memory is one bucket's. Digests are BLAKE2b keyed
    with a random per-scan key, 96 bits: the chance that two different codes collide in a
    10M-row file is about 10**-15, and the digests mean nothing outside this scan.
    """

    def __init__(self) -> None:
        self._hasher = hashlib.blake2b(digest_size=_DIGEST_LEN, key=os.urandom(16))
        self._buckets = [bytearray() for _ in range(_BUCKETS)]
        self._copy = self._hasher.copy
        self._pack = _RECORD.pack

    def add(self, line: int, normalised: str) -> None:
        """Records the valid row at ``line`` (lines must be added in ascending order)."""
        hasher = self._copy()
        encoded = normalised.encode("ascii")
        hasher.update(encoded)
        digest = hasher.digest()
        self._buckets[digest[0]] += self._pack(
            digest, line, len(encoded), encoded[-VISIBLE_SUFFIX_LEN:]
        )

    def finish(self, listed_max: int) -> tuple[tuple[DuplicateRow, ...], int]:
        """The first ``listed_max`` duplicates in line order and the total count. Frees the
        table."""
        found: list[Iterator[DuplicateRow]] = []
        total = 0
        for index, bucket in enumerate(self._buckets):
            self._buckets[index] = bytearray()
            pairs = _bucket_duplicates(bytes(bucket))
            total += len(pairs) // 2
            if pairs:
                found.append(_duplicate_rows(pairs))
        listed = tuple(itertools.islice(heapq.merge(*found, key=attrgetter("line")), listed_max))
        return listed, total


def _bucket_duplicates(table: bytes) -> list[bytes]:
    """Flat pairs (duplicate record, first record) of one bucket, in the duplicates' line
    order; empty when the bucket has none (the common case, decided by one set)."""
    size = _RECORD.size
    digests = [table[start : start + _DIGEST_LEN] for start in range(0, len(table), size)]
    if len(set(digests)) == len(digests):
        return []
    first: dict[bytes, int] = {}
    pairs: list[bytes] = []
    for start, digest in zip(range(0, len(table), size), digests, strict=True):
        earlier = first.setdefault(digest, start)
        if earlier != start:
            pairs += (table[start : start + size], table[earlier : earlier + size])
    return pairs


def _duplicate_rows(pairs: list[bytes]) -> Iterator[DuplicateRow]:
    for i in range(0, len(pairs), 2):
        _, line, length, tail = _RECORD.unpack(pairs[i])
        first_line = _RECORD.unpack(pairs[i + 1])[1]
        visible = tail.decode("ascii") if length > VISIBLE_SUFFIX_LEN else ""
        masked = MASK_CHAR * (length - len(visible)) + visible
        yield DuplicateRow(line, masked, DuplicateReason.DUPLICATE_IN_FILE, first_line)


# --- report ------------------------------------------------------------------------------------


def _write_report_rows(
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
