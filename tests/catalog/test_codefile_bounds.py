"""Goal: the file reader bounds CPU and memory per file, not only rows. A
cell beyond the header is never padded up to (the tester's 980 KB XLSX with a cell in column XFD
per row took 11 minutes); no cell's text is read past the row bound (a 1 MB XLSX holding one
1 GiB inline string took the server to 2.15 GB); every zip member's declared size and
compression ratio is checked before anything is inflated, and lying sizes, duplicate or
overlapping members and hostile XML are refused; a file that needs more CPU than its budget
stops with LIMIT_EXCEEDED. Every refusal is a coded error; nothing else escapes.

Method: each hostile file is generated here (``bench.xlsx_files``, exact bytes; nothing large is
committed), then read with ``scan``/``read_codes`` under default or reduced limits. Memory is
asserted as a tracemalloc peak with generous margins, time only as a refusal (the CPU budget
set below what the file needs). The records the XLSX reader yields are inspected to prove no
row is padded.
"""

from __future__ import annotations

import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import xlsx_files
from cardsvc.catalog.codefile import CodeFileLimits, CodeRow, RowProblem, read_codes, scan
from cardsvc.catalog.codefile.xlsx_file import xlsx_records
from cardsvc.errors import CardsvcError, ErrorCode

MIB = 1 << 20


def peak_of(run: Callable[[], Any]) -> tuple[Any, int]:
    """``run()``'s result (or the CardsvcError it raised) and its tracemalloc peak in bytes."""
    tracemalloc.start()
    try:
        try:
            result: Any = run()
        except CardsvcError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refusal(path: Path, **limits: Any) -> CardsvcError:
    with pytest.raises(CardsvcError) as caught:
        scan(path, limits=CodeFileLimits(**limits))
    return caught.value


def rows_of(path: Path, **kwargs: Any) -> list[CodeRow]:
    return [row for chunk in read_codes(path, **kwargs) for row in chunk]


# --- cells far to the right ---------------------------------------------------------------------


def test_cells_in_column_xfd_are_not_padded_and_make_each_row_a_problem(tmp_path: Path) -> None:
    path = xlsx_files.xfd_columns(tmp_path / "xfd.xlsx", rows=3_000)
    widths = {len(cells) for _, cells in xlsx_records(path, CodeFileLimits())}
    assert max(widths) <= CodeFileLimits().columns_max + 1, widths
    report, peak = peak_of(lambda: scan(path))
    assert (report.rows, report.valid_rows, report.problem_count) == (3_000, 0, 3_000)
    assert report.problems[0] == RowProblem(2, "row", "extra_columns")
    assert peak < 8 * MIB, peak


def test_a_header_cell_in_column_xfd_is_limit_exceeded(tmp_path: Path) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "h.xlsx", [["code"], ["A-1"]])
    text = '<row r="1"><c r="A1" t="inlineStr"><is><t>code</t></is></c>' \
           '<c r="XFD1" t="inlineStr"><is><t>pin</t></is></c></row>'
    replace_sheet(path, text)
    assert refusal(path).details == {"field": "columns", "max": 256}


def replace_sheet(path: Path, rows_xml: str) -> None:
    """Rewrites the workbook's sheet to hold ``rows_xml`` inside sheetData."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts["xl/worksheets/sheet1.xml"] = (
        xlsx_files.XML_HEAD + f'<worksheet xmlns="{xlsx_files.MAIN_NS}"><sheetData>'
        f"{rows_xml}</sheetData></worksheet>").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


# --- one huge cell ------------------------------------------------------------------------------


def test_a_huge_inline_string_is_refused_by_its_ratio_before_parsing(tmp_path: Path) -> None:
    path = xlsx_files.huge_inline_string(tmp_path / "huge.xlsx", chars=256 * MIB)
    assert path.stat().st_size < 2 * MIB
    error, peak = peak_of(lambda: scan(path))
    assert isinstance(error, CardsvcError) and error.code is ErrorCode.LIMIT_EXCEEDED
    assert error.details["field"] == "xlsx_ratio"
    assert peak < 4 * MIB, peak


def test_a_huge_cell_is_never_read_past_the_row_bound(tmp_path: Path) -> None:
    # Ratio checking off: the parser itself must stop at the row bound, line named.
    path = xlsx_files.huge_inline_string(tmp_path / "huge.xlsx", chars=64 * MIB)
    error, peak = peak_of(lambda: scan(path, limits=CodeFileLimits(xlsx_ratio_max=10**9)))
    assert isinstance(error, CardsvcError)
    assert error.details == {"field": "line_length", "max": 16_384, "line": 2}
    assert peak < 4 * MIB, peak


@pytest.mark.parametrize("kind", ["comment", "pi", "attribute"])
def test_a_huge_xml_token_is_refused_before_the_parser_holds_it(tmp_path: Path,
                                                                kind: str) -> None:
    # expat buffers a tag, comment or instruction whole before it reports it; ratio off.
    path = xlsx_files.huge_token(tmp_path / f"{kind}.xlsx", 64 * MIB, kind=kind)
    error, peak = peak_of(lambda: scan(path, limits=CodeFileLimits(xlsx_ratio_max=10**9)))
    assert isinstance(error, CardsvcError) and error.code is ErrorCode.LIMIT_EXCEEDED
    assert (error.details["field"], error.details["max"]) == ("xlsx_token", MIB)
    assert peak < 8 * MIB, peak


def test_a_huge_shared_string_is_refused_at_the_row_that_uses_it(tmp_path: Path) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "s.xlsx", [["code", "note"], ["A-1", "x" * 300],
                                                       ["A-2", "short"]])
    error = refusal(path, line_len_max=200)
    assert error.details == {"field": "line_length", "max": 200, "line": 2}
    # A long string no row uses costs nothing.
    unused = xlsx_files.write_xlsx(tmp_path / "u.xlsx", [["code"], ["A-1"]])
    with zipfile.ZipFile(unused) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts["xl/sharedStrings.xml"] = parts["xl/sharedStrings.xml"].replace(
        b"</sst>", b"<si><t>" + b"y" * 300 + b"</t></si></sst>")
    with zipfile.ZipFile(unused, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    assert rows_of(unused, limits=CodeFileLimits(line_len_max=200)) == [
        CodeRow(2, "A-1", None, None)]


def test_a_csv_record_spanning_lines_is_bounded_like_a_line(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text("code,note\nA-1,ok\nA-2,\"" + "x" * 30 + "\n" * 10 + "y" * 30 + "\"\n")
    assert rows_of(path, limits=CodeFileLimits(line_len_max=100)) == [
        CodeRow(2, "A-1", None, None), CodeRow(3, "A-2", None, None)]
    error = refusal(path, line_len_max=50)
    assert error.details == {"field": "line_length", "max": 50, "line": 3}


# --- the zip ------------------------------------------------------------------------------------


def test_a_zip_bomb_member_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    path = xlsx_files.zip_bomb(tmp_path / "bomb.xlsx", member_bytes=512 * MIB)
    assert path.stat().st_size < 2 * MIB
    error, peak = peak_of(lambda: scan(path))
    assert isinstance(error, CardsvcError) and error.code is ErrorCode.LIMIT_EXCEEDED
    assert error.details == {"field": "xlsx_ratio", "max": 100, "member": "xl/media/padding.bin"}
    assert peak < 4 * MIB, peak


@pytest.mark.parametrize(("limits", "field"), [
    ({"xlsx_member_bytes_max": 1_000}, "xlsx_member"),
    ({"xlsx_total_bytes_max": 5_000}, "xlsx_total"),
    ({"xlsx_members_max": 5}, "xlsx_members"),
    ({"xlsx_part_bytes_max": 100}, "xlsx_part"),
])
def test_every_member_size_and_the_member_count_are_bounded(
    tmp_path: Path, limits: dict[str, int], field: str
) -> None:
    rows = [["code", "note"], *[[f"CODE-{i:05d}", "n" * 50] for i in range(100)]]
    path = xlsx_files.write_xlsx(tmp_path / "w.xlsx", rows)
    error = refusal(path, **limits)
    assert error.code is ErrorCode.LIMIT_EXCEEDED
    assert error.details["field"] == field
    assert error.details["max"] == next(iter(limits.values()))


def test_a_lying_member_count_does_not_let_a_big_directory_through(tmp_path: Path) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "many.xlsx", [["code"], ["C-1"]])
    with zipfile.ZipFile(path, "a") as archive:
        for i in range(100):
            archive.writestr(f"xl/media/image{i:03d}.png", b"x")
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = (1).to_bytes(2, "little") * 2  # "1 entry on this disk, 1 in all"
    path.write_bytes(bytes(data))
    error = refusal(path, xlsx_members_max=5)
    assert (error.details["field"], error.details["max"]) == ("xlsx_members", 5)


def test_a_zip64_offset_beyond_the_file_is_bad_xlsx(tmp_path: Path) -> None:
    # Found while fuzzing (by reading the zip code): seek() raised ValueError uncoded.
    data = (Path(__file__).parent / "fuzz_corpus" / "regression-zip64-offset-beyond-file")
    path = tmp_path / "z64.xlsx"
    path.write_bytes(data.read_bytes()[1:])
    assert refusal(path).details == {"field": "file", "reason": "bad_xlsx"}


def test_a_member_that_inflates_past_its_declared_size_is_refused(tmp_path: Path) -> None:
    rows = [["code"], *[[f"C-{i}"] for i in range(50)]]
    path = xlsx_files.write_xlsx(tmp_path / "lie.xlsx", rows)
    xlsx_files.lie_about_size(path, "xl/worksheets/sheet1.xml", 100)
    error = refusal(path)
    assert (error.code, error.details["reason"]) == (ErrorCode.INVALID_ARGUMENT, "bad_xlsx")


def test_a_declared_size_over_the_bound_is_refused_whatever_the_data(tmp_path: Path) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "lie.xlsx", [["code"], ["C-1"]])
    xlsx_files.lie_about_size(path, "xl/styles.xml", 3_000_000_000)
    assert refusal(path).details["field"] in {"xlsx_member", "xlsx_ratio", "xlsx_total"}


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate
        path = xlsx_files.duplicate_member(tmp_path / "dup.xlsx")
    error = refusal(path)
    assert error.details == {"field": "file", "reason": "xlsx_duplicate_member",
                             "member": "xl/worksheets/sheet1.xml"}


@pytest.mark.parametrize("name", ["../evil.xml", "/abs.xml", "xl\\\\back.xml", "xl/./x.xml"])
def test_member_names_that_are_not_plain_paths_are_refused(tmp_path: Path, name: str) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "n.xlsx", [["code"], ["C-1"]])
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, b"x")
    assert refusal(path).details["reason"] == "xlsx_member_name"


def test_overlapping_members_are_refused(tmp_path: Path) -> None:
    # Two central directory entries pointing at the same local file (the "better zip bomb").
    path = xlsx_files.write_xlsx(tmp_path / "o.xlsx", [["code"], ["C-1"]])
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        styles = archive.getinfo("xl/styles.xml").header_offset
        target = archive.getinfo("xl/workbook.xml")
    entry = data.find(b"PK\x01\x02")
    while entry >= 0:
        name_len = int.from_bytes(data[entry + 28:entry + 30], "little")
        if bytes(data[entry + 46:entry + 46 + name_len]) == b"xl/styles.xml":
            data[entry + 42:entry + 46] = target.header_offset.to_bytes(4, "little")
        entry = data.find(b"PK\x01\x02", entry + 4)
    assert styles != target.header_offset
    path.write_bytes(bytes(data))
    assert refusal(path).details["reason"] in {"xlsx_overlap", "bad_xlsx"}


def test_a_truncated_or_garbage_zip_is_bad_xlsx(tmp_path: Path) -> None:
    good = xlsx_files.write_xlsx(tmp_path / "g.xlsx", [["code"], ["C-1"]]).read_bytes()
    for cut in (10, len(good) // 2, len(good) - 10):
        path = tmp_path / f"cut{cut}.xlsx"
        path.write_bytes(good[:cut])
        assert refusal(path).details["reason"] == "bad_xlsx"


# --- the XML ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows_xml", [
    '<row r="1"><c r="A1" t="inlineStr"><is><t>code</t></is></c></row><row r="1"/>',
    '<row r="2"><c r="A2" t="inlineStr"><is><t>code</t></is></c></row><row r="1"/>',
    '<row r="1"><c r="A1" t="s"><v>99</v></c></row>',
    '<row r="1"><c r="A1" t="inlineStr"><is><t>code</t></is></c></row><row r="2">',
    '<row r="1"><c r="AAAAA1" t="inlineStr"><is><t>code</t></is></c></row>',
    '<row r="1048577"><c r="A1048577" t="inlineStr"><is><t>code</t></is></c></row>',
    '<row r="1"><c r="A1"><v>1e</v></c></row>',
])
def test_malformed_sheet_xml_is_bad_xlsx(tmp_path: Path, rows_xml: str) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "x.xlsx", [["code"], ["C-1"]])
    replace_sheet(path, rows_xml)
    assert refusal(path).details["reason"] == "bad_xlsx"


def test_a_doctype_with_entities_is_refused(tmp_path: Path) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "lol.xlsx", [["code"], ["C-1"]])
    laughs = '<!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10}">'
        for i in range(9)) + "]>"
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b"<worksheet", laughs.encode() + b"<worksheet").replace(b"C-1", b"&lol8;")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    error, peak = peak_of(lambda: scan(path))
    assert isinstance(error, CardsvcError) and error.details["reason"] == "bad_xlsx"
    assert peak < 4 * MIB, peak


def test_rows_keep_their_spreadsheet_numbers_across_gaps(tmp_path: Path) -> None:
    path = xlsx_files.write_xlsx(tmp_path / "gap.xlsx", [["code"], ["C-1"]])
    replace_sheet(path, '<row r="3"><c r="B3" t="inlineStr"><is><t>code</t></is></c></row>'
                        '<row r="1000000"><c r="B1000000" t="inlineStr"><is><t>C-9</t></is>'
                        '</c></row>')
    assert rows_of(path) == [CodeRow(1_000_000, "C-9", None, None)]


# --- CPU ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_a_file_needing_more_cpu_than_its_budget_is_limit_exceeded(
    tmp_path: Path, kind: str
) -> None:
    if kind == "csv":
        path = tmp_path / "big.csv"
        path.write_text("code\n" + "".join(f"CPU-{i:08d}\n" for i in range(200_000)))
    else:
        path = xlsx_files.write_big_xlsx(tmp_path / "big.xlsx", 60_000)
    error = refusal(path, cpu_seconds_max=0.02)
    assert error.code is ErrorCode.LIMIT_EXCEEDED
    assert (error.details["field"], error.details["max"]) == ("cpu_seconds", 0.02)
    assert error.details.get("line", 1) > 0  # the line reached, unless still before the sheet


def test_a_validity_of_thousands_of_digits_is_out_of_range_not_a_crash(tmp_path: Path) -> None:
    # int() refuses strings over 4,300 digits with ValueError (CPython's limit): uncoded before.
    path = tmp_path / "digits.csv"
    path.write_text("code,valid_until\nA-1," + "9" * 5_000 + "\nA-2,1893456000\n")
    assert list(scan(path).problems) == [RowProblem(2, "valid_until", "out_of_range")]
