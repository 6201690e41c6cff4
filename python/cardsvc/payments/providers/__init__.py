"""Payment provider adapters behind one port (``base.py``).

Each adapter imports only ``base`` and ``cardsvc.errors``; nothing outside ``cardsvc.payments``
imports an adapter directly: the process asks :func:`make_provider` (or :data:`PROVIDERS`) by the
channel's provider name.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cardsvc.payments.providers.alipay import AlipayProvider
from cardsvc.payments.providers.base import (
    Clock,
    Provider,
    Transport,
    config_invalid,
    system_clock_ms,
)
from cardsvc.payments.providers.epay import EpayProvider
from cardsvc.payments.providers.sandbox import SandboxProvider
from cardsvc.payments.providers.stripe import StripeProvider
from cardsvc.payments.providers.wechatpay import WechatpayProvider

PROVIDERS: Mapping[str, type[Provider]] = MappingProxyType({
    cls.name: cls
    for cls in (SandboxProvider, EpayProvider, AlipayProvider, WechatpayProvider, StripeProvider)
})
"""Every adapter by its provider name."""


def make_provider(name: str, *, transport: Transport | None = None,
                  clock_ms: Clock = system_clock_ms) -> Provider:
    """The adapter for provider ``name``, sending through ``transport``. Raises
    PAYMENT_CONFIG_INVALID for an unknown name."""
    cls = PROVIDERS.get(name)
    if cls is None:
        raise config_invalid(name[:32], "provider", "not a known payment provider")
    return cls(transport=transport, clock_ms=clock_ms)


__all__ = ["PROVIDERS", "make_provider"]
