"""The money of retail orders (the storefront) as ledger transactions.

Retail money arrives at a payment provider, not in an agent's balance, so each payment channel
has a **clearing account** per currency, ``clearing:<channel_id>:<CUR>``: what the provider holds
for us (negative, like ``platform:deposits``: money in). A paid order moves through two steps:

* receipt (paid), ``retail:<order>:receipt``: clearing -total, ``platform:retail_received``
  +total;
* fee (when the provider reports one), ``retail:<order>:fee``: clearing +fee,
  ``platform:fees`` -fee;
* sale (delivered), ``retail:<order>:sale``: retail_received -total, revenue +(total - cost),
  cost of goods +cost;
* refund of a delivered order, ``retail:<order>:refund``: clearing +total, revenue
  -(total - cost), cost of goods -cost;
* refund of an undelivered (``paid_unfulfillable``) order, ``retail:<order>:refund``:
  clearing +total, retail_received -total.

``platform:retail_received:<CUR>`` is money taken for orders not yet delivered: a paid order that
could not be fulfilled keeps its money there (and in clearing) until it is refunded, so nothing
vanishes. ``platform:fees:<CUR>`` is what the providers kept (an expense: negative). Costs are
the unit cost the order line snapshotted at checkout (an unknown cost counts as 0: the whole
price is revenue), as the wholesale side does. Every function works in the caller's
transaction, never commits, and is idempotent through its reference.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.money.ledger import Leg, ensure_platform_accounts, platform_account, post
from cardsvc.money.tables import Account

RETAIL_STEPS = ("receipt", "fee", "sale", "refund")
_ACCOUNTS = cast(Table, Account.__table__)


def clearing_account(channel_id: str, currency: str) -> str:
    """The clearing account of a payment channel in ``currency``. Pure."""
    return f"clearing:{channel_id}:{currency}"


def received_account(currency: str) -> str:
    return f"platform:retail_received:{currency}"


def fees_account(currency: str) -> str:
    return f"platform:fees:{currency}"


def retail_reference(order_id: str, step: str) -> str:
    if step not in RETAIL_STEPS:
        raise AssertionError(f"unknown retail step {step}")
    return f"retail:{order_id}:{step}"


def ensure_retail_accounts(session: Session, channel_id: str, currency: str,
                           now_ms: int) -> None:
    """The platform's accounts in ``currency``, the channel's clearing account and the retail
    accounts, created when missing (idempotent)."""
    ensure_platform_accounts(session, currency, now_ms)
    rows = [{"account_id": account_id, "kind": kind, "agent_id": None, "currency": currency,
             "floor_minor": None, "balance_minor": 0, "created_at_ms": now_ms}
            for account_id, kind in ((clearing_account(channel_id, currency), "clearing"),
                                     (received_account(currency), "retail_received"),
                                     (fees_account(currency), "fees"))]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(_ACCOUNTS).values(rows)
                    .on_conflict_do_nothing(index_elements=["account_id"]))


def post_receipt(session: Session, *, order_id: str, channel_id: str, total_minor: int,
                 currency: str, fee_minor: int | None, actor: str, now_ms: int,
                 ensure: bool = True) -> str:
    """The payment of a retail order arrived (and the provider's fee, when it reports one).
    Returns the receipt's transaction id. ``ensure`` False skips creating the accounts (the
    caller knows they exist)."""
    if ensure:
        ensure_retail_accounts(session, channel_id, currency, now_ms)
    clearing = clearing_account(channel_id, currency)
    receipt = post(session, reference=retail_reference(order_id, "receipt"), kind="retail_receipt",
                   actor=actor, currency=currency,
                   legs=[Leg(clearing, -total_minor), Leg(received_account(currency), total_minor)],
                   details={"order_id": order_id, "channel_id": channel_id}, now_ms=now_ms)
    if fee_minor:
        post(session, reference=retail_reference(order_id, "fee"), kind="retail_fee", actor=actor,
             currency=currency, legs=[Leg(clearing, fee_minor),
                                      Leg(fees_account(currency), -fee_minor)],
             details={"order_id": order_id, "channel_id": channel_id}, now_ms=now_ms)
    return receipt.txn_id


def _sale_legs(total_minor: int, unit_cost_minor: int | None, quantity: int,
               currency: str, sign: int) -> list[Leg]:
    cost = (unit_cost_minor or 0) * quantity
    legs = []
    if total_minor - cost:
        legs.append(Leg(platform_account("revenue", currency), sign * (total_minor - cost)))
    if cost:
        legs.append(Leg(platform_account("cost_of_goods", currency), sign * cost))
    return legs


def post_sale(session: Session, *, order_id: str, total_minor: int, unit_cost_minor: int | None,
              quantity: int, currency: str, actor: str, now_ms: int) -> str:
    """The order was delivered: the money received becomes revenue and cost of goods."""
    legs = [Leg(received_account(currency), -total_minor),
            *_sale_legs(total_minor, unit_cost_minor, quantity, currency, +1)]
    return post(session, reference=retail_reference(order_id, "sale"), kind="retail_sale",
                actor=actor, currency=currency, legs=legs,
                details={"order_id": order_id, "quantity": quantity}, now_ms=now_ms).txn_id


def post_refund(session: Session, *, order_id: str, channel_id: str, total_minor: int,
                unit_cost_minor: int | None, quantity: int, currency: str, delivered: bool,
                actor: str, now_ms: int) -> str:
    """The money went back to the buyer: the sale reversed (a delivered order) or the receipt
    (an undelivered one), the clearing account paying it out."""
    ensure_retail_accounts(session, channel_id, currency, now_ms)
    if delivered:
        legs = [Leg(clearing_account(channel_id, currency), total_minor),
                *_sale_legs(total_minor, unit_cost_minor, quantity, currency, -1)]
    else:
        legs = [Leg(clearing_account(channel_id, currency), total_minor),
                Leg(received_account(currency), -total_minor)]
    return post(session, reference=retail_reference(order_id, "refund"), kind="retail_refund",
                actor=actor, currency=currency, legs=legs,
                details={"order_id": order_id, "delivered": delivered}, now_ms=now_ms).txn_id
