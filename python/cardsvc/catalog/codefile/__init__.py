"""Batch import files: read codes, PINs and validity ends from CSV or XLSX, streaming,
checked by the core's rules before anything is imported.

This module knows nothing of SQL or of the core's state. It turns a file into validated rows
(:func:`read_codes`, in chunks) and a first-pass report (:func:`scan`), and writes the
downloadable report (:func:`write_report`). The import pipeline runs ``scan`` first, then feeds
``read_codes`` chunks to the store and the core.

File format (docs/import.md is the supplier-facing version)
-----------
* CSV: UTF-8 with or without BOM, UTF-16 when the file starts with a UTF-16 BOM, or GB18030
  (GBK) only when the caller says ``encoding="gb18030"``, never guessed; the delimiter (comma,
  semicolon or tab) is sniffed from the header line or named by Excel's ``sep=`` line;
  double-quoted fields with doubled quotes; LF, CRLF or CR line ends. Malformed quoting or bytes
  that do not decode stop the file with INVALID_ARGUMENT and the line number; UTF-32, UTF-16
  without a BOM and NUL bytes are refused by name (``utf32``, ``utf16_without_bom``,
  ``not_text``).
* XLSX: the first worksheet, read by our own bounded reader (``xlsx_zip`` checks the zip
  whole before anything is inflated; ``xlsx_xml`` streams the sheet through expat with every
  bound held while parsing; cached formula values, never recomputed). A number cell in the code
  or PIN column becomes its exact digit string (``6225881234567890``, never
  ``6.22588123456789e+15`` or ``...890.0``). XLSX numbers are doubles, so a number that is not
  whole (``not_integer``) or whose magnitude is 2**53 or more (``lost_precision``: the digits
  stored need not be the code typed; Excel rounds such numbers when saving) refuses the row. Two
  losses happen before the file is saved and cannot be seen here: Excel truncates numbers typed
  with more than 15 digits, and a number loses leading zeros. Codes and PINs belong in text
  cells. Rows keep their spreadsheet numbers (a gap costs nothing); cells beyond
  ``columns_max`` are never stored.
* The format is found by magic bytes (XLSX is a zip, ``PK\\x03\\x04``; the old binary ``.xls`` is
  refused), then by extension; anything else is read as CSV. Upload names do not matter.
* A file without any row is ``empty_file``; one whose rows are all blank ``only_blank_rows``.

Header and columns
------------------
The first non-blank row is the header. Names are matched case-insensitively, with spaces and
``-`` read as ``_``: code (``code``, ``card``, ``card_no``, ``card_number``, ``cdkey``, ``卡号``,
``卡密``), pin (``pin``, ``password``, ``secret``, ``密码``), valid_until (``valid_until``,
``expires``, ``expiry``, ``有效期``). ``卡密`` ("card secret") names the code when it is the
only code column and the PIN when another column names the card (the usual ``卡号,卡密`` layout).
Other columns are ignored and listed in :attr:`ScanReport.ignored_columns`. A first row naming
no known column is data, not a header (``no_header``); a header without a code column, or with
two columns for one field, is INVALID_ARGUMENT with ``details["field"] == "header"``.

Values: surrounding whitespace is stripped; the code is kept as written (it is delivered as is)
and checked with the core's :func:`cardsvc.engine.normalise_code`, plus two stricter rules: a
code containing a control character (tab and newline included) is refused, since no printed code
holds one, and a code or PIN starting with a spreadsheet formula starter (``= + - @``) is refused
(``formula_prefix``; :data:`values.FORMULA_STARTS` says why). An empty PIN cell means "no PIN".
``valid_until`` is Unix seconds, an ISO date (valid through the end of that day, UTC; an XLSX
date cell, which reads as midnight, likewise) or an ISO datetime (UTC unless it carries an
offset), between 2000-01-01 and the core's last second (2**32 - 1). A blank row is skipped.

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

Memory and time
---------------
:func:`read_codes` builds one chunk of rows (``chunk_rows`` rows of ~220 bytes: ~11 MB at the
default 50,000; two are alive while the caller still holds the previous one) and one row.
:func:`scan` holds 21 bytes per valid row for in-file duplicate detection (a 96-bit keyed digest,
the line number, the normalised length and last four characters: 1M rows ~ 21 MB, 10M ~ 210 MB)
instead of a set of 16-byte digests (~85 bytes a row: 83 MB for 1M, measured), plus at most
``problems_listed_max`` problems and ``duplicates_listed_max`` duplicates. XLSX adds the
shared-strings table (its text as UTF-8 and 8 bytes an entry: at most about its part's size,
bounded by ``xlsx_part_bytes_max``) and one 64 KiB block of XML. No row's text is read past
``line_len_max`` characters, in CSV (a line, or a record whose quoted field spans lines) or XLSX
(all cells of a row, a shared string included), so no single cell can take memory. Every zip
member's declared size and compression ratio, their sum and their count are bounded before
parsing (``CodeFileLimits``). Time: a :class:`Budget` of CPU seconds per file
(``cpu_seconds_max``) is checked every few thousand rows and every XML block; over it the read
stops with LIMIT_EXCEEDED ``cpu_seconds``.

Secrets
-------
Codes and PINs never appear in messages, details, problems or reports: problems carry a line,
a field name and a reason word; duplicates carry the masked form of the normalised code
(:func:`cardsvc.masking.mask_code`, at most its last four characters visible).
"""

from cardsvc.catalog.codefile.reader import (
    detect_format,
    merge_by_line,
    read_codes,
    scan,
    write_report,
)
from cardsvc.catalog.codefile.values import (
    CHUNK_ROWS_DEFAULT,
    DEFAULT_LIMITS,
    REPORT_COLUMNS,
    Budget,
    CodeFileLimits,
    CodeRow,
    DuplicateReason,
    DuplicateRow,
    FileEncoding,
    FileFormat,
    ImportMode,
    RowProblem,
    ScanReport,
)

__all__ = [
    "CHUNK_ROWS_DEFAULT",
    "DEFAULT_LIMITS",
    "REPORT_COLUMNS",
    "Budget",
    "CodeFileLimits",
    "CodeRow",
    "DuplicateReason",
    "DuplicateRow",
    "FileEncoding",
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
