"""Goal: the Alipay adapter verifies async notifies exactly as Alipay signs them (RSA2 over the
sorted, URL-decoded fields but ``sign``/``sign_type``) for our app id and seller, refuses every
tampering, signs its requests, and trusts server answers only when Alipay's signature over the
response object verifies.

Method: a known-answer test with the vectors Alipay's own Java SDK ships
(alipay/alipay-sdk-java-all ``src/test/java/com/alipay/api/RSACheckTest.java`` and the
certificate ``src/test/resources/fixture/appCertPublicKey_2019091767145019.crt``), then
notifies built with the field layout of Alipay's notify documentation and signed in the test
with throwaway RSA keys (one for "Alipay", one for our app), and a fake Alipay gateway (a
recording transport, and once a real server on 127.0.0.1) that signs its answers.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers.alipay import (
    NOTIFY_SIGN_EXCLUDED,
    REQUEST_SIGN_EXCLUDED,
    AlipayProvider,
    alipay_sign_content,
    extract_response_text,
)
from cardsvc.payments.providers.base import (
    ChannelConfig,
    IgnoredEvent,
    Notify,
    PaymentRequest,
    check_binding,
    load_rsa_public_key,
    rsa_sha256_verify,
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
    bare_base64,
    json_response,
    private_pem,
    public_pem,
    rsa_key,
    rsa_sign,
)

# --- Alipay's published vectors (alipay-sdk-java-all, RSACheckTest + fixture certificate). ---
SDK_APP_CERT = """-----BEGIN CERTIFICATE-----
MIIDejCCAmKgAwIBAgIQIBkJF4/u3N03Ui3OAdhIszANBgkqhkiG9w0BAQsFADCBgjELMAkGA1UE
BhMCQ04xFjAUBgNVBAoMDUFudCBGaW5hbmNpYWwxIDAeBgNVBAsMF0NlcnRpZmljYXRpb24gQXV0
aG9yaXR5MTkwNwYDVQQDDDBBbnQgRmluYW5jaWFsIENlcnRpZmljYXRpb24gQXV0aG9yaXR5IENs
YXNzIDIgUjEwHhcNMTkwOTE3MTI1NDI0WhcNMjEwOTE2MTI1NDI0WjBbMQswCQYDVQQGEwJDTjEP
MA0GA1UECgwG6ZKf6ZuoMQ8wDQYDVQQLDAZBbGlwYXkxKjAoBgNVBAMMITIwODgwMDI2NTY3MTg5
MjAtMjAxOTA5MTc2NzE0NTAxOTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAI7lqNEh
M+zmuofduwxRC/HeAcYW1S1/YmoREF71EV2bt4xexcs0p3hPGExM1IXur7HEZfc1jsq+7U2khRoN
EVsadBZMsVPTtc3aiuiHWN/gUiSb4uM/hnARQSUt1M7mEXxpJRz0kWJsSUqjcx2Bovu00cGFbIZG
Xv/H86QzBfPpRd9qAT30rfSiZb3CjtieVMTq60wmWIdd8/1rZpGy+EEXBGGkXOQoGTBgUXofQIzw
rWigATNt/+Ngx60uONMeJTLk1RYo+1F/V2iWNgsECqhU6283iQ6ScjmUhrOVVuh20TOSaFx2xczN
C1Cw5qP+hGtITnYuGITDVxSho1k+04UCAwEAAaMSMBAwDgYDVR0PAQH/BAQDAgP4MA0GCSqGSIb3
DQEBCwUAA4IBAQA3EhSYXqVMWw9VJiLGigBgbSDJdrX0lMa2uRNB2X1n+SsRLK5MzXNx5oGZykgO
WFoCH1rTO7mP7hCOjWROCgdn7mcttkyWHUFKaQjuAXh2UjmKiKkfzkDBe47DwpWtMNZI6d4aosxB
asoNhXY8k2WtJvlGfdgsNYDIKpamjL3XAKRohSn6kNmTOaRsrOethJWsgClKIe7FDGLO8XBOSdyd
7KClfLY8AEg7sCvIUjA5FhIpZML8SoClD11zb5ENH43vONQveQACzFkkYu4DiyCFCBfxt5uALVGs
vV1qhwcQX35kmhYxuTdXwU5xJ8owS9abd5fu3dY1k34fY2L5M8oa
-----END CERTIFICATE-----"""
SDK_RSA2_SIGN = (
    "JzoDc8VxY1/w6yN9WdWV10aipS3YcRpK"
    "+jw4xfLybf90ZK9L3AHLUJbNLWVnHW3IuLoJbBeSGVxSbPBhe4ggPklcYUkPowgtlZ6YlthuQDtjF23h2obXuXkQRd"
    "+RPbDWvOA5AYQjsKH8uSHil5aRARewPIPhukl9Mn4HEovUccsBR/RirQFSGmGYiMM0zvhVSR7pXZDEhiADzvzAkvVVTI1"
    "/HbNqcoBU4ctSPAGsuDPO/mah1+IwGQAuPP6xoEPL"
    "+3zQ0wztQCwHT2o8aQmxFJ9a09q8ybRprHaNjCgTaLDeTWE0o1pllZIE8c7wnG3cOuj6quYjTcQyLm6P4M87Zw==")
SDK_UTF8_SIGN = (
    "KrRGUY3/2JX3KtlLgus8CbK0xuUIBDCpOdJkVzJDefez6HvlA8RA6uCVj2rrMd7DgVfarG5SROdSnkZbf8MLKHbVoFqi9w"
    "0QCvto9mc8n3ezfWejZECJVCZhbJ3OslB+4gij9+F70usrnCNEJZm02ntyNdVzcqMbgdRMB93BJIRC1jjmCotpXgXWrRd"
    "Tb/SfhIAkoHqgGi2aCUHuLDInLGZCn8NeziGWMnFOic6/sE/nMpwriOmwLb2nyzD0fGiolwuuxlOGMcBHAb22J8XqchFHyC"
    "pbs2A/rWdJMjhUfqsErbtZQM93fi1xfL2pUa9RMWX0Q81Qk7iSEeHCR+NGyQ==")

ALIPAY_KEY = rsa_key("alipay-platform")
APP_KEY = rsa_key("alipay-app")
APP_ID = "2021000000000001"
SELLER_ID = "2088000000000002"
CONFIG = ChannelConfig(
    provider="alipay", channel_id="ali-1", merchant_id=APP_ID,
    notify_url="https://shop.example/pay/notify/ali-1", return_url="https://shop.example/done",
    secrets={"app_private_key": bare_base64(private_pem(APP_KEY))},
    verify_keys={"alipay": public_pem(ALIPAY_KEY)},
    options={"seller_id": SELLER_ID, "gateway": "https://openapi.example.com/gateway.do"})
REQUEST = PaymentRequest("ORDER-0001", 1999, "CNY", "月卡 30 天", T0_MS + 900_000)
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_known_answer_alipay_sdk_rsa2_vectors_verify() -> None:
    key = load_rsa_public_key("alipay", "cert", SDK_APP_CERT)
    params = {"method": "koubei.marketing.data.indicator.query", "app_id": "2019090366875133",
              "sign_type": "RSA2", "sign": SDK_RSA2_SIGN}
    content = alipay_sign_content(params, REQUEST_SIGN_EXCLUDED)
    assert content == ("app_id=2019090366875133&method=koubei.marketing.data.indicator.query"
                       "&sign_type=RSA2")
    assert rsa_sha256_verify(key, content.encode(), SDK_RSA2_SIGN)
    params_utf8 = {**params, "extra": "中文测试", "sign": SDK_UTF8_SIGN}
    content_utf8 = alipay_sign_content(params_utf8, REQUEST_SIGN_EXCLUDED)
    assert rsa_sha256_verify(key, content_utf8.encode("utf-8"), SDK_UTF8_SIGN)
    # The notify rule (sign_type excluded) does not verify this request-style vector.
    assert not rsa_sha256_verify(
        key, alipay_sign_content(params, NOTIFY_SIGN_EXCLUDED).encode(), SDK_RSA2_SIGN)


def _notify_fields(**changes: str) -> dict[str, str]:
    """The async notify layout of Alipay's docs (trade_status_sync), signed with ALIPAY_KEY."""
    fields = {
        "gmt_create": "2024-06-01 08:00:00", "charset": "utf-8", "seller_email": "shop@example.com",
        "subject": "月卡 30 天", "buyer_id": "2088102122524333", "invoice_amount": "19.99",
        "notify_id": "2024060100222080001000000000001", "sign_type": "RSA2",
        "fund_bill_list": '[{"amount":"19.99","fundChannel":"ALIPAYACCOUNT"}]',
        "notify_type": "trade_status_sync", "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "19.99", "app_id": APP_ID, "buyer_pay_amount": "19.99",
        "seller_id": SELLER_ID, "gmt_payment": "2024-06-01 08:01:00",
        "notify_time": "2024-06-01 08:01:01", "version": "1.0", "out_trade_no": "ORDER-0001",
        "total_amount": "19.99", "trade_no": "2024060122001400001000000001",
        "auth_app_id": APP_ID, "buyer_logon_id": "abc***@example.com", "point_amount": "0.00",
    }
    fields.update(changes)
    content = alipay_sign_content(fields, NOTIFY_SIGN_EXCLUDED)
    fields["sign"] = rsa_sign(ALIPAY_KEY, content.encode("utf-8"))
    return fields


def _verify(fields: dict[str, str], config: ChannelConfig = CONFIG) -> Notify | IgnoredEvent:
    return AlipayProvider().verify_notify(config, "POST", FORM, [],
                                          urlencode(fields).encode("utf-8"))


def _refused(fields: dict[str, str], code: ErrorCode, config: ChannelConfig = CONFIG) -> str:
    with pytest.raises(CardsvcError) as caught:
        _verify(fields, config)
    assert caught.value.code is code
    return str(caught.value.details.get("reason"))


def test_config_check_accepts_bare_and_pem_keys() -> None:
    AlipayProvider().check_config(CONFIG)


def test_a_signed_notify_verifies_to_its_facts() -> None:
    notify = _verify(_notify_fields())
    assert isinstance(notify, Notify)
    assert notify.event_id == "2024060100222080001000000000001"
    assert notify.provider_trade_no == "2024060122001400001000000001"
    assert (notify.out_trade_no, notify.amount_minor, notify.currency) == ("ORDER-0001", 1999,
                                                                           "CNY")
    assert notify.status == "paid" and notify.paid_at_ms == T0_MS + 60_000
    check_binding(notify, "ORDER-0001", 1999, "CNY")


def test_trade_finished_is_paid_and_wait_buyer_pay_is_pending() -> None:
    finished = _verify(_notify_fields(trade_status="TRADE_FINISHED"))
    waiting = _verify(_notify_fields(trade_status="WAIT_BUYER_PAY", gmt_payment=""))
    assert isinstance(finished, Notify) and finished.status == "paid"
    assert isinstance(waiting, Notify) and waiting.status == "pending"


def test_closed_unpaid_is_expired_and_closed_after_refund_is_refunded() -> None:
    closed = _verify(_notify_fields(trade_status="TRADE_CLOSED", gmt_payment=""))
    refunded = _verify(_notify_fields(trade_status="TRADE_CLOSED", refund_fee="19.99",
                                      gmt_refund="2024-06-02 08:00:00.123", out_biz_no="R1"))
    partial = _verify(_notify_fields(refund_fee="5.00", gmt_refund="2024-06-02 08:00:00.123",
                                     out_biz_no="R2"))
    assert isinstance(closed, Notify) and closed.status == "expired"
    assert isinstance(refunded, Notify) and refunded.status == "refunded"
    assert refunded.refunded_minor == 1999 and refunded.amount_minor == 1999
    assert isinstance(partial, Notify) and partial.status == "refunded"
    assert partial.refunded_minor == 500


def test_an_unknown_trade_status_is_ignored() -> None:
    assert isinstance(_verify(_notify_fields(trade_status="TRADE_PENDING")), IgnoredEvent)


@pytest.mark.parametrize("name", ["out_trade_no", "total_amount", "trade_status", "trade_no",
                                  "notify_id", "seller_id", "app_id", "subject", "gmt_payment"])
def test_changing_any_field_breaks_the_signature(name: str) -> None:
    fields = _notify_fields()
    fields[name] = {"total_amount": "1999.00", "trade_status": "TRADE_FINISHED"}.get(
        name, fields[name] + "1")
    assert _refused(fields, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


@pytest.mark.parametrize("name", ["notify_id", "app_id", "seller_id", "out_trade_no",
                                  "total_amount", "sign"])
def test_a_removed_required_field_is_malformed(name: str) -> None:
    fields = _notify_fields()
    del fields[name]
    assert _refused(fields, ErrorCode.PAYMENT_NOTIFY_INVALID) == "missing_field"


def test_a_removed_optional_field_breaks_the_signature() -> None:
    fields = _notify_fields()
    del fields["buyer_id"]
    assert _refused(fields, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_sign_type_is_outside_the_signed_text_but_must_be_rsa2() -> None:
    assert _refused(_notify_fields(sign_type="RSA"), ErrorCode.PAYMENT_NOTIFY_INVALID) == (
        "sign_type")


def test_a_notify_signed_with_another_key_is_refused() -> None:
    fields = _notify_fields()
    fields["sign"] = rsa_sign(APP_KEY, alipay_sign_content(fields, NOTIFY_SIGN_EXCLUDED).encode())
    assert _refused(fields, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_another_app_id_or_seller_is_refused_even_when_signed() -> None:
    assert _refused(_notify_fields(app_id="2021000000000009"),
                    ErrorCode.PAYMENT_SIGNATURE_INVALID) == "merchant_mismatch"
    assert _refused(_notify_fields(seller_id="2088000000000009"),
                    ErrorCode.PAYMENT_SIGNATURE_INVALID) == "seller_mismatch"


@pytest.mark.parametrize("money", ["1e2", "01.001", "-1", "19.999", "19.99 "])
def test_money_text_is_parsed_strictly_even_when_signed(money: str) -> None:
    assert _refused(_notify_fields(total_amount=money),
                    ErrorCode.PAYMENT_NOTIFY_INVALID).startswith("money")


def test_a_repeated_field_is_refused() -> None:
    body = urlencode(_notify_fields()).encode() + b"&total_amount=0.01"
    with pytest.raises(CardsvcError) as caught:
        AlipayProvider().verify_notify(CONFIG, "POST", FORM, [], body)
    assert caught.value.code is ErrorCode.PAYMENT_NOTIFY_INVALID


def test_a_get_or_a_json_body_is_refused() -> None:
    body = urlencode(_notify_fields()).encode()
    for method, headers in (("GET", FORM), ("POST", {"Content-Type": "application/json"})):
        with pytest.raises(CardsvcError) as caught:
            AlipayProvider().verify_notify(CONFIG, method, headers, [], body)
        assert caught.value.code is ErrorCode.PAYMENT_NOTIFY_INVALID


@pytest.mark.parametrize(("expected", "field"), [
    (("ORDER-0002", 1999, "CNY"), "out_trade_no"),
    (("ORDER-0001", 1999, "USD"), "currency"),
    (("ORDER-0001", 1000, "CNY"), "amount_minor"),
])
def test_binding_mismatches_are_refused(expected: tuple[str, int, str], field: str) -> None:
    notify = _verify(_notify_fields())
    assert isinstance(notify, Notify)
    with pytest.raises(CardsvcError) as caught:
        check_binding(notify, *expected)
    assert caught.value.details["field"] == field


def test_ack_bodies_are_exactly_success_and_fail() -> None:
    assert AlipayProvider().ack(True).body == b"success"
    assert AlipayProvider().ack(False).body == b"fail"


def test_page_pay_start_is_a_redirect_signed_with_the_app_key() -> None:
    provider = AlipayProvider(clock_ms=ManualClock(T0_MS))
    start = provider.start(CONFIG, REQUEST)
    assert start.kind == "redirect" and start.url is not None
    params = dict(parse_qsl(urlsplit(start.url).query))
    assert params["method"] == "alipay.trade.page.pay" and params["sign_type"] == "RSA2"
    assert params["timestamp"] == "2024-06-01 08:00:00"
    biz = json.loads(params["biz_content"])
    assert biz == {"out_trade_no": "ORDER-0001", "total_amount": "19.99", "subject": "月卡 30 天",
                   "time_expire": "2024-06-01 08:15:00", "product_code": "FAST_INSTANT_TRADE_PAY"}
    content = alipay_sign_content(params, REQUEST_SIGN_EXCLUDED).encode()
    assert rsa_sha256_verify(APP_KEY.public_key(), content, params["sign"])


def _signed_answer(node_name: str, node: dict[str, object], *, key: object = ALIPAY_KEY,
                   signed: bool = True) -> bytes:
    node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    if not signed:
        return f'{{"{node_name}":{node_text}}}'.encode()
    sign = rsa_sign(key, node_text.encode())  # type: ignore[arg-type]
    return f'{{"{node_name}":{node_text},"sign":"{sign}"}}'.encode()


def _gateway(answers: dict[str, bytes]) -> FakeTransport:
    def handler(call: Call) -> object:
        method = dict(parse_qsl((call.body or b"").decode()))["method"]
        return json_response(200, answers[method])
    return FakeTransport(handler)  # type: ignore[arg-type]


def _precreate_config() -> ChannelConfig:
    return ChannelConfig(**{**CONFIG.__dict__,
                            "options": {**CONFIG.options, "product": "precreate"}})


def test_precreate_start_returns_the_qr_of_a_signed_answer() -> None:
    transport = _gateway({"alipay.trade.precreate": _signed_answer(
        "alipay_trade_precreate_response",
        {"code": "10000", "msg": "Success", "out_trade_no": "ORDER-0001",
         "qr_code": "https://qr.alipay.com/bax01"})})
    start = AlipayProvider(transport=transport).start(_precreate_config(), REQUEST)
    assert (start.kind, start.qr_text) == ("qr", "https://qr.alipay.com/bax01")
    sent = dict(parse_qsl((transport.calls[0].body or b"").decode()))
    assert rsa_sha256_verify(APP_KEY.public_key(),
                             alipay_sign_content(sent, REQUEST_SIGN_EXCLUDED).encode(),
                             sent["sign"])


@pytest.mark.parametrize("body", [
    _signed_answer("alipay_trade_precreate_response",
                   {"code": "10000", "out_trade_no": "ORDER-0001", "qr_code": "x"},
                   key=APP_KEY),
    _signed_answer("alipay_trade_precreate_response",
                   {"code": "10000", "out_trade_no": "ORDER-0001", "qr_code": "x"}, signed=False),
    b"not json",
])
def test_an_answer_not_signed_by_alipay_is_not_trusted(body: bytes) -> None:
    transport = _gateway({"alipay.trade.precreate": body})
    with pytest.raises(CardsvcError) as caught:
        AlipayProvider(transport=transport).start(_precreate_config(), REQUEST)
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE


def test_extract_response_text_cuts_the_exact_object() -> None:
    body = '{"a_response" : {"x":"}{\\"","n":{"m":1}},"sign":"S"}'
    assert extract_response_text(body, "a_response") == '{"x":"}{\\"","n":{"m":1}}'
    assert extract_response_text(body, "b_response") is None


def test_query_reads_status_and_reports_not_found() -> None:
    paid = _gateway({"alipay.trade.query": _signed_answer("alipay_trade_query_response", {
        "code": "10000", "msg": "Success", "trade_no": "2024060122001400001000000001",
        "out_trade_no": "ORDER-0001", "trade_status": "TRADE_SUCCESS", "total_amount": "19.99",
        "send_pay_date": "2024-06-01 08:01:00"})})
    result = AlipayProvider(transport=paid).query(CONFIG, "ORDER-0001")
    assert (result.status, result.amount_minor, result.paid_at_ms) == ("paid", 1999,
                                                                       T0_MS + 60_000)
    missing = _gateway({"alipay.trade.query": _signed_answer("alipay_trade_query_response", {
        "code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"})})
    assert AlipayProvider(transport=missing).query(CONFIG, "ORDER-0001").status == "not_found"


def test_refund_uses_the_refund_id_and_reads_fund_change() -> None:
    for fund_change, status in (("Y", "succeeded"), ("N", "pending")):
        transport = _gateway({"alipay.trade.refund": _signed_answer(
            "alipay_trade_refund_response",
            {"code": "10000", "msg": "Success", "out_trade_no": "ORDER-0001",
             "fund_change": fund_change, "refund_fee": "19.99"})})
        result = AlipayProvider(transport=transport).refund(CONFIG, "ORDER-0001", 1999,
                                                            "stock gone")
        assert (result.status, result.refund_id) == (status, "ORDER-0001R1999")
        biz = json.loads(dict(parse_qsl((transport.calls[0].body or b"").decode()))[
            "biz_content"])
        assert biz["out_request_no"] == "ORDER-0001R1999" and biz["refund_amount"] == "19.99"
    refusing = _gateway({"alipay.trade.refund": _signed_answer(
        "alipay_trade_refund_response", {"code": "40004", "sub_code": "ACQ.TRADE_STATUS_ERROR"})})
    with pytest.raises(CardsvcError) as caught:
        AlipayProvider(transport=refusing).refund(CONFIG, "ORDER-0001", 1999, "x")
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_REJECTED
    assert caught.value.details["provider_code"] == "ACQ.TRADE_STATUS_ERROR"


def test_query_over_a_real_http_server_with_a_signed_answer() -> None:
    answer = _signed_answer("alipay_trade_query_response", {
        "code": "10000", "msg": "Success", "trade_no": "T1", "out_trade_no": "ORDER-0001",
        "trade_status": "WAIT_BUYER_PAY", "total_amount": "19.99"})

    def route(request: Received) -> Reply:
        params = dict(parse_qsl(request.body.decode()))
        assert request.method == "POST" and params["method"] == "alipay.trade.query"
        return Reply(200, {"Content-Type": "application/json;charset=utf-8"}, [answer],
                     len(answer))

    with LocalServer(route) as server:
        config = ChannelConfig(**{**CONFIG.__dict__, "options": {
            "seller_id": SELLER_ID, "gateway": server.base_url + "/gateway.do"}})
        transport = HttpxTransport(http_hosts_allowed=frozenset({"127.0.0.1"}))
        try:
            result = AlipayProvider(transport=transport).query(config, "ORDER-0001")
        finally:
            transport.close()
    assert result.status == "pending" and result.amount_minor == 1999
