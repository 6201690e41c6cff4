"""The XML parts of an XLSX file, parsed with expat in bounded blocks.

Each part is fed to expat 64 KiB at a time; handlers keep only what the import needs:
relationships (id, type, target), the workbook's sheets and date system, which cell styles are
dates, the shared strings (one UTF-8 buffer and 8 bytes of offset an entry), and the worksheet's
rows, one at a time. Bounds hold while parsing, not after: a row's text (all its cells) stops at
``line_len_max`` characters, so a gigabyte inline string costs at most one block; cells beyond
``columns_max`` are never stored (a non-blank one is remembered as a marker), so a cell in
column XFD costs nothing; rows keep their spreadsheet numbers, so a gap costs nothing either.
A DOCTYPE is refused (no XLSX part has one), which shuts out entity expansion; a single token
(tag, comment, instruction) over 1 MiB is refused, since expat buffers one whole. Element names
are matched by local name (any prefix), so transitional and strict OOXML read alike.
"""

from __future__ import annotations

import posixpath
import re
from array import array
from collections import deque
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, time, timedelta
from typing import IO, Any
from xml.parsers import expat

from cardsvc.catalog.codefile.values import Budget, CodeFileLimits, over_bound
from cardsvc.catalog.codefile.xlsx_zip import ZIP_ERRORS, bad_xlsx, shown_name
from cardsvc.errors import CardsvcError

BLOCK_BYTES = 64 * 1024
"""Bytes fed to expat at a time; also expat's text buffer, so one text callback is at most this."""
XML_TOKEN_BYTES_MAX = 1 << 20
"""Bytes of one XML token (a start tag with its attributes, a comment, a processing
instruction): expat holds a token whole, and rescans it as it grows, until it ends. Excel's
largest tags (a long ``sqref`` list) are tens of kilobytes. Over it: LIMIT_EXCEEDED
``xlsx_token``."""
XLSX_ROWS_MAX = 1_048_576
"""Excel's last row; a larger row number is not a workbook Excel wrote."""
XLSX_COLUMNS_MAX = 16_384
"""Excel's last column (XFD)."""
BEYOND = "\x00beyond"
"""Stands, at index ``columns_max``, for the non-blank cells of a row beyond that column."""
WINDOWS_EPOCH = datetime(1899, 12, 30)
MAC_EPOCH = datetime(1904, 1, 1)
_DATE_FORMAT_IDS = frozenset({*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)})
"""Built-in number formats that are dates or times (27-36 and 50-58: the CJK locales' dates)."""
_NOT_FORMAT = re.compile(r'"[^"]*"|\\.|\[(?!(?:h+|m+|s+)\])[^\]]*\]|_.|\*.')
"""Quoted text, escaped characters, colours and locales (``[Red]``, ``[$-804]``) and spacing:
removed before looking for date letters (elapsed ``[h]``, ``[mm]``, ``[ss]`` are kept)."""
_DATE_LETTERS = re.compile(r"[dmyhs]", re.IGNORECASE)
_OFFICE_DOCUMENT = "/officeDocument"
LOCAL_NAMES_MAX = 256
_DAMAGE: tuple[type[Exception], ...] = (expat.ExpatError, *ZIP_ERRORS)


# --- the feeding loop ----------------------------------------------------------------------------


def _parser(start: Callable[[str, dict[str, str]], None], end: Callable[[str], None] | None,
            text: Callable[[str], None] | None) -> Any:
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = BLOCK_BYTES
    parser.ordered_attributes = False
    parser.StartElementHandler = start
    if end is not None:
        parser.EndElementHandler = end
    if text is not None:
        parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    return parser


def _refuse_doctype(*_: object) -> None:
    raise bad_xlsx(message="the XLSX file holds a DOCTYPE (no workbook part has one)")


def feed(parser: Any, stream: IO[bytes], name: str, line: Callable[[], int] | None = None,
         budget: Budget | None = None) -> Iterator[None]:
    """Feeds ``stream`` to ``parser`` block by block, yielding after each block (so a caller can
    take what the handlers collected) and checking ``budget`` there. Raises INVALID_ARGUMENT
    ``bad_xlsx`` (with ``line()`` when it is known) for XML or zip damage; a handler's own
    CardsvcError passes through."""
    fed = 0
    try:
        while True:
            try:
                block = stream.read(BLOCK_BYTES)
                parser.Parse(block, not block)
            except CardsvcError:
                raise
            except _DAMAGE:
                raise bad_xlsx(**_where(name, line)) from None
            fed += len(block)
            # Outside a handler, CurrentByteIndex is where the last event began: what lies
            # beyond it is one token expat is still buffering (a tag, comment, instruction).
            if fed - parser.CurrentByteIndex > XML_TOKEN_BYTES_MAX + BLOCK_BYTES:
                raise over_bound("xlsx_token", XML_TOKEN_BYTES_MAX,
                                 f"the XLSX file holds an XML tag, comment or instruction of more"
                                 f" than {XML_TOKEN_BYTES_MAX} bytes", **_where(name, line))
            yield
            if not block:
                return
            if budget is not None:
                budget.check(line() if line is not None else 0)
    finally:
        stream.close()


def _where(name: str, line: Callable[[], int] | None) -> dict[str, Any]:
    details: dict[str, Any] = shown_name(name)
    where = line() if line is not None else 0
    if where:
        details["line"] = where
    return details


def _local(name: str) -> str:
    return name.rpartition(":")[2]


class LocalNames(dict[str, str]):
    """Element names to local names (``x:row`` -> ``row``), remembered for the first
    ``LOCAL_NAMES_MAX`` names (a document can make up any number of names)."""

    def __missing__(self, name: str) -> str:
        local = name.rpartition(":")[2]
        if len(self) < LOCAL_NAMES_MAX:
            self[name] = local
        return local


def part_path(source: str, target: str) -> str:
    """A relationship's target as a member name: relative to the source part's folder, or
    absolute from the package root."""
    if target.startswith("/"):
        return posixpath.normpath(target).lstrip("/")
    folder = posixpath.dirname(source)
    rels_folder = posixpath.dirname(folder)  # "xl/_rels/workbook.xml.rels" -> "xl"
    return posixpath.normpath(posixpath.join(rels_folder, target)).lstrip("/")


# --- small parts: relationships, workbook, styles ------------------------------------------------


def relationships(stream: IO[bytes], name: str) -> dict[str, tuple[str, str]]:
    """``{id: (type, target)}`` of a ``.rels`` part."""
    found: dict[str, tuple[str, str]] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        if _local(tag) == "Relationship" and len(found) < 10_000:
            found[attrs.get("Id", "")] = (attrs.get("Type", ""), attrs.get("Target", ""))

    for _ in feed(_parser(start, None, None), stream, name):
        pass
    return found


def office_document(rels: dict[str, tuple[str, str]]) -> str:
    """The workbook's member name from the package's relationships (``xl/workbook.xml``)."""
    for kind, target in rels.values():
        if kind.endswith(_OFFICE_DOCUMENT):
            return part_path("_rels/.rels", target)
    raise bad_xlsx(message="the XLSX file names no workbook")


def workbook_sheets(stream: IO[bytes], name: str) -> tuple[list[str], bool]:
    """The relationship ids of the workbook's sheets in order, and whether it counts dates
    from 1904."""
    sheets: list[str] = []
    date1904 = [False]

    def start(tag: str, attrs: dict[str, str]) -> None:
        local = _local(tag)
        if local == "sheet" and len(sheets) < 10_000:
            rid = next((v for k, v in attrs.items() if ":" in k and _local(k) == "id"), "")
            sheets.append(rid)
        elif local == "workbookPr":
            date1904[0] = attrs.get("date1904", "").lower() in ("1", "true")

    for _ in feed(_parser(start, None, None), stream, name):
        pass
    return sheets, date1904[0]


def date_styles(stream: IO[bytes], name: str) -> frozenset[int]:
    """The indexes of ``cellXfs`` whose number format is a date or time."""
    formats: dict[int, str] = {}
    xf_formats: list[int] = []
    inside = [False]

    def start(tag: str, attrs: dict[str, str]) -> None:
        local = _local(tag)
        if local == "numFmt":
            formats[_int(attrs.get("numFmtId"))] = attrs.get("formatCode", "")
        elif local == "cellXfs":
            inside[0] = True
        elif local == "xf" and inside[0]:
            xf_formats.append(_int(attrs.get("numFmtId")))

    def end(tag: str) -> None:
        if _local(tag) == "cellXfs":
            inside[0] = False

    for _ in feed(_parser(start, end, None), stream, name):
        pass
    return frozenset(index for index, format_id in enumerate(xf_formats)
                     if _is_date_format(format_id, formats.get(format_id)))


def _int(text: str | None) -> int:
    try:
        return int(text or "0")
    except ValueError:
        raise bad_xlsx() from None


def _is_date_format(format_id: int, code: str | None) -> bool:
    if code is None:
        return format_id in _DATE_FORMAT_IDS
    return _DATE_LETTERS.search(_NOT_FORMAT.sub("", code)) is not None


# --- shared strings ------------------------------------------------------------------------------


class SharedStrings:
    """The shared-strings table: every string's UTF-8 in one buffer, 8 bytes of offset each.
    A string longer than ``line_len_max`` is not kept; a row using it is refused."""

    __slots__ = ("_data", "_offsets", "_too_long", "count")

    def __init__(self) -> None:
        self._data = bytearray()
        self._offsets = array("Q", [0])
        self._too_long: set[int] = set()
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, text: str | None) -> None:
        """Appends a string (None: one that was too long)."""
        if text is None:
            self._too_long.add(self.count)
        else:
            self._data += text.encode("utf-8", "surrogatepass")
        self._offsets.append(len(self._data))
        self.count += 1

    def get(self, index_text: str, line: int, limit: int) -> str:
        """The string a cell's ``<v>`` names. Raises INVALID_ARGUMENT ``bad_xlsx`` (no such
        string) or LIMIT_EXCEEDED ``line_length`` (a string longer than the row bound)."""
        try:
            index = int(index_text)
        except ValueError:
            raise bad_xlsx(line=line) from None
        if not 0 <= index < self.count:
            raise bad_xlsx(line=line)
        if self._too_long and index in self._too_long:
            raise _row_too_long(limit, line)
        offsets = self._offsets
        return self._data[offsets[index]:offsets[index + 1]].decode("utf-8", "surrogatepass")


class _Strings:
    """Expat handlers collecting each ``<si>``'s text into a SharedStrings table."""

    __slots__ = ("chars", "in_phonetic", "in_text", "limit", "names", "over", "parts", "table")

    def __init__(self, limit: int) -> None:
        self.table = SharedStrings()
        self.parts: list[str] = []
        self.names = LocalNames()
        self.limit = limit
        self.chars = 0
        self.in_text = self.in_phonetic = self.over = False

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        local = self.names[tag]
        if local == "t":
            self.in_text = not self.in_phonetic
        elif local == "rPh":
            self.in_phonetic = True

    def end(self, tag: str) -> None:
        local = self.names[tag]
        if local == "t":
            self.in_text = False
        elif local == "si":
            self.table.add(None if self.over else "".join(self.parts))
            self.parts = []
            self.chars, self.over = 0, False
        elif local == "rPh":
            self.in_phonetic = False

    def text(self, data: str) -> None:
        if self.in_text and not self.over:
            self.chars += len(data)
            if self.chars > self.limit:
                self.over = True
                self.parts = []
            else:
                self.parts.append(data)


def shared_strings(stream: IO[bytes], name: str, limits: CodeFileLimits,
                   budget: Budget | None) -> SharedStrings:
    """Reads the ``sst`` part: each ``<si>``'s text (its ``<t>`` runs, phonetic ``<rPh>`` runs
    left out), each bounded by ``line_len_max`` while it is read."""
    handlers = _Strings(limits.line_len_max)
    parser = _parser(handlers.start, handlers.end, handlers.text)
    for _ in feed(parser, stream, name, lambda: 0, budget):
        pass
    return handlers.table


# --- the worksheet -------------------------------------------------------------------------------


def _row_too_long(limit: int, line: int) -> CardsvcError:
    return over_bound("line_length", limit, f"row {line} holds more than {limit} characters",
                      line=line)


class _Sheet:
    """Expat handlers that turn ``<row>``/``<c>`` elements into (row number, cells) pairs."""

    __slots__ = (
        "beyond", "cap", "cell_style", "cell_type", "cells", "chars", "collect", "column",
        "columns", "date_styles", "epoch", "in_inline", "in_phonetic", "limit", "names",
        "parts", "row", "rows", "strings",
    )

    def __init__(self, strings: SharedStrings | None, styles: frozenset[int], epoch: datetime,
                 limits: CodeFileLimits) -> None:
        self.strings = strings
        self.date_styles = styles
        self.epoch = epoch
        self.cap = limits.columns_max
        self.limit = limits.line_len_max
        self.rows: deque[tuple[int, list[object]]] = deque()
        self.row = 0
        self.cells: dict[int, object] = {}
        self.column = 0
        self.chars = 0
        self.beyond = False
        self.cell_type = "n"
        self.cell_style = 0
        self.collect = False
        self.in_inline = False
        self.in_phonetic = False
        self.parts: list[str] = []
        self.columns: dict[str, int] = {}
        self.names = LocalNames()

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        local = self.names[tag]
        if local == "c":
            self.column = self._column_of(attrs.get("r"))
            self.cell_type = attrs.get("t", "n")
            style = attrs.get("s")
            self.cell_style = int(style) if style is not None and style.isdigit() else 0
            self.parts = []
        elif local == "v":
            self.collect = True
        elif local == "row":
            self._start_row(attrs.get("r"))
        elif local == "is":
            self.in_inline = True
        elif local == "t":
            self.collect = self.in_inline and not self.in_phonetic
        elif local == "rPh":
            self.in_phonetic = True

    def end(self, tag: str) -> None:
        local = self.names[tag]
        if local in ("v", "t"):
            self.collect = False
        elif local == "c":
            self._end_cell()
        elif local == "row":
            self._end_row()
        elif local == "is":
            self.in_inline = False
        elif local == "rPh":
            self.in_phonetic = False

    def text(self, data: str) -> None:
        if self.collect:
            self.chars += len(data)
            if self.chars > self.limit:
                raise _row_too_long(self.limit, self.row)
            self.parts.append(data)

    def _start_row(self, number: str | None) -> None:
        row = self.row + 1 if number is None else _row_number(number, self.row)
        if not self.row < row <= XLSX_ROWS_MAX:
            raise bad_xlsx(message="the XLSX sheet's row numbers do not increase",
                           line=self.row + 1)
        self.row, self.cells, self.column, self.chars, self.beyond = row, {}, 0, 0, False

    def _column_of(self, ref: str | None) -> int:
        if ref is None:
            return self.column + 1
        letters = ref.rstrip("0123456789")
        column = self.columns.get(letters)
        if column is None:
            column = _column_number(letters, self.row)
            self.columns[letters] = column  # at most 16,384 distinct entries
        return column

    def _end_cell(self) -> None:
        value = self._value()
        if self.column <= self.cap:
            self.cells[self.column] = value
        elif value is not None and (not isinstance(value, str) or value.strip()):
            self.beyond = True

    def _value(self) -> object:
        text = "".join(self.parts) if self.parts else None
        kind = self.cell_type
        if kind == "s":
            if text is None or self.strings is None:
                return None
            value = self.strings.get(text, self.row, self.limit)
            self.chars += len(value)
            if self.chars > self.limit:
                raise _row_too_long(self.limit, self.row)
            return value
        if kind in ("inlineStr", "str", "e"):
            return text
        if text is None:
            return None
        if kind == "b":
            return text.strip() in ("1", "true")
        if kind == "d":
            try:
                return datetime.fromisoformat(text.strip())
            except ValueError:
                return text
        return self._number(text)

    def _number(self, text: str) -> object:
        try:
            number: int | float = float(text) if any(c in text for c in ".eEnN") else int(text)
        except ValueError:
            raise bad_xlsx(message="the XLSX sheet holds a number that is not one",
                           line=self.row) from None
        if self.cell_style in self.date_styles:
            return _from_serial(number, self.epoch)
        return number

    def _end_row(self) -> None:
        cells = self.cells
        width = max(cells) if cells else 0
        row: list[object] = [None] * width
        for column, value in cells.items():
            row[column - 1] = value
        if self.beyond:
            row.extend([None] * (self.cap - width))
            row.append(BEYOND)
        self.rows.append((self.row, row))
        self.cells = {}


def _row_number(text: str, previous: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_xlsx(line=previous + 1) from None


def _column_number(letters: str, row: int) -> int:
    number = 0
    if not 1 <= len(letters) <= 3:
        raise bad_xlsx(line=row)
    for letter in letters:
        digit = ord(letter) - 64
        if not 1 <= digit <= 26:
            raise bad_xlsx(line=row)
        number = number * 26 + digit
    if number > XLSX_COLUMNS_MAX:
        raise bad_xlsx(line=row)
    return number


def _from_serial(serial: float, epoch: datetime) -> object:
    """An Excel date serial as a datetime (a time for a serial in [0, 1)), as openpyxl reads
    it; the number itself when it is no date Python can hold."""
    try:
        day, fraction = divmod(serial, 1)
        moment = timedelta(milliseconds=round(fraction * 86_400_000))
        if 0 <= serial < 1 and moment.days == 0:
            return (datetime.min + moment).time() if moment else time(0)
        if 0 < serial < 60 and epoch == WINDOWS_EPOCH:
            day += 1  # Excel's fictitious 1900-02-29
        return epoch + timedelta(days=day) + moment
    except (OverflowError, ValueError):
        return serial


def sheet_rows(stream: IO[bytes], name: str, strings: SharedStrings | None,
               styles: frozenset[int], date1904: bool, limits: CodeFileLimits,
               budget: Budget | None) -> Generator[tuple[int, list[object]], None, None]:
    """The worksheet's rows as (spreadsheet row number, cells by column from A), one block of
    XML at a time; a row with non-blank cells beyond ``columns_max`` ends with ``BEYOND`` at
    that index. Raises INVALID_ARGUMENT ``bad_xlsx`` (with the line) or LIMIT_EXCEEDED
    (``line_length``, ``cpu_seconds``)."""
    sheet = _Sheet(strings, styles, MAC_EPOCH if date1904 else WINDOWS_EPOCH, limits)
    parser = _parser(sheet.start, sheet.end, sheet.text)
    rows = sheet.rows
    for _ in feed(parser, stream, name, lambda: sheet.row, budget):
        while rows:
            yield rows.popleft()
