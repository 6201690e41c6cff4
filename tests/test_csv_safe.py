"""Goal: every CSV cardsvc writes neutralises spreadsheet formulas with one rule that a reader
can undo exactly (issue 10, item 3).

Method: the helper as a property (any text survives neutralise → restore, and no neutralised
cell starts a formula); then each writer (statements, the web layer's downloads) is shown to use
it. The export and the batch report are covered in tests/delivery/test_exports.py and
tests/api/routes/test_audit_exports.py.
"""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from cardsvc import csv_safe
from cardsvc.csv_safe import FORMULA_PREFIXES, cell, neutralise, restore, safe_row
from cardsvc.money.statements import Statement, StatementEntry, write_statement_csv


@given(st.text())
def test_neutralise_is_undone_exactly_by_restore(text: str) -> None:
    safe = neutralise(text)
    assert restore(safe) == text
    assert not safe.startswith(FORMULA_PREFIXES)


def test_formula_and_apostrophe_cells_get_one_apostrophe_numbers_stay() -> None:
    assert [cell(v) for v in ("=1+1", "+1", "-1", "@A", "\tx", "\rx", "'x", "ok", None, -5)] == [
        "'=1+1", "'+1", "'-1", "'@A", "'\tx", "'\rx", "''x", "ok", "", "-5"]
    assert safe_row(["=HYPERLINK(1)", 3]) == ["'=HYPERLINK(1)", "3"]


def test_the_web_layer_uses_the_one_helper() -> None:
    from web import csv_download

    assert csv_download.neutralise is csv_safe.neutralise
    assert csv_download.FORMULA_PREFIXES is csv_safe.FORMULA_PREFIXES


def test_statement_csv_neutralises_text_cells() -> None:
    entry = StatementEntry(posting_id=1, txn_id="txn_1", at_ms=0, kind="deposit",
                           reference="=cmd|' /C calc'!A0", amount_minor=-5,
                           balance_after_minor=-5)
    stmt = Statement(account_id="agent:A:available", currency="CNY", since_ms=0, until_ms=1,
                     opening_minor=0, closing_minor=-5, entries=[entry])
    out = io.StringIO()
    write_statement_csv(stmt, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[2][7] == "'=cmd|' /C calc'!A0" and restore(rows[2][7]) == entry.reference
    assert rows[2][8] == "-5"  # a number stays a number
