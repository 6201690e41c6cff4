"""Goal: the EPay adapter accepts exactly the notifies the gateway signs for our ``pid`` and
refuses every tampering, with strict money text; its start, query and refund speak the
protocol's parameters and answers.

Method: notifies signed in the test with a throwaway merchant key. The signature is also written
out by hand from the protocol's rule (sorted ``k=v`` joined by ``&``, key appended, MD5) as a
worked example, since no trustworthy published vector exists (the one worked example found in a
compatible gateway's docs does not reproduce, so it is not used). Outbound calls go to a
recording transport, and once through the real httpx transport to a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers.base import (
    ChannelConfig,
    IgnoredEvent,
    Notify,
    PaymentRequest,
    check_binding,
)
from cardsvc.payments.providers.epay import EpayProvider, epay_sign
from cardsvc.payments.transport import HttpxTransport

from .helpers import T0_MS, Call, FakeTransport, LocalServer, Received, Reply, json_response

KEY = "throwaway-epay-merchant-key-01"
CONFIG = ChannelConfig(
    provider="epay", channel_id="epay-1", merchant_id="1001",
    notify_url="https://shop.example/pay/notify/epay-1", return_url="https://shop.example/done",
    secrets={"key": KEY}, options={"gateway": "https://pay.example.com/", "pay_type": "alipay"})
REQUEST = PaymentRequest("ORDER-0001", 1999, "CNY", "月卡 30 天", T0_MS + 900_000,
                         buyer_ip="203.0.113.7")


def _notify_fields(**changes: str) -> dict[str, str]:
    fields = {
        "pid": "1001", "trade_no": "2024060100001", "out_trade_no": "ORDER-0001",
        "type": "alipay", "name": "月卡 30 天", "money": "19.99", "trade_status": "TRADE_SUCCESS",
        "param": "", "sign_type": "MD5",
    }
    fields.update(changes)
    fields["sign"] = epay_sign(fields, KEY)
    return fields


def _verify(fields: dict[str, str] | list[tuple[str, str]], method: str = "GET",
            config: ChannelConfig = CONFIG) -> Notify | IgnoredEvent:
    pairs = list(fields.items()) if isinstance(fields, dict) else fields
    if method == "GET":
        return EpayProvider().verify_notify(config, "GET", {}, pairs, b"")
    return EpayProvider().verify_notify(
        config, "POST", {"Content-Type": "application/x-www-form-urlencoded"}, [],
        urlencode(pairs).encode())


def _refused(fields: dict[str, str] | list[tuple[str, str]], code: ErrorCode) -> str:
    with pytest.raises(CardsvcError) as caught:
        _verify(fields)
    assert caught.value.code is code
    return str(caught.value.details.get("reason"))


def test_the_signature_is_md5_of_the_sorted_fields_with_the_key_appended() -> None:
    fields = {"pid": "1001", "type": "alipay", "out_trade_no": "ORDER-0001",
              "notify_url": "https://shop.example/n", "return_url": "https://shop.example/r",
              "name": "测试商品", "money": "0.01", "sitename": "", "sign_type": "MD5"}
    by_hand = ("money=0.01&name=测试商品&notify_url=https://shop.example/n&out_trade_no=ORDER-0001"
               "&pid=1001&return_url=https://shop.example/r&type=alipay" + KEY)
    assert epay_sign(fields, KEY) == hashlib.md5(by_hand.encode()).hexdigest()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_signed_notify_verifies_to_its_facts(method: str) -> None:
    notify = _verify(_notify_fields(), method)
    assert isinstance(notify, Notify)
    assert (notify.event_id, notify.provider_trade_no, notify.out_trade_no) == (
        "2024060100001", "2024060100001", "ORDER-0001")
    assert (notify.amount_minor, notify.currency, notify.status) == (1999, "CNY", "paid")
    assert notify.merchant_id == "1001" and "sign" not in notify.raw
    check_binding(notify, "ORDER-0001", 1999, "CNY")


def test_an_upper_case_signature_and_a_missing_sign_type_are_accepted() -> None:
    fields = _notify_fields()
    fields["sign"] = fields["sign"].upper()
    del fields["sign_type"]
    assert isinstance(_verify(fields), Notify)


@pytest.mark.parametrize("name", ["pid", "trade_no", "out_trade_no", "type", "name", "money",
                                  "param"])
def test_changing_any_field_breaks_the_signature(name: str) -> None:
    fields = _notify_fields()
    fields[name] = {"money": "1999.00", "pid": "1002"}.get(name, fields[name] + "9")
    assert _refused(fields, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


@pytest.mark.parametrize("name", ["pid", "trade_no", "out_trade_no", "money", "trade_status",
                                  "sign"])
def test_a_removed_required_field_is_malformed(name: str) -> None:
    fields = _notify_fields()
    del fields[name]
    assert _refused(fields, ErrorCode.PAYMENT_NOTIFY_INVALID) == "missing_field"


def test_a_removed_signed_optional_field_breaks_the_signature() -> None:
    fields = _notify_fields(param="gift")
    del fields["param"]
    assert _refused(fields, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_a_wrong_key_is_refused() -> None:
    fields = _notify_fields()
    fields["sign"] = epay_sign(fields, "another-merchant-key")
    assert _refused(fields, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_another_pid_signed_with_the_same_key_is_refused() -> None:
    assert _refused(_notify_fields(pid="1002"),
                    ErrorCode.PAYMENT_SIGNATURE_INVALID) == "merchant_mismatch"


@pytest.mark.parametrize("money", ["1e2", "01.001", "-1", "19.999", "+19.99", "19,99", " 19.99",
                                   "0x13", "\uff11\uff19.\uff19\uff19"])
def test_money_text_is_parsed_strictly_even_when_signed(money: str) -> None:
    assert _refused(_notify_fields(money=money), ErrorCode.PAYMENT_NOTIFY_INVALID).startswith(
        "money")


def test_money_as_an_array_is_refused() -> None:
    fields = _notify_fields()
    pairs = [(name, value) for name, value in fields.items() if name != "money"]
    assert _refused([*pairs, ("money", "19.99"), ("money", "0.01")],
                    ErrorCode.PAYMENT_NOTIFY_INVALID) == "repeated_field"
    assert _refused([*pairs, ("money[]", "19.99")],
                    ErrorCode.PAYMENT_NOTIFY_INVALID) == "missing_field"


def test_a_sign_type_other_than_md5_is_refused() -> None:
    assert _refused(_notify_fields(sign_type="RSA"),
                    ErrorCode.PAYMENT_NOTIFY_INVALID) == "sign_type"


def test_fields_in_both_query_and_body_are_refused() -> None:
    body = urlencode(_notify_fields()).encode()
    with pytest.raises(CardsvcError) as caught:
        EpayProvider().verify_notify(CONFIG, "POST",
                                     {"Content-Type": "application/x-www-form-urlencoded"},
                                     {"money": "0.01"}, body)
    assert caught.value.code is ErrorCode.PAYMENT_NOTIFY_INVALID


def test_a_status_other_than_trade_success_is_ignored_not_paid() -> None:
    ignored = _verify(_notify_fields(trade_status="WAIT_BUYER_PAY"))
    assert isinstance(ignored, IgnoredEvent) and ignored.event_type == "WAIT_BUYER_PAY"


@pytest.mark.parametrize(("expected", "field"), [
    (("ORDER-0002", 1999, "CNY"), "out_trade_no"),  # same amount, other order
    (("ORDER-0001", 1999, "USD"), "currency"),
    (("ORDER-0001", 2999, "CNY"), "amount_minor"),
])
def test_binding_mismatches_are_refused(expected: tuple[str, int, str], field: str) -> None:
    notify = _verify(_notify_fields())
    assert isinstance(notify, Notify)
    with pytest.raises(CardsvcError) as caught:
        check_binding(notify, *expected)
    assert caught.value.code is ErrorCode.PAYMENT_MISMATCH
    assert caught.value.details["field"] == field


def test_ack_bodies_are_exactly_success_and_fail() -> None:
    provider = EpayProvider()
    assert (provider.ack(True).status_code, provider.ack(True).body) == (200, b"success")
    assert provider.ack(False).body == b"fail"


def test_submit_start_is_a_signed_redirect() -> None:
    provider = EpayProvider()
    provider.check_config(CONFIG)
    start = provider.start(CONFIG, REQUEST)
    assert start.kind == "redirect" and start.url is not None
    assert start.url.startswith("https://pay.example.com/submit.php?")
    fields = dict(parse_qsl(urlsplit(start.url).query))
    assert fields["money"] == "19.99" and fields["pid"] == "1001"
    assert fields["sign_type"] == "MD5" and fields["sign"] == epay_sign(fields, KEY)
    assert "sitename" not in fields  # empty values are not sent (nor signed)


def test_start_refuses_a_currency_the_gateway_does_not_charge() -> None:
    with pytest.raises(CardsvcError) as caught:
        EpayProvider().start(CONFIG, PaymentRequest("ORDER-0001", 100, "USD", "x", T0_MS))
    assert caught.value.code is ErrorCode.PAYMENT_CURRENCY_UNSUPPORTED


def _mapi_config() -> ChannelConfig:
    return ChannelConfig(**{**CONFIG.__dict__, "options": {**CONFIG.options, "mode": "mapi"}})


@pytest.mark.parametrize(("answer", "kind"), [
    ({"code": 1, "trade_no": "T9", "payurl": "https://pay.example.com/pay/T9"}, "redirect"),
    ({"code": "1", "trade_no": "T9", "qrcode": "weixin://wxpay/bizpayurl?pr=abc"}, "qr"),
])
def test_mapi_start_posts_signed_fields_and_returns_the_pay_target(answer: dict[str, object],
                                                                   kind: str) -> None:
    transport = FakeTransport(lambda call: json_response(200, json.dumps(answer)))
    start = EpayProvider(transport=transport).start(_mapi_config(), REQUEST)
    assert start.kind == kind and start.provider_ref == "T9"
    (call,) = transport.calls
    assert call.url == "https://pay.example.com/mapi.php" and call.method == "POST"
    sent = dict(parse_qsl((call.body or b"").decode()))
    assert sent["clientip"] == "203.0.113.7" and sent["sign"] == epay_sign(sent, KEY)


def test_mapi_refusal_and_outage_have_their_codes() -> None:
    refusing = FakeTransport(lambda call: json_response(200, '{"code": -1, "msg": "bad pid"}'))
    with pytest.raises(CardsvcError) as caught:
        EpayProvider(transport=refusing).start(_mapi_config(), REQUEST)
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_REJECTED
    failing = FakeTransport(lambda call: json_response(502, "<html>bad gateway</html>"))
    with pytest.raises(CardsvcError) as caught:
        EpayProvider(transport=failing).start(_mapi_config(), REQUEST)
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE


def _query_answer(call: Call) -> object:
    del call
    return json_response(200, json.dumps({
        "code": 1, "msg": "查询订单号成功", "trade_no": "2024060100001",
        "out_trade_no": "ORDER-0001", "type": "alipay", "pid": "1001",
        "addtime": "2024-06-01 08:00:00", "endtime": "2024-06-01 08:01:00", "name": "月卡",
        "money": "19.99", "status": 1, "param": "", "buyer": ""}, ensure_ascii=False))


def test_query_reads_the_order_status() -> None:
    transport = FakeTransport(_query_answer)  # type: ignore[arg-type]
    result = EpayProvider(transport=transport).query(CONFIG, "ORDER-0001")
    assert (result.status, result.amount_minor, result.provider_trade_no) == (
        "paid", 1999, "2024060100001")
    assert result.paid_at_ms == T0_MS + 60_000
    (call,) = transport.calls
    query = dict(parse_qsl(urlsplit(call.url).query))
    assert query == {"act": "order", "pid": "1001", "key": KEY, "out_trade_no": "ORDER-0001"}
    assert "key" not in result.raw


def test_query_answer_for_another_order_is_not_trusted() -> None:
    transport = FakeTransport(lambda call: json_response(200, json.dumps(
        {"code": 1, "out_trade_no": "ORDER-0002", "pid": "1001", "status": 1})))
    with pytest.raises(CardsvcError) as caught:
        EpayProvider(transport=transport).query(CONFIG, "ORDER-0001")
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE


def test_refund_posts_the_amount_and_reports_success_or_refusal() -> None:
    transport = FakeTransport(lambda call: json_response(200, '{"code": 1, "msg": "退款成功"}'))
    result = EpayProvider(transport=transport).refund(CONFIG, "ORDER-0001", 1999, "stock gone")
    assert (result.status, result.amount_minor) == ("succeeded", 1999)
    sent = dict(parse_qsl((transport.calls[0].body or b"").decode()))
    assert sent == {"pid": "1001", "key": KEY, "out_trade_no": "ORDER-0001", "money": "19.99"}
    refusing = FakeTransport(lambda call: json_response(200, '{"code": 0, "msg": "不支持退款"}'))
    with pytest.raises(CardsvcError) as caught:
        EpayProvider(transport=refusing).refund(CONFIG, "ORDER-0001", 1999, "x")
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_REJECTED


def test_query_over_a_real_http_server() -> None:
    def route(request: Received) -> Reply:
        assert request.method == "GET" and request.path.startswith("/api.php?act=order")
        body = _query_answer(None).body  # type: ignore[arg-type, attr-defined]
        return Reply(200, {"Content-Type": "application/json"}, [body], len(body))

    with LocalServer(route) as server:
        config = ChannelConfig(**{**CONFIG.__dict__,
                                  "options": {"gateway": server.base_url + "/"}})
        transport = HttpxTransport(http_hosts_allowed=frozenset({"127.0.0.1"}))
        try:
            result = EpayProvider(transport=transport).query(config, "ORDER-0001")
        finally:
            transport.close()
    assert result.status == "paid" and result.amount_minor == 1999
