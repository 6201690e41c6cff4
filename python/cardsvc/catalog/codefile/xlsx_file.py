"""XLSX files: the zip checked whole (``xlsx_zip``), then the first worksheet streamed with a
bounded expat reader (``xlsx_xml``). No third-party parser reads the file: openpyxl pads every
row to the sheet's widest column and holds each cell's text whole, and python-calamine
materialises the whole sheet (bench/RESULTS.md)."""

from __future__ import annotations

from pathlib import Path

from cardsvc.catalog.codefile import xlsx_xml
from cardsvc.catalog.codefile.values import Budget, CodeFileLimits, Records, too_many_rows
from cardsvc.catalog.codefile.xlsx_zip import Package, bad_xlsx, open_package

_ROOT_RELS = "_rels/.rels"
_WORKSHEET = "/worksheet"
_SHARED_STRINGS = "/sharedStrings"
_STYLES = "/styles"


def xlsx_records(path: Path, limits: CodeFileLimits, budget: Budget | None = None) -> Records:
    """Each row of the first worksheet with its spreadsheet row number (gaps are not filled:
    blank rows are simply absent). Raises INVALID_ARGUMENT (``bad_xlsx`` and the zip's reasons,
    with the line when one is known) or LIMIT_EXCEEDED (``rows``, ``line_length``,
    ``columns`` by way of the header, the zip's bounds, ``cpu_seconds``)."""
    package = open_package(path, limits)
    try:
        sheet, strings_name, styles_name, date1904 = _workbook(package)
        styles = (xlsx_xml.date_styles(package.open(styles_name, whole=True), styles_name)
                  if styles_name else frozenset())
        strings = (xlsx_xml.shared_strings(package.open(strings_name, whole=True),
                                           strings_name, limits, budget)
                   if strings_name else None)
        rows = xlsx_xml.sheet_rows(package.open(sheet, whole=False), sheet, strings, styles,
                                   date1904, limits, budget)
        try:
            for line, cells in rows:
                if line > limits.rows_max:
                    raise too_many_rows(limits)
                yield line, cells
        finally:
            rows.close()
    finally:
        package.close()


def _workbook(package: Package) -> tuple[str, str | None, str | None, bool]:
    """The first worksheet's member name, the shared strings' and the styles' (None when the
    workbook has none) and whether dates count from 1904. Raises INVALID_ARGUMENT
    ``bad_xlsx``."""
    if not package.has(_ROOT_RELS):
        raise bad_xlsx(message="the file is a zip but not a workbook (no _rels/.rels)")
    workbook = xlsx_xml.office_document(
        xlsx_xml.relationships(package.open(_ROOT_RELS, whole=True), _ROOT_RELS))
    folder, _, leaf = workbook.rpartition("/")
    rels_name = f"{folder}/_rels/{leaf}.rels" if folder else f"_rels/{leaf}.rels"
    rels = xlsx_xml.relationships(package.open(rels_name, whole=True), rels_name)
    sheet_ids, date1904 = xlsx_xml.workbook_sheets(package.open(workbook, whole=True), workbook)
    worksheets = [rels[rid][1] for rid in sheet_ids
                  if rid in rels and rels[rid][0].endswith(_WORKSHEET)]
    if not worksheets:
        raise bad_xlsx(message="the workbook has no worksheet")

    def target(kind: str) -> str | None:
        found = [t for k, t in rels.values() if k.endswith(kind)]
        return xlsx_xml.part_path(rels_name, found[0]) if found else None

    return (xlsx_xml.part_path(rels_name, worksheets[0]), target(_SHARED_STRINGS),
            target(_STYLES), date1904)
