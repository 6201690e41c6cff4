"""Goal: the sandbox provider is a faithful stand-in for a real one: its notifies verify only
with the channel key, inside the time window and for the channel's merchant; its scripts produce
duplicates, out-of-order and delayed deliveries; and a checkout fed any script through
verify -> inbox -> binding -> state machine ends paid exactly once when a payment happened.

Method: notifies built with the module's own signing helper and a throwaway key, then tampered
field by field; the named scenarios replayed through a minimal in-test checkout loop (inbox set,
binding, transition) on a manual clock.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers.base import (
    ChannelConfig,
    IgnoredEvent,
    Notify,
    PaymentRequest,
    check_binding,
)
from cardsvc.payments.providers.sandbox import (
    SCENARIOS,
    SandboxEvent,
    SandboxProvider,
    SandboxScenario,
    _signature,
    sandbox_script,
    sign_sandbox_notify,
)
from cardsvc.payments.state import AttemptState, transition

from .helpers import T0_MS, ManualClock

KEY = b"throwaway-sandbox-key-0123456789"
CONFIG = ChannelConfig(
    provider="sandbox", channel_id="sbx", merchant_id="sandbox-shop",
    notify_url="https://shop.example/pay/notify/sbx", return_url="https://shop.example/done",
    secrets={"key": KEY}, options={"pay_page_url": "https://shop.example/sandbox/pay"})
EVENT = SandboxEvent("E-1", "SBX-ORDER-1", "ORDER-1", 1999, "CNY", "paid")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0_MS)


@pytest.fixture
def provider(clock: ManualClock) -> SandboxProvider:
    return SandboxProvider(clock_ms=clock)


def _verify(provider: SandboxProvider, body: bytes, config: ChannelConfig = CONFIG
            ) -> Notify | IgnoredEvent:
    return provider.verify_notify(config, "POST",
                                  {"Content-Type": "application/x-www-form-urlencoded"}, [], body)


def _refused(provider: SandboxProvider, body: bytes, code: ErrorCode,
             config: ChannelConfig = CONFIG) -> str:
    with pytest.raises(CardsvcError) as caught:
        _verify(provider, body, config)
    assert caught.value.code is code
    return str(caught.value.details.get("reason"))


def _fields(body: bytes) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(body.decode(), keep_blank_values=True)
            .items()}


def test_a_signed_notify_verifies_to_its_facts(provider: SandboxProvider) -> None:
    notify = _verify(provider, sign_sandbox_notify(CONFIG, EVENT, T0_MS).body)
    assert isinstance(notify, Notify)
    assert (notify.event_id, notify.provider_trade_no, notify.out_trade_no) == (
        "E-1", "SBX-ORDER-1", "ORDER-1")
    assert (notify.amount_minor, notify.currency, notify.status) == (1999, "CNY", "paid")
    assert notify.merchant_id == "sandbox-shop" and notify.paid_at_ms == T0_MS
    assert "sig" not in notify.raw
    check_binding(notify, "ORDER-1", 1999, "CNY")


@pytest.mark.parametrize("name", ["merchant_id", "event_id", "trade_no", "out_trade_no",
                                  "amount_minor", "currency", "status", "ts"])
def test_changing_any_field_breaks_the_signature(provider: SandboxProvider, name: str) -> None:
    fields = _fields(sign_sandbox_notify(CONFIG, EVENT, T0_MS).body)
    fields[name] = {"amount_minor": "1", "status": "failed", "currency": "USD",
                    "ts": str(T0_MS + 1)}.get(name, fields[name] + "x")
    assert _refused(provider, urlencode(fields).encode(),
                    ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


@pytest.mark.parametrize("name", ["merchant_id", "amount_minor", "ts", "sig", "v"])
def test_a_removed_or_extra_field_is_malformed(provider: SandboxProvider, name: str) -> None:
    fields = _fields(sign_sandbox_notify(CONFIG, EVENT, T0_MS).body)
    del fields[name]
    _refused(provider, urlencode(fields).encode(), ErrorCode.PAYMENT_NOTIFY_INVALID)
    fields = _fields(sign_sandbox_notify(CONFIG, EVENT, T0_MS).body)
    fields["extra"] = "1"
    _refused(provider, urlencode(fields).encode(), ErrorCode.PAYMENT_NOTIFY_INVALID)


def test_a_wrong_key_is_refused(provider: SandboxProvider) -> None:
    body = sign_sandbox_notify(CONFIG, EVENT, T0_MS, key=b"another-key-of-enough-length").body
    assert _refused(provider, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_a_notify_outside_the_window_is_refused(provider: SandboxProvider,
                                                clock: ManualClock) -> None:
    body = sign_sandbox_notify(CONFIG, EVENT, T0_MS).body
    clock.now_ms = T0_MS + 300_000
    assert isinstance(_verify(provider, body), Notify)
    clock.now_ms = T0_MS + 300_001
    assert _refused(provider, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "stale_timestamp"
    clock.now_ms = T0_MS - 300_001
    assert _refused(provider, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "stale_timestamp"


def test_another_merchants_notify_is_refused_even_with_the_same_key(
        provider: SandboxProvider) -> None:
    other = ChannelConfig(provider="sandbox", channel_id="x", merchant_id="other-shop",
                          notify_url=CONFIG.notify_url, return_url=CONFIG.return_url,
                          secrets={"key": KEY}, options=CONFIG.options)
    body = sign_sandbox_notify(other, EVENT, T0_MS).body
    assert _refused(provider, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "merchant_mismatch"


@pytest.mark.parametrize("amount", ["1e2", "01", "-1", "1.00"])
def test_bad_amount_text_is_refused_even_when_signed(provider: SandboxProvider,
                                                     amount: str) -> None:
    fields = _fields(sign_sandbox_notify(CONFIG, EVENT, T0_MS).body)
    fields["amount_minor"] = amount
    # Re-sign the tampered fields with the real key: the parse, not the signature, refuses it.
    fields["sig"] = _signature(KEY, fields)
    _refused(provider, urlencode(fields).encode(), ErrorCode.PAYMENT_NOTIFY_INVALID)


def test_ack_bodies_are_the_sandbox_tokens(provider: SandboxProvider) -> None:
    assert (provider.ack(True).status_code, provider.ack(True).body) == (200, b"success")
    assert (provider.ack(False).status_code, provider.ack(False).body) == (400, b"fail")


def test_start_redirects_to_the_pay_page_with_the_attempt(provider: SandboxProvider) -> None:
    provider.check_config(CONFIG)
    start = provider.start(CONFIG, PaymentRequest("ORDER-1", 1999, "CNY", "card", T0_MS + 900_000))
    assert start.kind == "redirect" and start.url is not None
    query = parse_qs(urlsplit(start.url).query)
    assert query["out_trade_no"] == ["ORDER-1"] and query["amount_minor"] == ["1999"]


def test_refund_is_simulated_as_succeeded(provider: SandboxProvider) -> None:
    result = provider.refund(CONFIG, "ORDER-1", 1999, "stock gone")
    assert (result.status, result.amount_minor, result.refund_id) == (
        "succeeded", 1999, "SBX-ORDER-1R1999")
    with pytest.raises(CardsvcError) as caught:
        provider.query(CONFIG, "ORDER-1")
    assert caught.value.code is ErrorCode.PAYMENT_OPERATION_UNSUPPORTED


def test_a_short_key_or_missing_page_is_a_config_error(provider: SandboxProvider) -> None:
    for changes in ({"secrets": {"key": b"short"}}, {"options": {}},
                    {"options": {"pay_page_url": "https://x", "tolerance_s": "0"}}):
        config = ChannelConfig(**{**CONFIG.__dict__, **changes})
        with pytest.raises(CardsvcError) as caught:
            provider.check_config(config)
        assert caught.value.code is ErrorCode.PAYMENT_CONFIG_INVALID


def test_scripts_produce_duplicates_reordering_and_delays() -> None:
    script = sandbox_script(CONFIG, SandboxScenario(("expired", "paid"), duplicates=2,
                                                    delay_ms=5_000, spacing_ms=10_000),
                            out_trade_no="ORDER-1", amount_minor=1999, currency="CNY",
                            start_ms=T0_MS)
    assert [delivery.event.status for delivery in script] == ["expired"] * 3 + ["paid"] * 3
    assert [delivery.deliver_at_ms - T0_MS for delivery in script] == [
        5_000, 15_000, 25_000, 35_000, 45_000, 55_000]
    assert len({delivery.event.event_id for delivery in script}) == 2
    reordered = sandbox_script(CONFIG, SCENARIOS["paid_overtaken_by_expired"],
                               out_trade_no="ORDER-1", amount_minor=1999, currency="CNY",
                               start_ms=T0_MS)
    assert [delivery.event.status for delivery in reordered] == ["expired", "paid"]


def _checkout(provider: SandboxProvider, clock: ManualClock, scenario: SandboxScenario
              ) -> tuple[AttemptState, int, int, int]:
    """A minimal checkout: inbox unique on (provider, event_id), binding, state machine.
    Returns the final state, fulfilments, duplicates dropped by the inbox and refusals."""
    inbox: set[tuple[str, str]] = set()
    state: AttemptState = "pending"
    fulfilled = duplicates = refused = 0
    for delivery in sandbox_script(CONFIG, scenario, out_trade_no="ORDER-1", amount_minor=1999,
                                   currency="CNY", start_ms=T0_MS):
        clock.now_ms = delivery.deliver_at_ms  # the caller delivers each one when it is due
        try:
            notify = _verify(provider, delivery.body)
        except CardsvcError:
            refused += 1
            continue
        assert isinstance(notify, Notify)
        if (notify.provider, notify.event_id) in inbox:
            duplicates += 1
            continue
        inbox.add((notify.provider, notify.event_id))
        check_binding(notify, "ORDER-1", 1999, "CNY")
        outcome = transition(state, notify.status)
        fulfilled += outcome.became_paid
        state = outcome.state
    return state, fulfilled, duplicates, refused


@pytest.mark.parametrize(("name", "final", "fulfilled"), [
    ("paid", "paid", 1),
    ("failed", "failed", 0),
    ("expired", "expired", 0),
    ("paid_with_duplicates", "paid", 1),
    ("failed_after_paid", "paid", 1),
    ("expired_then_paid", "paid", 1),
    ("paid_overtaken_by_expired", "paid", 1),
    ("paid_late", "paid", 1),
    ("forged_paid", "pending", 0),
])
def test_every_scenario_ends_in_the_right_state_fulfilled_at_most_once(
        provider: SandboxProvider, clock: ManualClock, name: str, final: AttemptState,
        fulfilled: int) -> None:
    state, fulfilments, duplicates, refused = _checkout(provider, clock, SCENARIOS[name])
    assert (state, fulfilments) == (final, fulfilled)
    assert duplicates == (2 if name == "paid_with_duplicates" else 0)
    assert refused == (1 if name == "forged_paid" else 0)


def test_a_delivery_held_back_past_the_window_is_refused(provider: SandboxProvider,
                                                         clock: ManualClock) -> None:
    (delivery,) = sandbox_script(CONFIG, SCENARIOS["paid"], out_trade_no="ORDER-1",
                                 amount_minor=1999, currency="CNY", start_ms=T0_MS)
    clock.now_ms = delivery.deliver_at_ms + 301_000
    assert _refused(provider, delivery.body,
                    ErrorCode.PAYMENT_SIGNATURE_INVALID) == "stale_timestamp"
