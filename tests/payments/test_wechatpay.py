"""Goal: the WeChat Pay v3 adapter accepts a callback only when WeChat Pay's signature verifies
with the key its serial names, inside the 5-minute window, and the AEAD resource decrypts with
our APIv3 key for our mchid and appid; it signs its own requests as WeChat Pay specifies and
trusts only signed answers.

Method: known-answer tests with the vectors of the official SDK wechatpay-apiv3/wechatpay-go
(``core/notify/notify_test.go``: a signed, encrypted notification with its certificate;
``utils/aes_test.go``: an AES-GCM vector; ``core/auth/signers/sha256withrsa_signer_test.go``: a
request signature), then callbacks with the layout of WeChat Pay's payment notification,
encrypted and signed in the test with a throwaway APIv3 key and RSA keys, tampered one way at a
time; outbound calls through a fake WeChat Pay that signs its answers (a recording transport,
and once a real server on 127.0.0.1).
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers.base import (
    ChannelConfig,
    HttpResponse,
    IgnoredEvent,
    Notify,
    PaymentRequest,
    check_binding,
    load_rsa_public_key,
    rsa_sha256_sign,
    rsa_sha256_verify,
)
from cardsvc.payments.providers.wechatpay import (
    WechatpayProvider,
    decrypt_resource,
    signed_message,
    verify_wechatpay_signature,
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
    private_pem,
    public_pem,
    rsa_key,
    rsa_sign,
)

# --- The official Go SDK's vectors. ---
SDK_CERT = """-----BEGIN CERTIFICATE-----
MIIDVzCCAj+gAwIBAgIJANfOWdH1ItcBMA0GCSqGSIb3DQEBCwUAMEIxCzAJBgNV
BAYTAlhYMRUwEwYDVQQHDAxEZWZhdWx0IENpdHkxHDAaBgNVBAoME0RlZmF1bHQg
Q29tcGFueSBMdGQwHhcNMjEwNDI3MDg1NTIzWhcNMzEwNDI1MDg1NTIzWjBCMQsw
CQYDVQQGEwJYWDEVMBMGA1UEBwwMRGVmYXVsdCBDaXR5MRwwGgYDVQQKDBNEZWZh
dWx0IENvbXBhbnkgTHRkMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA
2VCTd91fnUn73Xy9DLvt/V62TVxRTEEstVdeRaZ3B3leO0pldE806mXO4RwdHXag
HQ4vGeZN0yqm++rDsGK+U3AH7kejyD2pXshNP9Cq5YwbptiLGtjcquw4HNxJQUOm
DeJf2vg6byms9RUipiq4SzbJKqJFlUpbuIPDpSpWz10PYmyCNeDGUUK65E5h2B83
4uxl1zNLYQCrkdBzb8oUxwYeP5a2DNxmjL5lsJML7DGr5znsevnoqGRwTm9fxCGf
y8wus7hwKz6clt3Whmmda7UAdb1c08hEQFVRbF14AR73xbnd8N0obCWJPCbzMCtk
aSef4FdEEgEXJiw0VAJT8wIDAQABo1AwTjAdBgNVHQ4EFgQUT1c7nd/SUO76HSoZ
umNUJv1R5PwwHwYDVR0jBBgwFoAUT1c7nd/SUO76HSoZumNUJv1R5PwwDAYDVR0T
BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOCAQEAfTjxKRQMzNB/U6ZoCUS+BSNfa2Oh
0plMN6ZuzwiVVZwg1jywvv5yv04koS7Pd4i9E4gt9ZBUQXlpq+A3oOCEEHNRR6b2
kyazGRM7s0OP5X21WrbpSmKmU6K7hkfx30yYs08LVs/Q8DIhvaj1FCFeJzUCzYn/
fHMq4tsbKO0dKAeydPM/nrUZBmaYQVKMVOORGLFjFKVO7JV6Kq/R86ouhjEPgJOe
2xulNBUcjicqtZlBdEh/PWCYP2SpGVDclKm8jeo175T3EVAkdKzzmfpxtMmnMlmq
cTJOU9TxuGvNASMtjj7pYIerTx+xgZDXEVBWFW9PjJ0TV06tCRsgSHItgg==
-----END CERTIFICATE-----"""
SDK_NOTIFY_HEADERS = {
    "Content-Type": "application/json",
    "Wechatpay-Nonce": "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz",
    "Wechatpay-Timestamp": "1624523846",
    "Wechatpay-Serial": "D7CE59D1F522D701",
    "Wechatpay-Signature": (
        "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXF"
        "lbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//"
        "rxELLwXvV1VEA1IBLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2"
        "laKKgYUmfdEdkNO6B2Cke5e8VTxY406ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q=="),
}
SDK_NOTIFY_BODY = (
    '{"id":"3119dfba-e649-5eec-ab1e-3412bc4d2e17","create_time":"2021-06-24T16:37:26+08:00",'
    '"resource_type":"encrypt-resource","event_type":"PAYSCORE.USER_OPEN_SERVICE",'
    '"summary":"签约成功","resource":{"original_type":"payscore","algorithm":"AEAD_AES_256_GCM",'
    '"ciphertext":"YDS3lKPaC4Y52Gf3uhft5qUBlIa8b428AWTtTauHQfQrRw+X1WpiuHIDy0vo1Vd6VEq67aVyqPdDYMk'
    'RVSDaZL3iZttevRMOoPKMifozg6XPWjIZumks/GpT48lI4NizyeaqLBokNebthah3o1H76qSlO9NkDjp9bzmKLEYYH9TE'
    'klFUpsvPqOTOcgSLgh21YJXYR7dEBXFgRLiNIKRgO5JdXh1hccRUAlyVWxE54PXpnQ==",'
    '"associated_data":"payscore","nonce":"Kj7QIyUiYx1q"}}').encode()
SDK_NOTIFY_KEY = b"testMchAPIv3Key0"  # 16 bytes: the SDK's AES-GCM test key (AES-128)
SDK_NOTIFY_PLAINTEXT = (
    b'{"mchid":"1234567890","appid":"054aa7d7a2a54ab5898df65bd96f001c",'
    b'"create_time":"2020-06-30T12:12:00+08:00",'
    b'"out_contract_code":"21640bdbd08e473e828f3206a2741c6e"}')
SDK_SIGNER_KEY = """-----BEGIN TESTING KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDZUJN33V+dSfvd
fL0Mu+39XrZNXFFMQSy1V15FpncHeV47SmV0TzTqZc7hHB0ddqAdDi8Z5k3TKqb7
6sOwYr5TcAfuR6PIPaleyE0/0KrljBum2Isa2Nyq7Dgc3ElBQ6YN4l/a+DpvKaz1
FSKmKrhLNskqokWVSlu4g8OlKlbPXQ9ibII14MZRQrrkTmHYHzfi7GXXM0thAKuR
0HNvyhTHBh4/lrYM3GaMvmWwkwvsMavnOex6+eioZHBOb1/EIZ/LzC6zuHArPpyW
3daGaZ1rtQB1vVzTyERAVVFsXXgBHvfFud3w3ShsJYk8JvMwK2RpJ5/gV0QSARcm
LDRUAlPzAgMBAAECggEBAMc7rDeUaXiWv6bMGbZ3BTXpg1FhdddnWUnYE8HfX/km
OFI7XtBHXcgYFpcjYz4D5787pcsk7ezPidAj58zqenuclmjKnUmT3pfbI5eCA2v4
C9HnbYDrmUPK1ZcADtka4D6ScDccpNYNa1g2TFHzkIrEa6H+q7S3O2fqxY/DRVtN
0JIXalBb8daaqL5QVzSmM2BMVnHy+YITJWIkP2a3pKs9C0W65JGDsnG0wVrHinHF
+cnhFZIbaPEI//DAFMc9NkrWOKVRTEgcCUxCFaHOZVNxDWZD7A2ZfJB2rK6eg//y
gEiFDR2h6mTaDowMB4YF2n2dsIO4/dCG8vPHI20jn4ECgYEA/ZGu6lEMlO0XZnam
AZGtiNgLcCfM/C2ZERZE7QTRPZH1WdK92Al9ndldsswFw4baJrJLCmghjF/iG4zi
hhBvLnOLksnZUfjdumxoHDWXo2QBWbI5QsWIE7AuTiWgWj1I7X4fCXSQf6i+M/y2
6TogQ7d0ANpZFyOkTNMn/tiJvLECgYEA22XqlamG/yfAGWery5KNH2DGlTIyd6xJ
WtJ9j3jU99lZ0bCQ5xhiBbU9ImxCi3zgTsoqLWgA/p00HhNFNoUcTl9ofc0G3zwT
D1y0ZzcnVKxGJdZ6ohW52V0hJStAigtjYAsUgjm7//FH7PiQDBDP1Wa6xSRkDQU/
aSbQxvEE8+MCgYEA3bb8krW7opyM0XL9RHH0oqsFlVO30Oit5lrqebS0oHl3Zsr2
ZGgoBlWBsEzk3UqUhTFwm/DhJLTSJ/TQPRkxnhQ5/mewNhS9C7yua7wQkzVmWN+V
YeUGTvDGDF6qDz12/vJAgSwDDRym8x4NcXD5tTw7mmNRcwIfL22SkysThIECgYAV
BgccoEoXWS/HP2/u6fQr9ZIR6eV8Ij5FPbZacTG3LlS1Cz5XZra95UgebFFUHHtC
EY1JHJY7z8SWvTH8r3Su7eWNaIAoFBGffzqqSVazfm6aYZsOvRY6BfqPHT3p/H1h
Tq6AbBffxrcltgvXnCTORjHPglU0CjSxVs7awW3AEQKBgB5WtaC8VLROM7rkfVIq
+RXqE5vtJfa3e3N7W3RqxKp4zHFAPfr82FK5CX2bppEaxY7SEZVvVInKDc5gKdG/
jWNRBmvvftZhY59PILHO2X5vO4FXh7suEjy6VIh0gsnK36mmRboYIBGsNuDHjXLe
BDa+8mDLkWu5nHEhOxy2JJZl
-----END TESTING KEY-----"""
SDK_SIGNER_SIGNATURE = (
    "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6"
    "pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZ"
    "UguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJ"
    "bknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg==")

PLATFORM_KEY = rsa_key("wechatpay-platform")
MERCHANT_KEY = rsa_key("wechatpay-merchant")
API_V3_KEY = b"throwaway-apiv3-key-32-bytes-abc"
SERIAL = "PUB_KEY_ID_0000000000000001"
MCHID, APPID = "1900000001", "wx0000000000000001"
NOW_S = T0_MS // 1000
CONFIG = ChannelConfig(
    provider="wechatpay", channel_id="wx-1", merchant_id=MCHID,
    notify_url="https://shop.example/pay/notify/wx-1", return_url="https://shop.example/done",
    secrets={"merchant_private_key": private_pem(MERCHANT_KEY), "api_v3_key": API_V3_KEY},
    verify_keys={SERIAL: public_pem(PLATFORM_KEY)},
    options={"appid": APPID, "merchant_serial_no": "5157F09EFDC096DE15EBE81A47057A72",
             "api_base": "https://api.example.com"})
REQUEST = PaymentRequest("ORDER-0001", 1999, "CNY", "月卡 30 天", T0_MS + 900_000,
                         buyer_ip="203.0.113.7")


def test_known_answer_sdk_notification_signature_verifies() -> None:
    keys = {"D7CE59D1F522D701": load_rsa_public_key("wechatpay", "cert", SDK_CERT)}
    verify_wechatpay_signature(keys, SDK_NOTIFY_HEADERS, SDK_NOTIFY_BODY, now_s=1624523846)
    with pytest.raises(CardsvcError) as caught:
        verify_wechatpay_signature(keys, SDK_NOTIFY_HEADERS, SDK_NOTIFY_BODY + b" ",
                                   now_s=1624523846)
    assert caught.value.details["reason"] == "mismatch"


def test_known_answer_sdk_notification_resource_decrypts() -> None:
    resource = json.loads(SDK_NOTIFY_BODY)["resource"]
    assert decrypt_resource(SDK_NOTIFY_KEY, resource) == SDK_NOTIFY_PLAINTEXT


def test_known_answer_sdk_aes_gcm_vector() -> None:
    resource = {"algorithm": "AEAD_AES_256_GCM",
                "ciphertext": "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
                "nonce": "wCq51qZv4Yfg", "associated_data": "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8"}
    assert decrypt_resource(b"testAPIv3Key0000", resource) == b"Hello World"
    for key in (b"testAPIv3Key1111", b"not a aes key"):
        with pytest.raises(CardsvcError) as caught:
            decrypt_resource(key, resource)
        assert caught.value.details["reason"] == "decrypt"


def test_known_answer_sdk_request_signature() -> None:
    pem = SDK_SIGNER_KEY.replace("TESTING KEY", "PRIVATE KEY").encode()
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert rsa_sha256_sign(key, b"source") == SDK_SIGNER_SIGNATURE


def _encrypt(plain: dict[str, object], key: bytes = API_V3_KEY,
             associated: str = "transaction") -> dict[str, str]:
    nonce = "fZ8a1k2B3c4D"
    ciphertext = AESGCM(key).encrypt(nonce.encode(), json.dumps(plain).encode(),
                                     associated.encode())
    return {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": associated,
            "nonce": nonce}


def _transaction(**changes: object) -> dict[str, object]:
    plain: dict[str, object] = {
        "mchid": MCHID, "appid": APPID, "out_trade_no": "ORDER-0001",
        "transaction_id": "4200000000202406010000000001", "trade_type": "NATIVE",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
        "attach": "", "success_time": "2024-06-01T08:01:00+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 1999, "payer_total": 1999, "currency": "CNY",
                   "payer_currency": "CNY"},
    }
    plain.update(changes)
    return plain


def _callback(plain: dict[str, object], *, event_type: str = "TRANSACTION.SUCCESS",
              key: rsa.RSAPrivateKey = PLATFORM_KEY, serial: str = SERIAL,
              timestamp_s: int = NOW_S, resource: dict[str, str] | None = None
              ) -> tuple[dict[str, str], bytes]:
    body = json.dumps({
        "id": "EV-2018022511223320873", "create_time": "2024-06-01T08:01:01+08:00",
        "resource_type": "encrypt-resource", "event_type": event_type, "summary": "支付成功",
        "resource": resource or _encrypt(plain)}, ensure_ascii=False).encode()
    nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": str(timestamp_s),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": rsa_sign(key, signed_message(str(timestamp_s), nonce, body)),
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
    return headers, body


def _verify(headers: dict[str, str], body: bytes, now_s: int = NOW_S,
            config: ChannelConfig = CONFIG) -> Notify | IgnoredEvent:
    provider = WechatpayProvider(clock_ms=ManualClock(now_s * 1000))
    return provider.verify_notify(config, "POST", headers, [], body)


def _refused(headers: dict[str, str], body: bytes, code: ErrorCode, now_s: int = NOW_S) -> str:
    with pytest.raises(CardsvcError) as caught:
        _verify(headers, body, now_s)
    assert caught.value.code is code
    return str(caught.value.details.get("reason"))


def test_config_check_passes_for_a_complete_channel() -> None:
    WechatpayProvider().check_config(CONFIG)


def test_a_signed_encrypted_callback_verifies_to_its_facts() -> None:
    notify = _verify(*_callback(_transaction()))
    assert isinstance(notify, Notify)
    assert notify.event_id == "EV-2018022511223320873"
    assert notify.provider_trade_no == "4200000000202406010000000001"
    assert (notify.out_trade_no, notify.amount_minor, notify.currency, notify.status) == (
        "ORDER-0001", 1999, "CNY", "paid")
    assert notify.paid_at_ms == T0_MS + 60_000
    assert "payer.openid" not in notify.raw
    check_binding(notify, "ORDER-0001", 1999, "CNY")


def test_a_changed_body_breaks_the_signature() -> None:
    headers, body = _callback(_transaction())
    tampered = body.replace(b"EV-2018022511223320873", b"EV-2018022511223320874")
    assert _refused(headers, tampered, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


@pytest.mark.parametrize("name", ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial",
                                  "Wechatpay-Signature"])
def test_a_changed_or_removed_header_is_refused(name: str) -> None:
    headers, body = _callback(_transaction())
    changed = {**headers, name: {"Wechatpay-Timestamp": str(NOW_S + 1)}.get(
        name, headers[name][:-2] + "AA")}
    reason = _refused(changed, body, ErrorCode.PAYMENT_SIGNATURE_INVALID)
    assert reason in ("mismatch", "unknown_key")
    removed = {key: value for key, value in headers.items() if key != name}
    assert _refused(removed, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "missing"


def test_a_signature_probe_is_refused() -> None:
    headers, body = _callback(_transaction())
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"


def test_a_wrong_platform_key_or_unknown_serial_is_refused() -> None:
    headers, body = _callback(_transaction(), key=MERCHANT_KEY)
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "mismatch"
    headers, body = _callback(_transaction(), serial="PUB_KEY_ID_0000000000000002")
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "unknown_key"


def test_a_replayed_callback_outside_five_minutes_is_refused() -> None:
    headers, body = _callback(_transaction(), timestamp_s=NOW_S)
    assert isinstance(_verify(headers, body, now_s=NOW_S + 299), Notify)
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID,
                    now_s=NOW_S + 300) == "stale_timestamp"
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID,
                    now_s=NOW_S - 300) == "stale_timestamp"


def test_a_resource_encrypted_with_another_key_or_tampered_is_refused() -> None:
    other_key = _encrypt(_transaction(), key=b"another-apiv3-key-32-bytes-abcde")
    headers, body = _callback(_transaction(), resource=other_key)
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "decrypt"
    wrong_ad = {**_encrypt(_transaction()), "associated_data": "refund"}
    headers, body = _callback(_transaction(), resource=wrong_ad)
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "decrypt"


def test_another_mchid_or_appid_is_refused_even_when_signed() -> None:
    headers, body = _callback(_transaction(mchid="1900000009"))
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "merchant_mismatch"
    headers, body = _callback(_transaction(appid="wx0000000000000009"))
    assert _refused(headers, body, ErrorCode.PAYMENT_SIGNATURE_INVALID) == "app_mismatch"


@pytest.mark.parametrize("amount", [{"total": "1999", "currency": "CNY"},
                                    {"total": 19.99, "currency": "CNY"},
                                    {"total": True, "currency": "CNY"},
                                    {"total": [1999], "currency": "CNY"},
                                    {"total": -1, "currency": "CNY"},
                                    {"currency": "CNY"}])
def test_a_non_integer_amount_is_refused(amount: dict[str, object]) -> None:
    headers, body = _callback(_transaction(amount=amount))
    _refused(headers, body, ErrorCode.PAYMENT_NOTIFY_INVALID)


def test_other_events_are_ignored_and_refunds_are_reported() -> None:
    ignored = _verify(*_callback(_transaction(), event_type="REFUND.ABNORMAL"))
    assert isinstance(ignored, IgnoredEvent) and ignored.event_type == "REFUND.ABNORMAL"
    refund = {"mchid": MCHID, "out_trade_no": "ORDER-0001",
              "transaction_id": "4200000000202406010000000001", "out_refund_no": "R1",
              "refund_id": "50000000000000000001", "refund_status": "SUCCESS",
              "amount": {"total": 1999, "refund": 500, "payer_total": 1999, "payer_refund": 500}}
    notify = _verify(*_callback(refund, event_type="REFUND.SUCCESS"))
    assert isinstance(notify, Notify) and notify.status == "refunded"
    assert (notify.amount_minor, notify.refunded_minor) == (1999, 500)


def test_trade_states_map_to_statuses() -> None:
    for state, status in (("NOTPAY", "pending"), ("CLOSED", "expired"),
                          ("PAYERROR", "failed"), ("REFUND", "refunded")):
        notify = _verify(*_callback(_transaction(trade_state=state)))
        assert isinstance(notify, Notify) and notify.status == status


def test_binding_mismatches_are_refused() -> None:
    notify = _verify(*_callback(_transaction()))
    assert isinstance(notify, Notify)
    for expected, field in ((("ORDER-0002", 1999, "CNY"), "out_trade_no"),
                            (("ORDER-0001", 1999, "USD"), "currency"),
                            (("ORDER-0001", 2000, "CNY"), "amount_minor")):
        with pytest.raises(CardsvcError) as caught:
            check_binding(notify, *expected)
        assert caught.value.details["field"] == field


def test_ack_is_204_or_500_with_the_documented_fail_body() -> None:
    ok, fail = WechatpayProvider().ack(True), WechatpayProvider().ack(False)
    assert (ok.status_code, ok.body) == (204, b"")
    assert fail.status_code == 500
    assert json.loads(fail.body) == {"code": "FAIL", "message": "失败"}


def _signed_response(status: int, answer: dict[str, object] | None,
                     key: rsa.RSAPrivateKey = PLATFORM_KEY, now_s: int = NOW_S) -> HttpResponse:
    body = json.dumps(answer, ensure_ascii=False).encode() if answer is not None else b""
    nonce = "RESPONSENONCE000000000000000001"
    return HttpResponse(status, {
        "content-type": "application/json",
        "wechatpay-timestamp": str(now_s), "wechatpay-nonce": nonce,
        "wechatpay-serial": SERIAL,
        "wechatpay-signature": rsa_sign(key, signed_message(str(now_s), nonce, body)),
    }, body)


def _provider(transport: FakeTransport) -> WechatpayProvider:
    return WechatpayProvider(transport=transport, clock_ms=ManualClock(T0_MS))


def _authorization_verifies(call: Call) -> bool:
    authorization = call.headers["Authorization"]
    scheme, _, params = authorization.partition(" ")
    fields = dict(item.split("=", 1) for item in params.split(","))
    fields = {name: value.strip('"') for name, value in fields.items()}
    split = urlsplit(call.url)
    path = split.path + (f"?{split.query}" if split.query else "")
    message = signed_message(call.method, path, fields["timestamp"], fields["nonce_str"],
                             call.body or b"")
    return (scheme == "WECHATPAY2-SHA256-RSA2048" and fields["mchid"] == MCHID
            and fields["serial_no"] == CONFIG.options["merchant_serial_no"]
            and fields["timestamp"] == str(NOW_S)
            and rsa_sha256_verify(MERCHANT_KEY.public_key(), message, fields["signature"]))


def test_native_start_signs_the_request_and_returns_the_code_url() -> None:
    transport = FakeTransport(lambda call: _signed_response(
        200, {"code_url": "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}))
    start = _provider(transport).start(CONFIG, REQUEST)
    assert (start.kind, start.qr_text) == ("qr", "weixin://wxpay/bizpayurl?pr=p4lpSuKzz")
    (call,) = transport.calls
    assert call.url == "https://api.example.com/v3/pay/transactions/native"
    assert _authorization_verifies(call)
    order = json.loads(call.body or b"")
    assert order["amount"] == {"total": 1999, "currency": "CNY"}
    assert order["time_expire"] == "2024-06-01T08:15:00+08:00"
    assert order["appid"] == APPID and order["scene_info"] == {"payer_client_ip": "203.0.113.7"}


@pytest.mark.parametrize("response", [
    _signed_response(200, {"code_url": "weixin://x"}, key=MERCHANT_KEY),
    HttpResponse(200, {"content-type": "application/json"}, b'{"code_url": "weixin://x"}'),
    _signed_response(200, {"code_url": "weixin://x"}, now_s=NOW_S - 3600),
    HttpResponse(503, {}, b""),
])
def test_an_unsigned_badly_signed_stale_or_failed_answer_is_not_trusted(
        response: HttpResponse) -> None:
    with pytest.raises(CardsvcError) as caught:
        _provider(FakeTransport(lambda call: response)).start(CONFIG, REQUEST)
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE


def test_query_reads_the_trade_state_and_reports_not_found() -> None:
    transport = FakeTransport(lambda call: _signed_response(200, _transaction()))
    result = _provider(transport).query(CONFIG, "ORDER-0001")
    assert (result.status, result.amount_minor, result.paid_at_ms) == ("paid", 1999,
                                                                       T0_MS + 60_000)
    assert transport.calls[0].url == (
        "https://api.example.com/v3/pay/transactions/out-trade-no/ORDER-0001?mchid=1900000001")
    assert _authorization_verifies(transport.calls[0])
    missing = FakeTransport(lambda call: _signed_response(
        404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}))
    assert _provider(missing).query(CONFIG, "ORDER-0001").status == "not_found"


def test_refund_queries_the_total_then_posts_the_refund() -> None:
    def handler(call: Call) -> HttpResponse:
        if call.method == "GET":
            return _signed_response(200, _transaction())
        return _signed_response(200, {"refund_id": "50000000000000000001",
                                      "out_refund_no": "ORDER-0001R500", "status": "PROCESSING",
                                      "amount": {"total": 1999, "refund": 500}})

    transport = FakeTransport(handler)
    result = _provider(transport).refund(CONFIG, "ORDER-0001", 500, "partial")
    assert (result.status, result.refund_id) == ("pending", "50000000000000000001")
    refund = json.loads(transport.calls[1].body or b"")
    assert refund["out_refund_no"] == "ORDER-0001R500"
    assert refund["amount"] == {"refund": 500, "total": 1999, "currency": "CNY"}
    refusing = FakeTransport(lambda call: _signed_response(
        200, _transaction()) if call.method == "GET" else _signed_response(
        403, {"code": "NOT_ENOUGH", "message": "基本账户余额不足"}))
    with pytest.raises(CardsvcError) as caught:
        _provider(refusing).refund(CONFIG, "ORDER-0001", 500, "x")
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_REJECTED
    assert caught.value.details["provider_code"] == "NOT_ENOUGH"


def test_query_over_a_real_http_server_with_a_signed_answer() -> None:
    def route(request: Received) -> Reply:
        assert request.headers["Authorization"].startswith("WECHATPAY2-SHA256-RSA2048 ")
        response = _signed_response(200, _transaction(trade_state="NOTPAY"),
                                    now_s=int(time.time()))
        return Reply(200, dict(response.headers), [response.body], len(response.body))

    with LocalServer(route) as server:
        config = ChannelConfig(**{**CONFIG.__dict__,
                                  "options": {**CONFIG.options, "api_base": server.base_url}})
        transport = HttpxTransport(http_hosts_allowed=frozenset({"127.0.0.1"}))
        try:
            result = WechatpayProvider(transport=transport).query(config, "ORDER-0001")
        finally:
            transport.close()
    assert result.status == "pending" and result.amount_minor == 1999
