"""The built-in sandbox provider: payments without a payment company, for the embedded defaults,
demos and tests.

``start`` sends the buyer to our own sandbox pay page (``options["pay_page_url"]``); that page
decides "paid" or "failed" and sends a notify signed with the channel's key, built by
:func:`sign_sandbox_notify`. The notify is a form POST::

    v=1&merchant_id=..&event_id=..&trade_no=..&out_trade_no=..&amount_minor=..&currency=..
    &status=paid|failed|expired|pending|refunded&ts=<Unix ms>&sig=<hex>

``sig`` is HMAC-SHA256 with ``secrets["key"]`` over ``"cardsvc-sandbox-v1\\n"`` followed by the
other fields sorted by name, each as ``name=<percent-encoded value>`` joined with ``&`` (the
encoding makes the text unambiguous whatever the values hold). The timestamp is inside the
signed text and must be within ``options["tolerance_s"]`` (default 300 s) of our clock, so a
captured notify cannot be replayed later.

:func:`sandbox_script` turns a :class:`SandboxScenario` (duplicates, out-of-order events such as
failed after paid or expired then paid, delays, a forged signature) into the list of signed
deliveries with the time each is due; the caller schedules them. That is the provider simulator
of the second-wave notes, run in CI by tests/payments/test_sandbox.py.

A sandbox channel lets anyone who reaches the pay page "pay": it must never be enabled on a
storefront that delivers real goods.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import quote, urlencode

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
    RefundResult,
    bounded_raw,
    check_refund_amount,
    check_url_setting,
    config_invalid,
    default_out_refund_no,
    form_fields,
    notify_invalid,
    parse_money,
    same_text,
    signature_invalid,
)

SIGNED_PREFIX = "cardsvc-sandbox-v1\n"
KEY_BYTES_MIN = 16
"""A shorter HMAC key is guessable; 32 random bytes is what `secrets.token_bytes` should give."""
TOLERANCE_S_DEFAULT = 300
TOLERANCE_S_MAX = 3600
SANDBOX_STATUSES: tuple[NotifyStatus, ...] = ("paid", "failed", "expired", "pending", "refunded")
SCRIPT_EVENTS_MAX = 8
SCRIPT_DUPLICATES_MAX = 10
"""A script has at most 8 events delivered at most 11 times each: 88 small bodies."""

_FIELDS = ("v", "merchant_id", "event_id", "trade_no", "out_trade_no", "amount_minor",
           "currency", "status", "ts", "sig")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_TS = re.compile(r"[1-9][0-9]{0,15}", re.ASCII)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SandboxEvent:
    """The facts one sandbox notify states."""

    event_id: str
    trade_no: str
    out_trade_no: str
    amount_minor: int
    currency: str
    status: NotifyStatus


@dataclass(frozen=True)
class SandboxDelivery:
    """One notify to POST to the channel's ``notify_url`` at ``deliver_at_ms``."""

    deliver_at_ms: int
    event: SandboxEvent
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class SandboxScenario:
    """What the simulated provider does.

    * ``statuses``: the facts in the order they happen (``("expired", "paid")`` is a late
      payment, ``("paid", "failed")`` a failure report after the payment);
    * ``duplicates``: extra deliveries of every event (same event id, signed anew each time, as
      real providers retry);
    * ``delay_ms``: before the first delivery; ``spacing_ms``: between deliveries;
    * ``reverse``: deliver in the reverse order of ``statuses`` (out-of-order delivery);
    * ``forge``: sign with a wrong key (every delivery must then be refused).
    """

    statuses: tuple[NotifyStatus, ...] = ("paid",)
    duplicates: int = 0
    delay_ms: int = 0
    spacing_ms: int = 1_000
    reverse: bool = False
    forge: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.statuses) <= SCRIPT_EVENTS_MAX:
            raise ValueError(f"a scenario has 1-{SCRIPT_EVENTS_MAX} statuses")
        if any(status not in SANDBOX_STATUSES for status in self.statuses):
            raise ValueError("unknown sandbox status")
        if not 0 <= self.duplicates <= SCRIPT_DUPLICATES_MAX:
            raise ValueError(f"duplicates must be 0-{SCRIPT_DUPLICATES_MAX}")
        if self.delay_ms < 0 or self.spacing_ms < 0:
            raise ValueError("delays must not be negative")


SCENARIOS: Mapping[str, SandboxScenario] = MappingProxyType({
    "paid": SandboxScenario(("paid",)),
    "failed": SandboxScenario(("failed",)),
    "expired": SandboxScenario(("expired",)),
    "paid_with_duplicates": SandboxScenario(("paid",), duplicates=2),
    "failed_after_paid": SandboxScenario(("paid", "failed")),
    "expired_then_paid": SandboxScenario(("expired", "paid")),
    "paid_overtaken_by_expired": SandboxScenario(("paid", "expired"), reverse=True),
    "paid_late": SandboxScenario(("paid",), delay_ms=15 * 60_000),
    "forged_paid": SandboxScenario(("paid",), forge=True),
})
"""Named scenarios for the sandbox pay page's buttons and for tests."""


def _canonical(fields: Mapping[str, str]) -> str:
    return "&".join(f"{name}={quote(fields[name], safe='')}"
                    for name in sorted(fields) if name != "sig")


def _signature(key: bytes, fields: Mapping[str, str]) -> str:
    text = SIGNED_PREFIX + _canonical(fields)
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _key(config: ChannelConfig) -> bytes:
    key = config.secret("key")
    if len(key) < KEY_BYTES_MIN:
        raise config_invalid("sandbox", "key", f"shorter than {KEY_BYTES_MIN} bytes")
    return key


def sign_sandbox_notify(config: ChannelConfig, event: SandboxEvent, ts_ms: int, *,
                        key: bytes | None = None) -> SandboxDelivery:
    """The signed notify stating ``event`` at time ``ts_ms``, due at ``ts_ms``.

    ``key`` overrides the channel's key (to forge one in tests). Pure. Raises
    PAYMENT_CONFIG_INVALID if the channel has no usable key.
    """
    fields = {
        "v": "1",
        "merchant_id": config.merchant_id,
        "event_id": event.event_id,
        "trade_no": event.trade_no,
        "out_trade_no": event.out_trade_no,
        "amount_minor": str(event.amount_minor),
        "currency": event.currency,
        "status": event.status,
        "ts": str(ts_ms),
    }
    fields["sig"] = _signature(key if key is not None else _key(config), fields)
    return SandboxDelivery(
        deliver_at_ms=ts_ms,
        event=event,
        headers=MappingProxyType({"Content-Type": "application/x-www-form-urlencoded"}),
        body=urlencode(fields).encode("ascii"),
    )


def sandbox_trade_no(out_trade_no: str) -> str:
    """The sandbox's trade number for an attempt (deterministic, so retries agree)."""
    return f"SBX-{out_trade_no}"


def sandbox_script(config: ChannelConfig, scenario: SandboxScenario, *, out_trade_no: str,
                   amount_minor: int, currency: str, start_ms: int) -> list[SandboxDelivery]:
    """The deliveries ``scenario`` makes for one attempt, in delivery order, each signed with its
    own due time. Event ids are ``<trade_no>:<index>:<status>``, one per fact, shared by its
    duplicates. Pure. Raises PAYMENT_CONFIG_INVALID if the channel has no usable key.
    """
    trade_no = sandbox_trade_no(out_trade_no)
    events = [
        SandboxEvent(f"{trade_no}:{index}:{status}", trade_no, out_trade_no, amount_minor,
                     currency, status)
        for index, status in enumerate(scenario.statuses)
    ]
    if scenario.reverse:
        events.reverse()
    key = _key(config)
    forged = hashlib.sha256(b"not the channel key" + key).digest() if scenario.forge else None
    deliveries: list[SandboxDelivery] = []
    due_ms = start_ms + scenario.delay_ms
    for event in events:
        for _ in range(1 + scenario.duplicates):
            deliveries.append(sign_sandbox_notify(config, event, due_ms, key=forged or key))
            due_ms += scenario.spacing_ms
    return deliveries


class SandboxProvider(Provider):
    """The sandbox: start redirects to our pay page; notifies are verified as the module
    docstring says; refunds always succeed at once (simulated); there is no query."""

    name: ClassVar[str] = "sandbox"
    supports_refund: ClassVar[bool] = True

    def check_config(self, config: ChannelConfig) -> None:
        """Also checks ``secrets["key"]`` (at least 16 bytes), ``options["pay_page_url"]`` and
        ``options["tolerance_s"]``. Raises PAYMENT_CONFIG_INVALID."""
        super().check_config(config)
        _key(config)
        check_url_setting(self.name, "pay_page_url", config.option("pay_page_url"))
        self._tolerance_ms(config)

    def _tolerance_ms(self, config: ChannelConfig) -> int:
        text = config.options.get("tolerance_s", str(TOLERANCE_S_DEFAULT))
        if not text.isdigit() or not 1 <= int(text) <= TOLERANCE_S_MAX:
            raise config_invalid(self.name, "tolerance_s", f"not 1-{TOLERANCE_S_MAX} seconds")
        return int(text) * 1000

    def start(self, config: ChannelConfig, request: PaymentRequest) -> PaymentStart:
        """A redirect to the sandbox pay page, carrying the attempt's facts in the query (the
        page is our own; the facts it sends back are checked by :func:`check_binding`)."""
        page = check_url_setting(self.name, "pay_page_url", config.option("pay_page_url"))
        query = urlencode({
            "channel_id": config.channel_id,
            "out_trade_no": request.out_trade_no,
            "amount_minor": str(request.amount_minor),
            "currency": request.currency,
            "subject": request.subject,
            "expires_at_ms": str(request.expires_at_ms),
            "return_url": request.return_url or config.return_url,
        })
        separator = "&" if "?" in page else "?"
        return PaymentStart(kind="redirect", url=f"{page}{separator}{query}",
                            provider_ref=sandbox_trade_no(request.out_trade_no),
                            expires_at_ms=request.expires_at_ms)

    def verify_notify(self, config: ChannelConfig, method: str, headers: Mapping[str, str],
                      query: QueryPairs, body: bytes) -> Notify | IgnoredEvent:
        """Verify a sandbox notify (POST form). Raises PAYMENT_NOTIFY_INVALID (not a POST, not
        exactly the documented fields, bad values), PAYMENT_SIGNATURE_INVALID (``mismatch``,
        ``stale_timestamp``, ``merchant_mismatch``) or LIMIT_EXCEEDED."""
        if method != "POST":
            raise notify_invalid(self.name, "not_post")
        fields = form_fields(self.name, body)
        if set(fields) != set(_FIELDS) or fields["v"] != "1":
            raise notify_invalid(self.name, "fields")
        if not _HEX64.fullmatch(fields["sig"]) or not same_text(
                fields["sig"], _signature(_key(config), fields)):
            raise signature_invalid(self.name, "mismatch")
        if not _TS.fullmatch(fields["ts"]):
            raise notify_invalid(self.name, "timestamp")
        if abs(self._now_ms() - int(fields["ts"])) > self._tolerance_ms(config):
            raise signature_invalid(self.name, "stale_timestamp")
        if not same_text(fields["merchant_id"], config.merchant_id):
            raise signature_invalid(self.name, "merchant_mismatch")
        return self._facts(config, fields)

    def _facts(self, config: ChannelConfig, fields: dict[str, str]) -> Notify:
        for name in ("event_id", "trade_no", "out_trade_no"):
            if not _ID.fullmatch(fields[name]):
                raise notify_invalid(self.name, "identifier", field=name)
        if not _CURRENCY.fullmatch(fields["currency"]):
            raise notify_invalid(self.name, "currency")
        status = fields["status"]
        if status not in SANDBOX_STATUSES:
            raise notify_invalid(self.name, "status")
        amount_minor = parse_money(self.name, "amount_minor", fields["amount_minor"], exponent=0)
        ts_ms = int(fields["ts"])
        return Notify(
            provider=self.name,
            event_id=fields["event_id"],
            provider_trade_no=fields["trade_no"],
            out_trade_no=fields["out_trade_no"],
            amount_minor=amount_minor,
            currency=fields["currency"],
            merchant_id=config.merchant_id,
            status=_status(status),
            paid_at_ms=ts_ms if status == "paid" else None,
            refunded_minor=amount_minor if status == "refunded" else None,
            raw=bounded_raw(fields, drop=("sig",)),
        )

    def ack(self, ok: bool) -> NotifyAnswer:
        """``200 success`` or ``400 fail``, text/plain (the sandbox page retries on anything
        but ``success``)."""
        return NotifyAnswer(200 if ok else 400, "text/plain; charset=utf-8",
                            b"success" if ok else b"fail")

    def refund(self, config: ChannelConfig, out_trade_no: str, amount_minor: int, reason: str,
               *, out_refund_no: str | None = None,
               provider_ref: str | None = None) -> RefundResult:
        """A simulated refund that succeeds at once (no money exists in the sandbox). Raises
        AMOUNT_MUST_BE_POSITIVE."""
        check_refund_amount(amount_minor)
        refund_no = out_refund_no or default_out_refund_no(out_trade_no, amount_minor)
        return RefundResult(out_trade_no=out_trade_no, refund_id=f"SBX-{refund_no}",
                            amount_minor=amount_minor, status="succeeded",
                            raw=bounded_raw({"reason": reason}))


def _status(text: str) -> NotifyStatus:
    for status in SANDBOX_STATUSES:
        if status == text:
            return status
    raise AssertionError("checked by the caller")
