"""Money: the double-entry ledger (``ledger``), statements of its accounts (``statements``),
the flows of the wholesale business over it (``settlement``: deposits, an order's debit,
settlement with commissions, releases, refunds), withdrawals (``withdrawals``), and their
tables."""

from cardsvc.money.accounts import AgentMoney, Deposited
from cardsvc.money.settlement import COMMISSION_STATES, COOLING_MS_MAX, CommissionInfo
from cardsvc.money.tables import (
    Account,
    Commission,
    LedgerTransaction,
    Posting,
    Withdrawal,
)
from cardsvc.money.withdrawals import WithdrawalInfo

__all__ = [
    "COMMISSION_STATES",
    "COOLING_MS_MAX",
    "Account",
    "AgentMoney",
    "Commission",
    "CommissionInfo",
    "Deposited",
    "LedgerTransaction",
    "Posting",
    "Withdrawal",
    "WithdrawalInfo",
]
