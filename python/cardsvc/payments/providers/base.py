"""The payment provider port: what every adapter (sandbox, EPay, Alipay, WeChat Pay, Stripe) offers.

A checkout records a payment attempt (our ``out_trade_no``, amount, currency, expiry) before the
buyer leaves, asks the channel's :class:`Provider` to :meth:`~Provider.start` it, and later
receives the provider's callback ("notify"). The adapter's :meth:`~Provider.verify_notify` turns
the raw HTTP request into a :class:`Notify`: the facts the provider vouched for, after checking
the signature and the merchant id. The caller then stores the notify in its inbox (unique on
``(provider, event_id)``), calls :func:`check_binding` against its attempt, runs the attempt
state machine (``cardsvc.payments.state``) and answers with :meth:`~Provider.ack`.

Everything here is pure: amounts are integer minor units, times are Unix milliseconds, and the
only outbound I/O goes through an injected :class:`Transport` (``cardsvc.payments.transport``
has the httpx one). Adapters import this module and ``cardsvc.errors`` only, so the shared
helpers they need (money text, forms, JSON, RSA, provider time formats) live here.

Errors are ``CardsvcError`` with the stable codes ``PAYMENT_SIGNATURE_INVALID``,
``PAYMENT_NOTIFY_INVALID``, ``PAYMENT_MISMATCH``, ``PAYMENT_PROVIDER_UNAVAILABLE``,
``PAYMENT_PROVIDER_REJECTED``, ``PAYMENT_OPERATION_UNSUPPORTED``, ``PAYMENT_CONFIG_INVALID``,
``PAYMENT_CURRENCY_UNSUPPORTED``, ``INVALID_ARGUMENT``, ``AMOUNT_MUST_BE_POSITIVE`` and
``LIMIT_EXCEEDED``. Their details never hold a secret, a full signature or a buyer's data.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NamedTuple, Protocol
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cardsvc.errors import CardsvcError, ErrorCode, make_error

# ---------------------------------------------------------------------------------------------
# Limits. Each bounds what a stranger on the internet can make us parse or hold.

NOTIFY_BODY_BYTES_MAX = 256 * 1024
"""A callback body larger than this is refused unread (LIMIT_EXCEEDED). Alipay and EPay forms
are under 4 KiB and WeChat Pay's encrypted resource under 8 KiB; Stripe events carry a whole
Checkout Session (metadata included, each value up to 500 characters), which stays well below
this. Memory cost: one body per request in flight."""
NOTIFY_FIELDS_MAX = 128
"""Form fields in a callback (Alipay sends about 30); more is refused before parsing them all."""
RAW_FIELDS_MAX = 64
"""Fields kept in ``Notify.raw`` and ``QueryResult.raw`` for the inbox row; the rest are
dropped (the signature was checked over all of them)."""
RAW_VALUE_CHARS_MAX = 512
"""Longer raw values are cut to this many characters, marked with a trailing ``…``."""
AMOUNT_MINOR_MAX = 10**15
"""Larger than any real payment (10 trillion in a two-decimal currency); money text beyond it
is refused, so no arithmetic overflows a BIGINT column downstream."""
OUT_TRADE_NO_CHARS_MIN = 6
OUT_TRADE_NO_CHARS_MAX = 32
"""WeChat Pay accepts 6-32 characters of ``[A-Za-z0-9_-|*]``; the other providers accept more,
so our own ids stay inside WeChat's rule and work everywhere."""
SUBJECT_CHARS_MAX = 127
"""WeChat Pay's ``description`` limit (the tightest of the providers')."""
URL_CHARS_MAX = 1024

NotifyStatus = Literal["paid", "failed", "pending", "expired", "refunded"]
"""What a verified callback says happened to the attempt: ``paid`` (money received), ``failed``
(the payment was declined or cancelled), ``pending`` (still waiting, e.g. an async method),
``expired`` (the provider closed it unpaid) and ``refunded`` (money went back; the attempt was
paid before)."""
QueryStatus = Literal["paid", "failed", "pending", "expired", "refunded", "not_found"]
RefundStatus = Literal["succeeded", "pending", "failed"]
StartKind = Literal["redirect", "qr", "form"]

Clock = Callable[[], int]
"""Returns the current Unix time in milliseconds."""


def system_clock_ms() -> int:
    """The wall clock in Unix milliseconds (the default :data:`Clock`)."""
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------------
# Errors. One constructor per code, so every adapter words its details the same way.


def _error(code: ErrorCode, message: str, **details: Any) -> CardsvcError:
    return make_error(code.value, message, details)


def signature_invalid(provider: str, reason: str, **details: Any) -> CardsvcError:
    """``PAYMENT_SIGNATURE_INVALID``: the callback's signature, tag or timestamp did not verify.

    ``reason`` is a stable snake_case word (``mismatch``, ``stale_timestamp``, ``unknown_key``);
    details never hold the signature itself.
    """
    return _error(ErrorCode.PAYMENT_SIGNATURE_INVALID,
                  f"the {provider} callback failed verification ({reason})",
                  provider=provider, reason=reason, **details)


def notify_invalid(provider: str, reason: str, **details: Any) -> CardsvcError:
    """``PAYMENT_NOTIFY_INVALID``: the callback is not the provider's documented shape."""
    return _error(ErrorCode.PAYMENT_NOTIFY_INVALID,
                  f"the {provider} callback is malformed ({reason})",
                  provider=provider, reason=reason, **details)


def provider_unavailable(provider: str, reason: str, **details: Any) -> CardsvcError:
    """``PAYMENT_PROVIDER_UNAVAILABLE``: no usable answer (timeout, 5xx, oversized, malformed,
    or a response whose signature did not verify); retrying later may work."""
    return _error(ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE,
                  f"{provider} gave no usable answer ({reason}); retry later",
                  provider=provider, reason=reason, **details)


def provider_rejected(provider: str, provider_code: str, **details: Any) -> CardsvcError:
    """``PAYMENT_PROVIDER_REJECTED``: the provider answered and refused; ``provider_code`` is its
    own error code (bounded to 64 characters), for the console and the logs."""
    return _error(ErrorCode.PAYMENT_PROVIDER_REJECTED,
                  f"{provider} refused the request ({provider_code[:64]})",
                  provider=provider, provider_code=provider_code[:64], **details)


def config_invalid(provider: str, setting: str, reason: str) -> CardsvcError:
    """``PAYMENT_CONFIG_INVALID``: the channel setting ``setting`` is missing or unusable."""
    return _error(ErrorCode.PAYMENT_CONFIG_INVALID,
                  f"the {provider} channel setting {setting!r} is {reason}",
                  provider=provider, setting=setting, reason=reason)


def operation_unsupported(provider: str, operation: str) -> CardsvcError:
    """``PAYMENT_OPERATION_UNSUPPORTED``: this provider's protocol has no ``operation``."""
    return _error(ErrorCode.PAYMENT_OPERATION_UNSUPPORTED,
                  f"{provider} has no {operation} operation",
                  provider=provider, operation=operation)


def currency_unsupported(provider: str, currency: str) -> CardsvcError:
    """``PAYMENT_CURRENCY_UNSUPPORTED``: ``provider`` cannot charge ``currency`` here."""
    return _error(ErrorCode.PAYMENT_CURRENCY_UNSUPPORTED,
                  f"{provider} cannot charge in {currency[:8]!r}",
                  provider=provider, currency=currency[:8])


def _invalid_argument(field_name: str, message: str) -> CardsvcError:
    return _error(ErrorCode.INVALID_ARGUMENT, message, field=field_name)


# ---------------------------------------------------------------------------------------------
# The value types of the port.


def _frozen_text_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _frozen_secret_map(value: Mapping[str, bytes | str]) -> Mapping[str, bytes]:
    return MappingProxyType({
        name: secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        for name, secret in value.items()
    })


@dataclass(frozen=True)
class ChannelConfig:
    """One payment channel as a shop owner configured it (docs/payments.md lists each provider's
    settings).

    * ``provider``: the adapter's name (``sandbox``, ``epay``, ``alipay``, ``wechatpay``,
      ``stripe``); ``channel_id`` is ours, for logs and the inbox.
    * ``merchant_id``: the provider's id for the merchant (EPay ``pid``, Alipay ``app_id``,
      WeChat Pay ``mchid``, the Stripe account ``acct_…`` or empty, the sandbox's own id).
      Every callback is checked against it.
    * ``secrets``: keys by name, as bytes (text is stored UTF-8 encoded). Kept out of ``repr``.
    * ``verify_keys``: the provider's public keys or certificates (PEM) by key id: Alipay's
      under ``alipay``, WeChat Pay's under their serial number or public key id.
    * ``notify_url`` / ``return_url``: where the provider calls back and where the buyer lands.
    * ``options``: provider-specific plain settings (gateway URL, seller id, app id, ...).
    * ``secret_version``: which version of the secrets this is, recorded with each attempt so a
      key roll can be traced.
    """

    provider: str
    channel_id: str
    merchant_id: str
    notify_url: str
    return_url: str
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    verify_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, str] = field(default_factory=dict)
    secret_version: int = 1

    def __post_init__(self) -> None:
        # Freeze the mappings too, so a config shared by threads cannot change under them.
        object.__setattr__(self, "secrets", _frozen_secret_map(self.secrets))
        object.__setattr__(self, "verify_keys", _frozen_text_map(self.verify_keys))
        object.__setattr__(self, "options", _frozen_text_map(self.options))

    def secret(self, name: str) -> bytes:
        """The secret ``name``. Raises PAYMENT_CONFIG_INVALID if it is missing or empty."""
        value = self.secrets.get(name, b"")
        if not value:
            raise config_invalid(self.provider, name, "missing")
        return value

    def secret_text(self, name: str) -> str:
        """The secret ``name`` as text. Raises PAYMENT_CONFIG_INVALID if missing or not UTF-8."""
        try:
            return self.secret(name).decode("utf-8")
        except UnicodeDecodeError:
            raise config_invalid(self.provider, name, "not UTF-8 text") from None

    def option(self, name: str, default: str | None = None) -> str:
        """The option ``name``, else ``default``. Raises PAYMENT_CONFIG_INVALID if both are
        missing (or the option is empty)."""
        value = self.options.get(name) or default
        if not value:
            raise config_invalid(self.provider, name, "missing")
        return value


_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_-]+")
_CURRENCY = re.compile(r"[A-Z]{3}")
_IPV4_OR_6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")


@dataclass(frozen=True)
class PaymentRequest:
    """What the checkout asks a provider to charge, once per attempt.

    ``out_trade_no`` is our attempt id (6-32 of ``[A-Za-z0-9_-]``, unique per attempt and never
    reused); ``amount_minor`` is positive, in the currency's minor unit; ``expires_at_ms`` is
    when the attempt stops being payable (providers that take an expiry get it); ``buyer_ip`` is
    passed to providers that want it; ``return_url`` overrides the channel's for this attempt.

    Raises INVALID_ARGUMENT (bad id, expiry, currency, subject, IP or URL),
    AMOUNT_MUST_BE_POSITIVE or LIMIT_EXCEEDED (amount over AMOUNT_MINOR_MAX).
    """

    out_trade_no: str
    amount_minor: int
    currency: str
    subject: str
    expires_at_ms: int
    buyer_ip: str | None = None
    return_url: str | None = None

    def __post_init__(self) -> None:
        if not (OUT_TRADE_NO_CHARS_MIN <= len(self.out_trade_no) <= OUT_TRADE_NO_CHARS_MAX
                and _OUT_TRADE_NO.fullmatch(self.out_trade_no)):
            raise _invalid_argument("out_trade_no", "out_trade_no must be 6-32 of A-Z a-z 0-9 _ -")
        if type(self.amount_minor) is not int or self.amount_minor <= 0:
            raise _error(ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amount_minor must be positive",
                         field="amount_minor")
        if self.amount_minor > AMOUNT_MINOR_MAX:
            raise _error(ErrorCode.LIMIT_EXCEEDED, "amount_minor is too large",
                         field="amount_minor", max=AMOUNT_MINOR_MAX)
        if type(self.expires_at_ms) is not int or self.expires_at_ms <= 0:
            raise _invalid_argument("expires_at_ms", "expires_at_ms must be a positive int")
        if not _CURRENCY.fullmatch(self.currency):
            raise _invalid_argument("currency", "currency must be three upper-case letters")
        if not self.subject.strip() or len(self.subject) > SUBJECT_CHARS_MAX:
            raise _invalid_argument("subject", f"subject must be 1-{SUBJECT_CHARS_MAX} characters")
        if self.buyer_ip is not None and not _IPV4_OR_6.fullmatch(self.buyer_ip):
            raise _invalid_argument("buyer_ip", "buyer_ip must be an IPv4 or IPv6 address")
        if self.return_url is not None and not _is_http_url(self.return_url):
            raise _invalid_argument("return_url", "return_url must be an http(s) URL")


@dataclass(frozen=True)
class PaymentStart:
    """How the buyer proceeds: ``redirect`` to ``url``; show ``qr_text`` as a QR code; or POST the
    ``form_fields`` to ``url``. ``provider_ref`` is the provider's handle for this attempt when it
    gives one (the Stripe Checkout Session id, the EPay trade number): store it with the attempt,
    query and refund need it for some providers. ``expires_at_ms`` is the expiry the provider
    actually applied (Stripe rounds it into its allowed window), else None."""

    kind: StartKind
    url: str | None = None
    qr_text: str | None = None
    form_fields: Mapping[str, str] | None = None
    provider_ref: str | None = None
    expires_at_ms: int | None = None


@dataclass(frozen=True)
class Notify:
    """The verified facts of one provider callback.

    ``event_id`` is the inbox dedupe key: the same for every retry of one notification and
    different for distinct notifications (Stripe's event id, WeChat Pay's notification id,
    Alipay's ``notify_id``; EPay has none, so its trade number). ``provider_trade_no`` is the
    provider's id for the payment. ``merchant_id`` was checked against the channel's.
    ``amount_minor`` is the order total the provider reports (for a refund too, so
    :func:`check_binding` applies unchanged); ``refunded_minor`` is the refunded amount when the
    provider reports one. ``raw`` is the callback's fields (bounded, secrets never included)
    for the inbox row.
    """

    provider: str
    event_id: str
    provider_trade_no: str
    out_trade_no: str
    amount_minor: int
    currency: str
    merchant_id: str
    status: NotifyStatus
    fee_minor: int | None = None
    paid_at_ms: int | None = None
    refunded_minor: int | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IgnoredEvent:
    """A verified callback that says nothing about a payment attempt (a Stripe event type we do
    not handle, a WeChat Pay refund that is still processing). Store it if you like, do not
    transition anything, and answer ``ack(True)`` so the provider stops retrying."""

    provider: str
    event_id: str
    event_type: str
    reason: str


@dataclass(frozen=True)
class NotifyAnswer:
    """The exact HTTP answer a provider expects to a callback."""

    status_code: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class QueryResult:
    """What the provider's order query says about ``out_trade_no`` right now."""

    out_trade_no: str
    status: QueryStatus
    provider_trade_no: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    paid_at_ms: int | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    """What the provider said to a refund request. ``refund_id`` is the provider's refund id, or
    our ``out_refund_no`` when the provider gives none. ``pending`` means accepted but not final:
    query again (or wait for the provider's refund callback) before telling the buyer."""

    out_trade_no: str
    refund_id: str
    amount_minor: int
    status: RefundStatus
    raw: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Outbound HTTP.


class HttpResponse(NamedTuple):
    """A provider's answer: status, headers (names lower-case) and the whole body (bounded by the
    transport)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one HTTP request to a provider and returns its answer.

    Implementations bound the time (connect, read, total) and the response size, never follow
    redirects, and raise PAYMENT_PROVIDER_UNAVAILABLE for timeouts, connection failures and
    oversized answers. Any status (2xx, 4xx, 5xx) is returned, not raised: the adapter knows
    what each means for its provider. ``headers`` are sent as given; ``body`` None sends none.
    """

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> HttpResponse: ...


QueryPairs = Sequence[tuple[str, str]] | Mapping[str, str]
"""A callback's URL query: pairs in order (duplicates visible, as Starlette's
``request.query_params.multi_items()``) or a plain mapping."""


class Provider(ABC):
    """One payment provider's protocol. Stateless and thread-safe: every call takes the
    channel's :class:`ChannelConfig`, so one instance serves all channels of its provider.

    ``transport`` carries outbound calls (start where the provider needs a server-side call,
    query, refund); ``clock_ms`` gives the time for signature windows and request timestamps.
    """

    name: ClassVar[str]
    supports_query: ClassVar[bool] = False
    supports_refund: ClassVar[bool] = False

    def __init__(self, *, transport: Transport | None = None,
                 clock_ms: Clock = system_clock_ms) -> None:
        self._transport_or_none = transport
        self._clock_ms = clock_ms

    def check_config(self, config: ChannelConfig) -> None:
        """Check ``config`` once, when a channel is saved or loaded: every setting this provider
        needs is present and parses (keys, URLs). Raises PAYMENT_CONFIG_INVALID naming the
        setting. The base checks the provider name and the two URLs."""
        if config.provider != self.name:
            raise config_invalid(self.name, "provider", f"{config.provider!r}, not {self.name!r}")
        if not config.merchant_id and self._merchant_id_required():
            raise config_invalid(self.name, "merchant_id", "missing")
        for setting, url in (("notify_url", config.notify_url), ("return_url", config.return_url)):
            if not _is_http_url(url):
                raise config_invalid(self.name, setting, "not an http(s) URL")

    def _merchant_id_required(self) -> bool:
        return True

    @abstractmethod
    def start(self, config: ChannelConfig, request: PaymentRequest) -> PaymentStart:
        """Begin paying ``request``: returns where to send the buyer. Idempotent per
        ``out_trade_no`` where the provider supports it (the same attempt started twice yields
        one provider order). Raises PAYMENT_CONFIG_INVALID, PAYMENT_CURRENCY_UNSUPPORTED,
        PAYMENT_PROVIDER_UNAVAILABLE or PAYMENT_PROVIDER_REJECTED."""

    @abstractmethod
    def verify_notify(
        self,
        config: ChannelConfig,
        method: str,
        headers: Mapping[str, str],
        query: QueryPairs,
        body: bytes,
    ) -> Notify | IgnoredEvent:
        """Verify one callback exactly as received (``method`` upper-case, raw ``body`` bytes).

        Checks the signature (and timestamp window, and decryption, where the protocol has them)
        and the merchant id, then returns the facts; it does not check that the callback belongs
        to any attempt (that is :func:`check_binding`, by the caller, after the inbox lookup).
        Pure: no I/O, nothing stored. Raises PAYMENT_SIGNATURE_INVALID (signature, key, window,
        merchant or app id), PAYMENT_NOTIFY_INVALID (shape, money text) or LIMIT_EXCEEDED
        (body or field count over the bounds).
        """

    @abstractmethod
    def ack(self, ok: bool) -> NotifyAnswer:
        """The provider's exact answer: ``ok`` True for "received, stop retrying" (also for
        duplicates and ignored events), False for "verification failed, retry"."""

    def query(self, config: ChannelConfig, out_trade_no: str, *,
              provider_ref: str | None = None) -> QueryResult:
        """Ask the provider about ``out_trade_no`` (``provider_ref``: the id
        :class:`PaymentStart` gave, required by Stripe). Raises PAYMENT_OPERATION_UNSUPPORTED
        where the protocol has no query, else PAYMENT_PROVIDER_UNAVAILABLE or
        PAYMENT_PROVIDER_REJECTED."""
        raise operation_unsupported(self.name, "query")

    def refund(self, config: ChannelConfig, out_trade_no: str, amount_minor: int, reason: str,
               *, out_refund_no: str | None = None,
               provider_ref: str | None = None) -> RefundResult:
        """Refund ``amount_minor`` of the paid ``out_trade_no``. ``out_refund_no`` is our refund
        id, the provider's idempotency key where it has one (None: ``<out_trade_no>R<amount>``,
        so a retried full refund is one refund; give distinct ids for several partial refunds of
        the same amount). Raises PAYMENT_OPERATION_UNSUPPORTED where the protocol has no
        refund, AMOUNT_MUST_BE_POSITIVE, else PAYMENT_PROVIDER_UNAVAILABLE or
        PAYMENT_PROVIDER_REJECTED."""
        raise operation_unsupported(self.name, "refund")

    # Helpers for subclasses.

    def _now_ms(self) -> int:
        return self._clock_ms()

    def _transport(self) -> Transport:
        if self._transport_or_none is None:
            raise config_invalid(self.name, "transport", "not configured for outbound calls")
        return self._transport_or_none


def default_out_refund_no(out_trade_no: str, amount_minor: int) -> str:
    """Our refund id when the caller gives none: deterministic, so a retried refund of the same
    amount is the same refund at providers with idempotent refunds."""
    return f"{out_trade_no}R{amount_minor}"


def check_refund_amount(amount_minor: int) -> None:
    """Raises AMOUNT_MUST_BE_POSITIVE unless ``amount_minor`` is a positive int (bounded)."""
    if type(amount_minor) is not int or amount_minor <= 0:
        raise _error(ErrorCode.AMOUNT_MUST_BE_POSITIVE, "amount_minor must be positive",
                     field="amount_minor")
    if amount_minor > AMOUNT_MINOR_MAX:
        raise _error(ErrorCode.LIMIT_EXCEEDED, "amount_minor is too large",
                     field="amount_minor", max=AMOUNT_MINOR_MAX)


def check_binding(notify: Notify, expected_out_trade_no: str, expected_amount_minor: int,
                  expected_currency: str) -> None:
    """Check that a verified ``notify`` is about our attempt: same ``out_trade_no``, currency and
    amount, checked in that order (the first difference is reported).

    Pure. Raises PAYMENT_MISMATCH with details ``field`` (``out_trade_no``, ``currency`` or
    ``amount_minor``), ``expected`` and ``got``. A validly signed callback for another order of
    the same amount, or in another currency, is refused here: the signature only proves the
    provider said it, not that it is about this attempt.
    """
    checks: tuple[tuple[str, object, object], ...] = (
        ("out_trade_no", expected_out_trade_no, notify.out_trade_no),
        ("currency", expected_currency, notify.currency),
        ("amount_minor", expected_amount_minor, notify.amount_minor),
    )
    for field_name, expected, got in checks:
        if type(expected) is not type(got) or expected != got:
            raise _error(ErrorCode.PAYMENT_MISMATCH,
                         f"the callback's {field_name} differs from the payment attempt's",
                         field=field_name, expected=expected, got=got)


# ---------------------------------------------------------------------------------------------
# Money text. Providers that speak decimal strings (EPay, Alipay) get and give exact text.

_ISO_EXPONENT: Mapping[str, int] = MappingProxyType({
    **dict.fromkeys(
        ("AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF",
         "IDR", "ILS", "INR", "MGA", "MOP", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RUB",
         "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "USD", "ZAR"), 2),
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND",
         "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "JOD", "KWD", "OMR", "TND"), 3),
})
"""ISO 4217 minor-unit exponents of the currencies the payment layer knows: ``amount_minor`` is
always in these units. Adapters whose provider counts differently (Stripe for a few) convert or
refuse."""


def currency_exponent(provider: str, currency: str) -> int:
    """The ISO 4217 exponent of ``currency``. Raises PAYMENT_CURRENCY_UNSUPPORTED if unknown."""
    exponent = _ISO_EXPONENT.get(currency)
    if exponent is None:
        raise currency_unsupported(provider, currency)
    return exponent


_MONEY_TEXT = {
    exponent: re.compile(
        r"(0|[1-9][0-9]{0,15})" + (rf"(?:\.([0-9]{{1,{exponent}}}))?" if exponent else ""),
        re.ASCII)
    for exponent in (0, 2, 3)
}


def parse_money(provider: str, field_name: str, text: object, exponent: int = 2) -> int:
    """Exact minor units of the decimal ``text`` (``"12.3"`` -> 1230 at exponent 2).

    Strict on purpose, since a lenient parse is how forged callbacks get through: plain ASCII
    digits, no sign, no exponent, no leading zeros, no surrounding spaces, at most ``exponent``
    decimals, not above AMOUNT_MINOR_MAX; ``text`` must be a str (an ``amount[]`` array or a
    JSON number is refused). Raises PAYMENT_NOTIFY_INVALID naming ``field_name``.
    """
    pattern = _MONEY_TEXT.get(exponent)
    if pattern is None:
        raise ValueError(f"unsupported exponent {exponent}")
    if not isinstance(text, str):
        raise notify_invalid(provider, "money_not_text", field=field_name)
    match = pattern.fullmatch(text)
    if match is None:
        raise notify_invalid(provider, "money_malformed", field=field_name)
    units = int(match.group(1))
    fraction = match.group(2) if exponent else None
    scale: int = 10**exponent
    minor = units * scale + (int(fraction.ljust(exponent, "0")) if fraction else 0)
    if minor > AMOUNT_MINOR_MAX:
        raise notify_invalid(provider, "money_too_large", field=field_name)
    return minor


def format_money(amount_minor: int, exponent: int = 2) -> str:
    """The decimal text of ``amount_minor`` with exactly ``exponent`` decimals (1230 ->
    ``"12.30"``). Precondition: ``amount_minor`` is a non-negative int."""
    if type(amount_minor) is not int or amount_minor < 0:
        raise ValueError("amount_minor must be a non-negative int")
    if exponent == 0:
        return str(amount_minor)
    scale: int = 10**exponent
    units, fraction = divmod(amount_minor, scale)
    return f"{units}.{fraction:0{exponent}d}"


# ---------------------------------------------------------------------------------------------
# Requests: headers, forms, JSON.


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (case-insensitive), or None."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def check_body_size(body: bytes) -> None:
    """Raises LIMIT_EXCEEDED if a callback body is over NOTIFY_BODY_BYTES_MAX."""
    if len(body) > NOTIFY_BODY_BYTES_MAX:
        raise _error(ErrorCode.LIMIT_EXCEEDED, "the callback body is too large",
                     field="body", max=NOTIFY_BODY_BYTES_MAX, got=len(body))


def unique_fields(provider: str, pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The pairs as a dict. Raises PAYMENT_NOTIFY_INVALID on a repeated name (``money=1&money=2``
    would otherwise let the signed value and the used value differ) and LIMIT_EXCEEDED over
    NOTIFY_FIELDS_MAX fields."""
    if len(pairs) > NOTIFY_FIELDS_MAX:
        raise _error(ErrorCode.LIMIT_EXCEEDED, "the callback has too many fields",
                     field="fields", max=NOTIFY_FIELDS_MAX, got=len(pairs))
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise notify_invalid(provider, "repeated_field", field=name[:64])
        fields[name] = value
    return fields


def query_fields(provider: str, query: QueryPairs) -> dict[str, str]:
    """A callback's URL query as a dict, with :func:`unique_fields`' checks."""
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
    return unique_fields(provider, pairs)


def form_fields(provider: str, body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` UTF-8 body as a dict of URL-decoded values.

    Raises PAYMENT_NOTIFY_INVALID (not UTF-8, not a form, repeated field) or LIMIT_EXCEEDED.
    """
    check_body_size(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise notify_invalid(provider, "not_utf8") from None
    if not text:
        return {}
    if text.count("&") >= NOTIFY_FIELDS_MAX:
        raise _error(ErrorCode.LIMIT_EXCEEDED, "the callback has too many fields",
                     field="fields", max=NOTIFY_FIELDS_MAX)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          encoding="utf-8", errors="strict", max_num_fields=NOTIFY_FIELDS_MAX)
    except (ValueError, UnicodeDecodeError):
        raise notify_invalid(provider, "not_a_form") from None
    return unique_fields(provider, pairs)


def sorted_sign_content(fields: Mapping[str, str], excluded: tuple[str, ...]) -> str:
    """``k1=v1&k2=v2...`` over ``fields`` sorted by name (code point order), leaving out the
    names in ``excluded`` and empty values, values as they are (not URL-encoded). The canonical
    text of EPay's MD5 and Alipay's RSA2 signatures."""
    return "&".join(f"{name}={fields[name]}" for name in sorted(fields)
                    if name not in excluded and fields[name] != "")


def same_text(a: str, b: str) -> bool:
    """Constant-time equality of two ASCII texts (signatures); False if either is not ASCII."""
    try:
        return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))
    except UnicodeEncodeError:
        return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("repeated key")
        result[key] = value
    return result


def load_json_object(body: bytes | str) -> dict[str, Any] | None:
    """``body`` parsed as one JSON object, or None if it is not one (not UTF-8, not JSON, NaN or
    Infinity, a repeated key, not an object). Numbers with a fraction or exponent parse as float,
    which :func:`json_int` refuses where an amount is expected. Precondition: ``body`` is
    bounded (NOTIFY_BODY_BYTES_MAX or the transport's response bound)."""
    try:
        value = json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def check_reachable(provider: str, response: HttpResponse) -> None:
    """Raises PAYMENT_PROVIDER_UNAVAILABLE (reason ``status``) for a 5xx or 429 answer: the
    provider could not take the call now; retrying later may work."""
    if response.status >= 500 or response.status == 429:
        raise provider_unavailable(provider, "status", status=response.status)


def json_answer(provider: str, response: HttpResponse, *,
                empty_is_object: bool = False) -> dict[str, Any]:
    """The JSON object a provider answered, after :func:`check_reachable`; an empty body is
    ``{}`` when ``empty_is_object``. Raises PAYMENT_PROVIDER_UNAVAILABLE (``status``, or
    ``malformed`` for a body that is not one JSON object)."""
    check_reachable(provider, response)
    if empty_is_object and not response.body:
        return {}
    answer = load_json_object(response.body)
    if answer is None:
        raise provider_unavailable(provider, "malformed", status=response.status)
    return answer


def json_str(obj: Mapping[str, Any], key: str) -> str | None:
    """``obj[key]`` if it is a str, else None."""
    value = obj.get(key)
    return value if isinstance(value, str) else None


def json_int(obj: Mapping[str, Any], key: str) -> int | None:
    """``obj[key]`` if it is a JSON integer (not a bool, not a float), else None."""
    value = obj.get(key)
    return value if type(value) is int else None


def json_object(obj: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """``obj[key]`` if it is a JSON object, else None."""
    value = obj.get(key)
    return value if isinstance(value, dict) else None


def bounded_raw(fields: Mapping[str, Any], *, drop: tuple[str, ...] = ()) -> Mapping[str, str]:
    """At most RAW_FIELDS_MAX fields, nested objects flattened as ``a.b``, values as text cut to
    RAW_VALUE_CHARS_MAX characters, names in ``drop`` left out (secrets, signatures)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if len(flat) >= RAW_FIELDS_MAX:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
            return
        if prefix in drop:
            return
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        flat[prefix[:128]] = text if len(text) <= RAW_VALUE_CHARS_MAX else (
            text[:RAW_VALUE_CHARS_MAX - 1] + "…")

    walk("", dict(fields))
    return MappingProxyType(flat)


def _is_http_url(url: str) -> bool:
    return (len(url) <= URL_CHARS_MAX and url.startswith(("https://", "http://"))
            and not any(ch.isspace() for ch in url))


def check_url_setting(provider: str, setting: str, url: str) -> str:
    """``url`` if it is an http(s) URL without spaces; raises PAYMENT_CONFIG_INVALID."""
    if not _is_http_url(url):
        raise config_invalid(provider, setting, "not an http(s) URL")
    return url


# ---------------------------------------------------------------------------------------------
# Time formats of the providers.

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Alipay and WeChat Pay speak China Standard Time (UTC+8, no daylight saving)."""
_BEIJING_TEXT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)


def format_beijing(ms: int) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in UTC+8 (Alipay's ``timestamp`` and ``time_expire``)."""
    return datetime.fromtimestamp(ms / 1000, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def parse_beijing(text: str) -> int | None:
    """Unix ms of a ``yyyy-MM-dd HH:mm:ss`` UTC+8 text (Alipay's ``gmt_payment``), or None."""
    if not _BEIJING_TEXT.fullmatch(text):
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        return None
    return round(moment.timestamp() * 1000)


def format_rfc3339_beijing(ms: int) -> str:
    """RFC 3339 in UTC+8 with seconds (WeChat Pay's ``time_expire``: 2024-05-01T12:00:00+08:00)."""
    return datetime.fromtimestamp(ms // 1000, BEIJING).isoformat(timespec="seconds")


def parse_rfc3339(text: str) -> int | None:
    """Unix ms of an RFC 3339 text with an explicit offset (``Z`` allowed), or None."""
    if not isinstance(text, str) or len(text) > 40 or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return round(moment.astimezone(UTC).timestamp() * 1000)


# ---------------------------------------------------------------------------------------------
# RSA (Alipay RSA2, WeChat Pay WECHATPAY2-SHA256-RSA2048): SHA-256, PKCS#1 v1.5, base64.

RSA_KEY_BITS_MIN = 2048
"""Both providers issue 2048-bit keys; anything smaller is a mistake or a downgrade."""
_KEYS_CACHED_MAX = 64
"""Parsed keys kept (a few KiB each): parsing a private key costs milliseconds per call."""


def _pem_or_bare(text: bytes, label: bytes) -> bytes:
    # Alipay's key tool hands out bare base64 bodies; wrap them so one loader reads both.
    stripped = text.strip()
    if stripped.startswith(b"-----BEGIN"):
        return stripped
    body = b"".join(stripped.split())
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"\n".join([b"-----BEGIN " + label + b"-----", *lines, b"-----END " + label + b"-----"])


@lru_cache(maxsize=_KEYS_CACHED_MAX)
def _private_key(text: bytes) -> rsa.RSAPrivateKey | None:
    # A bare body may be PKCS#8 (Alipay's Java format) or PKCS#1 (its other format).
    for label in (b"PRIVATE KEY", b"RSA PRIVATE KEY"):
        try:
            key = serialization.load_pem_private_key(_pem_or_bare(text, label), None)
        except (ValueError, TypeError):
            continue
        return key if isinstance(key, rsa.RSAPrivateKey) else None
    return None


@lru_cache(maxsize=_KEYS_CACHED_MAX)
def _public_key(text: bytes) -> rsa.RSAPublicKey | None:
    pem = _pem_or_bare(text, b"PUBLIC KEY")
    key: object
    try:
        if b"CERTIFICATE" in pem.split(b"\n", 1)[0]:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def load_rsa_private_key(provider: str, setting: str, text: bytes) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#8 or PKCS#1) or a bare base64 PKCS#8 body. Raises
    PAYMENT_CONFIG_INVALID naming ``setting`` if it does not parse or is under 2048 bits."""
    key = _private_key(bytes(text))
    if key is None:
        raise config_invalid(provider, setting, "not an RSA private key")
    if key.key_size < RSA_KEY_BITS_MIN:
        raise config_invalid(provider, setting, f"shorter than {RSA_KEY_BITS_MIN} bits")
    return key


def load_rsa_public_key(provider: str, setting: str, text: str | bytes) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM public key, a PEM certificate or a bare base64
    SubjectPublicKeyInfo. Raises PAYMENT_CONFIG_INVALID naming ``setting``."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    key = _public_key(raw)
    if key is None:
        raise config_invalid(provider, setting, "not an RSA public key or certificate")
    if key.key_size < RSA_KEY_BITS_MIN:
        raise config_invalid(provider, setting, f"shorter than {RSA_KEY_BITS_MIN} bits")
    return key


def rsa_sha256_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """Base64 SHA256withRSA (PKCS#1 v1.5) signature of ``message``."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_sha256_verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True iff ``signature_b64`` (standard base64) is a SHA256withRSA signature of
    ``message`` under ``key``. Never raises for a malformed signature."""
    try:
        signature = base64.b64decode(signature_b64.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
