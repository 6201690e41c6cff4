"""Account statements: an account's postings over a period with the balance after each,
opening and closing balances and totals, as pages, a stream or CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from cardsvc.csv_safe import safe_row
from cardsvc.errors import invalid
from cardsvc.money.ledger import PAGE_SIZE_MAX, POSTINGS, TXNS, account_info, check_limit
from cardsvc.times import iso

# ----- statements ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """One posting on a statement and the account's balance right after it."""

    at_ms: int
    posting_id: int
    txn_id: str
    kind: str
    reference: str
    amount_minor: int
    balance_after_minor: int


@dataclass(frozen=True, slots=True)
class StatementPage:
    """Up to ``limit`` entries of a statement; pass ``next_after`` back for the next page (None:
    this was the last)."""

    account_id: str
    currency: str
    since_ms: int
    until_ms: int
    opening_minor: int
    closing_minor: int
    entries: list[StatementEntry]
    next_after: tuple[int, int] | None


@dataclass(frozen=True)
class Statement:
    """An account over ``since_ms <= at < until_ms``: the balance before, every posting in
    (time, posting id) order with the balance after it, the balance at the end. ``entries``
    streams from the database page by page, each time it is iterated, while the session that
    made it is open. ``closing_minor`` = ``opening_minor`` + the entries' amounts, and one
    period's closing is the next period's opening."""

    account_id: str
    currency: str
    since_ms: int
    until_ms: int
    opening_minor: int
    closing_minor: int
    entries: Iterable[StatementEntry]


def statement(
    session: Session, account_id: str, since_ms: int, until_ms: int, *,
    page_size: int = PAGE_SIZE_MAX,
) -> Statement:
    """The account's statement for the period (see :class:`Statement`). Reads only. Raises
    ACCOUNT_NOT_FOUND, INVALID_ARGUMENT (``since_ms > until_ms``, a page size below 1),
    LIMIT_EXCEEDED (page size over PAGE_SIZE_MAX)."""
    check_limit("page_size", page_size)
    currency, opening, closing = _period_totals(session, account_id, since_ms, until_ms)
    head = StatementPage(account_id, currency, since_ms, until_ms, opening, closing, [], None)
    return Statement(account_id, currency, since_ms, until_ms, opening, closing,
                     _EntryStream(session, head, page_size))


def statement_page(
    session: Session, account_id: str, since_ms: int, until_ms: int, *,
    after: tuple[int, int] | None, limit: int,
) -> StatementPage:
    """One page of the statement: the entries after the cursor ``after`` (``(at_ms,
    posting_id)`` of the previous page's last entry; None: from the start). Reads only; three
    indexed queries. Raises as :func:`statement`."""
    check_limit("limit", limit)
    currency, opening, closing = _period_totals(session, account_id, since_ms, until_ms)
    p = POSTINGS.c
    running = opening
    if after is not None:
        running += int(session.scalar(
            select(func.coalesce(func.sum(p.amount_minor), 0))
            .where(p.account_id == account_id, p.created_at_ms >= since_ms,
                   _not_after(after))) or 0)
    entries = _page_entries(session, account_id, since_ms, until_ms, after, limit, running)
    last = entries[-1] if entries else None
    more = last is not None and len(entries) == limit
    return StatementPage(account_id, currency, since_ms, until_ms, opening, closing, entries,
                         (last.at_ms, last.posting_id) if more and last else None)


def _period_totals(
    session: Session, account_id: str, since_ms: int, until_ms: int
) -> tuple[str, int, int]:
    """(currency, opening balance, closing balance) of the period, in one aggregate query."""
    for field, value in (("since_ms", since_ms), ("until_ms", until_ms)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(field, f"{field} must be an integer")
    if since_ms > until_ms:
        raise invalid("since_ms", "since_ms must not be after until_ms")
    currency = account_info(session, account_id).currency
    p = POSTINGS.c
    before = func.sum(case((p.created_at_ms < since_ms, p.amount_minor), else_=0))
    opening, closing = session.execute(
        select(func.coalesce(before, 0), func.coalesce(func.sum(p.amount_minor), 0))
        .where(p.account_id == account_id, p.created_at_ms < until_ms)
    ).one()
    return currency, int(opening), int(closing)


def _not_after(after: tuple[int, int]) -> Any:
    p = POSTINGS.c
    return or_(p.created_at_ms < after[0],
               and_(p.created_at_ms == after[0], p.posting_id <= after[1]))


def _page_entries(
    session: Session, account_id: str, since_ms: int, until_ms: int,
    after: tuple[int, int] | None, limit: int, running: int,
) -> list[StatementEntry]:
    p, t = POSTINGS.c, TXNS.c
    query = (
        select(p.created_at_ms, p.posting_id, p.txn_id, t.kind, t.reference, p.amount_minor)
        .join(TXNS, t.txn_id == p.txn_id)
        .where(p.account_id == account_id, p.created_at_ms >= since_ms,
               p.created_at_ms < until_ms)
        .order_by(p.created_at_ms, p.posting_id).limit(limit)
    )
    if after is not None:
        query = query.where(~_not_after(after))
    entries: list[StatementEntry] = []
    for row in session.execute(query):
        running += row.amount_minor
        entries.append(StatementEntry(row.created_at_ms, row.posting_id, row.txn_id, row.kind,
                                      row.reference, row.amount_minor, running))
    return entries


class _EntryStream:
    """The entries of a statement, read page by page on each iteration (keyset pagination, so
    memory stays at one page)."""

    def __init__(self, session: Session, first: StatementPage, page_size: int) -> None:
        self._session = session
        self._first = first
        self._page_size = page_size

    def __iter__(self) -> Iterator[StatementEntry]:
        first = self._first
        running = first.opening_minor
        after: tuple[int, int] | None = None
        while True:
            entries = _page_entries(self._session, first.account_id, first.since_ms,
                                    first.until_ms, after, self._page_size, running)
            yield from entries
            if len(entries) < self._page_size:
                return
            last = entries[-1]
            running, after = last.balance_after_minor, (last.at_ms, last.posting_id)


STATEMENT_CSV_COLUMNS = ("row", "account_id", "currency", "at", "at_ms", "txn_id", "kind",
                         "reference", "amount_minor", "balance_after_minor")


def write_statement_csv(stmt: Statement, out: TextIO) -> int:
    """Writes the statement as CSV: a header, an ``opening`` row (at ``since_ms``), one ``entry``
    row per posting, a ``closing`` row (at ``until_ms``). Amounts are integer minor units. Text
    cells go through ``cardsvc.csv_safe`` (a leading ``'`` on what a spreadsheet would run).
    Returns the rows written, header included. Effects: writes to ``out`` only."""
    writer = csv.writer(out, lineterminator="\r\n")
    account, currency = stmt.account_id, stmt.currency
    writer.writerow(safe_row(STATEMENT_CSV_COLUMNS))
    writer.writerow(safe_row(["opening", account, currency, iso(stmt.since_ms), stmt.since_ms,
                              "", "", "", "", stmt.opening_minor]))
    rows = 3
    for entry in stmt.entries:
        writer.writerow(safe_row(["entry", account, currency, iso(entry.at_ms), entry.at_ms,
                                  entry.txn_id, entry.kind, entry.reference, entry.amount_minor,
                                  entry.balance_after_minor]))
        rows += 1
    writer.writerow(safe_row(["closing", account, currency, iso(stmt.until_ms), stmt.until_ms,
                              "", "", "", "", stmt.closing_minor]))
    return rows
