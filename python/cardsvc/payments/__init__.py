"""Payments: the provider port and adapters (``providers/``), the attempt state machine
(``state``) and the outbound HTTP transport (``transport``). Pure Python, no SQL: the checkout
saga (``cardsvc.sales``) stores attempts and the callback inbox, and calls these.
docs/payments.md describes each provider and what the checkout layer must do.
"""

from __future__ import annotations

from cardsvc.payments import attempts
from cardsvc.payments.channels import (
    NOTIFY_PATH,
    SANDBOX_CHANNEL_ID,
    SANDBOX_PAY_PATH,
    Channels,
    ChannelView,
    LiveChannel,
)
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
from cardsvc.payments.providers.sandbox import (
    SCENARIOS,
    SandboxScenario,
    sandbox_script,
    sandbox_trade_no,
)
from cardsvc.payments.state import AttemptEvent, AttemptState, Outcome, transition
from cardsvc.payments.tables import NotifyRefusal, PaymentAttempt, PaymentChannel, PaymentInbox
from cardsvc.payments.transport import HttpxTransport

__all__ = [
    "NOTIFY_PATH",
    "PROVIDERS",
    "SANDBOX_CHANNEL_ID",
    "SANDBOX_PAY_PATH",
    "SCENARIOS",
    "AttemptEvent",
    "AttemptState",
    "ChannelConfig",
    "ChannelView",
    "Channels",
    "HttpResponse",
    "HttpxTransport",
    "IgnoredEvent",
    "LiveChannel",
    "Notify",
    "NotifyAnswer",
    "NotifyRefusal",
    "Outcome",
    "PaymentAttempt",
    "PaymentChannel",
    "PaymentInbox",
    "PaymentRequest",
    "PaymentStart",
    "Provider",
    "QueryResult",
    "RefundResult",
    "SandboxScenario",
    "Transport",
    "attempts",
    "check_binding",
    "make_provider",
    "sandbox_script",
    "sandbox_trade_no",
    "transition",
]
