"""易支付 (EPay) v1: the MD5-signed aggregator protocol that 彩虹易支付 and its many compatible
gateways speak.

Protocol, as the gateways' developer pages and their SDKs describe it:

* Start: ``submit.php`` (the buyer is redirected with the signed parameters in the query) or
  ``mapi.php`` (we POST them and get JSON ``{"code": 1, "trade_no", "payurl" | "qrcode" |
  "urlscheme"}``). Parameters: ``pid``, ``type`` (alipay, wxpay, qqpay, ...),
  ``out_trade_no``, ``notify_url``, ``return_url``, ``name``, ``money`` (yuan, 2 decimals),
  optional ``sitename`` / ``clientip`` / ``device``, then ``sign`` and ``sign_type=MD5``.
* Signature: MD5 (lower-case hex) of the parameters sorted by name, empty values and
  ``sign``/``sign_type`` left out, joined ``k=v&...`` with raw (not URL-encoded) values, and the
  merchant key appended directly (no ``&key=``). No timestamp: a notify can be replayed, which
  the inbox (unique trade number) and the binding check make harmless.
* Notify: a GET (some gateways POST a form) to ``notify_url`` with ``pid``, ``trade_no``,
  ``out_trade_no``, ``type``, ``name``, ``money``, ``trade_status`` (``TRADE_SUCCESS`` is the
  only success), ``param``, ``sign``, ``sign_type``; answered with the body ``success``.
* Query: ``api.php?act=order&pid=..&key=..&out_trade_no=..`` -> JSON with ``status`` 1 (paid)
  or 0 (unpaid). The merchant key travels in the URL and the answer is not signed: that is the
  protocol (trust rests on HTTPS to the gateway); use it to poll, never as the only evidence.
* Refund: ``api.php?act=refund`` POST ``pid``, ``key``, ``out_trade_no``, ``money`` -> JSON
  ``{"code": 1}``. Only some gateways implement it (彩虹易支付 does), it takes no refund id so it
  is not idempotent, and many channels only refund the whole amount.

Money is CNY yuan text; the gateway has no currency field, so ``options["currency"]`` (default
CNY) names the one it charges in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

from cardsvc.errors import CardsvcError
from cardsvc.payments.providers.base import (
    ChannelConfig,
    HttpResponse,
    IgnoredEvent,
    Notify,
    NotifyAnswer,
    PaymentRequest,
    PaymentStart,
    Provider,
    QueryPairs,
    QueryResult,
    QueryStatus,
    RefundResult,
    bounded_raw,
    check_body_size,
    check_refund_amount,
    check_url_setting,
    config_invalid,
    currency_unsupported,
    default_out_refund_no,
    form_fields,
    format_money,
    header,
    json_answer,
    json_int,
    json_str,
    notify_invalid,
    parse_beijing,
    parse_money,
    provider_rejected,
    provider_unavailable,
    query_fields,
    same_text,
    signature_invalid,
    sorted_sign_content,
)

SIGN_EXCLUDED = ("sign", "sign_type")
NOTIFY_REQUIRED = ("pid", "trade_no", "out_trade_no", "type", "name", "money", "trade_status",
                   "sign")
PAY_TYPES = frozenset(("alipay", "wxpay", "qqpay", "tenpay", "bank", "jdpay", "paypal", "usdt"))
MODES = frozenset(("submit", "mapi"))
DEVICES = frozenset(("pc", "mobile", "qq", "wechat", "alipay", "jump"))
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
_TEXT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def epay_sign(fields: Mapping[str, str], key: str) -> str:
    """The EPay v1 signature of ``fields`` under the merchant ``key``: lower-case hex MD5 of
    :func:`sorted_sign_content` (``sign``/``sign_type`` and empty values excluded) + ``key``."""
    text = sorted_sign_content(fields, SIGN_EXCLUDED) + key
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class EpayProvider(Provider):
    """EPay v1 (see the module docstring).

    Settings: ``merchant_id`` = ``pid``; ``secrets["key"]`` = the merchant key;
    ``options["gateway"]`` = the gateway's base URL (ending in ``/``); ``options["pay_type"]``
    (default alipay); ``options["mode"]`` = ``submit`` (default) or ``mapi``;
    ``options["currency"]`` (default CNY); optional ``options["sitename"]`` and
    ``options["device"]`` (mapi, default pc).
    """

    name: ClassVar[str] = "epay"
    supports_query: ClassVar[bool] = True
    supports_refund: ClassVar[bool] = True

    def check_config(self, config: ChannelConfig) -> None:
        """Also checks the key, gateway, pay type, mode and currency. Raises
        PAYMENT_CONFIG_INVALID or PAYMENT_CURRENCY_UNSUPPORTED."""
        super().check_config(config)
        config.secret_text("key")
        self._gateway(config)
        if config.options.get("pay_type", "alipay") not in PAY_TYPES:
            raise config_invalid(self.name, "pay_type", "not a known EPay type")
        if config.options.get("mode", "submit") not in MODES:
            raise config_invalid(self.name, "mode", "neither submit nor mapi")
        if config.options.get("device", "pc") not in DEVICES:
            raise config_invalid(self.name, "device", "not a known EPay device")
        self._currency(config, config.options.get("currency", "CNY"))

    def _gateway(self, config: ChannelConfig) -> str:
        gateway = check_url_setting(self.name, "gateway", config.option("gateway"))
        return gateway if gateway.endswith("/") else gateway + "/"

    def _currency(self, config: ChannelConfig, currency: str) -> str:
        gateway_currency = config.options.get("currency", "CNY")
        if currency != gateway_currency:
            raise currency_unsupported(self.name, currency)
        return currency

    def _signed(self, config: ChannelConfig, fields: dict[str, str]) -> dict[str, str]:
        fields = {name: value for name, value in fields.items() if value != ""}
        fields["sign"] = epay_sign(fields, config.secret_text("key"))
        fields["sign_type"] = "MD5"
        return fields

    def start(self, config: ChannelConfig, request: PaymentRequest) -> PaymentStart:
        """``submit`` mode: a redirect to ``submit.php`` with the signed query (no call made).
        ``mapi`` mode: POST ``mapi.php`` and return its pay URL or QR text. Raises
        PAYMENT_CURRENCY_UNSUPPORTED, PAYMENT_CONFIG_INVALID, PAYMENT_PROVIDER_UNAVAILABLE or
        PAYMENT_PROVIDER_REJECTED (``code`` not 1)."""
        self._currency(config, request.currency)
        fields = {
            "pid": config.merchant_id,
            "type": config.options.get("pay_type", "alipay"),
            "out_trade_no": request.out_trade_no,
            "notify_url": config.notify_url,
            "return_url": request.return_url or config.return_url,
            "name": request.subject,
            "money": format_money(request.amount_minor, 2),
            "sitename": config.options.get("sitename", ""),
        }
        gateway = self._gateway(config)
        if config.options.get("mode", "submit") == "submit":
            url = f"{gateway}submit.php?{urlencode(self._signed(config, fields))}"
            return PaymentStart(kind="redirect", url=url)
        fields["clientip"] = request.buyer_ip or ""
        fields["device"] = config.options.get("device", "pc")
        answer = self._call(f"{gateway}mapi.php", self._signed(config, fields))
        return self._mapi_start(answer)

    def _call(self, url: str, fields: Mapping[str, str] | None) -> dict[str, Any]:
        transport = self._transport()
        if fields is None:
            response = transport.request("GET", url, {"Accept": "application/json"}, None)
        else:
            response = transport.request(
                "POST", url,
                {"Accept": "application/json",
                 "Content-Type": "application/x-www-form-urlencoded"},
                urlencode(fields).encode("utf-8"))
        return self._json(response)

    def _json(self, response: HttpResponse) -> dict[str, Any]:
        return json_answer(self.name, response)

    def _mapi_start(self, answer: dict[str, Any]) -> PaymentStart:
        if _code(answer) != 1:
            raise provider_rejected(self.name, _message(answer))
        trade_no = json_str(answer, "trade_no")
        for key, kind in (("payurl", "redirect"), ("qrcode", "qr"), ("urlscheme", "redirect")):
            value = json_str(answer, key)
            if value:
                if kind == "qr":
                    return PaymentStart(kind="qr", qr_text=value, provider_ref=trade_no)
                return PaymentStart(kind="redirect", url=value, provider_ref=trade_no)
        raise provider_unavailable(self.name, "malformed")

    def verify_notify(self, config: ChannelConfig, method: str, headers: Mapping[str, str],
                      query: QueryPairs, body: bytes) -> Notify | IgnoredEvent:
        """Verify an EPay notify: fields from the query (GET) or the form body (POST), MD5
        signature in constant time, ``pid`` equal to the channel's, strict ``money`` text.

        Raises PAYMENT_NOTIFY_INVALID (a required field missing, a repeated field such as
        ``money[]`` tricks produce, ``sign_type`` not MD5, money text not ``\\d+(\\.\\d{1,2})?``),
        PAYMENT_SIGNATURE_INVALID (``mismatch``, ``merchant_mismatch``) or LIMIT_EXCEEDED.
        A verified notify whose ``trade_status`` is not TRADE_SUCCESS is an IgnoredEvent.
        """
        fields = self._notify_fields(method, headers, query, body)
        missing = [name for name in NOTIFY_REQUIRED if not fields.get(name)]
        if missing:
            raise notify_invalid(self.name, "missing_field", field=missing[0])
        if fields.get("sign_type", "MD5").upper() != "MD5":
            raise notify_invalid(self.name, "sign_type")
        sign = fields["sign"]
        expected = epay_sign(fields, config.secret_text("key"))
        if not _MD5_HEX.fullmatch(sign) or not same_text(sign.lower(), expected):
            raise signature_invalid(self.name, "mismatch")
        if not same_text(fields["pid"], config.merchant_id):
            raise signature_invalid(self.name, "merchant_mismatch")
        amount_minor = parse_money(self.name, "money", fields["money"], exponent=2)
        if not _TEXT_ID.fullmatch(fields["trade_no"]):
            raise notify_invalid(self.name, "identifier", field="trade_no")
        if fields["trade_status"] != "TRADE_SUCCESS":
            return IgnoredEvent(self.name, fields["trade_no"], fields["trade_status"][:64],
                                "not_trade_success")
        return Notify(
            provider=self.name,
            event_id=fields["trade_no"],
            provider_trade_no=fields["trade_no"],
            out_trade_no=fields["out_trade_no"],
            amount_minor=amount_minor,
            currency=config.options.get("currency", "CNY"),
            merchant_id=config.merchant_id,
            status="paid",
            raw=bounded_raw(fields, drop=("sign", "key")),
        )

    def _notify_fields(self, method: str, headers: Mapping[str, str], query: QueryPairs,
                       body: bytes) -> dict[str, str]:
        check_body_size(body)
        from_query = query_fields(self.name, query)
        if method == "GET":
            return from_query
        if method != "POST":
            raise notify_invalid(self.name, "method")
        content_type = (header(headers, "content-type") or "").lower()
        if body and not content_type.startswith("application/x-www-form-urlencoded"):
            raise notify_invalid(self.name, "content_type")
        from_body = form_fields(self.name, body)
        if from_query and from_body:
            # Fields in both places: which one was signed is ambiguous, so refuse.
            raise notify_invalid(self.name, "fields_in_query_and_body")
        return from_body or from_query

    def ack(self, ok: bool) -> NotifyAnswer:
        """``success`` (the token EPay gateways wait for) or ``fail``, 200 text/plain."""
        return NotifyAnswer(200, "text/plain; charset=utf-8", b"success" if ok else b"fail")

    def query(self, config: ChannelConfig, out_trade_no: str, *,
              provider_ref: str | None = None) -> QueryResult:
        """``api.php?act=order``. Raises PAYMENT_PROVIDER_REJECTED when ``code`` is not 1 (EPay
        does not tell "no such order" from other refusals) and PAYMENT_PROVIDER_UNAVAILABLE when
        the answer is not usable or names another order."""
        query = urlencode({"act": "order", "pid": config.merchant_id,
                           "key": config.secret_text("key"), "out_trade_no": out_trade_no})
        answer = self._call(f"{self._gateway(config)}api.php?{query}", None)
        if _code(answer) != 1:
            raise provider_rejected(self.name, _message(answer))
        if _text(answer, "out_trade_no") != out_trade_no or _text(answer, "pid") not in (
                config.merchant_id, ""):
            raise provider_unavailable(self.name, "malformed", field="out_trade_no")
        money = answer.get("money")
        amount_minor = _answer_money(money) if isinstance(money, str) else None
        status: QueryStatus = "paid" if _text(answer, "status") == "1" else "pending"
        end = _text(answer, "endtime")
        return QueryResult(
            out_trade_no=out_trade_no,
            status=status,
            provider_trade_no=_text(answer, "trade_no") or None,
            amount_minor=amount_minor,
            currency=config.options.get("currency", "CNY"),
            paid_at_ms=parse_beijing(end) if status == "paid" and end else None,
            raw=bounded_raw(answer, drop=("key",)),
        )

    def refund(self, config: ChannelConfig, out_trade_no: str, amount_minor: int, reason: str,
               *, out_refund_no: str | None = None,
               provider_ref: str | None = None) -> RefundResult:
        """``api.php?act=refund`` (gateways that have it). Not idempotent at the gateway: after a
        timeout, check the order in the gateway's console before retrying. Raises
        AMOUNT_MUST_BE_POSITIVE, PAYMENT_PROVIDER_REJECTED (``code`` not 1, e.g. no refund
        API) or PAYMENT_PROVIDER_UNAVAILABLE."""
        check_refund_amount(amount_minor)
        answer = self._call(f"{self._gateway(config)}api.php?act=refund", {
            "pid": config.merchant_id,
            "key": config.secret_text("key"),
            "out_trade_no": out_trade_no,
            "money": format_money(amount_minor, 2),
        })
        if _code(answer) != 1:
            raise provider_rejected(self.name, _message(answer))
        refund_no = out_refund_no or default_out_refund_no(out_trade_no, amount_minor)
        return RefundResult(out_trade_no=out_trade_no, refund_id=refund_no,
                            amount_minor=amount_minor, status="succeeded",
                            raw=bounded_raw(answer, drop=("key",)))


def _code(answer: Mapping[str, Any]) -> int | None:
    # Gateways send the code as a number or as text ("1").
    code = json_int(answer, "code")
    if code is not None:
        return code
    text = json_str(answer, "code")
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _text(answer: Mapping[str, Any], key: str) -> str:
    value = answer.get(key)
    if type(value) is int:
        return str(value)
    return value if isinstance(value, str) else ""


def _answer_money(text: str) -> int:
    try:
        return parse_money("epay", "money", text)
    except CardsvcError:
        raise provider_unavailable("epay", "malformed", field="money") from None


def _message(answer: Mapping[str, Any]) -> str:
    return (json_str(answer, "msg") or str(_code(answer)))[:64]
