"""Stripe Checkout, with webhook verification implemented here (no SDK needed).

Protocol (https://docs.stripe.com/api/checkout/sessions/create,
https://docs.stripe.com/webhooks#verify-manually, https://docs.stripe.com/checkout/fulfillment;
``stripe-python``'s ``WebhookSignature`` does the same):

* Start: POST ``/v1/checkout/sessions`` (form-encoded, ``Authorization: Bearer sk_…``,
  ``Idempotency-Key`` so a retried start is one session) with ``mode=payment``, one
  ``price_data`` line item, ``client_reference_id`` = our ``out_trade_no`` (also in the
  metadata of the session and of its PaymentIntent), ``success_url``, ``cancel_url`` and
  ``expires_at`` (Stripe allows 30 minutes to 24 hours ahead; ours is moved into that window and
  the applied value returned). The buyer is redirected to the session's ``url``.
* Webhook: header ``Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…]``; each ``v1`` is
  HMAC-SHA256 with the endpoint's signing secret (``whsec_…``) over ``"<t>." + raw body``. Any
  matching ``v1`` is accepted (Stripe sends several while a secret rolls), and we also try the
  previous secret when one is configured; ``t`` must be within 300 s of our clock.
* Events: ``checkout.session.completed`` (paid when ``payment_status`` is ``paid``; pending for
  async methods), ``checkout.session.async_payment_succeeded`` (paid),
  ``…async_payment_failed`` (failed), ``checkout.session.expired`` (expired). The inbox key is
  the event id ``evt_…``; any 2xx stops Stripe's retries (up to 3 days).
* Query and refund need the session id (``PaymentStart.provider_ref``): GET
  ``/v1/checkout/sessions/{id}``; POST ``/v1/refunds`` with the session's ``payment_intent``.

Amounts are in the currency's smallest unit, as ours. Stripe's zero-decimal currencies (JPY,
KRW, ...) agree with ISO 4217; where Stripe and ISO disagree (ISK, HUF, TWD, UGX, MGA) or Stripe
demands a rounded last digit (the three-decimal ones), we refuse the currency rather than risk
charging 100 times too much or too little.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

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
    check_refund_amount,
    check_url_setting,
    config_invalid,
    currency_exponent,
    currency_unsupported,
    default_out_refund_no,
    header,
    json_answer,
    json_int,
    json_object,
    json_str,
    load_json_object,
    notify_invalid,
    provider_rejected,
    provider_unavailable,
    signature_invalid,
)

API_BASE_DEFAULT = "https://api.stripe.com"
TOLERANCE_S_DEFAULT = 300
TOLERANCE_S_MAX = 600
SESSION_TTL_S_MIN = 30 * 60 + 60
"""Stripe refuses ``expires_at`` under 30 minutes ahead; one more minute covers clock skew and
the time the request takes."""
SESSION_TTL_S_MAX = 24 * 3600 - 60
SIGNATURE_HEADER_CHARS_MAX = 2048
"""A header with a few ``v1`` values is under 400 characters; more is refused unparsed."""
STRIPE_UNSUPPORTED_CURRENCIES = frozenset(("ISK", "HUF", "TWD", "UGX", "MGA",
                                           "BHD", "JOD", "KWD", "OMR", "TND"))
"""Currencies whose Stripe amount is not simply ISO minor units (see the module docstring)."""
REFUND_REASONS = frozenset(("duplicate", "fraudulent", "requested_by_customer"))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}", re.ASCII)
_EVENTS: Mapping[str, NotifyStatus] = {
    "checkout.session.async_payment_succeeded": "paid",
    "checkout.session.async_payment_failed": "failed",
    "checkout.session.expired": "expired",
}
_REFUND_STATUSES: Mapping[str, RefundStatus] = {
    "succeeded": "succeeded",
    "pending": "pending",
    "requires_action": "pending",
    "failed": "failed",
    "canceled": "failed",
}


def stripe_signature(secret: bytes, timestamp_s: int, payload: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp_s>." + payload`` under ``secret`` (Stripe's ``v1``)."""
    return hmac.new(secret, str(timestamp_s).encode("ascii") + b"." + payload,
                    hashlib.sha256).hexdigest()


def parse_signature_header(text: str) -> tuple[int, list[str]]:
    """``(t, [v1, ...])`` of a ``Stripe-Signature`` header; other schemes (``v0``) are ignored.
    Raises PAYMENT_SIGNATURE_INVALID (``malformed_header``: no ``t``, a second ``t``, no ``v1``,
    a ``v1`` that is not 64 hex digits, over SIGNATURE_HEADER_CHARS_MAX)."""
    if len(text) > SIGNATURE_HEADER_CHARS_MAX:
        raise signature_invalid("stripe", "malformed_header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in text.split(","):
        name, equals, value = item.strip().partition("=")
        if not equals:
            raise signature_invalid("stripe", "malformed_header")
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                raise signature_invalid("stripe", "malformed_header")
            timestamp = int(value)
        elif name == "v1":
            if not _HEX64.fullmatch(value):
                raise signature_invalid("stripe", "malformed_header")
            signatures.append(value)
    if timestamp is None or not signatures:
        raise signature_invalid("stripe", "malformed_header")
    return timestamp, signatures


def stripe_amount_currency(currency: str) -> str:
    """Stripe's lower-case currency for ``currency``, if its amounts are ISO minor units.
    Raises PAYMENT_CURRENCY_UNSUPPORTED otherwise."""
    currency_exponent("stripe", currency)
    if currency in STRIPE_UNSUPPORTED_CURRENCIES:
        raise currency_unsupported("stripe", currency)
    return currency.lower()


class StripeProvider(Provider):
    """Stripe Checkout (see the module docstring).

    Settings: ``merchant_id`` = the Stripe account id (``acct_…``; checked against an event's
    ``account`` when Stripe sends one, as for Connect; may be empty for a plain account);
    ``secrets["api_key"]`` = the secret or restricted key (``sk_…``/``rk_…``; live or test
    decides which ``livemode`` events are accepted); ``secrets["webhook_secret"]`` = the
    endpoint's ``whsec_…``, and ``secrets["webhook_secret_previous"]`` during a roll;
    ``options["cancel_url"]`` (default the return URL); ``options["api_base"]``;
    ``options["tolerance_s"]`` (default 300); ``options["api_version"]`` to pin
    ``Stripe-Version``.
    """

    name: ClassVar[str] = "stripe"
    supports_query: ClassVar[bool] = True
    supports_refund: ClassVar[bool] = True

    def _merchant_id_required(self) -> bool:
        return False

    def check_config(self, config: ChannelConfig) -> None:
        """Also checks the API key's form, the webhook secret(s), the URLs and the tolerance.
        Raises PAYMENT_CONFIG_INVALID."""
        super().check_config(config)
        self._livemode(config)
        self._webhook_secrets(config)
        self._api_base(config)
        check_url_setting(self.name, "cancel_url",
                          config.options.get("cancel_url", config.return_url))
        self._tolerance_s(config)

    def _livemode(self, config: ChannelConfig) -> bool:
        key = config.secret_text("api_key")
        if key.startswith(("sk_live_", "rk_live_")):
            return True
        if key.startswith(("sk_test_", "rk_test_")):
            return False
        raise config_invalid(self.name, "api_key", "not an sk_/rk_ live or test key")

    def _webhook_secrets(self, config: ChannelConfig) -> list[bytes]:
        secrets = [config.secret("webhook_secret")]
        previous = config.secrets.get("webhook_secret_previous")
        if previous:
            secrets.append(previous)
        if any(not secret.startswith(b"whsec_") for secret in secrets):
            raise config_invalid(self.name, "webhook_secret", "not a whsec_ signing secret")
        return secrets

    def _api_base(self, config: ChannelConfig) -> str:
        return check_url_setting(self.name, "api_base",
                                 config.options.get("api_base", API_BASE_DEFAULT)).rstrip("/")

    def _tolerance_s(self, config: ChannelConfig) -> int:
        text = config.options.get("tolerance_s", str(TOLERANCE_S_DEFAULT))
        if not text.isdigit() or not 1 <= int(text) <= TOLERANCE_S_MAX:
            raise config_invalid(self.name, "tolerance_s", f"not 1-{TOLERANCE_S_MAX} seconds")
        return int(text)

    def start(self, config: ChannelConfig, request: PaymentRequest) -> PaymentStart:
        """Create a Checkout Session and return a redirect to its URL, with the session id as
        ``provider_ref`` and the applied expiry. Raises PAYMENT_CURRENCY_UNSUPPORTED,
        PAYMENT_CONFIG_INVALID, PAYMENT_PROVIDER_REJECTED (Stripe's error code) or
        PAYMENT_PROVIDER_UNAVAILABLE (also when the session does not match the request)."""
        currency = stripe_amount_currency(request.currency)
        now_s = self._now_ms() // 1000
        expires_at_s = min(max(request.expires_at_ms // 1000, now_s + SESSION_TTL_S_MIN),
                           now_s + SESSION_TTL_S_MAX)
        return_url = request.return_url or config.return_url
        form = {
            "mode": "payment",
            "client_reference_id": request.out_trade_no,
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": currency,
            "line_items[0][price_data][unit_amount]": str(request.amount_minor),
            "line_items[0][price_data][product_data][name]": request.subject,
            "success_url": return_url,
            "cancel_url": config.options.get("cancel_url", return_url),
            "expires_at": str(expires_at_s),
            "metadata[out_trade_no]": request.out_trade_no,
            "payment_intent_data[metadata][out_trade_no]": request.out_trade_no,
        }
        session = self._call(config, "POST", "/v1/checkout/sessions", form,
                             idempotency_key=f"checkout-{request.out_trade_no}")
        session_id, url = json_str(session, "id"), json_str(session, "url")
        if (not session_id or not url or json_str(session, "client_reference_id")
                != request.out_trade_no or json_int(session, "amount_total")
                != request.amount_minor or json_str(session, "currency") != currency):
            raise provider_unavailable(self.name, "malformed")
        applied = json_int(session, "expires_at") or expires_at_s
        return PaymentStart(kind="redirect", url=url, provider_ref=session_id,
                            expires_at_ms=applied * 1000)

    def _call(self, config: ChannelConfig, method: str, path: str,
              form: Mapping[str, str] | None, *, idempotency_key: str | None = None
              ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {config.secret_text('api_key')}",
                   "Accept": "application/json"}
        version = config.options.get("api_version")
        if version:
            headers["Stripe-Version"] = version
        body = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form).encode("utf-8")
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self._transport().request(method, self._api_base(config) + path, headers, body)
        return self._answer(response)

    def _answer(self, response: HttpResponse) -> dict[str, Any]:
        answer = json_answer(self.name, response)
        if response.status >= 300:
            error = json_object(answer, "error") or {}
            code = json_str(error, "code") or json_str(error, "type") or str(response.status)
            raise provider_rejected(self.name, code, status=response.status)
        return answer

    def verify_notify(self, config: ChannelConfig, method: str, headers: Mapping[str, str],
                      query: QueryPairs, body: bytes) -> Notify | IgnoredEvent:
        """Verify a webhook: ``Stripe-Signature`` against the raw body with the current (and
        previous) signing secret, the timestamp window, then ``livemode`` and ``account``.

        Raises PAYMENT_SIGNATURE_INVALID (``missing``, ``malformed_header``, ``mismatch``,
        ``stale_timestamp``, ``livemode_mismatch``, ``merchant_mismatch``),
        PAYMENT_NOTIFY_INVALID (not a POST, not an event, a session without our reference or
        with a non-integer amount) or LIMIT_EXCEEDED. Events other than the four checkout
        session events are IgnoredEvents.
        """
        if method != "POST":
            raise notify_invalid(self.name, "not_post")
        check_body_size(body)
        signature_header = header(headers, "Stripe-Signature")
        if not signature_header:
            raise signature_invalid(self.name, "missing")
        timestamp, signatures = parse_signature_header(signature_header)
        expected = [stripe_signature(secret, timestamp, body)
                    for secret in self._webhook_secrets(config)]
        if not any(hmac.compare_digest(mine.encode(), theirs.encode())
                   for mine in expected for theirs in signatures):
            raise signature_invalid(self.name, "mismatch")
        if abs(self._now_ms() // 1000 - timestamp) > self._tolerance_s(config):
            raise signature_invalid(self.name, "stale_timestamp")
        event = load_json_object(body)
        if event is None or json_str(event, "object") != "event":
            raise notify_invalid(self.name, "not_an_event")
        self._check_account(config, event)
        return self._facts(config, event)

    def _check_account(self, config: ChannelConfig, event: Mapping[str, Any]) -> None:
        livemode = event.get("livemode")
        if type(livemode) is not bool or livemode != self._livemode(config):
            raise signature_invalid(self.name, "livemode_mismatch")
        account = event.get("account")
        if account is not None and account != config.merchant_id:
            raise signature_invalid(self.name, "merchant_mismatch")

    def _facts(self, config: ChannelConfig, event: Mapping[str, Any]) -> Notify | IgnoredEvent:
        event_id, event_type = json_str(event, "id"), json_str(event, "type")
        data = json_object(event, "data")
        session = json_object(data, "object") if data is not None else None
        if not event_id or not event_type:
            raise notify_invalid(self.name, "not_an_event")
        if event_type == "checkout.session.completed":
            status: NotifyStatus | None = "paid" if session is not None and json_str(
                session, "payment_status") in ("paid", "no_payment_required") else "pending"
        else:
            status = _EVENTS.get(event_type)
        if status is None:
            return IgnoredEvent(self.name, event_id[:64], event_type[:64], "unhandled_event")
        if session is None or json_str(session, "object") != "checkout.session":
            raise notify_invalid(self.name, "not_a_session")
        return self._session_facts(config, event_id, status, event, session)

    def _session_facts(self, config: ChannelConfig, event_id: str, status: NotifyStatus,
                       event: Mapping[str, Any], session: Mapping[str, Any]) -> Notify:
        session_id = json_str(session, "id")
        out_trade_no = json_str(session, "client_reference_id")
        amount_total = json_int(session, "amount_total")
        currency = json_str(session, "currency")
        if not session_id or not out_trade_no or amount_total is None or not currency:
            raise notify_invalid(self.name, "session")
        if not 0 <= amount_total <= AMOUNT_MINOR_MAX:
            raise notify_invalid(self.name, "amount")
        created = json_int(event, "created")
        return Notify(
            provider=self.name,
            event_id=event_id,
            provider_trade_no=session_id,
            out_trade_no=out_trade_no,
            amount_minor=amount_total,
            currency=currency.upper(),
            merchant_id=config.merchant_id,
            status=status,
            paid_at_ms=created * 1000 if status == "paid" and created else None,
            raw=bounded_raw({
                "event_id": event_id,
                "type": json_str(event, "type"),
                "session_id": session_id,
                "payment_intent": session.get("payment_intent"),
                "payment_status": json_str(session, "payment_status"),
                "status": json_str(session, "status"),
                "amount_total": amount_total,
                "currency": currency,
                "created": created,
            }),
        )

    def ack(self, ok: bool) -> NotifyAnswer:
        """200 ``{"received": true}`` or 400 ``{"received": false}`` (Stripe retries on any
        non-2xx)."""
        if ok:
            return NotifyAnswer(200, "application/json", b'{"received": true}')
        return NotifyAnswer(400, "application/json", b'{"received": false}')

    def _session(self, config: ChannelConfig, out_trade_no: str,
                 provider_ref: str | None) -> dict[str, Any]:
        if not provider_ref or not provider_ref.startswith("cs_"):
            raise config_invalid(self.name, "provider_ref", "not a Checkout Session id")
        session = self._call(config, "GET",
                             f"/v1/checkout/sessions/{quote(provider_ref, safe='')}", None)
        if json_str(session, "client_reference_id") != out_trade_no:
            raise provider_unavailable(self.name, "malformed", field="client_reference_id")
        return session

    def query(self, config: ChannelConfig, out_trade_no: str, *,
              provider_ref: str | None = None) -> QueryResult:
        """Retrieve the Checkout Session ``provider_ref`` (required). Raises
        PAYMENT_CONFIG_INVALID (no session id), PAYMENT_PROVIDER_REJECTED (e.g.
        resource_missing) or PAYMENT_PROVIDER_UNAVAILABLE (also when the session is not for
        ``out_trade_no``)."""
        session = self._session(config, out_trade_no, provider_ref)
        currency = json_str(session, "currency")
        status: QueryStatus = "pending"
        if json_str(session, "payment_status") == "paid":
            status = "paid"
        elif json_str(session, "status") == "expired":
            status = "expired"
        return QueryResult(
            out_trade_no=out_trade_no,
            status=status,
            provider_trade_no=json_str(session, "id"),
            amount_minor=json_int(session, "amount_total"),
            currency=currency.upper() if currency else None,
            raw=bounded_raw({key: session.get(key) for key in
                             ("id", "status", "payment_status", "payment_intent",
                              "amount_total", "currency", "expires_at")}),
        )

    def refund(self, config: ChannelConfig, out_trade_no: str, amount_minor: int, reason: str,
               *, out_refund_no: str | None = None,
               provider_ref: str | None = None) -> RefundResult:
        """Refund the session's PaymentIntent (``provider_ref`` = the session id, required),
        idempotent on ``out_refund_no``. ``reason`` goes to Stripe's ``reason`` when it is one
        of Stripe's words, else to the refund's metadata. Raises AMOUNT_MUST_BE_POSITIVE,
        PAYMENT_CONFIG_INVALID, PAYMENT_PROVIDER_REJECTED or PAYMENT_PROVIDER_UNAVAILABLE."""
        check_refund_amount(amount_minor)
        session = self._session(config, out_trade_no, provider_ref)
        payment_intent = session.get("payment_intent")
        if isinstance(payment_intent, dict):
            payment_intent = payment_intent.get("id")
        if not isinstance(payment_intent, str) or not payment_intent:
            raise provider_rejected(self.name, "no_payment_intent")
        refund_no = out_refund_no or default_out_refund_no(out_trade_no, amount_minor)
        form = {"payment_intent": payment_intent, "amount": str(amount_minor),
                "metadata[out_trade_no]": out_trade_no, "metadata[out_refund_no]": refund_no}
        if reason in REFUND_REASONS:
            form["reason"] = reason
        else:
            form["metadata[reason]"] = reason[:500]
        refund = self._call(config, "POST", "/v1/refunds", form,
                            idempotency_key=f"refund-{refund_no}")
        refund_id = json_str(refund, "id")
        if not refund_id or json_int(refund, "amount") != amount_minor:
            raise provider_unavailable(self.name, "malformed")
        status = _REFUND_STATUSES.get(json_str(refund, "status") or "", "pending")
        return RefundResult(out_trade_no=out_trade_no, refund_id=refund_id,
                            amount_minor=amount_minor, status=status,
                            raw=bounded_raw({"id": refund_id, "status": refund.get("status")}))
