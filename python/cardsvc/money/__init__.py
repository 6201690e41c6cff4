"""Money: the double-entry ledger (``ledger``), statements of its accounts (``statements``),
the flows of the wholesale business over it (``settlement``: deposits, an order's debit,
settlement with commissions, releases, refunds), withdrawals (``withdrawals``), and their
tables."""

from cardsvc.money.accounts import AgentMoney, Deposited, PagedStatement
from cardsvc.money.settlement import COMMISSION_STATES, COOLING_MS_MAX, CommissionInfo
from cardsvc.money.statements import Statement, StatementEntry
from cardsvc.money.tables import (
    Account,
    Commission,
    LedgerTransaction,
    Posting,
    Withdrawal,
)
from cardsvc.money.withdrawals import WITHDRAWAL_STATUSES, WithdrawalInfo

__all__ = [
    "COMMISSION_STATES",
    "COOLING_MS_MAX",
    "WITHDRAWAL_STATUSES",
    "Account",
    "AgentMoney",
    "Commission",
    "CommissionInfo",
    "Deposited",
    "LedgerTransaction",
    "PagedStatement",
    "Posting",
    "Statement",
    "StatementEntry",
    "Withdrawal",
    "WithdrawalInfo",
]
