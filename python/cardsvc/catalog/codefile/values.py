"""What a code file is read into: the limits, the modes and formats, rows, problems, duplicates
and the scan's report."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cardsvc.engine import CODE_LEN_MAX, normalise_code
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.masking import MASK_CHAR, VISIBLE_SUFFIX_LEN, mask_code

ROWS_MAX = 10_000_000
"""Rows in one file, header and blank rows included: 10x a 1M-code batch. Bounds the
in-file duplicate table of :func:`scan` (21 bytes a row: 210 MB at the bound)."""
LINE_LEN_MAX = 16_384
"""Characters in one row: a CSV line (terminator excluded) and a CSV record (a quoted field may
span lines), and the text of all cells of one XLSX row. A code (at most 512 raw characters), a
PIN, a date and room for wide exports' extra columns. Only one row is held at a time, and no
cell's text is read past this bound (a 1 GiB inline string stops after 16 KiB)."""
COLUMNS_MAX = 256
"""Header columns: exports have a handful; the header and each row are held as lists. XLSX
cells beyond this column are never stored (no padding up to column XFD): a non-blank one makes
its row an ``extra_columns`` problem, and the header's ``columns`` LIMIT_EXCEEDED."""
PROBLEMS_LISTED_MAX = 1_000
"""Problems :func:`scan` lists (all are counted): enough to diagnose a file, ~150 bytes each."""
DUPLICATES_LISTED_MAX = 100_000
"""In-file duplicates :func:`scan` lists (all are counted), ~250 bytes each: 25 MB at the bound.
A file with more is broken, not merely repetitive."""
XLSX_PART_BYTES_MAX = 128 * 1024 * 1024
"""Uncompressed size of any XLSX part read besides the worksheet (shared strings, styles,
workbook, relationships). Excel's own limit of 1,048,576 rows with a code and a PIN as text
needs ~70 MB of shared strings; the reader keeps their text (UTF-8) and 4 bytes an entry, at most
about the part's size."""
XLSX_MEMBER_BYTES_MAX = 1024 * 1024 * 1024
"""Declared uncompressed size of any member of the zip, the worksheet included: 1,048,576 rows
(Excel's limit) of ~1 KB of XML each. Worksheets are streamed, so this bounds time, not memory."""
XLSX_TOTAL_BYTES_MAX = 2 * 1024 * 1024 * 1024
"""Sum of the declared uncompressed sizes of all members (an archive of many members each under
``xlsx_member_bytes_max``)."""
XLSX_RATIO_MAX = 100
"""Declared uncompressed / compressed size of a member above ``XLSX_RATIO_FLOOR_BYTES``: XML
deflates 5-20x; a zip bomb or a gigabyte of one repeated character deflates ~1000x. (Apache
POI's ZipSecureFile refuses the same ratio by default.)"""
XLSX_RATIO_FLOOR_BYTES = 1024 * 1024
"""Members this small are not ratio-checked: a tiny part may deflate well and costs nothing."""
XLSX_MEMBERS_MAX = 10_000
"""Members of the zip (a workbook has tens; with images, hundreds). Checked from the end of
central directory record before the directory is parsed (~500 bytes per member in zipfile)."""
CPU_SECONDS_MAX = 300.0
"""CPU seconds (of the importing thread) one file may use, check and load together: a
10M-row CSV needs ~90 s on the development machine; the tester's 980 KB XLSX with cells in
column XFD took 11 minutes before the reader stopped padding rows. Over it: LIMIT_EXCEEDED
``cpu_seconds`` with the line reached."""
BUDGET_CHECK_EVERY_ROWS = 4_096
"""Rows between two checks of the CPU budget (and of a cancellation) while reading."""
CHUNK_ROWS_DEFAULT = 50_000
"""Rows per chunk of :func:`read_codes`: ~11 MB of rows, one core import call each."""
PROGRESS_EVERY_ROWS = 65_536
""":func:`scan` reports progress after every this many rows."""
VALID_UNTIL_MIN = 946_684_800
"""2000-01-01T00:00:00Z. Earlier values are refused: they are Excel serial numbers or typos, not
the end of a code's validity."""
VALID_UNTIL_MAX = 2**32 - 1
"""The core keeps validity as unsigned 32-bit Unix seconds."""
EXACT_FLOAT_INT_LIMIT = 2**53
"""Every integer below this is exactly a double; at or above it a stored number need not be the
integer that was typed (XLSX stores numbers as doubles, whatever digits the XML shows)."""
XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0"
XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
DELIMITERS = (",", ";", "\t")
SNIFF_LINES_MAX = 1_000
"""Blank lines read before the header to sniff the delimiter; they are kept to be parsed."""
QUOTED = re.compile(r'"[^"]*"')
EXCEL_ERROR_VALUES = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA"}
)
"""What an XLSX error cell (or a CSV exported from one) holds; never a code or PIN."""
CORE_REASONS = {"empty": "empty", "too long": "too_long", "not printable ASCII": "not_printable"}
"""The core's INVALID_CODE reasons as problem reason words."""
FORMULA_STARTS = frozenset("=+-@")
"""A code or PIN may not start with one of these (``formula_prefix``): a spreadsheet reads such a
cell as a formula (``=HYPERLINK(...)``, ``+1+1``, ``-2+3``, ``@SUM(...)``), so a code that starts
with one would run as a formula wherever it is pasted or exported. No card key or voucher code
starts with one; refusing them at import protects every consumer (our exports, agents' systems,
resellers' spreadsheets) without altering any code's text. Tab and CR, the other two starters
OWASP lists, never reach a code: surrounding whitespace is stripped and control characters
inside are refused (``not_printable``)."""
SNIFF_BYTES = 4_096
"""Bytes read from the start of a CSV to find its byte order mark or NUL bytes."""
CODE_ALIASES = frozenset({"code", "card", "card_no", "card_number", "cdkey", "卡号", "卡密"})
PIN_ALIASES = frozenset({"pin", "password", "secret", "密码"})
VALID_UNTIL_ALIASES = frozenset({"valid_until", "expires", "expiry", "有效期"})
CARD_SECRET = "卡密"

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


class FileEncoding(StrEnum):
    """How a CSV's bytes are read (XLSX declares its own). ``utf-8``, the default: UTF-8 with or
    without a byte order mark, or UTF-16 when the file starts with a UTF-16 byte order mark
    (which declares it: Excel's "Unicode text" export). ``gb18030``: GB18030, hence also GBK and
    GB2312 (Excel's "CSV" on a Chinese Windows); given explicitly, never guessed."""

    UTF8 = "utf-8"
    GB18030 = "gb18030"


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
    is. Exceeding any but the two ``*_listed_max`` (which only cap what is listed) raises
    LIMIT_EXCEEDED with ``details["field"]`` naming it (``rows``, ``line_length``,
    ``columns``, ``xlsx_part``, ``xlsx_member``, ``xlsx_total``, ``xlsx_ratio``,
    ``xlsx_members``, ``cpu_seconds``; and ``xlsx_token``, fixed at
    ``xlsx_xml.XML_TOKEN_BYTES_MAX``) and ``max``."""

    rows_max: int = ROWS_MAX
    line_len_max: int = LINE_LEN_MAX
    columns_max: int = COLUMNS_MAX
    problems_listed_max: int = PROBLEMS_LISTED_MAX
    duplicates_listed_max: int = DUPLICATES_LISTED_MAX
    xlsx_part_bytes_max: int = XLSX_PART_BYTES_MAX
    xlsx_member_bytes_max: int = XLSX_MEMBER_BYTES_MAX
    xlsx_total_bytes_max: int = XLSX_TOTAL_BYTES_MAX
    xlsx_ratio_max: float = XLSX_RATIO_MAX
    xlsx_members_max: int = XLSX_MEMBERS_MAX
    cpu_seconds_max: float = CPU_SECONDS_MAX


DEFAULT_LIMITS = CodeFileLimits()


class Budget:
    """The CPU one file may use, across both passes (check and load) when they share it, and an
    optional ``interrupt`` (e.g. a job's cancellation check, which raises) run at the same
    points. CPU is the importing thread's (``time.thread_time``), so waiting for the database
    or for other jobs does not count; create the budget on the thread that reads."""

    __slots__ = ("_interrupt", "_limit", "_started", "cpu_seconds_max")

    def __init__(self, cpu_seconds_max: float,
                 interrupt: Callable[[], None] | None = None) -> None:
        self.cpu_seconds_max = cpu_seconds_max
        self._interrupt = interrupt
        self._started = time.thread_time()
        self._limit = self._started + cpu_seconds_max

    def check(self, line: int) -> None:
        """Raises the interrupt's error, or LIMIT_EXCEEDED (``{"field": "cpu_seconds", "max",
        "line"}``, the line reached when there is one) once the thread has used more than
        ``cpu_seconds_max`` since the budget was created."""
        if self._interrupt is not None:
            self._interrupt()
        if time.thread_time() > self._limit:
            where = {"line": line} if line > 0 else {}
            raise over_bound(
                "cpu_seconds", self.cpu_seconds_max,
                f"reading the file used more than {self.cpu_seconds_max:g} CPU seconds"
                + (f" (stopped at line {line})" if line > 0 else ""), **where)


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
        ``{"field": "file", "reason": "no_rows"}`` when no row follows the header, ``{"field":
        "file", "reason": "invalid_rows", "problems": n, "first_line": l}`` when ``mode`` is
        all_or_nothing and a row is invalid, or ``{"field": "file", "reason": "no_codes"}`` when
        no row would be imported. Pure otherwise."""
        if self.rows == 0:
            raise make_error(
                ErrorCode.INVALID_ARGUMENT,
                "the file has a header but no rows under it",
                {"field": "file", "reason": "no_rows"},
            )
        if mode_of(mode) is ImportMode.ALL_OR_NOTHING and self.problem_count:
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
class Layout:
    """Where the fields are: column indexes (0-based) and the header's width."""

    code: int
    pin: int | None
    valid_until: int | None
    width: int
    ignored: tuple[str, ...]


Valid = tuple[str, str, str | None, int | None]
"""A valid row's code as written, normalised code, PIN and validity end."""
Records = Generator[tuple[int, Sequence[object]], None, None]
"""(line, cells) of each row after the header."""


def over_bound(field: str, maximum: float, message: str, **details: object) -> CardsvcError:
    """LIMIT_EXCEEDED naming the bound (``field``, ``max``) and anything else (``line``)."""
    return make_error(ErrorCode.LIMIT_EXCEEDED, message,
                      {"field": field, "max": maximum, **details})


def too_many_rows(limits: CodeFileLimits) -> CardsvcError:
    return make_error(
        ErrorCode.LIMIT_EXCEEDED,
        f"the file has more than {limits.rows_max} rows",
        {"field": "rows", "max": limits.rows_max},
    )


REPORT_COLUMNS = ("line", "field", "reason", "masked_code", "first_line", "count")
"""The downloadable report's header. A problem fills line, field and reason; a duplicate also
masked_code and, within the file, first_line. A last row with reason ``not_listed`` and field
``problems`` or ``duplicates`` gives in ``count`` how many were found but not listed."""


def encoding_of(encoding: FileEncoding | str) -> FileEncoding:
    """``encoding`` as a FileEncoding. Raises INVALID_ARGUMENT (``{"field": "encoding",
    "reason": "unknown"}``)."""
    try:
        return FileEncoding(encoding)
    except ValueError:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "encoding must be utf-8 or gb18030",
            {"field": "encoding", "reason": "unknown"},
        ) from None


def mode_of(mode: ImportMode | str) -> ImportMode:
    """``mode`` as an ImportMode (callers may pass the plain string). Raises INVALID_ARGUMENT."""
    try:
        return ImportMode(mode)
    except ValueError:
        raise make_error(
            ErrorCode.INVALID_ARGUMENT,
            "mode must be all_or_nothing or per_row",
            {"field": "mode", "reason": "unknown"},
        ) from None
