"""Money: the double-entry ledger (``ledger``), statements of its accounts (``statements``),
the flows of the wholesale business over it (``settlement``: deposits, an order's debit,
settlement with commissions, releases, refunds), withdrawals (``withdrawals``), and their
tables."""

from cardsvc.money.tables import (
    Account,
    Commission,
    LedgerTransaction,
    Posting,
    Withdrawal,
)

__all__ = [
    "Account",
    "Commission",
    "LedgerTransaction",
    "Posting",
    "Withdrawal",
]
