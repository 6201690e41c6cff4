"""The fuzz target of the code-file reader, shared by the atheris harness
(``tests/catalog/fuzz_codefile.py``) and the corpus replay test.

One input is one file, in one of three forms chosen by its first byte (mod 4):

0. the rest as a file named ``.csv`` (utf-8);
1. the rest as a file named ``.csv`` read with ``encoding="gb18030"``;
2. the rest as a raw file named ``.xlsx`` (format found by magic bytes: zip damage, foreign
   zips, CSV with an .xlsx name);
3. the rest as a worksheet's XML, and after a ``\\x00SST\\x00`` separator (if any) the
   shared-strings part, zipped by the target into an otherwise valid workbook, so mutations
   reach the XML reader instead of dying at the zip's CRC.

The property: ``scan`` and ``read_codes`` (per_row) raise nothing but coded errors
(``CardsvcError``), under small limits that keep each input fast; memory and time are bounded by
those limits (the harness adds libFuzzer's RSS limit and per-input timeout, the replay test a
tracemalloc peak).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from cardsvc.catalog.codefile import CodeFileLimits, read_codes, scan
from cardsvc.errors import CardsvcError

LIMITS = CodeFileLimits(
    rows_max=20_000, columns_max=64, problems_listed_max=100,
    duplicates_listed_max=100, xlsx_part_bytes_max=4 << 20, xlsx_member_bytes_max=16 << 20,
    xlsx_total_bytes_max=32 << 20, xlsx_members_max=200, cpu_seconds_max=5.0,
)
SST_SEPARATOR = b"\x00SST\x00"
_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    b'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
    b"</Types>")
_ROOT_RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    b"</Relationships>")
_WORKBOOK = (
    b'<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/'
    b'main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    b'<sheets><sheet name="s" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WORKBOOK_RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    b'<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>')


def workbook_of(sheet_xml: bytes, strings_xml: bytes | None) -> bytes:
    """A valid zip around the given worksheet (and shared strings) XML."""
    import io

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", sheet_xml)
        if strings_xml is not None:
            archive.writestr("xl/sharedStrings.xml", strings_xml)
    return out.getvalue()


def file_of(data: bytes, folder: Path) -> tuple[Path, str]:
    """The file the input stands for, written in ``folder``, and the encoding to read it with."""
    form = data[0] % 4 if data else 0
    body = data[1:]
    if form == 3:
        sheet, _, strings = body.partition(SST_SEPARATOR)
        body = workbook_of(sheet, strings or None)
    path = folder / ("input.xlsx" if form >= 2 else "input.csv")
    path.write_bytes(body)
    return path, "gb18030" if form == 1 else "utf-8"


def run_one(data: bytes, folder: Path) -> str:
    """Reads the input both ways; returns ``"ok"`` or the coded error's code. Any other
    exception propagates: it is a finding."""
    path, encoding = file_of(data, folder)
    try:
        scan(path, limits=LIMITS, encoding=encoding)
        for _ in read_codes(path, mode="per_row", limits=LIMITS, encoding=encoding,
                            chunk_rows=1_000):
            pass
    except CardsvcError as error:
        return error.code.value
    return "ok"
