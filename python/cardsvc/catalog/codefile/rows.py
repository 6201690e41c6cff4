"""The header's columns and each row's cells: codes, PINs and validity ends checked by the core's
rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from cardsvc.catalog.codefile.values import (
    CARD_SECRET,
    CODE_ALIASES,
    CORE_REASONS,
    EXACT_FLOAT_INT_LIMIT,
    EXCEL_ERROR_VALUES,
    FORMULA_STARTS,
    PIN_ALIASES,
    VALID_UNTIL_ALIASES,
    VALID_UNTIL_MAX,
    VALID_UNTIL_MIN,
    CodeFileLimits,
    Layout,
    RowProblem,
    Valid,
)
from cardsvc.engine import PIN_LEN_MAX, normalise_code
from cardsvc.errors import BadInput, CardsvcError, ErrorCode, make_error

# --- header ------------------------------------------------------------------------------------


def layout_of(line: int, cells: Sequence[object], limits: CodeFileLimits) -> Layout:
    """The layout named by the header row at ``line``. Raises INVALID_ARGUMENT (details
    ``{"field": "header", "reason": "no_header" | "missing_code_column" | "duplicate_column",
    "line"}``: ``no_header`` when the row names no known column at all, so it is data) or
    LIMIT_EXCEEDED (``columns``). Never puts a header name in an error: a file without a header
    has a code in its first row."""
    names = [_header_text(cell) for cell in cells]
    width = max((i + 1 for i, name in enumerate(names) if name), default=0)
    if width > limits.columns_max:
        raise make_error(
            ErrorCode.LIMIT_EXCEEDED,
            f"the header has more than {limits.columns_max} columns",
            {"field": "columns", "max": limits.columns_max},
        )
    keys = [_header_key(name) for name in names[:width]]
    code_columns = [i for i, key in enumerate(keys) if key in CODE_ALIASES]
    pin_columns = [i for i, key in enumerate(keys) if key in PIN_ALIASES]
    if len(code_columns) > 1 and CARD_SECRET in keys:
        # "卡号,卡密": card number and card secret; the secret is the PIN.
        secret = keys.index(CARD_SECRET)
        code_columns.remove(secret)
        pin_columns.append(secret)
    until_columns = [i for i, key in enumerate(keys) if key in VALID_UNTIL_ALIASES]
    if not code_columns and not pin_columns and not until_columns:
        raise _header_error(
            "no_header", line,
            f"line {line} is not a header: it names no known column; the first row must name "
            "the columns, e.g. code,pin,valid_until (or 卡号,卡密,有效期)")
    if not code_columns:
        raise _header_error(
            "missing_code_column", line,
            f"the header on line {line} names no code column (code, card_no, cdkey, 卡号, ...)")
    for found in (code_columns, pin_columns, until_columns):
        if len(found) > 1:
            raise _header_error("duplicate_column", line,
                            f"two columns of the header on line {line} name one field")
    used = {*code_columns, *pin_columns, *until_columns}
    return Layout(
        code=code_columns[0],
        pin=pin_columns[0] if pin_columns else None,
        valid_until=until_columns[0] if until_columns else None,
        width=width,
        ignored=tuple(name for i, name in enumerate(names[:width]) if name and i not in used),
    )


def _header_text(cell: object) -> str:
    if cell is None:
        return ""
    return (cell if isinstance(cell, str) else str(cell)).strip()


def _header_key(name: str) -> str:
    return name.casefold().replace(" ", "_").replace("-", "_")


def _header_error(reason: str, line: int, message: str) -> CardsvcError:
    return make_error(
        ErrorCode.INVALID_ARGUMENT, message, {"field": "header", "reason": reason, "line": line}
    )


# --- rows --------------------------------------------------------------------------------------


def check_row(
    line: int, cells: Sequence[object], layout: Layout
) -> Valid | list[RowProblem] | None:
    """The row's valid fields, its problems, or None for a blank row. Pure."""
    count = len(cells)
    value = cells[layout.code] if layout.code < count else None
    code, reason = (value.strip(), None) if type(value) is str else _cell_text(value)
    normalised = ""
    if reason is None:
        normalised, reason = _normalised_code(code)
    problems: list[RowProblem] | None = None
    if reason is not None:
        if reason == "empty" and is_blank(cells):
            return None
        problems = [RowProblem(line, "code", reason)]
    pin, reason = _pin_of(cells, layout.pin)
    if reason is not None:
        problems = _add(problems, RowProblem(line, "pin", reason))
    valid_until, reason = _valid_until_of(cells, layout.valid_until)
    if reason is not None:
        problems = _add(problems, RowProblem(line, "valid_until", reason))
    if count > layout.width and any(_header_text(cell) for cell in cells[layout.width :]):
        problems = _add(problems, RowProblem(line, "row", "extra_columns"))
    if problems is not None:
        return problems
    return code, normalised, pin, valid_until


def _add(problems: list[RowProblem] | None, problem: RowProblem) -> list[RowProblem]:
    if problems is None:
        return [problem]
    problems.append(problem)
    return problems


def is_blank(cells: Sequence[object]) -> bool:
    return not any(_header_text(cell) for cell in cells)


def _normalised_code(code: str) -> tuple[str, str | None]:
    """(normalised code, None) or ("", reason). The core's rules, plus: no Excel error value,
    no control character anywhere (the core drops inner tabs and newlines; a printed code
    never holds one) and no spreadsheet formula starter first (``formula_prefix``, checked
    after the core's rules: ``---`` is ``empty``)."""
    if not code:
        return "", "empty"
    if code in EXCEL_ERROR_VALUES:
        return "", "cell_error"
    if not code.isprintable():
        return "", "not_printable"
    try:
        normalised = normalise_code(code)
    except BadInput as exc:
        if exc.code is not ErrorCode.INVALID_CODE:
            raise
        return "", CORE_REASONS.get(str(exc.details.get("reason")), "invalid")
    if code[0] in FORMULA_STARTS:
        return "", "formula_prefix"
    return normalised, None


def _pin_of(cells: Sequence[object], column: int | None) -> tuple[str | None, str | None]:
    """(PIN or None, None) or (None, reason), by the core's ``check_pin``: 1..PIN_LEN_MAX
    bytes of ASCII 0x21..0x7e, and not starting with a spreadsheet formula starter."""
    if column is None or column >= len(cells):
        return None, None
    value = cells[column]
    if type(value) is str:
        pin = value.strip()
    else:
        pin, reason = _cell_text(value)
        if reason is not None:
            return None, reason
    if not pin:
        return None, None
    if pin in EXCEL_ERROR_VALUES:
        return None, "cell_error"
    if len(pin) > PIN_LEN_MAX:
        return None, "too_long"
    if not (pin.isascii() and pin.isprintable()) or " " in pin:
        return None, "not_printable"
    if pin[0] in FORMULA_STARTS:
        return None, "formula_prefix"
    return pin, None


def _cell_text(value: object) -> tuple[str, str | None]:
    """(text, None) or ("", reason) for a code or PIN cell that is not a string: None is empty,
    a whole number below 2**53 in magnitude its exact digits; other numbers (``not_integer``,
    ``lost_precision``), booleans and dates (``not_text``) have no text."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value.strip(), None
    if isinstance(value, bool):
        return "", "not_text"
    if isinstance(value, int | float):
        if isinstance(value, float) and not value.is_integer():
            return "", "not_integer"
        if abs(value) >= EXACT_FLOAT_INT_LIMIT:
            return "", "lost_precision"
        return str(int(value)), None
    return "", "not_text"


def _valid_until_of(cells: Sequence[object], column: int | None) -> tuple[int | None, str | None]:
    """(Unix seconds or None, None) or (None, ``bad_date`` | ``out_of_range``)."""
    if column is None or column >= len(cells):
        return None, None
    value = cells[column]
    if isinstance(value, str):
        value = value.strip()
    elif isinstance(value, datetime) and value.tzinfo is None and value.time() == time.min:
        # openpyxl reads an XLSX date cell as midnight; a date means the end of that day.
        value = value.date()
    if value is None or value == "":
        return None, None
    seconds = _seconds_of(value)
    if seconds is None:
        return None, "bad_date"
    if not VALID_UNTIL_MIN <= seconds <= VALID_UNTIL_MAX:
        return None, "out_of_range"
    return seconds, None


def _seconds_of(value: object) -> int | None:
    """Unix seconds of a validity end: digits or an int are seconds; a date is the end of that
    day, UTC; a naive datetime is UTC. None when it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            # Over 20 digits is out of range anyway; int() refuses over 4,300 (ValueError).
            return int(value) if len(value) <= 20 else VALID_UNTIL_MAX + 1
        parsed = _parse_iso(value)
        if parsed is None:
            return None
        value = parsed
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, date):  # an ISO date text, or a date cell (see _valid_until_of)
        return int(datetime.combine(value, time.max, UTC).timestamp())
    return None


def _parse_iso(text: str) -> date | datetime | None:
    """An ISO 8601 date (a ``date``) or datetime, or None."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
