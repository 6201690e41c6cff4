"""Alipay open platform (支付宝开放平台), key mode with RSA2, using ``cryptography``.

Protocol (the async notify: https://opendocs.alipay.com/open/270/105902; signing and verifying
as the official SDK implements them, alipay/alipay-sdk-java-all
``src/main/java/com/alipay/api/internal/util/AlipaySignature.java``):

* Requests carry the common parameters ``app_id``, ``method``, ``format=JSON``,
  ``charset=utf-8``, ``sign_type=RSA2``, ``timestamp`` (``yyyy-MM-dd HH:mm:ss``, UTC+8),
  ``version=1.0``, ``notify_url``, ``return_url`` and ``biz_content`` (JSON), plus ``sign``:
  SHA256withRSA with the app's private key over every parameter but ``sign``, sorted by name,
  empty values left out, joined ``k=v&...`` with raw values (``sign_type`` included).
* ``alipay.trade.page.pay`` (PC) and ``alipay.trade.wap.pay`` (mobile) redirect the buyer to the
  gateway with the signed parameters; ``alipay.trade.precreate`` returns a QR code text.
  ``alipay.trade.query`` and ``alipay.trade.refund`` are server calls.
* Responses are ``{"<method with _>_response": {...}, "sign": "..."}``; the signature is over the
  exact text of the response object (extracted as the SDK does), verified with the Alipay
  public key. ``code`` ``10000`` is success; otherwise ``sub_code`` says why.
* The async notify is a form POST; its ``sign`` covers every field but ``sign`` and
  ``sign_type``, sorted, empty values left out, values URL-decoded (the SDK's ``rsaCheckV1``).
  ``app_id`` must be ours and ``seller_id`` our seller; ``trade_status`` ``TRADE_SUCCESS`` /
  ``TRADE_FINISHED`` means paid. The answer is the body ``success``; anything else makes Alipay
  retry (8 times over about 25 h) with the same ``notify_id``.

Amounts are CNY yuan text with 2 decimals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.providers.base import (
    ChannelConfig,
    IgnoredEvent,
    Notify,
    NotifyAnswer,
    NotifyStatus,
    PaymentRequest,
    PaymentStart,
    Provider,
    QueryPairs,
    QueryResult,
    QueryStatus,
    RefundResult,
    RefundStatus,
    bounded_raw,
    check_refund_amount,
    check_url_setting,
    config_invalid,
    currency_unsupported,
    default_out_refund_no,
    form_fields,
    format_beijing,
    format_money,
    header,
    json_str,
    load_json_object,
    load_rsa_private_key,
    load_rsa_public_key,
    notify_invalid,
    parse_beijing,
    parse_money,
    provider_rejected,
    provider_unavailable,
    rsa_sha256_sign,
    rsa_sha256_verify,
    same_text,
    signature_invalid,
    sorted_sign_content,
)

GATEWAY_DEFAULT = "https://openapi.alipay.com/gateway.do"
PRODUCTS = {
    "page": ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    "wap": ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    "precreate": ("alipay.trade.precreate", ""),
}
SUCCESS_CODE = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
NOTIFY_REQUIRED = ("notify_id", "app_id", "seller_id", "trade_no", "out_trade_no",
                   "trade_status", "total_amount", "sign")
REQUEST_SIGN_EXCLUDED = ("sign",)
NOTIFY_SIGN_EXCLUDED = ("sign", "sign_type")


def alipay_sign_content(fields: Mapping[str, str], excluded: tuple[str, ...]) -> str:
    """The text Alipay signs: ``fields`` but ``excluded`` and empty values, sorted, ``k=v&...``.
    Requests exclude ``sign`` only; async notifies exclude ``sign`` and ``sign_type``."""
    return sorted_sign_content(fields, excluded)


def extract_response_text(body: str, node: str) -> str | None:
    """The exact text of the JSON object that follows the key ``"<node>"`` in ``body``, or None.

    Alipay signs the response object's bytes as sent, so it is cut out of the body, not
    re-serialised: from the first ``{`` after the key to its matching ``}``, skipping braces in
    strings (the SDK's ``extractSignContent``).
    """
    key = f'"{node}"'
    start = body.find(key)
    if start < 0:
        return None
    index = start + len(key)
    while index < len(body) and body[index] in " \t\r\n:":
        index += 1
    if index >= len(body) or body[index] != "{":
        return None
    depth, in_string, escaped = 0, False, False
    for end in range(index, len(body)):
        char = body[end]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return body[index:end + 1]
    return None


class AlipayProvider(Provider):
    """Alipay (see the module docstring).

    Settings: ``merchant_id`` = ``app_id``; ``secrets["app_private_key"]`` = the app's RSA
    private key (PEM or the bare base64 Alipay's key tool prints); ``verify_keys["alipay"]`` =
    the Alipay public key (PEM or bare base64); ``options["seller_id"]`` = the merchant's
    ``2088…`` partner id; ``options["product"]`` = ``page`` (default), ``wap`` or
    ``precreate`` (QR); ``options["gateway"]`` (default the production gateway; the sandbox is
    ``https://openapi-sandbox.dl.alipaydev.com/gateway.do``).
    """

    name: ClassVar[str] = "alipay"
    supports_query: ClassVar[bool] = True
    supports_refund: ClassVar[bool] = True

    def check_config(self, config: ChannelConfig) -> None:
        """Also parses both keys and checks seller id, product and gateway. Raises
        PAYMENT_CONFIG_INVALID."""
        super().check_config(config)
        self._private_key(config)
        self._alipay_key(config)
        config.option("seller_id")
        if config.options.get("product", "page") not in PRODUCTS:
            raise config_invalid(self.name, "product", "not page, wap or precreate")
        self._gateway(config)

    def _private_key(self, config: ChannelConfig) -> rsa.RSAPrivateKey:
        return load_rsa_private_key(self.name, "app_private_key", config.secret("app_private_key"))

    def _alipay_key(self, config: ChannelConfig) -> rsa.RSAPublicKey:
        text = config.verify_keys.get("alipay")
        if not text:
            raise config_invalid(self.name, "verify_keys.alipay", "missing")
        return load_rsa_public_key(self.name, "verify_keys.alipay", text)

    def _gateway(self, config: ChannelConfig) -> str:
        return check_url_setting(self.name, "gateway",
                                 config.options.get("gateway", GATEWAY_DEFAULT))

    def _signed_params(self, config: ChannelConfig, method: str, biz: Mapping[str, str],
                       extra: Mapping[str, str]) -> dict[str, str]:
        params = {
            "app_id": config.merchant_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": format_beijing(self._now_ms()),
            "version": "1.0",
            "biz_content": json.dumps(dict(biz), ensure_ascii=False, separators=(",", ":")),
            **extra,
        }
        params = {name: value for name, value in params.items() if value != ""}
        content = alipay_sign_content(params, REQUEST_SIGN_EXCLUDED)
        params["sign"] = rsa_sha256_sign(self._private_key(config), content.encode("utf-8"))
        return params

    def start(self, config: ChannelConfig, request: PaymentRequest) -> PaymentStart:
        """``page``/``wap``: a redirect to the gateway with the signed request (no call made).
        ``precreate``: a server call returning the QR text. Raises
        PAYMENT_CURRENCY_UNSUPPORTED (not CNY), PAYMENT_CONFIG_INVALID,
        PAYMENT_PROVIDER_UNAVAILABLE or PAYMENT_PROVIDER_REJECTED."""
        if request.currency != "CNY":
            raise currency_unsupported(self.name, request.currency)
        method, product_code = PRODUCTS[config.options.get("product", "page")]
        biz = {
            "out_trade_no": request.out_trade_no,
            "total_amount": format_money(request.amount_minor, 2),
            "subject": request.subject,
            "time_expire": format_beijing(request.expires_at_ms),
        }
        if product_code:
            biz["product_code"] = product_code
        extra = {"notify_url": config.notify_url}
        if method != "alipay.trade.precreate":
            extra["return_url"] = request.return_url or config.return_url
            params = self._signed_params(config, method, biz, extra)
            return PaymentStart(kind="redirect", url=f"{self._gateway(config)}?{urlencode(params)}",
                                expires_at_ms=request.expires_at_ms)
        node = self._call(config, method, biz, extra)
        qr_code = json_str(node, "qr_code")
        if not qr_code or json_str(node, "out_trade_no") != request.out_trade_no:
            raise provider_unavailable(self.name, "malformed")
        return PaymentStart(kind="qr", qr_text=qr_code, expires_at_ms=request.expires_at_ms)

    def _call(self, config: ChannelConfig, method: str, biz: Mapping[str, str],
              extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        """POST one signed request; returns the verified response object when ``code`` is
        10000. Raises PAYMENT_PROVIDER_UNAVAILABLE or PAYMENT_PROVIDER_REJECTED (``sub_code``)."""
        params = self._signed_params(config, method, biz, extra or {})
        response = self._transport().request(
            "POST", self._gateway(config),
            {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8",
             "Accept": "application/json"},
            urlencode(params).encode("utf-8"))
        if response.status != 200:
            raise provider_unavailable(self.name, "status", status=response.status)
        node = self._verified_node(config, response.body, method.replace(".", "_") + "_response")
        code = json_str(node, "code")
        if code != SUCCESS_CODE:
            raise provider_rejected(self.name, json_str(node, "sub_code") or str(code))
        return node

    def _verified_node(self, config: ChannelConfig, body: bytes, node_name: str) -> dict[str, Any]:
        answer = load_json_object(body)
        node = answer.get(node_name) if answer is not None else None
        if answer is None or not isinstance(node, dict):
            raise provider_unavailable(self.name, "malformed")
        sign = json_str(answer, "sign")
        if sign is None:
            # Alipay leaves errors about the request itself (bad app id, bad signature)
            # unsigned; they can only be refusals, never a success to act on.
            if json_str(node, "code") == SUCCESS_CODE:
                raise provider_unavailable(self.name, "signature")
            return node
        try:
            text = extract_response_text(body.decode("utf-8"), node_name)
        except UnicodeDecodeError:
            text = None
        # The cut-out text must be the very object parsed above, and signed by Alipay.
        if text is None or load_json_object(text) != node or not rsa_sha256_verify(
                self._alipay_key(config), text.encode("utf-8"), sign):
            raise provider_unavailable(self.name, "signature")
        return node

    def verify_notify(self, config: ChannelConfig, method: str, headers: Mapping[str, str],
                      query: QueryPairs, body: bytes) -> Notify | IgnoredEvent:
        """Verify an async notify (form POST, UTF-8): RSA2 with the Alipay public key over the
        sorted fields but ``sign``/``sign_type``, then ``app_id`` and ``seller_id``.

        Raises PAYMENT_NOTIFY_INVALID (not a POST form, a required field missing, ``sign_type``
        not RSA2, malformed money or time), PAYMENT_SIGNATURE_INVALID (``mismatch``,
        ``merchant_mismatch``, ``seller_mismatch``) or LIMIT_EXCEEDED. An unknown
        ``trade_status`` is an IgnoredEvent.
        """
        if method != "POST":
            raise notify_invalid(self.name, "not_post")
        content_type = (header(headers, "content-type") or "").lower()
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise notify_invalid(self.name, "content_type")
        fields = form_fields(self.name, body)
        missing = [name for name in NOTIFY_REQUIRED if not fields.get(name)]
        if missing:
            raise notify_invalid(self.name, "missing_field", field=missing[0])
        if fields.get("sign_type", "RSA2") != "RSA2":
            raise notify_invalid(self.name, "sign_type")
        content = alipay_sign_content(fields, NOTIFY_SIGN_EXCLUDED).encode("utf-8")
        if not rsa_sha256_verify(self._alipay_key(config), content, fields["sign"]):
            raise signature_invalid(self.name, "mismatch")
        if not same_text(fields["app_id"], config.merchant_id):
            raise signature_invalid(self.name, "merchant_mismatch")
        if not same_text(fields["seller_id"], config.option("seller_id")):
            raise signature_invalid(self.name, "seller_mismatch")
        return self._facts(config, fields)

    def _facts(self, config: ChannelConfig, fields: dict[str, str]) -> Notify | IgnoredEvent:
        status = _notify_status(fields)
        if status is None:
            return IgnoredEvent(self.name, fields["notify_id"], fields["trade_status"][:64],
                                "unknown_trade_status")
        refund_fee = fields.get("refund_fee", "")
        gmt_payment = fields.get("gmt_payment", "")
        paid_at_ms = parse_beijing(gmt_payment) if gmt_payment else None
        if gmt_payment and paid_at_ms is None:
            raise notify_invalid(self.name, "time", field="gmt_payment")
        return Notify(
            provider=self.name,
            event_id=fields["notify_id"],
            provider_trade_no=fields["trade_no"],
            out_trade_no=fields["out_trade_no"],
            amount_minor=parse_money(self.name, "total_amount", fields["total_amount"]),
            currency="CNY",
            merchant_id=config.merchant_id,
            status=status,
            paid_at_ms=paid_at_ms,
            refunded_minor=parse_money(self.name, "refund_fee", refund_fee) if refund_fee else None,
            raw=bounded_raw(fields, drop=("sign",)),
        )

    def ack(self, ok: bool) -> NotifyAnswer:
        """``success`` (the exact body Alipay waits for) or ``fail``, 200 text/plain."""
        return NotifyAnswer(200, "text/plain; charset=utf-8", b"success" if ok else b"fail")

    def query(self, config: ChannelConfig, out_trade_no: str, *,
              provider_ref: str | None = None) -> QueryResult:
        """``alipay.trade.query``. ``not_found`` for ACQ.TRADE_NOT_EXIST (the buyer never opened
        the cashier); raises PAYMENT_PROVIDER_REJECTED for other refusals and
        PAYMENT_PROVIDER_UNAVAILABLE for unusable or badly signed answers."""
        try:
            node = self._call(config, "alipay.trade.query", {"out_trade_no": out_trade_no})
        except CardsvcError as error:
            if (error.code is ErrorCode.PAYMENT_PROVIDER_REJECTED
                    and error.details.get("provider_code") == TRADE_NOT_EXIST):
                return QueryResult(out_trade_no=out_trade_no, status="not_found")
            raise
        if json_str(node, "out_trade_no") != out_trade_no:
            raise provider_unavailable(self.name, "malformed", field="out_trade_no")
        trade_status = json_str(node, "trade_status") or ""
        paid_text = json_str(node, "send_pay_date") or ""
        status = _query_status(trade_status, bool(paid_text))
        total = json_str(node, "total_amount")
        return QueryResult(
            out_trade_no=out_trade_no,
            status=status,
            provider_trade_no=json_str(node, "trade_no"),
            amount_minor=_answer_money(total) if total else None,
            currency="CNY",
            paid_at_ms=parse_beijing(paid_text) if paid_text else None,
            raw=bounded_raw(node),
        )

    def refund(self, config: ChannelConfig, out_trade_no: str, amount_minor: int, reason: str,
               *, out_refund_no: str | None = None,
               provider_ref: str | None = None) -> RefundResult:
        """``alipay.trade.refund`` with ``out_request_no`` = ``out_refund_no`` (idempotent at
        Alipay: the same id is one refund). ``fund_change`` Y is ``succeeded``; N is
        ``pending`` (Alipay asks to confirm with the refund query). Raises
        AMOUNT_MUST_BE_POSITIVE, PAYMENT_PROVIDER_REJECTED or PAYMENT_PROVIDER_UNAVAILABLE."""
        check_refund_amount(amount_minor)
        refund_no = out_refund_no or default_out_refund_no(out_trade_no, amount_minor)
        node = self._call(config, "alipay.trade.refund", {
            "out_trade_no": out_trade_no,
            "refund_amount": format_money(amount_minor, 2),
            "refund_reason": reason[:256],
            "out_request_no": refund_no,
        })
        if json_str(node, "out_trade_no") != out_trade_no:
            raise provider_unavailable(self.name, "malformed", field="out_trade_no")
        status: RefundStatus = "succeeded" if json_str(node, "fund_change") == "Y" else "pending"
        return RefundResult(out_trade_no=out_trade_no, refund_id=refund_no,
                            amount_minor=amount_minor, status=status, raw=bounded_raw(node))


def _notify_status(fields: Mapping[str, str]) -> NotifyStatus | None:
    trade_status = fields["trade_status"]
    refund = bool(fields.get("gmt_refund") or fields.get("out_biz_no"))
    if trade_status == "TRADE_SUCCESS":
        return "refunded" if refund else "paid"
    if trade_status == "TRADE_FINISHED":
        return "paid"
    if trade_status == "TRADE_CLOSED":
        # Closed: unpaid and timed out, or paid and then refunded in full.
        return "refunded" if refund else "expired"
    if trade_status == "WAIT_BUYER_PAY":
        return "pending"
    return None


def _query_status(trade_status: str, was_paid: bool) -> QueryStatus:
    if trade_status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
        return "paid"
    if trade_status == "TRADE_CLOSED":
        return "refunded" if was_paid else "expired"
    return "pending"


def _answer_money(text: str) -> int:
    try:
        return parse_money("alipay", "total_amount", text)
    except CardsvcError:
        raise provider_unavailable("alipay", "malformed", field="total_amount") from None
