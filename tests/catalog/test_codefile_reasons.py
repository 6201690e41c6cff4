"""Goal: every file the reader refuses is refused with a stable code and a named reason, and
the line where there is one: encodings (UTF-16/UTF-32 byte order marks,
UTF-16 without one, bytes that are not UTF-8, an explicit GB18030), empty files, header-less
files, files whose only rows are blank, a header without rows; and the characters a code or PIN
may hold (no spreadsheet formula starters). UTF-16 with a byte order mark and GB18030 given
explicitly are read; GB18030 is never guessed.

Method: each file is written in ``tmp_path`` as exact bytes; ``scan`` (and ``read_codes``) run
on it and the test states the rows it expects or the error's code and details.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cardsvc.catalog.codefile import CodeRow, ImportMode, RowProblem, read_codes, scan
from cardsvc.errors import CardsvcError, ErrorCode

HEADER_AND_ROWS = "code,pin\nAAAA-0001,1111\nBBBB-0002,2222\n"
ROWS = [CodeRow(2, "AAAA-0001", "1111", None), CodeRow(3, "BBBB-0002", "2222", None)]


def write(tmp_path: Path, data: bytes, name: str = "codes.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rows_of(path: Path, **kwargs: Any) -> list[CodeRow]:
    return [row for chunk in read_codes(path, **kwargs) for row in chunk]


def refusal(path: Path, **kwargs: Any) -> CardsvcError:
    with pytest.raises(CardsvcError) as caught:
        scan(path, **kwargs)
    return caught.value


# --- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_a_byte_order_mark_is_read(tmp_path: Path, codec: str) -> None:
    path = write(tmp_path, "\ufeff".encode(codec) + HEADER_AND_ROWS.encode(codec))
    assert rows_of(path) == ROWS
    assert scan(path).valid_rows == 2


@pytest.mark.parametrize("bom", [b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"])
def test_utf32_is_refused_by_name(tmp_path: Path, bom: bytes) -> None:
    codec = "utf-32-le" if bom.startswith(b"\xff") else "utf-32-be"
    error = refusal(write(tmp_path, bom + HEADER_AND_ROWS.encode(codec)))
    assert error.code is ErrorCode.INVALID_ARGUMENT
    assert error.details == {"field": "file", "reason": "utf32"}


def test_utf16_without_a_byte_order_mark_is_refused_by_name(tmp_path: Path) -> None:
    error = refusal(write(tmp_path, HEADER_AND_ROWS.encode("utf-16-le")))
    assert error.details == {"field": "file", "reason": "utf16_without_bom"}


def test_latin1_is_not_utf8_with_its_line(tmp_path: Path) -> None:
    data = "code,note\nAAAA-0001,ok\nBBBB-0002,café\n".encode("latin-1")
    error = refusal(write(tmp_path, data))
    assert error.code is ErrorCode.INVALID_ARGUMENT
    assert error.details == {"field": "file", "reason": "not_utf8", "line": 3}
    assert "UTF-8" in error.message and "gb18030" in error.message


GBK_FILE = "卡号,卡密,有效期\nAAAA-0001,1111,2030-01-01\n".encode("gbk")


def test_gbk_is_not_guessed_but_read_when_gb18030_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, GBK_FILE)
    assert refusal(path).details == {"field": "file", "reason": "not_utf8", "line": 1}
    assert rows_of(path, encoding="gb18030") == [
        CodeRow(2, "AAAA-0001", "1111", 1_893_542_399)]
    assert scan(path, encoding="gb18030").valid_rows == 1


def test_bytes_that_are_not_gb18030_name_that_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, b"code\nAAAA-0001\n\x81\x20\n")
    error = refusal(path, encoding="gb18030")
    assert error.details == {"field": "file", "reason": "not_gb18030", "line": 3}


@pytest.mark.parametrize("bom", [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])
def test_an_explicit_gb18030_conflicting_with_a_byte_order_mark_is_refused(
    tmp_path: Path, bom: bytes
) -> None:
    error = refusal(write(tmp_path, bom + b"code\nA1\n"), encoding="gb18030")
    assert error.details == {"field": "encoding", "reason": "encoding_conflict"}


def test_an_unknown_encoding_is_invalid_argument(tmp_path: Path) -> None:
    error = refusal(write(tmp_path, b"code\nA1\n"), encoding="latin-1")
    assert error.details == {"field": "encoding", "reason": "unknown"}


# --- empty, blank and header-less files ---------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\xff\xfe"])
def test_an_empty_file_is_refused_by_name(tmp_path: Path, data: bytes) -> None:
    assert refusal(write(tmp_path, data)).details == {"field": "file", "reason": "empty_file"}


@pytest.mark.parametrize("data", [b"\n\n", b",,\n", b" \r\n\t\r\n;;\n"])
def test_a_file_whose_only_rows_are_blank_is_refused_by_name(tmp_path: Path, data: bytes) -> None:
    assert refusal(write(tmp_path, data)).details == {"field": "file", "reason": "only_blank_rows"}


def test_a_file_without_a_header_is_refused_with_the_line_and_no_value(tmp_path: Path) -> None:
    error = refusal(write(tmp_path, b"\nSECRET-CODE-0001,1234\nSECRET-CODE-0002,5678\n"))
    assert error.details == {"field": "header", "reason": "no_header", "line": 2}
    assert "SECRET" not in str(error.to_dict())


def test_a_header_naming_other_columns_but_no_code_is_missing_code_column(
    tmp_path: Path,
) -> None:
    error = refusal(write(tmp_path, b"serial,pin\n1,1234\n"))
    assert error.details == {"field": "header", "reason": "missing_code_column", "line": 1}


@pytest.mark.parametrize("data", [b"code,pin\n", b"code,pin\n\n,\n"])
def test_a_header_without_rows_is_refused_by_check_as_no_rows(tmp_path: Path, data: bytes) -> None:
    report = scan(write(tmp_path, data))
    for mode in ImportMode:
        with pytest.raises(CardsvcError) as caught:
            report.check(mode)
        assert caught.value.details == {"field": "file", "reason": "no_rows"}


def test_excel_sep_line_names_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, b"sep=;\r\ncode;pin\r\nAAAA-0001;1111\r\n")
    assert rows_of(path) == [CodeRow(3, "AAAA-0001", "1111", None)]


# --- characters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_codes_and_pins_starting_a_spreadsheet_formula_are_row_problems(
    tmp_path: Path, start: str
) -> None:
    text = f"code,pin\n{start}SUM(A1),1111\nAAAA-0001,{start}12\n BBBB-0002 , 2222 \n"
    path = write(tmp_path, text.encode())
    assert list(scan(path).problems) == [
        RowProblem(2, "code", "formula_prefix"), RowProblem(3, "pin", "formula_prefix")]
    assert rows_of(path, mode="per_row") == [CodeRow(4, "BBBB-0002", "2222", None)]


def test_inner_formula_characters_and_surrounding_whitespace_are_kept_or_stripped(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, b"code\n\tAB=CD+EF@GH-1\t\n")
    assert rows_of(path) == [CodeRow(2, "AB=CD+EF@GH-1", None, None)]
