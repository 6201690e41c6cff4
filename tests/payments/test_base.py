"""Goal: the port's shared rules hold for every adapter: money text is parsed exactly and
strictly, the binding check refuses a callback for another order, amount or currency, secrets
stay out of ``repr``, requests and forms are validated, keys load in the forms providers hand
out, and provider time formats round-trip.

Method: fixed tables of accepted and refused inputs (the refused money texts are the ones forged
callbacks use), hypothesis round trips for money and time, and error codes asserted, never
messages.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers.base import (
    AMOUNT_MINOR_MAX,
    NOTIFY_BODY_BYTES_MAX,
    NOTIFY_FIELDS_MAX,
    RAW_FIELDS_MAX,
    ChannelConfig,
    Notify,
    PaymentRequest,
    bounded_raw,
    check_binding,
    form_fields,
    format_beijing,
    format_money,
    format_rfc3339_beijing,
    load_rsa_private_key,
    load_rsa_public_key,
    parse_beijing,
    parse_money,
    parse_rfc3339,
    query_fields,
    rsa_sha256_sign,
    rsa_sha256_verify,
    sorted_sign_content,
)

from .helpers import T0_MS, bare_base64, private_pem, public_pem, rsa_key


def _code(error: pytest.ExceptionInfo[CardsvcError]) -> ErrorCode:
    return error.value.code


@pytest.mark.parametrize(("text", "minor"), [
    ("0", 0), ("0.01", 1), ("1", 100), ("1.5", 150), ("10.50", 1050), ("12345.67", 1234567),
])
def test_parse_money_reads_exact_minor_units(text: str, minor: int) -> None:
    assert parse_money("p", "money", text) == minor


@pytest.mark.parametrize("text", [
    "1e2", "01.001", "-1", "+1", "1.001", "01", "00.10", "1.", ".5", " 1", "1 ", "1,00",
    "NaN", "inf", "0x10", "\uff11", "1_000", "", "1.0.0", "9" * 20,
])
def test_parse_money_refuses_every_other_text(text: str) -> None:
    with pytest.raises(CardsvcError) as caught:
        parse_money("p", "money", text)
    assert _code(caught) is ErrorCode.PAYMENT_NOTIFY_INVALID
    assert caught.value.details["field"] == "money"


@pytest.mark.parametrize("value", [["1.00"], 100, 1.0, None, {"money": "1"}])
def test_parse_money_refuses_non_text_such_as_arrays(value: object) -> None:
    with pytest.raises(CardsvcError) as caught:
        parse_money("p", "money", value)
    assert _code(caught) is ErrorCode.PAYMENT_NOTIFY_INVALID


def test_parse_money_zero_decimals_refuses_a_fraction() -> None:
    assert parse_money("p", "amount", "1999", exponent=0) == 1999
    with pytest.raises(CardsvcError):
        parse_money("p", "amount", "19.99", exponent=0)


@given(st.integers(min_value=0, max_value=AMOUNT_MINOR_MAX), st.sampled_from([0, 2, 3]))
def test_format_then_parse_money_round_trips(minor: int, exponent: int) -> None:
    assert parse_money("p", "money", format_money(minor, exponent), exponent) == minor


def _notify(**changes: object) -> Notify:
    fields: dict[str, object] = {
        "provider": "p", "event_id": "E1", "provider_trade_no": "T1", "out_trade_no": "ORDER-1",
        "amount_minor": 1000, "currency": "CNY", "merchant_id": "M", "status": "paid",
    }
    fields.update(changes)
    return Notify(**fields)  # type: ignore[arg-type]


def test_check_binding_accepts_the_attempt_it_belongs_to() -> None:
    check_binding(_notify(), "ORDER-1", 1000, "CNY")


@pytest.mark.parametrize(("notify", "field"), [
    (_notify(out_trade_no="ORDER-2"), "out_trade_no"),  # same amount, other order
    (_notify(currency="USD"), "currency"),
    (_notify(amount_minor=999), "amount_minor"),
    (_notify(amount_minor=1001), "amount_minor"),
])
def test_check_binding_names_the_first_differing_field(notify: Notify, field: str) -> None:
    with pytest.raises(CardsvcError) as caught:
        check_binding(notify, "ORDER-1", 1000, "CNY")
    assert _code(caught) is ErrorCode.PAYMENT_MISMATCH
    assert caught.value.details["field"] == field


def test_check_binding_reports_order_before_currency_before_amount() -> None:
    with pytest.raises(CardsvcError) as caught:
        check_binding(_notify(out_trade_no="X-000001", currency="USD", amount_minor=1),
                      "ORDER-1", 1000, "CNY")
    assert caught.value.details["field"] == "out_trade_no"


def test_channel_config_keeps_secrets_out_of_repr_and_freezes_its_maps() -> None:
    config = ChannelConfig(provider="epay", channel_id="c1", merchant_id="1001",
                           notify_url="https://shop.example/n", return_url="https://shop.example/r",
                           secrets={"key": "s3cr3t-merchant-key"},
                           verify_keys={"alipay": "PUBLICKEYTEXT"}, options={"a": "b"})
    assert "s3cr3t" not in repr(config) and "PUBLICKEYTEXT" not in repr(config)
    assert config.secret("key") == b"s3cr3t-merchant-key"
    with pytest.raises(TypeError):
        config.secrets["key"] = b"other"  # type: ignore[index]
    with pytest.raises(CardsvcError) as caught:
        config.secret("missing")
    assert _code(caught) is ErrorCode.PAYMENT_CONFIG_INVALID


@pytest.mark.parametrize(("changes", "code"), [
    ({"out_trade_no": "short"}, ErrorCode.INVALID_ARGUMENT),
    ({"out_trade_no": "x" * 33}, ErrorCode.INVALID_ARGUMENT),
    ({"out_trade_no": "has space"}, ErrorCode.INVALID_ARGUMENT),
    ({"amount_minor": 0}, ErrorCode.AMOUNT_MUST_BE_POSITIVE),
    ({"amount_minor": -5}, ErrorCode.AMOUNT_MUST_BE_POSITIVE),
    ({"amount_minor": True}, ErrorCode.AMOUNT_MUST_BE_POSITIVE),
    ({"amount_minor": AMOUNT_MINOR_MAX + 1}, ErrorCode.LIMIT_EXCEEDED),
    ({"currency": "cny"}, ErrorCode.INVALID_ARGUMENT),
    ({"expires_at_ms": 0}, ErrorCode.INVALID_ARGUMENT),
    ({"subject": " "}, ErrorCode.INVALID_ARGUMENT),
    ({"subject": "x" * 128}, ErrorCode.INVALID_ARGUMENT),
    ({"buyer_ip": "not an ip"}, ErrorCode.INVALID_ARGUMENT),
    ({"return_url": "javascript:alert(1)"}, ErrorCode.INVALID_ARGUMENT),
])
def test_payment_request_refuses_bad_fields(changes: dict[str, object], code: ErrorCode) -> None:
    fields: dict[str, object] = {"out_trade_no": "ORDER-1", "amount_minor": 100,
                                 "currency": "CNY", "subject": "card", "expires_at_ms": T0_MS}
    fields.update(changes)
    with pytest.raises(CardsvcError) as caught:
        PaymentRequest(**fields)  # type: ignore[arg-type]
    assert _code(caught) is code


def test_form_fields_refuse_repeats_oversize_and_bad_encoding() -> None:
    assert form_fields("p", b"a=1&b=%E4%B8%AD") == {"a": "1", "b": "中"}
    for body in (b"money=1&money=2", b"money[]=1&money[]=2"):
        with pytest.raises(CardsvcError) as caught:
            form_fields("p", body)
        assert _code(caught) is ErrorCode.PAYMENT_NOTIFY_INVALID
    with pytest.raises(CardsvcError) as caught:
        form_fields("p", b"\xff=1")
    assert _code(caught) is ErrorCode.PAYMENT_NOTIFY_INVALID
    with pytest.raises(CardsvcError) as caught:
        form_fields("p", b"a=" + b"x" * NOTIFY_BODY_BYTES_MAX)
    assert _code(caught) is ErrorCode.LIMIT_EXCEEDED
    with pytest.raises(CardsvcError) as caught:
        form_fields("p", "&".join(f"k{i}=v" for i in range(NOTIFY_FIELDS_MAX + 1)).encode())
    assert _code(caught) is ErrorCode.LIMIT_EXCEEDED
    with pytest.raises(CardsvcError) as caught:
        query_fields("p", [("a", "1"), ("a", "2")])
    assert _code(caught) is ErrorCode.PAYMENT_NOTIFY_INVALID


def test_sorted_sign_content_sorts_skips_empty_and_excluded() -> None:
    fields = {"b": "2", "a": "1", "sign": "x", "sign_type": "MD5", "empty": "", "c": "a&b"}
    assert sorted_sign_content(fields, ("sign", "sign_type")) == "a=1&b=2&c=a&b"


def test_bounded_raw_flattens_cuts_and_drops() -> None:
    raw = bounded_raw({"a": {"b": 1, "c": "x" * 1000}, "sign": "S", "n": None},
                      drop=("sign",))
    assert raw["a.b"] == "1" and raw["n"] == "null" and "sign" not in raw
    assert len(raw["a.c"]) == 512 and raw["a.c"].endswith("…")
    assert len(bounded_raw({f"k{i}": i for i in range(500)})) == RAW_FIELDS_MAX


def test_rsa_keys_load_from_pem_pkcs1_certificate_free_and_bare_base64() -> None:
    key = rsa_key("base")
    pkcs1 = key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    for text in (private_pem(key).encode(), pkcs1, bare_base64(private_pem(key)).encode(),
                 bare_base64(pkcs1.decode()).encode()):
        loaded = load_rsa_private_key("p", "k", text)
        signature = rsa_sha256_sign(loaded, b"message")
        for public in (public_pem(key), bare_base64(public_pem(key))):
            assert rsa_sha256_verify(load_rsa_public_key("p", "v", public), b"message", signature)
    public = load_rsa_public_key("p", "v", public_pem(key))
    assert not rsa_sha256_verify(public, b"other", rsa_sha256_sign(key, b"message"))
    assert not rsa_sha256_verify(public, b"message", "not base64!")
    with pytest.raises(CardsvcError) as caught:
        load_rsa_private_key("p", "k", b"garbage")
    assert _code(caught) is ErrorCode.PAYMENT_CONFIG_INVALID
    assert caught.value.details["setting"] == "k"


@given(st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: s * 1000))
def test_provider_time_formats_round_trip(ms: int) -> None:
    assert parse_beijing(format_beijing(ms)) == ms
    assert parse_rfc3339(format_rfc3339_beijing(ms)) == ms


def test_provider_time_formats_are_china_standard_time() -> None:
    assert format_beijing(T0_MS) == "2024-06-01 08:00:00"
    assert format_rfc3339_beijing(T0_MS) == "2024-06-01T08:00:00+08:00"
    assert parse_rfc3339("2024-06-01T00:00:00Z") == T0_MS
    fullwidth_year = "\uff12\uff10\uff12\uff14-06-01 08:00:00"
    for text in ("2024-06-01 08:00", "2024-13-01 08:00:00", fullwidth_year):
        assert parse_beijing(text) is None
    assert parse_rfc3339("2024-06-01T00:00:00") is None
