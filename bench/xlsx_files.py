"""XLSX files written part by part: small exact workbooks, big streamed ones, and hostile ones.

Goal: the import tests, the benchmark and the sample files need workbooks whose every byte is
known: a cell in column XFD, one inline string of a gigabyte, a zip bomb, a lying size, a
duplicate member name. openpyxl cannot write those, and its output embeds the time of writing.
This module writes the few parts a reader needs (content types, relationships, workbook,
styles, shared strings, one worksheet) with fixed zip timestamps, so equal input gives equal
bytes.

Nothing here is imported by the service; it serves ``tests/``, ``bench/`` and
``scripts/import_samples.py``.
"""

from __future__ import annotations

import random
import struct
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

Cell = str | int | float | bool | date | datetime | None
"""A value to write: text (a shared string), a number, a boolean, a date (a number styled as a
date: numFmt 14 for a date, 22 for a datetime), or None (no cell)."""

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

CONTENT_TYPES = (
    XML_HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
    'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.styles+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
)
ROOT_RELS = (
    XML_HEAD + f'<Relationships xmlns="{PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
WORKBOOK = (
    XML_HEAD + f'<workbook xmlns="{MAIN_NS}" xmlns:r="{REL_NS}"><sheets>'
    '<sheet name="codes" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    XML_HEAD + f'<Relationships xmlns="{PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{REL_NS}/styles" Target="styles.xml"/>'
    f'<Relationship Id="rId3" Type="{REL_NS}/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
STYLES = (
    XML_HEAD + f'<styleSheet xmlns="{MAIN_NS}">'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
    '<borders count="1"><border/></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
    "</cellStyleXfs>"
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="22" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_DATE_STYLE, _DATETIME_STYLE = 1, 2
_EXCEL_EPOCH = datetime(1899, 12, 30)
_SHEET_HEAD = XML_HEAD + f'<worksheet xmlns="{MAIN_NS}"><sheetData>'
_SHEET_TAIL = "</sheetData></worksheet>"


def column_letters(column: int) -> str:
    """``1`` -> ``A``, ``16384`` -> ``XFD``."""
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _info(name: str, compress: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress
    info.external_attr = 0o600 << 16
    return info


def write_fixed_parts(archive: zipfile.ZipFile, *, shared_strings: bool = True) -> None:
    """Content types, relationships, workbook and styles (the sheet and strings are the
    caller's)."""
    rels, types = WORKBOOK_RELS, CONTENT_TYPES
    if not shared_strings:
        rels = rels.replace(f'<Relationship Id="rId3" Type="{REL_NS}/sharedStrings" '
                            'Target="sharedStrings.xml"/>', "")
        types = types.replace('<Override PartName="/xl/sharedStrings.xml" ContentType="'
                              'application/vnd.openxmlformats-officedocument.spreadsheetml.'
                              'sharedStrings+xml"/>', "")
    for name, text in (("[Content_Types].xml", types), ("_rels/.rels", ROOT_RELS),
                       ("xl/workbook.xml", WORKBOOK), ("xl/_rels/workbook.xml.rels", rels),
                       ("xl/styles.xml", STYLES)):
        archive.writestr(_info(name), text)


def _cell_xml(ref: str, value: Cell, strings: dict[str, int]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, datetime):
        serial = (value - _EXCEL_EPOCH).total_seconds() / 86_400
        return f'<c r="{ref}" s="{_DATETIME_STYLE}"><v>{serial!r}</v></c>'
    if isinstance(value, date):
        serial = (value - _EXCEL_EPOCH.date()).days
        return f'<c r="{ref}" s="{_DATE_STYLE}"><v>{serial}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    index = strings.setdefault(value, len(strings))
    return f'<c r="{ref}" t="s"><v>{index}</v></c>'


def write_xlsx(path: Path, rows: Sequence[Sequence[Cell]]) -> Path:
    """A small workbook: ``rows`` from row 1 on, text as shared strings. Deterministic."""
    strings: dict[str, int] = {}
    body = []
    for number, row in enumerate(rows, start=1):
        cells = "".join(_cell_xml(f"{column_letters(col)}{number}", value, strings)
                        for col, value in enumerate(row, start=1))
        body.append(f'<row r="{number}">{cells}</row>')
    items = "".join(f"<si><t xml:space=\"preserve\">{escape(text)}</t></si>" for text in strings)
    sst = (XML_HEAD + f'<sst xmlns="{MAIN_NS}" count="{len(strings)}" '
           f'uniqueCount="{len(strings)}">{items}</sst>')
    with zipfile.ZipFile(path, "w") as archive:
        write_fixed_parts(archive)
        archive.writestr(_info("xl/sharedStrings.xml"), sst)
        archive.writestr(_info("xl/worksheets/sheet1.xml"),
                         _SHEET_HEAD + "".join(body) + _SHEET_TAIL)
    return path


# --- big workbooks, streamed ---------------------------------------------------------------------


def random_codes(rows: int, seed: int = 5) -> Iterator[tuple[str, str]]:
    """``rows`` (code, PIN) pairs: 16 characters of a 32-symbol alphabet, 8 digits; seeded (a
    repeat is possible but has probability ~rows**2 / 2**81)."""
    rng = random.Random(seed)
    for _ in range(rows):
        yield "".join(rng.choices(CODE_ALPHABET, k=16)), f"{rng.randrange(10**8):08d}"


def _write_blocks(handle: IO[bytes], pieces: Iterable[str], block: int = 10_000) -> None:
    buffer: list[str] = []
    for piece in pieces:
        buffer.append(piece)
        if len(buffer) >= block:
            handle.write("".join(buffer).encode())
            buffer.clear()
    handle.write("".join(buffer).encode())


def write_big_xlsx(path: Path, rows: int, *, seed: int = 5) -> Path:
    """A ``code,pin`` workbook of ``rows`` data rows (text cells in the shared-strings table, as
    Excel writes them), streamed part by part in flat memory."""
    with zipfile.ZipFile(path, "w") as archive:
        write_fixed_parts(archive)
        with archive.open(_info("xl/sharedStrings.xml"), "w", force_zip64=True) as handle:
            handle.write((XML_HEAD + f'<sst xmlns="{MAIN_NS}"><si><t>code</t></si>'
                          "<si><t>pin</t></si>").encode())
            _write_blocks(handle, (f"<si><t>{code}</t></si><si><t>{pin}</t></si>"
                                   for code, pin in random_codes(rows, seed)))
            handle.write(b"</sst>")
        with archive.open(_info("xl/worksheets/sheet1.xml"), "w", force_zip64=True) as handle:
            handle.write((_SHEET_HEAD + '<row r="1"><c r="A1" t="s"><v>0</v></c>'
                          '<c r="B1" t="s"><v>1</v></c></row>').encode())
            _write_blocks(handle, (
                f'<row r="{i + 2}"><c r="A{i + 2}" t="s"><v>{2 * i + 2}</v></c>'
                f'<c r="B{i + 2}" t="s"><v>{2 * i + 3}</v></c></row>' for i in range(rows)))
            handle.write(_SHEET_TAIL.encode())
    return path


# --- hostile workbooks ---------------------------------------------------------------------------


def _sheet_only(path: Path, pieces: Iterable[str]) -> Path:
    """A workbook without shared strings whose sheet XML is ``pieces`` inside sheetData."""
    with zipfile.ZipFile(path, "w") as archive:
        write_fixed_parts(archive, shared_strings=False)
        with archive.open(_info("xl/worksheets/sheet1.xml"), "w", force_zip64=True) as handle:
            handle.write(_SHEET_HEAD.encode())
            _write_blocks(handle, pieces)
            handle.write(_SHEET_TAIL.encode())
    return path


def _inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{escape(text)}</t></is></c>'


def xfd_columns(path: Path, rows: int) -> Path:
    """The tester's file: a ``code`` header, then ``rows`` rows of one code in column A and one
    cell in column XFD (16,384), which a padding reader turns into 16,384 cells a row."""
    header = f'<row r="1">{_inline("A1", "code")}</row>'
    body = (f'<row r="{r}">{_inline(f"A{r}", f"XFD-{r:08d}")}{_inline(f"XFD{r}", "x")}</row>'
            for r in range(2, rows + 2))
    return _sheet_only(path, [header, *body])


def huge_inline_string(path: Path, chars: int, *, column: str = "B") -> Path:
    """A ``code,note`` header and one row whose ``note`` cell is one inline string of ``chars``
    characters (a gigabyte of ``A`` deflates to about a megabyte)."""
    header = f'<row r="1">{_inline("A1", "code")}{_inline("B1", "note")}</row>'
    piece = "A" * (1 << 20)

    def pieces() -> Iterator[str]:
        yield header
        yield f'<row r="2">{_inline("A2", "CODE-0001")}<c r="{column}2" t="inlineStr"><is><t>'
        left = chars
        while left > 0:
            yield piece[: min(left, len(piece))]
            left -= len(piece)
        yield "</t></is></c></row>"

    return _sheet_only(path, pieces())


def huge_token(path: Path, chars: int, *, kind: str = "comment") -> Path:
    """A ``code`` sheet whose second row holds one XML token of ``chars`` characters that an
    XML parser must buffer whole before it can report it: a ``comment``, a processing
    instruction (``pi``) or an attribute value (``attribute``, ``>`` every 64 characters so a
    scan for ``>`` alone would not see it)."""
    opening, filler, closing = {
        "comment": ("<!--", "x" * 64, "-->"),
        "pi": ("<?cardsvc ", "x" * 64, "?>"),
        "attribute": ('<c r="B2" t="inlineStr" data="', "x" * 63 + ">", '"/>'),
    }[kind]
    block = filler * ((1 << 20) // len(filler))

    def pieces() -> Iterator[str]:
        yield f'<row r="1">{_inline("A1", "code")}</row><row r="2">{_inline("A2", "TOKEN-01")}'
        yield opening
        left = chars
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)
        yield closing + "</row>"

    return _sheet_only(path, pieces())


def zip_bomb(path: Path, member_bytes: int, *, in_sheet: bool = False) -> Path:
    """A small valid workbook plus ``member_bytes`` of one repeated byte (ratio ~1000:1): as an
    extra member of zeros (``xl/media/padding.bin``, which no reader needs to open), or, with
    ``in_sheet``, as whitespace between the sheet's rows (legal XML that every reader must
    inflate and parse)."""
    if in_sheet:
        block = " " * (1 << 20)

        def pieces() -> Iterator[str]:
            yield f'<row r="1">{_inline("A1", "code")}</row>'
            left = member_bytes
            while left > 0:
                yield block[: min(left, len(block))]
                left -= len(block)
            yield f'<row r="2">{_inline("A2", "BOMB-0001")}</row>'

        return _sheet_only(path, pieces())
    write_xlsx(path, [["code"], ["BOMB-0001"]])
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "a") as archive, archive.open(
            _info("xl/media/padding.bin"), "w", force_zip64=True) as handle:
        left = member_bytes
        while left > 0:
            handle.write(zeros[: min(left, len(zeros))])
            left -= len(zeros)
    return path


def duplicate_member(path: Path) -> Path:
    """A workbook with two members named ``xl/worksheets/sheet1.xml``: readers that take the
    first and readers that take the last see different sheets."""
    write_xlsx(path, [["code"], ["FIRST-0001"]])
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(_info("xl/worksheets/sheet1.xml"),
                         _SHEET_HEAD + f'<row r="1">{_inline("A1", "code")}</row>'
                         f'<row r="2">{_inline("A2", "SECOND-0002")}</row>' + _SHEET_TAIL)
    return path


def lie_about_size(path: Path, member: str, declared: int) -> Path:
    """Rewrites ``member``'s uncompressed size in the local header and the central directory to
    ``declared`` (which must fit 32 bits), leaving the data and CRC alone."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    encoded = member.encode()
    local = info.header_offset
    if data[local:local + 4] != b"PK\x03\x04":
        raise ValueError("no local header where the central directory says")
    struct.pack_into("<I", data, local + 22, declared)
    start = data.find(b"PK\x01\x02")
    while start >= 0:
        name_len = struct.unpack_from("<H", data, start + 28)[0]
        if bytes(data[start + 46:start + 46 + name_len]) == encoded:
            struct.pack_into("<I", data, start + 24, declared)
        start = data.find(b"PK\x01\x02", start + 4)
    path.write_bytes(bytes(data))
    return path
