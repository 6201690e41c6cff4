"""XLSX files: the first worksheet, streamed, with the zip's parts bounded before parsing."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from cardsvc.catalog.codefile.values import CodeFileLimits, Records, too_many_rows
from cardsvc.errors import CardsvcError, ErrorCode, make_error

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


def xlsx_records(path: Path, limits: CodeFileLimits) -> Records:
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
                    raise too_many_rows(limits)
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
