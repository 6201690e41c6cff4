"""The words pages show for the domain's stable names: roles, states of orders, codes,
withdrawals, approvals, batches, alerts, actions. One table each, translated when shown
(template globals ``role_name``, ``state_name``, ``action_name``...). A name missing here is
shown as it is, so a new state never breaks a page.
"""

from __future__ import annotations

from collections.abc import Mapping

from web.i18n import N_, gettext

ROLES: Mapping[str, str] = {
    "owner": N_("Owner"), "operator": N_("Operator"), "finance": N_("Finance"),
    "support": N_("Support"), "terminal": N_("Terminal"), "agent": N_("Agent"),
}
STATES: Mapping[str, str] = {
    # codes
    "available": N_("available"), "held": N_("held"), "allocated": N_("sold"),
    "redeemed": N_("redeemed"), "frozen": N_("frozen"), "void": N_("void"),
    "expired": N_("expired"), "withdrawn": N_("withdrawn"),
    # orders, holds, batches
    "pending": N_("pending"), "fulfilled": N_("fulfilled"), "failed": N_("failed"),
    "delivered": N_("delivered"), "paid_unfulfillable": N_("paid, out of stock"),
    "refunded": N_("refunded"), "open": N_("open"), "confirmed": N_("confirmed"),
    "released": N_("released"), "importing": N_("importing"), "ready": N_("ready"),
    "rejected": N_("rejected"), "cancelled": N_("cancelled"),
    # withdrawals, approvals, commissions
    "requested": N_("requested"), "approved": N_("approved"), "paid": N_("paid"),
    "executed": N_("done"), "reversed": N_("reversed"),
    # users, agents
    "active": N_("active"), "invited": N_("invited"), "disabled": N_("disabled"),
    "suspended": N_("suspended"),
    # alerts
    "firing": N_("firing"), "resolved": N_("resolved"),
    # verification
    "valid": N_("valid"), "not_yet_valid": N_("not valid yet"), "not_sold": N_("not sold"),
}
ACTIONS: Mapping[str, str] = {
    "withdrawal_payout": N_("Withdrawal payout"), "refund": N_("Refund"),
    "code_export": N_("Export of codes"), "batch_void": N_("Void a batch"),
}
ALERTS: Mapping[str, str] = {
    "low_stock": N_("Low stock"), "low_balance": N_("Low balance"),
    "stuck_import": N_("Import stuck"), "stuck_payment": N_("Payment stuck"),
    "commissions_released": N_("Commissions released"),
    "withdrawal": N_("Withdrawal requested"), "stuck_delivery": N_("Mail to a buyer failed"),
}
NOTICES: Mapping[str, str] = {
    "fired": N_("started"), "repeated": N_("still true"), "resolved": N_("cleared"),
    "event": N_("happened"),
}
EVENTS: Mapping[str, str] = {
    "redeemed": N_("redeemed"), "rolled_back": N_("redemption rolled back"),
    "ordered": N_("ordered"), "delivered": N_("delivered"),
    "batch.import": N_("imported"), "code.trace": N_("traced"), "code.freeze": N_("frozen"),
    "code.unfreeze": N_("unfrozen"), "code.void": N_("voided"), "code.export": N_("exported"),
    "money.refund": N_("refunded"), "batch.cancel": N_("import cancelled"),
}
KINDS: Mapping[str, str] = {
    "card_key": N_("Card key"), "voucher": N_("Voucher"),
    "direct_recharge": N_("Direct recharge"), "link": N_("Link"),
}
GOOD_STATES = frozenset({"available", "fulfilled", "delivered", "ready", "paid", "executed",
                         "active", "valid", "approved", "released", "resolved", "confirmed"})
BAD_STATES = frozenset({"failed", "void", "frozen", "rejected", "disabled", "suspended",
                        "expired", "firing", "reversed", "refunded", "cancelled"})


def _name(table: Mapping[str, str], key: object) -> str:
    text = table.get(str(key))
    return gettext(text) if text is not None else str(key)


def role_name(role: object) -> str:
    return _name(ROLES, role)


def state_name(state: object) -> str:
    return _name(STATES, state)


def action_name(action: object) -> str:
    return _name(ACTIONS, action)


def alert_name(kind: object) -> str:
    return _name(ALERTS, kind)


def notice_name(notice: object) -> str:
    return _name(NOTICES, notice)


def alert_subject(alert: Mapping[str, object]) -> str:
    """What an alert is about, in a few words, from its details (a SKU and pool, an agent, a
    batch, a withdrawal, a count)."""
    details = alert.get("details")
    if not isinstance(details, Mapping):
        return ""
    shown = [f"{name}: {details[name]}" for name in SUBJECT_FIELDS if details.get(name)
             is not None]
    return ", ".join(shown)


SUBJECT_FIELDS = ("sku", "pool", "available", "threshold", "days_of_cover", "agent_id",
                  "available_minor", "threshold_minor", "batch_id", "processed", "submitted",
                  "withdrawal_id", "amount_minor", "count", "order_id", "status",
                  "delivery_id", "template")


def event_name(event: object) -> str:
    return _name(EVENTS, event)


def kind_name(kind: object) -> str:
    return _name(KINDS, kind)


def kind_options() -> list[tuple[str, str]]:
    """(value, label) pairs of the product kinds, for a select."""
    return [(kind, gettext(label)) for kind, label in KINDS.items()]


def state_class(state: object) -> str:
    """The badge class of a state: ``badge-ok``, ``badge-bad`` or ``badge-neutral``."""
    if state in GOOD_STATES:
        return "badge-ok"
    if state in BAD_STATES:
        return "badge-bad"
    return "badge-neutral"


TEMPLATE_GLOBALS = {"role_name": role_name, "state_name": state_name,
                    "action_name": action_name, "alert_name": alert_name,
                    "state_class": state_class, "kind_name": kind_name,
                    "kind_options": kind_options, "event_name": event_name,
                    "notice_name": notice_name, "alert_subject": alert_subject}
