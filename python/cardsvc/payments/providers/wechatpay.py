"""WeChat Pay API v3 (微信支付 APIv3), direct merchants, Native (QR) payments.

Protocol (signatures: https://pay.weixin.qq.com/wiki/doc/apiv3/wechatpay/wechatpay4_0.shtml;
decryption: https://pay.weixin.qq.com/docs/merchant/development/interface-rules/certificate-callback-decryption.html;
the Native payment notify: https://pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter3_4_5.shtml; the
official SDK wechatpay-apiv3/wechatpay-go implements exactly this):

* Our requests carry ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",
  signature="..",timestamp="..",serial_no=".."``; the signature is SHA256withRSA with the
  merchant's API private key over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``.
* Answers and callbacks are signed by WeChat Pay: headers ``Wechatpay-Timestamp``,
  ``Wechatpay-Nonce``, ``Wechatpay-Signature`` and ``Wechatpay-Serial`` (the platform
  certificate serial, or ``PUB_KEY_ID_…`` for the newer WeChat Pay public key), the signature
  over ``TIMESTAMP\\nNONCE\\nBODY\\n``; the timestamp must be within 5 minutes.
* A callback's ``resource`` is AEAD_AES_256_GCM-encrypted with the APIv3 key (32 bytes):
  the nonce and associated data are given as text, the ciphertext (tag appended) in base64.
  Event ``TRANSACTION.SUCCESS`` with ``trade_state`` SUCCESS is a payment; ``REFUND.SUCCESS``
  a refund. The answer is 200/204 without a body for "received", or 4xx/5xx with
  ``{"code": "FAIL", "message": "失败"}`` for "retry".
* Native order: POST ``/v3/pay/transactions/native`` -> ``code_url`` (the QR text); query:
  GET ``/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=..``; refund: POST
  ``/v3/refund/domestic/refunds`` (it needs the order total, so the query runs first).

Amounts are integer fen (``amount.total``), CNY only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardsvc.errors import CardsvcError
from cardsvc.payments.providers.base import (
    AMOUNT_MINOR_MAX,
    ChannelConfig,
    HttpResponse,
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
    check_body_size,
    check_reachable,
    check_refund_amount,
    check_url_setting,
    config_invalid,
    currency_unsupported,
    default_out_refund_no,
    format_rfc3339_beijing,
    header,
    json_answer,
    json_int,
    json_object,
    json_str,
    load_json_object,
    load_rsa_private_key,
    load_rsa_public_key,
    notify_invalid,
    parse_rfc3339,
    provider_rejected,
    provider_unavailable,
    rsa_sha256_sign,
    rsa_sha256_verify,
    same_text,
    signature_invalid,
)

API_BASE_DEFAULT = "https://api.mch.weixin.qq.com"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
AEAD_ALGORITHM = "AEAD_AES_256_GCM"
TOLERANCE_S = 300
"""WeChat Pay's own SDKs refuse a signed message 5 minutes or more away from the local clock."""
API_V3_KEY_BYTES = 32
USER_AGENT = "cardsvc-payments/1"
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}", re.ASCII)
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SERIAL = re.compile(r"[A-Za-z0-9_]{1,64}")
_TRADE_STATES: Mapping[str, NotifyStatus] = {
    "SUCCESS": "paid",
    "REFUND": "refunded",
    "NOTPAY": "pending",
    "USERPAYING": "pending",
    "CLOSED": "expired",
    "REVOKED": "failed",
    "PAYERROR": "failed",
}
_REFUND_STATUSES: Mapping[str, RefundStatus] = {
    "SUCCESS": "succeeded",
    "PROCESSING": "pending",
    "CLOSED": "failed",
    "ABNORMAL": "failed",
}


def signed_message(*parts: str | bytes) -> bytes:
    """WeChat Pay's signed text: each part followed by ``\\n``."""
    return b"".join((part.encode("utf-8") if isinstance(part, str) else part) + b"\n"
                    for part in parts)


def request_authorization(*, mchid: str, serial_no: str, private_key: rsa.RSAPrivateKey,
                          method: str, path_query: str, timestamp_s: int, nonce: str,
                          body: bytes) -> str:
    """The ``Authorization`` header value for one request (pure: nonce and time are given)."""
    message = signed_message(method, path_query, str(timestamp_s), nonce, body)
    signature = rsa_sha256_sign(private_key, message)
    return (f'{SIGNATURE_TYPE} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp_s}",serial_no="{serial_no}"')


def verify_wechatpay_signature(public_keys: Mapping[str, rsa.RSAPublicKey],
                               headers: Mapping[str, str], body: bytes, now_s: int) -> None:
    """Check WeChat Pay's signature headers over ``body`` (a callback or an answer).

    Raises PAYMENT_SIGNATURE_INVALID: ``missing`` (a header absent), ``signature_type``,
    ``stale_timestamp`` (5 minutes or more from ``now_s``), ``unknown_key`` (the serial names
    no configured key) or ``mismatch``. Pure.
    """
    values = {name: header(headers, f"Wechatpay-{name}") for name in
              ("Timestamp", "Nonce", "Signature", "Serial")}
    if any(not value for value in values.values()):
        raise signature_invalid("wechatpay", "missing")
    timestamp, nonce, signature, serial = (str(values[name]).strip() for name in
                                           ("Timestamp", "Nonce", "Signature", "Serial"))
    signature_type = header(headers, "Wechatpay-Signature-Type")
    if signature_type not in (None, SIGNATURE_TYPE):
        raise signature_invalid("wechatpay", "signature_type")
    if not _TIMESTAMP.fullmatch(timestamp) or not _NONCE.fullmatch(nonce):
        raise signature_invalid("wechatpay", "malformed_header")
    if abs(now_s - int(timestamp)) >= TOLERANCE_S:
        raise signature_invalid("wechatpay", "stale_timestamp")
    key = public_keys.get(serial) if _SERIAL.fullmatch(serial) else None
    if key is None:
        raise signature_invalid("wechatpay", "unknown_key", serial=serial[:64])
    if not rsa_sha256_verify(key, signed_message(timestamp, nonce, body), signature):
        raise signature_invalid("wechatpay", "mismatch")


def decrypt_resource(key: bytes, resource: Mapping[str, Any]) -> bytes:
    """The plaintext of a callback's encrypted ``resource`` (AES-GCM with ``key``; the nonce and
    associated data are UTF-8 text, the ciphertext base64 with the 16-byte tag at its end).

    Raises PAYMENT_NOTIFY_INVALID (fields missing, algorithm not AEAD_AES_256_GCM, bad base64)
    or PAYMENT_SIGNATURE_INVALID (``decrypt``: the tag does not verify, i.e. tampered or
    another key). Pure. The key length is checked by the channel settings (32 bytes).
    """
    algorithm = json_str(resource, "algorithm")
    ciphertext = json_str(resource, "ciphertext")
    nonce = json_str(resource, "nonce")
    associated = json_str(resource, "associated_data") or ""
    if algorithm != AEAD_ALGORITHM:
        raise notify_invalid("wechatpay", "algorithm")
    if not ciphertext or not nonce:
        raise notify_invalid("wechatpay", "resource")
    try:
        data = base64.b64decode(ciphertext.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise notify_invalid("wechatpay", "resource") from None
    try:
        return AESGCM(key).decrypt(nonce.encode("utf-8"), data, associated.encode("utf-8"))
    except (InvalidTag, ValueError):
        raise signature_invalid("wechatpay", "decrypt") from None


class WechatpayProvider(Provider):
    """WeChat Pay API v3 Native (see the module docstring).

    Settings: ``merchant_id`` = ``mchid``; ``secrets["merchant_private_key"]`` = the merchant
    API private key (PEM, ``apiclient_key.pem``); ``secrets["api_v3_key"]`` = the 32-byte APIv3
    key; ``verify_keys`` = WeChat Pay's platform certificates or public key (PEM) by serial /
    public key id (several during a rotation); ``options["appid"]`` = the AppID bound to the
    merchant; ``options["merchant_serial_no"]`` = the serial of the merchant API certificate;
    ``options["api_base"]`` (default ``https://api.mch.weixin.qq.com``).
    """

    name: ClassVar[str] = "wechatpay"
    supports_query: ClassVar[bool] = True
    supports_refund: ClassVar[bool] = True

    def check_config(self, config: ChannelConfig) -> None:
        """Also parses the private key and every verify key, and checks the APIv3 key length,
        the app id, the merchant serial and the API base. Raises PAYMENT_CONFIG_INVALID."""
        super().check_config(config)
        self._private_key(config)
        self._api_v3_key(config)
        self._public_keys(config)
        config.option("appid")
        config.option("merchant_serial_no")
        self._api_base(config)

    def _private_key(self, config: ChannelConfig) -> rsa.RSAPrivateKey:
        return load_rsa_private_key(self.name, "merchant_private_key",
                                    config.secret("merchant_private_key"))

    def _api_v3_key(self, config: ChannelConfig) -> bytes:
        key = config.secret("api_v3_key")
        if len(key) != API_V3_KEY_BYTES:
            raise config_invalid(self.name, "api_v3_key", f"not {API_V3_KEY_BYTES} bytes")
        return key

    def _public_keys(self, config: ChannelConfig) -> dict[str, rsa.RSAPublicKey]:
        if not config.verify_keys:
            raise config_invalid(self.name, "verify_keys", "missing")
        return {serial: load_rsa_public_key(self.name, f"verify_keys.{serial}", pem)
                for serial, pem in config.verify_keys.items()}

    def _api_base(self, config: ChannelConfig) -> str:
        base = check_url_setting(self.name, "api_base",
                                 config.options.get("api_base", API_BASE_DEFAULT))
        return base.rstrip("/")

    def start(self, config: ChannelConfig, request: PaymentRequest) -> PaymentStart:
        """Create a Native order and return its ``code_url`` as QR text. Calling it again for
        the same attempt returns the same order (WeChat Pay keys it on ``out_trade_no``).
        Raises PAYMENT_CURRENCY_UNSUPPORTED (not CNY), PAYMENT_CONFIG_INVALID,
        PAYMENT_PROVIDER_UNAVAILABLE or PAYMENT_PROVIDER_REJECTED."""
        if request.currency != "CNY":
            raise currency_unsupported(self.name, request.currency)
        order: dict[str, Any] = {
            "appid": config.option("appid"),
            "mchid": config.merchant_id,
            "description": request.subject,
            "out_trade_no": request.out_trade_no,
            "time_expire": format_rfc3339_beijing(request.expires_at_ms),
            "notify_url": config.notify_url,
            "amount": {"total": request.amount_minor, "currency": "CNY"},
        }
        if request.buyer_ip:
            order["scene_info"] = {"payer_client_ip": request.buyer_ip}
        answer = self._call(config, "POST", "/v3/pay/transactions/native", order)
        code_url = json_str(answer, "code_url")
        if not code_url:
            raise provider_unavailable(self.name, "malformed")
        return PaymentStart(kind="qr", qr_text=code_url, expires_at_ms=request.expires_at_ms)

    def _call(self, config: ChannelConfig, method: str, path_query: str,
              payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """One signed request; returns the verified JSON answer of a 2xx. Raises
        PAYMENT_PROVIDER_REJECTED (4xx, with WeChat Pay's ``code``) or
        PAYMENT_PROVIDER_UNAVAILABLE (5xx, 429, unsigned or badly signed, malformed)."""
        body = b"" if payload is None else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        now_s = self._now_ms() // 1000
        authorization = request_authorization(
            mchid=config.merchant_id, serial_no=config.option("merchant_serial_no"),
            private_key=self._private_key(config), method=method, path_query=path_query,
            timestamp_s=now_s, nonce=secrets.token_hex(16), body=body)
        headers = {"Authorization": authorization, "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        response = self._transport().request(method, self._api_base(config) + path_query,
                                             headers, body if payload is not None else None)
        return self._answer(config, response, now_s)

    def _answer(self, config: ChannelConfig, response: HttpResponse, now_s: int) -> dict[str, Any]:
        check_reachable(self.name, response)
        signed = header(response.headers, "Wechatpay-Signature") is not None
        if 200 <= response.status < 300 or signed:
            try:
                verify_wechatpay_signature(self._public_keys(config), response.headers,
                                           response.body, now_s)
            except CardsvcError:
                raise provider_unavailable(self.name, "signature",
                                           status=response.status) from None
        answer = json_answer(self.name, response, empty_is_object=True)
        if response.status >= 300:
            raise provider_rejected(self.name, json_str(answer, "code") or str(response.status),
                                    status=response.status)
        return answer

    def verify_notify(self, config: ChannelConfig, method: str, headers: Mapping[str, str],
                      query: QueryPairs, body: bytes) -> Notify | IgnoredEvent:
        """Verify a callback: signature headers (:func:`verify_wechatpay_signature`), then
        decrypt the resource (:func:`decrypt_resource`), then ``mchid`` and ``appid``.

        Raises PAYMENT_SIGNATURE_INVALID (any header check, ``decrypt``,
        ``merchant_mismatch``, ``app_mismatch``), PAYMENT_NOTIFY_INVALID (not a POST, not the
        documented JSON, amounts that are not integers) or LIMIT_EXCEEDED. Events other than
        TRANSACTION.SUCCESS and REFUND.SUCCESS are IgnoredEvents.
        """
        if method != "POST":
            raise notify_invalid(self.name, "not_post")
        check_body_size(body)
        verify_wechatpay_signature(self._public_keys(config), headers, body,
                                   self._now_ms() // 1000)
        envelope = load_json_object(body)
        if envelope is None:
            raise notify_invalid(self.name, "not_json")
        event_id = json_str(envelope, "id")
        event_type = json_str(envelope, "event_type")
        resource = json_object(envelope, "resource")
        if not event_id or not event_type or resource is None:
            raise notify_invalid(self.name, "envelope")
        plain = load_json_object(decrypt_resource(self._api_v3_key(config), resource))
        if plain is None:
            raise notify_invalid(self.name, "resource_not_json")
        if event_type not in ("TRANSACTION.SUCCESS", "REFUND.SUCCESS"):
            return IgnoredEvent(self.name, event_id[:64], event_type[:64], "unhandled_event")
        self._check_merchant(config, plain, refund=event_type == "REFUND.SUCCESS")
        if event_type == "REFUND.SUCCESS":
            return self._refund_facts(config, event_id, plain)
        return self._transaction_facts(config, event_id, plain)

    def _check_merchant(self, config: ChannelConfig, plain: Mapping[str, Any],
                        refund: bool) -> None:
        if not same_text(json_str(plain, "mchid") or "", config.merchant_id):
            raise signature_invalid(self.name, "merchant_mismatch")
        # Refund callbacks carry no appid; transaction callbacks must name ours.
        if not refund and not same_text(json_str(plain, "appid") or "", config.option("appid")):
            raise signature_invalid(self.name, "app_mismatch")

    def _transaction_facts(self, config: ChannelConfig, event_id: str,
                           plain: Mapping[str, Any]) -> Notify | IgnoredEvent:
        out_trade_no = json_str(plain, "out_trade_no")
        transaction_id = json_str(plain, "transaction_id")
        amount = json_object(plain, "amount")
        total = json_int(amount, "total") if amount is not None else None
        currency = json_str(amount, "currency") if amount is not None else None
        state = json_str(plain, "trade_state") or ""
        if not out_trade_no or not transaction_id or total is None or not currency:
            raise notify_invalid(self.name, "transaction")
        if not 0 <= total <= AMOUNT_MINOR_MAX:
            raise notify_invalid(self.name, "amount")
        status = _TRADE_STATES.get(state)
        if status is None:
            return IgnoredEvent(self.name, event_id[:64], state[:64], "unknown_trade_state")
        success_time = json_str(plain, "success_time")
        return Notify(
            provider=self.name,
            event_id=event_id,
            provider_trade_no=transaction_id,
            out_trade_no=out_trade_no,
            amount_minor=total,
            currency=currency,
            merchant_id=config.merchant_id,
            status=status,
            paid_at_ms=parse_rfc3339(success_time) if success_time else None,
            raw=bounded_raw(plain, drop=("payer.openid",)),
        )

    def _refund_facts(self, config: ChannelConfig, event_id: str,
                      plain: Mapping[str, Any]) -> Notify:
        amount = json_object(plain, "amount") or {}
        total, refund = json_int(amount, "total"), json_int(amount, "refund")
        out_trade_no = json_str(plain, "out_trade_no")
        transaction_id = json_str(plain, "transaction_id")
        if not out_trade_no or not transaction_id or total is None or refund is None:
            raise notify_invalid(self.name, "refund")
        if not 0 <= refund <= total <= AMOUNT_MINOR_MAX:
            raise notify_invalid(self.name, "amount")
        return Notify(
            provider=self.name,
            event_id=event_id,
            provider_trade_no=transaction_id,
            out_trade_no=out_trade_no,
            amount_minor=total,
            currency="CNY",
            merchant_id=config.merchant_id,
            status="refunded",
            refunded_minor=refund,
            raw=bounded_raw(plain),
        )

    def ack(self, ok: bool) -> NotifyAnswer:
        """204 without a body ("received"), or 500 with ``{"code":"FAIL","message":"失败"}``
        (WeChat Pay retries on any 4xx/5xx)."""
        if ok:
            return NotifyAnswer(204, "application/json", b"")
        body = json.dumps({"code": "FAIL", "message": "失败"}, ensure_ascii=False)
        return NotifyAnswer(500, "application/json; charset=utf-8", body.encode("utf-8"))

    def query(self, config: ChannelConfig, out_trade_no: str, *,
              provider_ref: str | None = None) -> QueryResult:
        """GET the order by ``out_trade_no``: ``not_found`` for ORDER_NOT_EXIST (the buyer never
        scanned), else the trade state. Raises PAYMENT_PROVIDER_REJECTED or
        PAYMENT_PROVIDER_UNAVAILABLE."""
        path = (f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
                f"?mchid={quote(config.merchant_id, safe='')}")
        try:
            answer = self._call(config, "GET", path, None)
        except CardsvcError as error:
            if error.details.get("provider_code") == "ORDER_NOT_EXIST":
                return QueryResult(out_trade_no=out_trade_no, status="not_found")
            raise
        if json_str(answer, "out_trade_no") != out_trade_no:
            raise provider_unavailable(self.name, "malformed", field="out_trade_no")
        amount = json_object(answer, "amount") or {}
        success_time = json_str(answer, "success_time")
        status: QueryStatus = _TRADE_STATES.get(json_str(answer, "trade_state") or "", "pending")
        return QueryResult(
            out_trade_no=out_trade_no,
            status=status,
            provider_trade_no=json_str(answer, "transaction_id"),
            amount_minor=json_int(amount, "total"),
            currency=json_str(amount, "currency"),
            paid_at_ms=parse_rfc3339(success_time) if success_time else None,
            raw=bounded_raw(answer, drop=("payer.openid",)),
        )

    def refund(self, config: ChannelConfig, out_trade_no: str, amount_minor: int, reason: str,
               *, out_refund_no: str | None = None,
               provider_ref: str | None = None) -> RefundResult:
        """Query the order (for its total), then POST the refund with ``out_refund_no``
        (idempotent at WeChat Pay). Raises AMOUNT_MUST_BE_POSITIVE, PAYMENT_PROVIDER_REJECTED
        (e.g. NOT_ENOUGH, or an unpaid order) or PAYMENT_PROVIDER_UNAVAILABLE."""
        check_refund_amount(amount_minor)
        order = self.query(config, out_trade_no)
        if order.amount_minor is None or order.status not in ("paid", "refunded"):
            raise provider_rejected(self.name, "NOT_PAID")
        refund_no = out_refund_no or default_out_refund_no(out_trade_no, amount_minor)
        answer = self._call(config, "POST", "/v3/refund/domestic/refunds", {
            "out_trade_no": out_trade_no,
            "out_refund_no": refund_no,
            "reason": reason[:80],
            "amount": {"refund": amount_minor, "total": order.amount_minor, "currency": "CNY"},
        })
        status = _REFUND_STATUSES.get(json_str(answer, "status") or "", "pending")
        return RefundResult(out_trade_no=out_trade_no,
                            refund_id=json_str(answer, "refund_id") or refund_no,
                            amount_minor=amount_minor, status=status,
                            raw=bounded_raw(answer))
