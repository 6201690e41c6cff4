"""Goal: the Stripe adapter accepts a webhook only when a ``v1`` signature of ``"<t>." + body``
verifies with our signing secret (or the previous one during a roll) within 300 s, for our mode
and account; maps the checkout session events to statuses; creates Checkout Sessions and
refunds with the form encoding and idempotency keys Stripe expects; and never mixes up
zero-decimal currencies.

Method: webhooks signed in the test with throwaway ``whsec_`` secrets, with the event layout of
Stripe's API reference (a ``checkout.session`` object under ``data.object``), tampered one way
at a time; a fake Stripe API (a recording transport, once a real server on 127.0.0.1). Stripe
publishes no fixed signature vector (its SDK tests sign at run time, as these do), so the
signature is also recomputed here from the documented formula with ``hmac`` directly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl

import pytest

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers.base import (
    ChannelConfig,
    HttpResponse,
    IgnoredEvent,
    Notify,
    PaymentRequest,
    check_binding,
)
from cardsvc.payments.providers.stripe import (
    StripeProvider,
    parse_signature_header,
    stripe_amount_currency,
    stripe_signature,
)
from cardsvc.payments.transport import HttpxTransport

from .helpers import (
    T0_MS,
    Call,
    FakeTransport,
    LocalServer,
    ManualClock,
    Received,
    Reply,
    json_response,
)

SECRET = "whsec_throwaway_current_0123456789abcdef"
PREVIOUS = "whsec_throwaway_previous_0123456789abcdef"
NOW_S = T0_MS // 1000
CONFIG = ChannelConfig(
    provider="stripe", channel_id="st-1", merchant_id="",
    notify_url="https://shop.example/pay/webhook/st-1", return_url="https://shop.example/done",
    secrets={"api_key": "sk_test_throwaway", "webhook_secret": SECRET},
    options={"api_base": "https://api.stripe.example"})
REQUEST = PaymentRequest("ORDER-0001", 1999, "USD", "Gift card", T0_MS + 3 * 3600_000)


def _event(event_type: str = "checkout.session.completed", **session_changes: object
           ) -> dict[str, object]:
    session: dict[str, object] = {
        "id": "cs_test_a1b2c3", "object": "checkout.session", "amount_total": 1999,
        "currency": "usd", "client_reference_id": "ORDER-0001", "mode": "payment",
        "payment_intent": "pi_3Pq1", "payment_status": "paid", "status": "complete",
        "metadata": {"out_trade_no": "ORDER-0001"}, "livemode": False,
    }
    session.update(session_changes)
    return {"id": "evt_1PqA", "object": "event", "api_version": "2024-06-20",
            "created": NOW_S, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "type": event_type,
            "data": {"object": session}}


def _signed(event: dict[str, object], *, secret: str = SECRET, timestamp_s: int = NOW_S,
            extra: str = "") -> tuple[dict[str, str], bytes]:
    body = json.dumps(event, indent=2).encode()
    signature = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body,
                         hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp_s},v1={signature}{extra}",
            "Content-Type": "application/json"}, body


def _verify(headers: dict[str, str], body: bytes, *, now_s: int = NOW_S,
            config: ChannelConfig = CONFIG) -> Notify | IgnoredEvent:
    return StripeProvider(clock_ms=ManualClock(now_s * 1000)).verify_notify(
        config, "POST", headers, [], body)


def _refused(headers: dict[str, str], body: bytes, code: ErrorCode, *, now_s: int = NOW_S,
             config: ChannelConfig = CONFIG) -> str:
    with pytest.raises(CardsvcError) as caught:
        _verify(headers, body, now_s=now_s, config=config)
    assert caught.value.code is code
    return str(caught.value.details.get("reason"))


def test_the_signature_is_hmac_sha256_of_timestamp_dot_payload() -> None:
    payload = b'{"id": "evt_test_webhook", "object": "event"}'
    by_hand = hmac.new(b"whsec_test_secret", b"1492774577." + payload, hashlib.sha256)
    assert stripe_signature(b"whsec_test_secret", 1492774577, payload) == by_hand.hexdigest()


def test_config_check_passes_and_refuses_foreign_secrets() -> None:
    StripeProvider().check_config(CONFIG)
    bad = ChannelConfig(**{**CONFIG.__dict__, "secrets": {"api_key": "pk_test_x",
                                                          "webhook_secret": SECRET}})
    with pytest.raises(CardsvcError) as caught:
        StripeProvider().check_config(bad)
    assert caught.value.code is ErrorCode.PAYMENT_CONFIG_INVALID


def test_a_signed_completed_session_is_paid() -> None:
    notify = _verify(*_signed(_event()))
    assert isinstance(notify, Notify)
    assert (notify.event_id, notify.provider_trade_no, notify.out_trade_no) == (
        "evt_1PqA", "cs_test_a1b2c3", "ORDER-0001")
    assert (notify.amount_minor, notify.currency, notify.status) == (1999, "USD", "paid")
    assert notify.paid_at_ms == T0_MS and notify.raw["payment_intent"] == "pi_3Pq1"
    check_binding(notify, "ORDER-0001", 1999, "USD")


@pytest.mark.parametrize(("event_type", "payment_status", "status"), [
    ("checkout.session.completed", "unpaid", "pending"),
    ("checkout.session.async_payment_succeeded", "paid", "paid"),
    ("checkout.session.async_payment_failed", "unpaid", "failed"),
    ("checkout.session.expired", "unpaid", "expired"),
])
def test_checkout_session_events_map_to_statuses(event_type: str, payment_status: str,
                                                 status: str) -> None:
    notify = _verify(*_signed(_event(event_type, payment_status=payment_status)))
    assert isinstance(notify, Notify) and notify.status == status


def test_other_events_are_ignored() -> None:
    ignored = _verify(*_signed(_event("payment_intent.succeeded")))
    assert isinstance(ignored, IgnoredEvent) and ignored.event_id == "evt_1PqA"


def test_a_changed_body_breaks_the_signature() -> None:
    headers, body = _signed(_event())
    assert _refused(headers, body.replace(b"1999", b"9999"),
                    ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_a_wrong_secret_is_refused() -> None:
    assert _refused(*_signed(_event(), secret="whsec_someone_else"),
                    ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_during_a_roll_any_v1_and_the_previous_secret_are_accepted() -> None:
    headers, body = _signed(_event(), secret=PREVIOUS)
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"
    rolling = ChannelConfig(**{**CONFIG.__dict__, "secrets": {
        **CONFIG.secrets, "webhook_secret_previous": PREVIOUS}})
    assert isinstance(_verify(headers, body, config=rolling), Notify)
    # Stripe signs with old and new secrets at once while an endpoint secret rolls.
    other = hmac.new(b"whsec_other", f"{NOW_S}.".encode() + body, hashlib.sha256).hexdigest()
    headers, body = _signed(_event(), extra=f",v1={other},v0={'0' * 64}")
    assert isinstance(_verify(headers, body), Notify)


def test_a_replayed_webhook_outside_the_tolerance_is_refused() -> None:
    headers, body = _signed(_event(), timestamp_s=NOW_S)
    assert isinstance(_verify(headers, body, now_s=NOW_S + 300), Notify)
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID,
                    now_s=NOW_S + 301) == "stale_timestamp"
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID,
                    now_s=NOW_S - 301) == "stale_timestamp"


@pytest.mark.parametrize("header", ["", "t=1717200000", "v1=" + "a" * 64,
                                    "t=abc,v1=" + "a" * 64, "t=1,t=2,v1=" + "a" * 64,
                                    "t=1717200000,v1=zz", "garbage"])
def test_a_malformed_or_missing_header_is_refused(header: str) -> None:
    _, body = _signed(_event())
    headers = {"Stripe-Signature": header} if header else {}
    reason = _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID)
    assert reason in ("missing", "malformed_header")


def test_parse_signature_header_keeps_every_v1_and_ignores_v0() -> None:
    text = f"t=12,v1={'a' * 64},v0={'b' * 64},v1={'c' * 64}"
    assert parse_signature_header(text) == (12, ["a" * 64, "c" * 64])


def test_a_live_event_on_a_test_key_or_another_account_is_refused() -> None:
    live = _event()
    live["livemode"] = True
    assert _refused(*_signed(live), ErrorCode.PAYMENT_SIGNATURE_INVALID) == "livemode_mismatch"
    connected = _event()
    connected["account"] = "acct_someone_else"
    ours = ChannelConfig(**{**CONFIG.__dict__, "merchant_id": "acct_ours"})
    assert _refused(*_signed(connected), ErrorCode.PAYMENT_SIGNATURE_INVALID,
                    config=ours) == "merchant_mismatch"
    connected["account"] = "acct_ours"
    assert isinstance(_verify(*_signed(connected), config=ours), Notify)


@pytest.mark.parametrize("changes", [{"amount_total": "1999"}, {"amount_total": 19.99},
                                     {"amount_total": None}, {"client_reference_id": None},
                                     {"object": "payment_intent"}])
def test_a_session_without_our_reference_or_an_integer_amount_is_malformed(
        changes: dict[str, object]) -> None:
    _refused(*_signed(_event(**changes)), ErrorCode.PAYMENT_NOTIFY_INVALID)


def test_binding_mismatches_are_refused() -> None:
    notify = _verify(*_signed(_event()))
    assert isinstance(notify, Notify)
    for expected, field in ((("ORDER-0002", 1999, "USD"), "out_trade_no"),
                            (("ORDER-0001", 1999, "EUR"), "currency"),
                            (("ORDER-0001", 2000, "USD"), "amount_minor")):
        with pytest.raises(CardsvcError) as caught:
            check_binding(notify, *expected)
        assert caught.value.details["field"] == field


def test_ack_is_2xx_for_received_and_4xx_for_retry() -> None:
    assert StripeProvider().ack(True).status_code == 200
    assert StripeProvider().ack(False).status_code == 400


def test_zero_decimal_currencies_pass_through_and_ambiguous_ones_are_refused() -> None:
    assert stripe_amount_currency("JPY") == "jpy" and stripe_amount_currency("USD") == "usd"
    for currency in ("ISK", "HUF", "TWD", "UGX", "KWD", "XXX"):
        with pytest.raises(CardsvcError) as caught:
            stripe_amount_currency(currency)
        assert caught.value.code is ErrorCode.PAYMENT_CURRENCY_UNSUPPORTED


def _session_answer(call: Call) -> HttpResponse:
    form = dict(parse_qsl((call.body or b"").decode()))
    return json_response(200, json.dumps({
        "id": "cs_test_a1b2c3", "object": "checkout.session",
        "url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
        "client_reference_id": form["client_reference_id"],
        "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
        "currency": form["line_items[0][price_data][currency]"],
        "expires_at": int(form["expires_at"]), "payment_status": "unpaid", "status": "open"}))


def test_start_creates_a_checkout_session_with_an_idempotency_key() -> None:
    transport = FakeTransport(_session_answer)
    start = StripeProvider(transport=transport, clock_ms=ManualClock(T0_MS)).start(CONFIG,
                                                                                   REQUEST)
    assert start.kind == "redirect" and start.provider_ref == "cs_test_a1b2c3"
    assert start.expires_at_ms == REQUEST.expires_at_ms
    (call,) = transport.calls
    assert call.url == "https://api.stripe.example/v1/checkout/sessions"
    assert call.headers["Authorization"] == "Bearer sk_test_throwaway"
    assert call.headers["Idempotency-Key"] == "checkout-ORDER-0001"
    form = dict(parse_qsl((call.body or b"").decode()))
    assert form["mode"] == "payment" and form["line_items[0][quantity]"] == "1"
    assert form["line_items[0][price_data][unit_amount]"] == "1999"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["payment_intent_data[metadata][out_trade_no]"] == "ORDER-0001"


def test_start_keeps_the_expiry_inside_stripes_window() -> None:
    for expires_in_ms, applied_s in ((60_000, NOW_S + 31 * 60), (3 * 86400_000,
                                                                 NOW_S + 86400 - 60)):
        transport = FakeTransport(_session_answer)
        request = PaymentRequest("ORDER-0001", 500, "JPY", "x", T0_MS + expires_in_ms)
        start = StripeProvider(transport=transport, clock_ms=ManualClock(T0_MS)).start(
            CONFIG, request)
        assert start.expires_at_ms == applied_s * 1000
        form = dict(parse_qsl((transport.calls[0].body or b"").decode()))
        assert form["line_items[0][price_data][unit_amount]"] == "500"  # yen, not cents


def test_start_refuses_a_session_that_does_not_match_and_maps_errors() -> None:
    wrong = FakeTransport(lambda call: json_response(200, json.dumps({
        "id": "cs_x", "url": "https://x", "client_reference_id": "ORDER-0001",
        "amount_total": 1, "currency": "usd"})))
    with pytest.raises(CardsvcError) as caught:
        StripeProvider(transport=wrong, clock_ms=ManualClock(T0_MS)).start(CONFIG, REQUEST)
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE
    declined = FakeTransport(lambda call: json_response(400, json.dumps({"error": {
        "type": "invalid_request_error", "code": "parameter_invalid_integer"}})))
    with pytest.raises(CardsvcError) as caught:
        StripeProvider(transport=declined, clock_ms=ManualClock(T0_MS)).start(CONFIG, REQUEST)
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_REJECTED
    assert caught.value.details["provider_code"] == "parameter_invalid_integer"


def _api(call: Call) -> HttpResponse:
    if call.method == "GET":
        return json_response(200, json.dumps({
            "id": "cs_test_a1b2c3", "client_reference_id": "ORDER-0001", "amount_total": 1999,
            "currency": "usd", "payment_status": "paid", "status": "complete",
            "payment_intent": "pi_3Pq1"}))
    form = dict(parse_qsl((call.body or b"").decode()))
    return json_response(200, json.dumps({"id": "re_1", "object": "refund",
                                          "amount": int(form["amount"]), "status": "succeeded"}))


def test_query_and_refund_go_through_the_session() -> None:
    transport = FakeTransport(_api)
    provider = StripeProvider(transport=transport)
    result = provider.query(CONFIG, "ORDER-0001", provider_ref="cs_test_a1b2c3")
    assert (result.status, result.amount_minor, result.currency) == ("paid", 1999, "USD")
    refund = provider.refund(CONFIG, "ORDER-0001", 1999, "requested_by_customer",
                             provider_ref="cs_test_a1b2c3")
    assert (refund.status, refund.refund_id) == ("succeeded", "re_1")
    post = transport.calls[-1]
    assert post.url.endswith("/v1/refunds")
    assert post.headers["Idempotency-Key"] == "refund-ORDER-0001R1999"
    form = dict(parse_qsl((post.body or b"").decode()))
    assert form["payment_intent"] == "pi_3Pq1" and form["reason"] == "requested_by_customer"
    with pytest.raises(CardsvcError) as caught:
        provider.query(CONFIG, "ORDER-0001")
    assert caught.value.code is ErrorCode.PAYMENT_CONFIG_INVALID
    with pytest.raises(CardsvcError) as caught:
        provider.query(CONFIG, "ORDER-0002", provider_ref="cs_test_a1b2c3")
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE


def test_start_over_a_real_http_server() -> None:
    def route(request: Received) -> Reply:
        assert request.path == "/v1/checkout/sessions"
        assert request.headers["Idempotency-Key"] == "checkout-ORDER-0001"
        answer = _session_answer(Call("POST", request.path, request.headers, request.body))
        return Reply(200, {"Content-Type": "application/json"}, [answer.body],
                     len(answer.body))

    with LocalServer(route) as server:
        config = ChannelConfig(**{**CONFIG.__dict__, "options": {"api_base": server.base_url}})
        transport = HttpxTransport(http_hosts_allowed=frozenset({"127.0.0.1"}))
        try:
            request = PaymentRequest("ORDER-0001", 1999, "USD", "Gift card",
                                     int(time.time() * 1000) + 3600_000)
            start = StripeProvider(transport=transport).start(config, request)
        finally:
            transport.close()
    assert start.provider_ref == "cs_test_a1b2c3"
