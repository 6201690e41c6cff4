"""Goal: every adapter is reachable by its channel's provider name, behind one port, and each
one states what it supports.

Method: build each adapter through ``make_provider`` and the package face, check names and
capability flags against docs/payments.md's table, and refuse an unknown name.
"""

from __future__ import annotations

import pytest

from cardsvc import payments
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers import PROVIDERS, make_provider
from cardsvc.payments.providers.base import Provider

CAPABILITIES = {
    "sandbox": (False, True),
    "epay": (True, True),
    "alipay": (True, True),
    "wechatpay": (True, True),
    "stripe": (True, True),
}


def test_make_provider_builds_every_adapter_by_name() -> None:
    assert set(PROVIDERS) == set(CAPABILITIES)
    for name, (query, refund) in CAPABILITIES.items():
        provider = make_provider(name)
        assert isinstance(provider, Provider) and provider.name == name
        assert (provider.supports_query, provider.supports_refund) == (query, refund)


def test_an_unknown_provider_name_is_a_config_error() -> None:
    with pytest.raises(CardsvcError) as caught:
        make_provider("paypal")
    assert caught.value.code is ErrorCode.PAYMENT_CONFIG_INVALID


def test_the_package_face_exports_the_port() -> None:
    assert payments.make_provider is make_provider
    assert payments.transition("pending", "paid").became_paid
