"""The ledger's tables: the double-entry ledger (accounts, transactions, postings), commissions
in their cooling period, and withdrawals.

Money is integer minor units with a currency on every account and posting; never a float.
Sign convention: a posting's ``amount_minor`` is added to its account's balance, and the
postings of one transaction sum to zero per currency. An agent's ``available`` balance is what
the platform owes it (positive: its money); platform accounts mirror the other side (cash
received shows negative on ``platform:deposits``). ``accounts.balance_minor`` caches the sum of
the account's postings and is updated in the same transaction as each posting
(``cardsvc.money.ledger`` checks cached = derived).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, REF_LEN_MAX, Base


class Account(Base):
    """A ledger account: ``agent:<id>:available``, ``agent:<id>:escrow`` (orders in flight),
    ``agent:<id>:pending`` (commissions cooling), ``agent:<id>:withdrawing``, and the platform's
    ``platform:revenue:<CUR>``, ``platform:cost_of_goods:<CUR>``, ``platform:deposits:<CUR>``,
    ``platform:payouts:<CUR>`` (refunds reverse the original postings). ``floor_minor`` is the
    lowest balance allowed (None: unbounded)."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(REF_LEN_MAX), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX),
                                                 ForeignKey("agents.agent_id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    floor_minor: Mapped[int | None] = mapped_column(BigInteger)
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class LedgerTransaction(Base):
    """An immutable ledger transaction. ``reference`` is unique: the idempotency key of what
    caused it (``deposit:<agent>:<reference>``, ``order:<id>:debit``, ...)."""

    __tablename__ = "ledger_transactions"

    txn_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    reference: Mapped[str] = mapped_column(String(REF_LEN_MAX * 2), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Posting(Base):
    """One leg of a transaction: ``amount_minor`` added to the account's balance."""

    __tablename__ = "postings"

    # SQLite numbers rows itself only for an INTEGER primary key (64-bit there anyway).
    posting_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                            primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(String(ID_LEN_MAX),
                                        ForeignKey("ledger_transactions.txn_id"), index=True)
    account_id: Mapped[str] = mapped_column(String(REF_LEN_MAX), ForeignKey("accounts.account_id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Commission(Base):
    """A commission in its cooling period: ``pending`` until ``release_at_ms`` (then moved to
    the agent's available balance: ``released``), or ``reversed`` by a refund first."""

    __tablename__ = "commissions"

    commission_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("orders.order_id"),
                                          index=True)
    agent_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("agents.agent_id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # pending | released | reversed
    release_at_ms: Mapped[int] = mapped_column(BigInteger)
    txn_id: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))


class Withdrawal(Base):
    """An agent's request to be paid out: ``requested`` (the amount moved from available to
    withdrawing) -> ``approved`` -> ``paid`` (moved out to payouts), or ``rejected`` (moved back).
    """

    __tablename__ = "withdrawals"

    withdrawal_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("agents.agent_id"),
                                          index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(REF_LEN_MAX))
    requested_by: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    decided_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    note: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


Index("ix_postings_account_time", Posting.account_id, Posting.posting_id)


Index("ix_postings_account_created", Posting.account_id, Posting.created_at_ms,
      Posting.posting_id)


Index("ix_commissions_due", Commission.status, Commission.release_at_ms)


Index("ux_withdrawals_agent_reference", Withdrawal.agent_id, Withdrawal.reference, unique=True)


Index("ix_withdrawals_created", Withdrawal.created_at_ms, Withdrawal.withdrawal_id)
"""The withdrawal list, newest first (``AgentMoney.list_withdrawals``)."""


Index("ix_withdrawals_status_created", Withdrawal.status, Withdrawal.created_at_ms,
      Withdrawal.withdrawal_id)
"""Finance's queue: the withdrawals awaiting approval (or payment), newest first."""


Index("ix_withdrawals_agent_created", Withdrawal.agent_id, Withdrawal.created_at_ms,
      Withdrawal.withdrawal_id)
"""An agent's own withdrawals, newest first."""
