"""Payments: the provider port and adapters (``providers/``), the attempt state machine
(``state``) and the outbound HTTP transport (``transport``). Pure Python, no SQL: the checkout
saga (``cardsvc.sales``) stores attempts and the callback inbox, and calls these.
docs/payments.md describes each provider and what the checkout layer must do.
"""

from __future__ import annotations

from cardsvc.payments.providers import PROVIDERS, make_provider
from cardsvc.payments.providers.base import (
    ChannelConfig,
    HttpResponse,
    IgnoredEvent,
    Notify,
    NotifyAnswer,
    PaymentRequest,
    PaymentStart,
    Provider,
    QueryResult,
    RefundResult,
    Transport,
    check_binding,
)
from cardsvc.payments.state import AttemptEvent, AttemptState, Outcome, transition

__all__ = [
    "PROVIDERS",
    "AttemptEvent",
    "AttemptState",
    "ChannelConfig",
    "HttpResponse",
    "IgnoredEvent",
    "Notify",
    "NotifyAnswer",
    "Outcome",
    "PaymentRequest",
    "PaymentStart",
    "Provider",
    "QueryResult",
    "RefundResult",
    "Transport",
    "check_binding",
    "make_provider",
    "transition",
]
