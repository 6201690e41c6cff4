"""Goal: prove that ``cardsvc.catalog.codefile`` reads batch import files exactly, refuses what the
core would refuse (row by row, with the line number a spreadsheet shows), finds duplicates within
the file, keeps codes out of every problem, error and report, streams in flat memory and enforces
its bounds with LIMIT_EXCEEDED.

Method: every file is generated in ``tmp_path`` as exact bytes (CSV: BOM, delimiters, quotes,
CRLF, blank lines) or written with openpyxl (XLSX: text, integer and float cells, dates, error
strings). Each test states the rows it expects field by field, or the error code and details.
The core agreement test imports what the reader accepted into a real ``Engine``; the memory
test compares tracemalloc peaks while streaming 100k and 200k rows.
"""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import openpyxl  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.catalog import codefile
from cardsvc.catalog.codefile import (
    CodeFileLimits,
    CodeRow,
    DuplicateReason,
    DuplicateRow,
    FileFormat,
    ImportMode,
    RowProblem,
    read_codes,
    scan,
    write_report,
)
from cardsvc.catalog.codefile.duplicates import DuplicateFinder
from cardsvc.engine import CODE_LEN_MAX, PIN_LEN_MAX, Engine, normalise_code
from cardsvc.errors import BadInput, CardsvcError, ErrorCode
from cardsvc.masking import mask_code

END_OF_2025 = int(datetime(2025, 12, 31, 23, 59, 59, 999999, UTC).timestamp())


def write_bytes(tmp_path: Path, data: bytes, name: str = "codes.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write_csv(tmp_path: Path, text: str, name: str = "codes.csv") -> Path:
    return write_bytes(tmp_path, text.encode("utf-8"), name)


def write_xlsx(tmp_path: Path, rows: Sequence[Sequence[Any]], name: str = "codes.xlsx") -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(list(row))
    path = tmp_path / name
    workbook.save(path)
    return path


def all_rows(path: Path, **kwargs: Any) -> list[CodeRow]:
    return [row for chunk in read_codes(path, **kwargs) for row in chunk]


def raises_code(code: ErrorCode) -> Any:
    return pytest.raises(CardsvcError, check=lambda exc: exc.code is code)


# --- CSV format ---------------------------------------------------------------------------------


def test_csv_with_bom_semicolons_quotes_and_crlf_reads_every_field_exactly(
    tmp_path: Path,
) -> None:
    text = (
        "\ufeffCode;PIN;Expires\r\n"
        '"AB;CD-1234";"12""34";2025-12-31\r\n'
        "  efgh-5678  ; 9999 ;\r\n"
        '"IJKL 9012";;"1767225600"\r\n'
    )
    path = write_csv(tmp_path, text)

    assert all_rows(path) == [
        CodeRow(2, "AB;CD-1234", '12"34', END_OF_2025),
        CodeRow(3, "efgh-5678", "9999", None),
        CodeRow(4, "IJKL 9012", None, 1767225600),
    ]
    report = scan(path)
    assert (report.format, report.rows, report.valid_rows, report.problem_count) == (
        FileFormat.CSV,
        3,
        3,
        0,
    )
    assert report.has_pin and report.has_valid_until


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_is_sniffed_from_the_header(tmp_path: Path, delimiter: str) -> None:
    path = write_csv(tmp_path, f"code{delimiter}pin\nA1B2C3{delimiter}77\n")
    assert all_rows(path) == [CodeRow(2, "A1B2C3", "77", None)]


def test_a_quoted_delimiter_in_the_header_does_not_decide_the_delimiter(tmp_path: Path) -> None:
    path = write_csv(tmp_path, '"notes, free text";code;pin\nx, y;CODE1;1\n')
    assert all_rows(path) == [CodeRow(2, "CODE1", "1", None)]


def test_line_numbers_count_the_header_and_blank_rows_as_a_spreadsheet_does(
    tmp_path: Path,
) -> None:
    # The delimiter is sniffed from the header, not the blank line before it, so ";" is blank.
    path = write_csv(tmp_path, "\ncode;pin\nAAAA1;1\n\n;\nBBBB2;2\n")
    assert [row.line for row in all_rows(path)] == [3, 6]
    assert scan(path).rows == 2


# --- header -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Card Number,Password,Expiry", CodeRow(2, "C0DE", "P1", END_OF_2025)),
        ("CARD-NO,Secret,valid until", CodeRow(2, "C0DE", "P1", END_OF_2025)),
        ("cdkey,pin,expires", CodeRow(2, "C0DE", "P1", END_OF_2025)),
        ("卡号,密码,有效期", CodeRow(2, "C0DE", "P1", END_OF_2025)),
        ("卡密,密码,有效期", CodeRow(2, "C0DE", "P1", END_OF_2025)),
        ("卡号,卡密,有效期", CodeRow(2, "C0DE", "P1", END_OF_2025)),
    ],
)
def test_header_aliases_are_matched_case_insensitively_including_chinese(
    tmp_path: Path, header: str, expected: CodeRow
) -> None:
    path = write_csv(tmp_path, f"{header}\nC0DE,P1,2025-12-31\n")
    assert all_rows(path) == [expected]


def test_unknown_columns_are_ignored_and_listed(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Serial,code,Face Value,,note\n1,CODE-A,10,,x\n")
    assert all_rows(path) == [CodeRow(2, "CODE-A", None, None)]
    report = scan(path)
    assert report.ignored_columns == ("Serial", "Face Value", "note")
    assert not report.has_pin and not report.has_valid_until


def test_a_header_less_file_is_invalid_argument_naming_the_header_but_no_value(
    tmp_path: Path,
) -> None:
    # A file without a header has a code in its first row: the error must not echo it.
    path = write_csv(tmp_path, "SECRET-CODE-0001,1234\nSECRET-CODE-0002,5678\n")
    with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
        scan(path)
    assert caught.value.details == {"field": "header", "reason": "no_header", "line": 1}
    assert "SECRET" not in str(caught.value.to_dict())


@pytest.mark.parametrize("header", ["code,card", "code,pin,password", "code,expiry,expires"])
def test_two_columns_for_one_field_are_refused(tmp_path: Path, header: str) -> None:
    path = write_csv(tmp_path, f"{header}\nA,B,C\n")
    with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
        scan(path)
    assert caught.value.details["reason"] == "duplicate_column"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty_file"), ("\n\n", "only_blank_rows"), (",,\n", "only_blank_rows")],
)
def test_a_file_without_a_header_row_is_invalid_argument(
    tmp_path: Path, text: str, reason: str
) -> None:
    with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
        scan(write_csv(tmp_path, text))
    assert caught.value.details == {"field": "file", "reason": reason}


# --- row problems -------------------------------------------------------------------------------


def problem_file(tmp_path: Path) -> Path:
    rows = [
        "code,pin,valid_until",  # 1
        "GOOD-0001,1234,",  # 2
        ",1234,",  # 3 empty code, PIN present: not a blank row
        f"{'A' * (CODE_LEN_MAX + 1)},,",  # 4
        "BAD\x01CODE,,",  # 5 control character
        "BAD\tTAB,,",  # 6 the core would drop the tab; a printed code never holds one
        "CAFÉ-0001,,",  # 7 not ASCII
        f"GOOD-0002,{'9' * (PIN_LEN_MAX + 1)},",  # 8
        "GOOD-0003,12 34,",  # 9 space inside a PIN
        "GOOD-0004,,31/12/2025",  # 10
        "GOOD-0005,,1999-12-31",  # 11
        "GOOD-0006,,,surplus",  # 12
        "---,,",  # 13 nothing left after normalisation
        "#N/A,,",  # 14 a spreadsheet error exported as text
        "",  # 15 blank
        "GOOD-0007,5678,2025-12-31",  # 16
    ]
    return write_csv(tmp_path, "\n".join(rows) + "\n")


EXPECTED_PROBLEMS = [
    RowProblem(3, "code", "empty"),
    RowProblem(4, "code", "too_long"),
    RowProblem(5, "code", "not_printable"),
    RowProblem(6, "code", "not_printable"),
    RowProblem(7, "code", "not_printable"),
    RowProblem(8, "pin", "too_long"),
    RowProblem(9, "pin", "not_printable"),
    RowProblem(10, "valid_until", "bad_date"),
    RowProblem(11, "valid_until", "out_of_range"),
    RowProblem(12, "row", "extra_columns"),
    RowProblem(13, "code", "empty"),
    RowProblem(14, "code", "cell_error"),
]


def test_invalid_rows_are_reported_with_field_reason_and_spreadsheet_line(
    tmp_path: Path,
) -> None:
    report = scan(problem_file(tmp_path))
    assert list(report.problems) == EXPECTED_PROBLEMS
    assert (report.rows, report.valid_rows, report.problem_count) == (14, 2, 12)


def test_a_row_with_several_problems_reports_each(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "code,pin,expiry\n\x02,a b,never,extra\n")
    assert list(scan(path).problems) == [
        RowProblem(2, "code", "not_printable"),
        RowProblem(2, "pin", "not_printable"),
        RowProblem(2, "valid_until", "bad_date"),
        RowProblem(2, "row", "extra_columns"),
    ]


def test_problems_and_errors_never_contain_the_values(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "code,pin\nSECRET\x01CODE,PIN SECRET\n")
    report = scan(path)
    assert "SECRET" not in repr(report)
    with raises_code(ErrorCode.INVALID_CODE) as caught:
        all_rows(path)
    assert "SECRET" not in repr(caught.value) + str(caught.value.to_dict())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1767225599", 1767225599),
        ("2025-12-31", END_OF_2025),
        ("2025-12-31T10:00:00", int(datetime(2025, 12, 31, 10, tzinfo=UTC).timestamp())),
        ("2025-12-31 10:00:00Z", int(datetime(2025, 12, 31, 10, tzinfo=UTC).timestamp())),
        ("2025-12-31T18:00:00+08:00", int(datetime(2025, 12, 31, 10, tzinfo=UTC).timestamp())),
    ],
)
def test_valid_until_reads_unix_seconds_iso_dates_and_datetimes(
    tmp_path: Path, text: str, expected: int
) -> None:
    path = write_csv(tmp_path, f"code,valid_until\nCODE1,{text}\n")
    assert all_rows(path) == [CodeRow(2, "CODE1", None, expected)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("31/12/2025", "bad_date"),
        ("-5", "bad_date"),
        ("tomorrow", "bad_date"),
        ("945000000", "out_of_range"),
        ("4294967296", "out_of_range"),
    ],
)
def test_valid_until_outside_the_accepted_forms_is_a_row_problem(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = write_csv(tmp_path, f"code,valid_until\nCODE1,{text}\n")
    assert list(scan(path).problems) == [RowProblem(2, "valid_until", reason)]


# --- modes --------------------------------------------------------------------------------------


def test_all_or_nothing_read_raises_on_the_first_invalid_row_with_its_line(
    tmp_path: Path,
) -> None:
    path = problem_file(tmp_path)
    with raises_code(ErrorCode.INVALID_CODE) as caught:
        all_rows(path)
    assert caught.value.details == {"line": 3, "field": "code", "reason": "empty"}
    pin_path = write_csv(tmp_path, "code,pin\nCODE1,1\nCODE2,a b\n", name="pins.csv")
    with raises_code(ErrorCode.INVALID_PIN) as caught:
        all_rows(pin_path, mode="all_or_nothing")
    assert caught.value.details == {"line": 3, "field": "pin", "reason": "not_printable"}


def test_per_row_read_skips_invalid_rows_and_yields_the_rest(tmp_path: Path) -> None:
    rows = all_rows(problem_file(tmp_path), mode=ImportMode.PER_ROW)
    assert rows == [
        CodeRow(2, "GOOD-0001", "1234", None),
        CodeRow(16, "GOOD-0007", "5678", END_OF_2025),
    ]
    assert all_rows(problem_file(tmp_path), mode="per_row") == rows


def test_scan_check_blocks_all_or_nothing_but_not_per_row(tmp_path: Path) -> None:
    report = scan(problem_file(tmp_path))
    with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
        report.check(ImportMode.ALL_OR_NOTHING)
    assert caught.value.details == {
        "field": "file",
        "reason": "invalid_rows",
        "problems": 12,
        "first_line": 3,
    }
    report.check(ImportMode.PER_ROW)
    scan(write_csv(tmp_path, "code\nA1\n", name="clean.csv")).check(ImportMode.ALL_OR_NOTHING)


def test_a_file_with_nothing_to_import_fails_check_in_every_mode(tmp_path: Path) -> None:
    for text, reason in (
        ("code,pin\n", "no_rows"), ("code\n\x01\n", "no_codes"), ("code\n\n,\n", "no_rows")
    ):
        report = scan(write_csv(tmp_path, text))
        with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
            report.check(ImportMode.PER_ROW)
        assert caught.value.details["reason"] == reason
    # Two equal codes leave one to import.
    scan(write_csv(tmp_path, "code\nSAME\nsame\n")).check(ImportMode.PER_ROW)


def test_an_unknown_mode_is_invalid_argument(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "code\nA1\n")
    with raises_code(ErrorCode.INVALID_ARGUMENT):
        read_codes(path, mode="some_rows")
    with raises_code(ErrorCode.INVALID_ARGUMENT):
        scan(path).check("some_rows")


# --- duplicates within the file -----------------------------------------------------------------


def test_in_file_duplicates_are_found_with_both_lines_after_normalisation(
    tmp_path: Path,
) -> None:
    path = write_csv(
        tmp_path, "code\nABCD-EFGH-1234\nOTHER-1\nabcd efgh 1234\nAB\nABCDEFGH1234\nab\n"
    )
    report = scan(path)
    masked = mask_code(normalise_code("ABCD-EFGH-1234"))
    assert list(report.duplicates) == [
        DuplicateRow(4, masked, DuplicateReason.DUPLICATE_IN_FILE, 2),
        DuplicateRow(6, masked, DuplicateReason.DUPLICATE_IN_FILE, 2),
        DuplicateRow(7, "**", DuplicateReason.DUPLICATE_IN_FILE, 5),
    ]
    assert masked == "********1234"
    assert report.duplicate_count == 3
    # The reader still yields them: the core keeps the first and rejects the others.
    assert len(all_rows(path)) == 6


def test_many_duplicates_are_counted_and_listed_in_line_order_up_to_the_cap(
    tmp_path: Path,
) -> None:
    codes = [f"CODE-{i:06d}" for i in range(5_000)]
    path = write_csv(tmp_path, "code\n" + "\n".join(codes + codes[::-1]) + "\n")
    report = scan(path, limits=CodeFileLimits(duplicates_listed_max=100))
    assert report.duplicate_count == 5_000
    assert report.duplicates_not_listed == 4_900
    lines = [d.line for d in report.duplicates]
    assert lines == list(range(5_002, 5_102))
    # Line 5002 holds the last code, first seen on line 5001.
    assert [d.first_line for d in report.duplicates[:2]] == [5_001, 5_000]
    assert report.duplicates[0].masked_code == mask_code(codes[-1].replace("-", ""))


# --- report -------------------------------------------------------------------------------------


def test_report_lists_problems_and_duplicates_by_line_and_never_a_full_code(
    tmp_path: Path,
) -> None:
    codes = ["FIRST-CODE-0001", "SECOND-CODE-0002", "EARLIER-BATCH-0003"]
    text = f"code,pin\n{codes[0]},1\n,2\n{codes[1]},3\n{codes[0].lower()},4\n{codes[2]},5\n"
    path = write_csv(tmp_path, text)
    report = scan(path)
    rows = all_rows(path, mode=ImportMode.PER_ROW)
    earlier = [DuplicateRow.of(rows[-1], DuplicateReason.DUPLICATE_OF_EARLIER_BATCH)]
    out = io.StringIO()
    written = write_report(
        out,
        report.problems,
        codefile.merge_by_line(report.duplicates, earlier),
        problems_not_listed=3,
    )
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines == [
        list(codefile.REPORT_COLUMNS),
        ["3", "code", "empty", "", "", ""],
        ["5", "code", "duplicate_in_file", "*" * 9 + "0001", "2", ""],
        ["6", "code", "duplicate_of_earlier_batch", "*" * 12 + "0003", "", ""],
        ["", "problems", "not_listed", "", "", "3"],
    ]
    assert written == 4
    for code in codes:
        for form in (code, normalise_code(code), code.lower()):
            assert form not in out.getvalue()


def test_report_to_a_path_is_written_as_utf8_csv(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    write_report(target, [RowProblem(2, "code", "empty")], [])
    assert target.read_bytes() == b"line,field,reason,masked_code,first_line,count\r\n" + (
        b"2,code,empty,,,\r\n"
    )


@pytest.mark.parametrize("text", ["ABCDEFGH", "AB*D", "*BCDEF", "ABCDE"])
def test_a_duplicate_row_cannot_carry_an_unmasked_code(text: str) -> None:
    with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
        DuplicateRow(2, text, DuplicateReason.DUPLICATE_OF_EARLIER_BATCH)
    assert caught.value.details == {"field": "masked_code", "reason": "not_masked"}


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))
def test_duplicate_masking_equals_mask_code_of_the_normalised_code(code: str) -> None:
    try:
        normalised = normalise_code(code)
    except BadInput:
        return
    row = CodeRow(2, code, None, None)
    expected = mask_code(normalised)
    assert DuplicateRow.of(row, DuplicateReason.DUPLICATE_OF_EARLIER_BATCH).masked_code == expected
    finder = DuplicateFinder()
    finder.add(2, normalised)
    finder.add(3, normalised)
    assert finder.finish(10) == (
        (DuplicateRow(3, expected, DuplicateReason.DUPLICATE_IN_FILE, 2),),
        1,
    )


# --- XLSX ---------------------------------------------------------------------------------------


def test_xlsx_text_and_numeric_cells_come_out_as_exact_text(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [
            ["Card Number", "PIN", "Expiry", "Batch"],
            ["ABCD-0001", "0042", datetime(2025, 12, 31, 23, 59, 59), "b1"],  # 2
            [6225881234567890, 123456, date(2025, 12, 31), 7],  # 3 integers below 2**53
            [1234567890123.0, 98765.0, 1767225599, None],  # 4 whole floats below 2**53
            [6225881234567890123, None, None, None],  # 5 saved as 6.22588123456789e+18
            [12.5, None, None, None],  # 6
            [True, None, None, None],  # 7
            [date(2025, 1, 1), None, None, None],  # 8
            ["#DIV/0!", None, None, None],  # 9
            [None, None, None, None],  # 10 blank
            ["EFGH-0002", 1.5, "2025-12-31", None],  # 11
            [2**53 + 1, None, None, None],  # 12 saved as 2**53: exact-looking digits, wrong
        ],
    )
    report = scan(path)
    assert report.format is FileFormat.XLSX
    assert report.ignored_columns == ("Batch",)
    assert list(report.problems) == [
        RowProblem(5, "code", "lost_precision"),
        RowProblem(6, "code", "not_integer"),
        RowProblem(7, "code", "not_text"),
        RowProblem(8, "code", "not_text"),
        RowProblem(9, "code", "cell_error"),
        RowProblem(11, "pin", "not_integer"),
        RowProblem(12, "code", "lost_precision"),
    ]
    assert all_rows(path, mode=ImportMode.PER_ROW) == [
        CodeRow(2, "ABCD-0001", "0042", END_OF_2025),
        # A date cell reads as midnight; a date means the end of that day, as in CSV.
        CodeRow(3, "6225881234567890", "123456", END_OF_2025),
        CodeRow(4, "1234567890123", "98765", 1767225599),
    ]


def test_xlsx_with_a_chinese_header_and_header_below_blank_rows(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [[], [None, "卡号", "卡密"], [None, "A-1", "P-1"]])
    assert all_rows(path) == [CodeRow(3, "A-1", "P-1", None)]


@pytest.mark.parametrize("name", ["upload.bin", "codes.csv", "codes"])
def test_xlsx_is_detected_by_magic_bytes_whatever_the_name(tmp_path: Path, name: str) -> None:
    path = write_xlsx(tmp_path, [["code"], ["X1"]], name=name)
    assert codefile.detect_format(path) is FileFormat.XLSX
    assert all_rows(path) == [CodeRow(2, "X1", None, None)]


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"code\nA1\n", "codes.xlsx", "unsupported_format"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "codes.xls", "unsupported_format"),
        (b"PK\x03\x04" + bytes(64), "codes.xlsx", "bad_xlsx"),
    ],
)
def test_files_that_are_not_csv_or_readable_xlsx_are_invalid_argument(
    tmp_path: Path, data: bytes, name: str, reason: str
) -> None:
    with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
        scan(write_bytes(tmp_path, data, name))
    assert caught.value.details["reason"] == reason


def test_a_zip_that_is_not_a_workbook_is_bad_xlsx(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "codes.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
        scan(path)
    assert caught.value.details["reason"] == "bad_xlsx"


# --- malformed CSV ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason", "line"),
    [
        (b"code\nAAAA1\n\xff\xfeBB\n", "not_utf8", 3),
        (b'code\nAAAA1\n"BBBB2\n', "malformed_csv", 3),
        (b'code\nAAAA1\n"BB"BB2\n', "malformed_csv", 3),
    ],
)
def test_malformed_csv_stops_the_file_with_its_line(
    tmp_path: Path, data: bytes, reason: str, line: int
) -> None:
    path = write_bytes(tmp_path, data)
    for run in (scan, all_rows):
        with raises_code(ErrorCode.INVALID_ARGUMENT) as caught:
            run(path)
        assert caught.value.details == {"field": "file", "reason": reason, "line": line}


# --- chunking and memory ------------------------------------------------------------------------


def generated_csv(tmp_path: Path, rows: int, name: str = "big.csv") -> Path:
    body = "".join(f"C{i:015d},{i % 100_000_000:08d}\n" for i in range(rows))
    return write_csv(tmp_path, "code,pin\n" + body, name)


def test_chunks_yield_every_row_once_in_order(tmp_path: Path) -> None:
    path = generated_csv(tmp_path, 10_007)
    chunks = list(read_codes(path, chunk_rows=1_000))
    assert [len(chunk) for chunk in chunks] == [1_000] * 10 + [7]
    rows = [row for chunk in chunks for row in chunk]
    assert [row.line for row in rows] == list(range(2, 10_009))
    assert rows[-1] == CodeRow(10_008, "C000000000010006", "00010006", None)


def streaming_peak(path: Path) -> int:
    tracemalloc.start()
    try:
        count = 0
        for chunk in read_codes(path, chunk_rows=5_000):
            count += len(chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_does_not_grow_with_the_row_count(tmp_path: Path) -> None:
    small = streaming_peak(generated_csv(tmp_path, 100_000, "small.csv"))
    large = streaming_peak(generated_csv(tmp_path, 200_000, "large.csv"))
    # One chunk of 5,000 rows is ~1 MB; twice the rows must not mean a larger peak.
    assert large < small * 1.2 + 256 * 1024, (small, large)
    assert large < 4 * 1024 * 1024, large


def test_progress_is_reported_while_scanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codefile.reader, "PROGRESS_EVERY_ROWS", 100)
    seen: list[int] = []
    scan(generated_csv(tmp_path, 450), progress=seen.append)
    assert seen == [100, 200, 300, 400]


# --- bounds -------------------------------------------------------------------------------------


def test_more_rows_than_the_bound_is_limit_exceeded(tmp_path: Path) -> None:
    path = generated_csv(tmp_path, 10)  # 11 rows with the header
    limits = CodeFileLimits(rows_max=10)
    for run in (scan, all_rows):
        with raises_code(ErrorCode.LIMIT_EXCEEDED) as caught:
            run(path, limits=limits)
        assert caught.value.details == {"field": "rows", "max": 10}
    assert scan(path, limits=CodeFileLimits(rows_max=11)).rows == 10


def test_more_xlsx_rows_than_the_bound_is_limit_exceeded(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["code"], ["A1"], ["A2"]])
    with raises_code(ErrorCode.LIMIT_EXCEEDED) as caught:
        scan(path, limits=CodeFileLimits(rows_max=2))
    assert caught.value.details == {"field": "rows", "max": 2}


def test_a_line_longer_than_the_bound_is_limit_exceeded(tmp_path: Path) -> None:
    limits = CodeFileLimits(line_len_max=40)
    ok = write_csv(tmp_path, "code,note\r\n" + "A1," + "x" * 37 + "\r\n", "ok.csv")
    assert scan(ok, limits=limits).valid_rows == 1
    long = write_csv(tmp_path, "code,note\nA1,x\nA2," + "x" * 38 + "\n", "long.csv")
    with raises_code(ErrorCode.LIMIT_EXCEEDED) as caught:
        scan(long, limits=limits)
    assert caught.value.details == {"field": "line_length", "max": 40, "line": 3}


def test_a_header_wider_than_the_bound_is_limit_exceeded(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "code," + ",".join(f"c{i}" for i in range(10)) + "\nA1\n")
    with raises_code(ErrorCode.LIMIT_EXCEEDED) as caught:
        scan(path, limits=CodeFileLimits(columns_max=10))
    assert caught.value.details == {"field": "columns", "max": 10}


def test_an_xlsx_part_larger_than_the_bound_is_limit_exceeded(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["code"], ["A1"]])
    with raises_code(ErrorCode.LIMIT_EXCEEDED) as caught:
        scan(path, limits=CodeFileLimits(xlsx_part_bytes_max=100))
    assert (caught.value.details["field"], caught.value.details["max"]) == ("xlsx_part", 100)


def test_problems_listed_are_capped_but_all_counted(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "code\n" + "\x01\n" * 50)
    report = scan(path, limits=CodeFileLimits(problems_listed_max=5))
    assert [p.line for p in report.problems] == [2, 3, 4, 5, 6]
    assert (report.problem_count, report.problems_not_listed) == (50, 45)


@pytest.mark.parametrize(
    ("chunk_rows", "code"), [(0, "INVALID_ARGUMENT"), (10**9, "LIMIT_EXCEEDED")]
)
def test_chunk_rows_outside_the_core_batch_bound_is_refused(
    tmp_path: Path, chunk_rows: int, code: str
) -> None:
    with raises_code(ErrorCode(code)):
        read_codes(write_csv(tmp_path, "code\nA1\n"), chunk_rows=chunk_rows)


# --- agreement with the core --------------------------------------------------------------------

PLAIN_TEXT = st.text(alphabet=st.sampled_from(list("Ab9-_ *'\",;")), max_size=12)
TRICKY_TEXT = st.text(alphabet=st.sampled_from(list("Ab9- \t\n\x01\x7fé卡")), max_size=6)
CELL_TEXT = PLAIN_TEXT | TRICKY_TEXT


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(CELL_TEXT, CELL_TEXT), min_size=1, max_size=20))
def test_every_row_the_reader_accepts_imports_into_the_core(
    tmp_path: Path, rows: list[tuple[str, str]]
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["code", "pin"])
    writer.writerows(rows)
    path = write_csv(tmp_path, out.getvalue(), name="random.csv")
    accepted = all_rows(path, mode=ImportMode.PER_ROW)
    engine = Engine(lookup_key=os.urandom(32))
    engine.create_sku("S", uses_per_code=1, redeem_requires_sale=True)
    imported: list[int] = []
    if accepted:
        # Raises INVALID_CODE / INVALID_PIN if the reader let through what the core refuses.
        imported, _ = engine.import_codes(
            "S", [row.code for row in accepted], pins=[row.pin for row in accepted]
        )
    report = scan(path)
    assert report.valid_rows == len(accepted)
    # The core and the scan agree on which codes are the same.
    assert len(imported) == report.valid_rows - report.duplicate_count
