"""Goal: the checkout takes each real provider's callbacks in their own format, signed as the
provider signs them (throwaway keys), end to end: EPay (MD5, GET), Alipay (RSA2 form), WeChat
Pay v3 (RSA headers, AES-256-GCM resource) and Stripe (HMAC webhook); a verified callback pays
and delivers the order, a tampered or mis-bound one changes nothing.

Method: the shop runtime (``tests/fixtures/shop.py``) with one channel per provider configured
through ``Channels.create`` from the settings the adapters' own tests use, the engine's clock
set to those tests' "now", the providers' outbound calls (Stripe's and WeChat Pay's start)
answered by a recording transport; the notifies are built by the adapters' test helpers with
the attempt's ``out_trade_no`` and amount.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from cardsvc.payments import HttpResponse
from cardsvc.runtime import Runtime
from tests.fixtures.shop import PRICE, request, run
from tests.payments import test_alipay as alipay
from tests.payments import test_epay as epay
from tests.payments import test_stripe as stripe
from tests.payments import test_wechatpay as wechat
from tests.payments.helpers import T0_MS, Call, FakeTransport, json_response


def _answer(call: Call) -> HttpResponse:
    if "stripe" in call.url:
        form = dict(parse_qsl((call.body or b"").decode()))
        return json_response(200, json.dumps({
            "id": "cs_test_shop", "url": "https://checkout.stripe.example/c/cs_test_shop",
            "client_reference_id": form["client_reference_id"],
            "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
            "currency": form["line_items[0][price_data][currency]"],
            "expires_at": int(form["expires_at"])}))
    return wechat._signed_response(200, {"code_url": "weixin://wxpay/bizpayurl?pr=shop"})


def _channels(runtime: Runtime) -> FakeTransport:
    transport = FakeTransport(_answer)
    runtime.engine.set_clock_ms(T0_MS)
    runtime.channels.transport = transport
    for config in (epay.CONFIG, alipay.CONFIG, wechat.CONFIG, stripe.CONFIG):
        runtime.channels.create(
            config.channel_id, config.provider, display_name=config.provider,
            merchant_id=config.merchant_id,
            secrets_={k: v.decode() for k, v in config.secrets.items()},
            verify_keys=dict(config.verify_keys), options=dict(config.options), actor="test")
    return transport


def _notify(provider: str, out_trade_no: str) -> tuple[str, dict[str, str], list[Any], bytes]:
    """(method, headers, query pairs, body) of a paid callback for ``out_trade_no``."""
    if provider == "epay":
        fields = epay._notify_fields(out_trade_no=out_trade_no, money="15.00")
        return "GET", {}, list(fields.items()), b""
    if provider == "alipay":
        fields = alipay._notify_fields(out_trade_no=out_trade_no, total_amount="15.00",
                                       receipt_amount="15.00", buyer_pay_amount="15.00",
                                       invoice_amount="15.00")
        return "POST", alipay.FORM, [], urlencode(fields).encode()
    if provider == "wechatpay":
        headers, body = wechat._callback(wechat._transaction(
            out_trade_no=out_trade_no, amount={"total": PRICE, "payer_total": PRICE,
                                               "currency": "CNY", "payer_currency": "CNY"}))
        return "POST", headers, [], body
    headers, body = stripe._signed(stripe._event(
        client_reference_id=out_trade_no, metadata={"out_trade_no": out_trade_no},
        amount_total=PRICE, currency="cny", id="cs_test_shop"))
    return "POST", headers, [], body


@pytest.mark.parametrize("channel_id", ["epay-1", "ali-1", "wx-1", "st-1"])
def test_a_provider_formatted_callback_pays_and_delivers(shop_runtime: Runtime,
                                                         channel_id: str) -> None:
    _channels(shop_runtime)
    try:
        live = shop_runtime.channels.live(channel_id)
        result = run(shop_runtime.checkout.start(request(1, channel_id=channel_id)))
        token = live.view.notify_url.rsplit("/", 1)[1]
        method, headers, query, body = _notify(live.provider.name, result.payment.out_trade_no)
        if method == "GET":  # a tampered amount: the signature no longer verifies
            bad_query = [(k, "16.00" if k == "money" else v) for k, v in query]
            refused = run(shop_runtime.checkout.handle_notify(token, method, headers,
                                                              bad_query, body))
        else:
            refused = run(shop_runtime.checkout.handle_notify(token, method, headers, query,
                                                              body + b" "))
        assert refused is not None and refused.verdict in ("refused_verification", "mismatch")
        assert run(shop_runtime.checkout.order(result.order.order_id,
                                               result.token)).status == "pending"
        paid = run(shop_runtime.checkout.handle_notify(token, method, headers, query, body))
        assert paid is not None and paid.verdict == "applied", paid
        assert paid.answer == live.provider.ack(True)
        again = run(shop_runtime.checkout.handle_notify(token, method, headers, query, body))
        assert again is not None and again.verdict == "duplicate"
        view = run(shop_runtime.checkout.order(result.order.order_id, result.token))
        assert view.status == "delivered"
    finally:
        shop_runtime.engine.set_clock_ms(None)
