"""The retail checkout saga (DESIGN.md, Retail, payments and delivery): one stock with the
agents, the same core hold -> confirm -> release path, a payment attempt recorded before the
buyer leaves, verified callbacks through an inbox, one state machine, then confirm and deliver.

A retail order (``cardsvc.sales.tables.RetailOrder``) moves::

    pending --paid--> paid --confirm--> delivered --refund--> refunded
       |                 \\--no stock (paid late)--> paid_unfulfillable --refund--> refunded
       +--expired / failed (the hold lapses or the payment fails; a late payment still counts)

1. **Start** (:meth:`Checkout.start`), every check before the hold and in memory: the input
   (quantity within the SKU's limits, an email, an optional order password of at least 12
   characters, a channel that may take payments), the buyer's caps and the checkout rate per IP
   (``cardsvc.sales.buyers``), the proof-of-work challenge (``cardsvc.access.challenges``); then
   the core hold under the retail reference namespace ``retail/<order_id>`` in the SKU's retail
   pool (a sold-out answer comes from the core, at memory speed, and never reaches SQL); then
   one SQL unit (the group commit): the order ``pending`` with its line snapshot (name, price,
   cost, currency), its token (SHA-256 only) and the payment attempt ``pending``, awaited
   together with the journal. Then the provider's ``start`` (a redirect or a QR text).
2. **Callbacks** (:meth:`Checkout.handle_notify`): the adapter verifies the signature (a
   failure is stored as a refusal, bounded, and answered ``ack(False)``); then one SQL unit:
   the inbox row (unique on channel and event id: a retry changes nothing and is acknowledged),
   the attempt locked, ``check_binding`` (out_trade_no, currency, amount: a mismatch is stored
   and refused), ``payments.state.transition``; when it *became paid*: the order ``paid`` and
   the receipt posted (clearing -> retail received) in the same transaction. At most one
   transition of an attempt ever becomes paid, so at most one fulfilment is ever started.
   A full refund the provider reports reverses the sale too (its codes that can still be used
   voided first; see :meth:`Checkout._void_for_provider_refund`).
3. **Fulfil** (:meth:`Checkout.fulfil`, driven inline after the callback and by recovery):
   the core confirms the hold into an allocation under the order id (idempotent); a hold that
   lapsed (a late payment) allocates from stock now instead; then, once the journal holds it,
   one SQL unit: the order ``delivered`` with its codes, the sale posted (revenue and cost of
   goods), the delivery records (page, API, claim link) and the delivery mail in the outbox.
   With no stock left the order is ``paid_unfulfillable`` and is refunded through the provider
   where it can be, else kept for an admin with the money held in clearing: never dropped.
4. **Recovery** (:meth:`Checkout.recover`, at start-up and on the timer): paid orders are
   driven to delivered (exactly once: every step is idempotent), unfulfillable ones refunded,
   lapsed pending ones expired (after asking the provider, where it can be asked, whether they
   were paid), and pending attempts queried on their schedule (1, 5, 15 min, at expiry).

Every method returns only once the SQL commit and the journal hold what it reports. Results are
frozen dataclasses in domain units (Unix ms, minor units).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access import Approvals, Challenges, Passwords
from cardsvc.catalog import Sku
from cardsvc.checks import check_email
from cardsvc.crypto import token_hash
from cardsvc.db import Database, WriteBatcher
from cardsvc.delivery import (
    ClaimState,
    RetailReveal,
    ShownCode,
    claim_token,
    mails_sent,
    order_link_token,
    queue_mail,
    record_deliveries,
)
from cardsvc.engine import Engine, Store
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.money import retail as money
from cardsvc.payments import (
    SCENARIOS,
    Channels,
    IgnoredEvent,
    LiveChannel,
    Notify,
    NotifyAnswer,
    PaymentAttempt,
    PaymentRequest,
    PaymentStart,
    SandboxScenario,
    attempts,
    check_binding,
    sandbox_script,
)
from cardsvc.sales.buyers import BuyerGuard
from cardsvc.sales.shop import ShopCatalog, ShopSku
from cardsvc.sales.tables import OrderToken, RetailOrder

log = logging.getLogger("cardsvc.retail")
_ORDERS = cast(Table, RetailOrder.__table__)
_INSERT_ORDER = insert(_ORDERS)
_INSERT_TOKEN = insert(cast(Table, OrderToken.__table__))

RETAIL_CRASH_POINTS = ("after_paid", "after_confirm", "after_delivered")
"""Where the fault hook may kill the process between the fulfilment's steps (the retail crash
test proves a paid order is delivered exactly once after a restart)."""
HOLD_TTL_S_DEFAULT = 900
"""A checkout's hold lasts 15 minutes (``CARDSVC_STORE_HOLD_TTL_S``)."""
PASSWORD_CHARS_MIN = 12
PASSWORD_CHARS_MAX = 256
"""An address: RFC 5322's dot-atom characters before the ``@`` (no quoted local parts, which
no shop needs and which carry markup), a dotted domain after it."""
LOCALES = ("zh_CN", "en")
TOKENS_PER_ORDER_MAX = 20
"""Tokens an order keeps (its checkout's, the mail link's, those lookups issue)."""
LOOKUP_ORDERS_MAX = 5
"""Orders of one email whose password one lookup checks (each check is an argon2 hash)."""
ROUND_MAX = 200
"""Orders (and attempts) one recovery round drives at most."""
EXPIRY_GRACE_MS = 5_000
"""A pending order is expired this long after its hold, so a payment landing at the last
second is not raced by the timer."""
STARTS_CACHED_MAX = 10_000
SANDBOX_TASKS_MAX = 1_000
RESEND_TEMPLATE = "delivered"


@dataclass(frozen=True)
class StoreSettings:
    """How the shop runs: the hold TTL, the claim link's lifetime, the public URL links are
    built on, and whether the production settings are on (then sandbox channels are refused)."""

    hold_ttl_s: int = HOLD_TTL_S_DEFAULT
    claim_ttl_ms: int = 30 * 86_400_000
    public_url: str = "http://127.0.0.1:8000"
    production: bool = False


@dataclass(frozen=True)
class CheckoutRequest:
    """What a buyer asked for. ``buyer_token`` is an order token the buyer's browser already
    holds (a cap subject); ``challenge`` the solved proof of work."""

    sku: str
    quantity: int
    email: str
    channel_id: str
    ip: str
    password: str | None = None
    challenge: str | None = None
    buyer_token: str | None = None
    locale: str = "zh_CN"


@dataclass(frozen=True, slots=True)
class PaymentView:
    """How the buyer pays: a ``redirect`` URL, a ``qr`` text or a ``form``, until
    ``expires_at_ms``; ``sandbox`` marks a sandbox channel (every page says so)."""

    kind: str
    url: str | None
    qr_text: str | None
    form_fields: Mapping[str, str] | None
    expires_at_ms: int
    channel_id: str
    channel_name: str
    sandbox: bool
    out_trade_no: str


@dataclass(frozen=True, slots=True)
class RetailOrderView:
    """A retail order as its buyer (or an admin) sees it; ``email`` is masked unless the view
    is an admin's."""

    order_id: str
    status: str
    sku: str
    product_name: str
    quantity: int
    unit_price_minor: int
    total_minor: int
    currency: str
    email: str
    channel_id: str
    created_at_ms: int
    hold_expires_at_ms: int
    paid_at_ms: int | None
    delivered_at_ms: int | None
    late: bool
    usage_instructions: str | None
    attempt_id: str


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """A started checkout: the order, its token (shown once: the buyer's key to the order) and
    how to pay."""

    order: RetailOrderView
    token: str
    payment: PaymentView


@dataclass(frozen=True, slots=True)
class NotifyResult:
    """What one callback did: the provider's answer, the inbox verdict and the order to fulfil
    (when this callback made it paid)."""

    answer: NotifyAnswer
    verdict: str
    order_to_fulfil: str | None = None


def no_crash(point: str) -> None:
    """The fault hook of production: nothing happens."""


class Checkout:
    """The storefront's use cases over the core, SQL (through the group commit), the payment
    channels and the deliveries."""

    def __init__(self, store: Store, db: Database, batcher: WriteBatcher, *,
                 channels: Channels, shop: ShopCatalog, guard: BuyerGuard,
                 challenges: Challenges, passwords: Passwords, reveal: RetailReveal,
                 link_key: bytes, settings: StoreSettings,
                 crash: Callable[[str], None] = no_crash,
                 approvals: Approvals | None = None) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.batcher = batcher
        self.channels = channels
        self.shop = shop
        self.guard = guard
        self.challenges = challenges
        self.passwords = passwords
        self.reveal = reveal
        self.link_key = link_key
        self.settings = settings
        self.crash = crash
        self.approvals = approvals
        """Maker-checker for staff refunds (None: not guarded, as for the CLI)."""
        self._starts: OrderedDict[str, PaymentStart] = OrderedDict()
        self._accounts_ready: set[tuple[str, str]] = set()
        """(channel, currency) whose ledger accounts are known to exist (made by a committed
        checkout), so the callback's receipt skips creating them."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----- 1. start -----

    async def start(self, request: CheckoutRequest) -> CheckoutResult:
        """Starts a checkout (module text, step 1). Raises SKU_NOT_FOUND, QUANTITY_NOT_ALLOWED
        (details min, max), INVALID_ARGUMENT (email, password, locale), CHANNEL_NOT_FOUND,
        CHANNEL_DISABLED, SANDBOX_IN_PRODUCTION, RATE_LIMITED (caps, checkout rate),
        CHALLENGE_FAILED, OUT_OF_STOCK, PAYMENT_* (the provider refused to start)."""
        item, email = self._check_request(request)
        live = self.channels.for_checkout(request.channel_id)
        self.guard.admit_checkout(request.ip)
        order_id = "ro_" + secrets.token_hex(10)
        ref = f"retail/{order_id}"
        now_ms = self.engine.now_ms()
        expires_at_ms = now_ms + self.settings.hold_ttl_s * 1000
        buyer = None if not request.buyer_token else token_hash(request.buyer_token)
        self.guard.reserve(ref, email=email, token=buyer, ip=request.ip,
                           units=request.quantity, expires_at_ms=expires_at_ms)
        try:
            self.challenges.verify(request.challenge)
            self.engine.hold(item.sku, request.quantity, hold_ref=ref,
                             ttl_seconds=self.settings.hold_ttl_s, pool=item.pool_id)
            ticket = Engine.last_ticket()
        except CardsvcError:
            self.guard.end(ref)
            raise
        try:
            return await self._record_start(request, item, email, live, order_id, ref,
                                            now_ms, expires_at_ms, ticket)
        except CardsvcError:
            self._release(ref)
            self.guard.end(ref)
            raise

    def _check_request(self, request: CheckoutRequest) -> tuple[ShopSku, str]:
        item = self.shop.get(request.sku)
        if (isinstance(request.quantity, bool) or not isinstance(request.quantity, int)
                or not item.quantity_min <= request.quantity <= item.quantity_max):
            raise make_error(ErrorCode.QUANTITY_NOT_ALLOWED,
                             "the quantity is outside this product's limits per order",
                             {"field": "quantity", "min": item.quantity_min,
                              "max": item.quantity_max})
        email = check_email(request.email)
        if request.password is not None and not (
                PASSWORD_CHARS_MIN <= len(request.password) <= PASSWORD_CHARS_MAX):
            raise invalid("password", f"an order password has {PASSWORD_CHARS_MIN} to "
                          f"{PASSWORD_CHARS_MAX} characters", min=PASSWORD_CHARS_MIN)
        if request.locale not in LOCALES:
            raise invalid("locale", "locale must be zh_CN or en")
        return item, email

    async def _record_start(self, request: CheckoutRequest, item: ShopSku, email: str,
                            live: LiveChannel, order_id: str, ref: str, now_ms: int,
                            expires_at_ms: int, ticket: int) -> CheckoutResult:
        token = secrets.token_urlsafe(32)
        out_trade_no = "pa" + secrets.token_hex(12)
        password_hash = (None if request.password is None else
                         await asyncio.to_thread(self.passwords.hash, request.password))
        total = item.price_minor * request.quantity
        payment_request = PaymentRequest(
            out_trade_no=out_trade_no, amount_minor=total, currency=item.currency,
            subject=item.name[:100], expires_at_ms=expires_at_ms,
            buyer_ip=request.ip if _ip_like(request.ip) else None,
            return_url=f"{self.channels.public_url}/orders/{order_id}")
        local_start = live.provider.name == "sandbox"
        started = live.provider.start(live.config, payment_request) if local_start else None
        if item.purchase_limit_per_buyer is not None:
            await asyncio.to_thread(self._check_purchase_limit, item, email, request.quantity)
        row = RetailOrder(
            order_id=order_id, status="pending", sku=item.sku, product_name=item.name,
            quantity=request.quantity, pool_id=item.pool_id, unit_price_minor=item.price_minor,
            total_minor=total, unit_cost_minor=item.unit_cost_minor, currency=item.currency,
            email=email, password_hash=password_hash, locale=request.locale,
            channel_id=live.view.channel_id, attempt_id=out_trade_no, hold_ref=ref,
            hold_expires_at_ms=expires_at_ms, code_ids=None, late=False, error_code=None,
            created_at_ms=now_ms, updated_at_ms=now_ms)

        order_values = {column.name: getattr(row, column.name)
                        for column in _ORDERS.columns}
        tokens = [{"token_hash": token_hash(token), "order_id": order_id, "source": "checkout",
                   "created_at_ms": now_ms},
                  {"token_hash": token_hash(order_link_token(self.link_key, order_id)),
                   "order_id": order_id, "source": "email", "created_at_ms": now_ms}]
        attempt = attempts.attempt_values(
            out_trade_no=out_trade_no, order_id=order_id, channel_id=live.view.channel_id,
            provider=live.provider.name, amount_minor=total, currency=item.currency,
            expires_at_ms=expires_at_ms, secret_version=live.config.secret_version,
            provider_ref=None if started is None else started.provider_ref, now_ms=now_ms)

        accounts = (live.view.channel_id, item.currency)
        ensure = accounts not in self._accounts_ready

        def unit(session: Session) -> None:
            # Core inserts (no ORM unit of work): the checkout path runs them 1,500 times a
            # second on the one writer thread.
            if ensure:
                money.ensure_retail_accounts(session, accounts[0], accounts[1], now_ms)
            connection = session.connection()
            connection.execute(_INSERT_ORDER, order_values)
            connection.execute(_INSERT_TOKEN, tokens)
            connection.execute(attempts.INSERT_ATTEMPT, attempt)

        await asyncio.gather(self.batcher.submit_async(unit), self.store.wait_async(ticket))
        self._accounts_ready.add(accounts)
        if started is None:
            started = await self._start_remote(live, payment_request)
        self._remember_start(out_trade_no, started)
        view = _order_view(row, item.usage_instructions, admin=False)
        return CheckoutResult(view, token, _payment_view(started, live, out_trade_no,
                                                         expires_at_ms))

    async def _start_remote(self, live: LiveChannel, request: PaymentRequest) -> PaymentStart:
        """The provider's start for an attempt already recorded; its handle stored after."""
        started = await asyncio.to_thread(live.provider.start, live.config, request)
        if started.provider_ref:
            def unit(session: Session) -> None:
                attempt = session.get(PaymentAttempt, request.out_trade_no)
                if attempt is not None:
                    attempt.provider_ref = started.provider_ref
            await self.batcher.submit_async(unit)
        return started

    def _remember_start(self, out_trade_no: str, started: PaymentStart) -> None:
        self._starts[out_trade_no] = started
        while len(self._starts) > STARTS_CACHED_MAX:
            self._starts.popitem(last=False)

    def _check_purchase_limit(self, item: ShopSku, email: str, quantity: int) -> None:
        limit = item.purchase_limit_per_buyer or 0
        with self.db.read() as session:
            bought = sum(session.scalars(select(RetailOrder.quantity).where(
                RetailOrder.email == email, RetailOrder.sku == item.sku,
                RetailOrder.status.in_(("pending", "paid", "delivered")))))
        if bought + quantity > limit:
            raise make_error(ErrorCode.RATE_LIMITED,
                             "this buyer has bought as many of this product as allowed",
                             {"limit": "purchase_limit_per_buyer", "max": limit,
                              "retry_after_s": 3600})

    def _release(self, ref: str) -> None:
        # Already expired, released or confirmed: nothing is held any more.
        with contextlib.suppress(CardsvcError):
            self.engine.release_hold(ref)

    async def _release_durably(self, ref: str) -> None:
        """Releases the hold ``ref`` and returns once the journal holds the release: its codes
        are on sale again before the caller reports the order ended."""
        self._release(ref)
        await self.store.wait_async(Engine.last_ticket())

    # ----- reading an order (its token) -----

    async def order(self, order_id: str, token: str | None) -> RetailOrderView:
        """The order its token opens. Raises ORDER_NOT_FOUND (also for a wrong token)."""
        row = await asyncio.to_thread(self._authorized, order_id, token)
        return self._view(row)

    async def payment(self, order_id: str, token: str | None) -> tuple[RetailOrderView,
                                                                       PaymentView]:
        """How to pay a pending order. Raises ORDER_NOT_FOUND, ORDER_NOT_PAYABLE."""
        row = await asyncio.to_thread(self._authorized, order_id, token)
        if row.status != "pending":
            raise make_error(ErrorCode.ORDER_NOT_PAYABLE, "the order is not waiting for payment",
                             {"order_id": order_id, "status": row.status})
        live = self.channels.live(row.channel_id)
        started = self._starts.get(row.attempt_id)
        if started is None:
            request = PaymentRequest(
                out_trade_no=row.attempt_id, amount_minor=row.total_minor,
                currency=row.currency, subject=row.product_name[:100],
                expires_at_ms=row.hold_expires_at_ms,
                return_url=f"{self.channels.public_url}/orders/{order_id}")
            started = await asyncio.to_thread(live.provider.start, live.config, request)
            self._remember_start(row.attempt_id, started)
        return self._view(row), _payment_view(started, live, row.attempt_id,
                                              row.hold_expires_at_ms)

    async def state(self, order_id: str, token: str | None) -> str:
        """The order's status (for the pay page's polling)."""
        row = await asyncio.to_thread(self._authorized, order_id, token)
        return row.status

    async def codes(self, order_id: str, token: str | None, *, full: bool, channel: str,
                    ip: str | None) -> tuple[RetailOrderView, list[ShownCode], bool]:
        """The delivered order's codes: in full on the channel's first view or when ``full``
        (an audited reveal), masked otherwise. Raises ORDER_NOT_FOUND, ORDER_NOT_DELIVERED,
        RATE_LIMITED (full reveals per order)."""
        row = await asyncio.to_thread(self._authorized, order_id, token)
        if row.status != "delivered" or not row.code_ids:
            raise make_error(ErrorCode.ORDER_NOT_DELIVERED, "the order's codes are not delivered",
                             {"order_id": order_id, "status": row.status})
        if full:
            self.guard.admit("reveals_per_order_max", order_id,
                             self.guard.limits.reveals_per_order_max, 86_400)
        shown, in_full = await asyncio.to_thread(
            self.reveal.show, order_id, list(row.code_ids), channel=channel, full=full, ip=ip)
        return self._view(row), shown, in_full

    def claim_url(self, order_id: str) -> str:
        """The order's claim link (for the order page's QR code)."""
        return f"{self.channels.public_url}/claim/{claim_token(self.link_key, order_id)}"

    async def claim_page(self, token: str) -> tuple[ClaimState, RetailOrderView]:
        """The claim link's GET: nothing revealed. Raises ORDER_NOT_FOUND."""
        state = await asyncio.to_thread(self.reveal.claim_state, token)
        row = await asyncio.to_thread(self._row, state.order_id)
        return state, self._view(row)

    async def claim(self, token: str, *, ip: str,
                    user_agent: str) -> tuple[ClaimState, RetailOrderView, list[ShownCode]]:
        """The claim link's POST: the codes in full once, masked after. Raises
        ORDER_NOT_FOUND."""
        self.guard.admit("lookups_per_ip_max", ip, self.guard.limits.lookups_per_ip_max,
                         self.guard.limits.lookup_window_s)

        def code_ids(order_id: str) -> list[int]:
            return list(self._row(order_id).code_ids or [])

        state, shown = await asyncio.to_thread(self.reveal.claim, token, code_ids, ip=ip,
                                               user_agent=user_agent)
        row = await asyncio.to_thread(self._row, state.order_id)
        return state, self._view(row), shown

    # ----- lookup -----

    async def lookup(self, email: str, password: str, *, ip: str) -> list[tuple[str, str]]:
        """The orders of ``email`` whose order password is ``password``, each with a new token
        (``(order_id, token)``, newest first). Throttled per IP; the same ORDER_NOT_FOUND for
        every miss (no such email, no password, a wrong one). Raises RATE_LIMITED."""
        self.guard.admit_lookup(ip, None)
        try:
            address = check_email(email)
        except CardsvcError:
            address = ""
        rows = await asyncio.to_thread(self._lookup_candidates, address)
        matched: list[str] = []
        for order_id, stored in rows or [("", None)]:
            if order_id:
                self.guard.admit("lookups_per_order_max", order_id,
                                 self.guard.limits.lookups_per_order_max,
                                 self.guard.limits.lookup_window_s)
            if await asyncio.to_thread(self.passwords.verify, stored, password[:1024]):
                matched.append(order_id)
        if not matched:
            raise _not_found()
        return [(order_id, await self._issue_token(order_id, "lookup")) for order_id in matched]

    async def lookup_token(self, token: str, *, ip: str) -> str:
        """The order an order token opens (for the lookup form). Raises ORDER_NOT_FOUND,
        RATE_LIMITED."""
        self.guard.admit_lookup(ip, None)
        order_id = await asyncio.to_thread(self._order_of_token, token)
        if order_id is None:
            raise _not_found()
        return order_id

    def _lookup_candidates(self, email: str) -> list[tuple[str, str | None]]:
        if not email:
            return []
        with self.db.read() as session:
            return [(row.order_id, row.password_hash) for row in session.execute(
                select(RetailOrder.order_id, RetailOrder.password_hash).where(
                    RetailOrder.email == email, RetailOrder.password_hash.is_not(None))
                .order_by(RetailOrder.created_at_ms.desc()).limit(LOOKUP_ORDERS_MAX))]

    def _order_of_token(self, token: str) -> str | None:
        with self.db.read() as session:
            row = session.get(OrderToken, token_hash(token[:128]))
            return None if row is None else row.order_id

    async def _issue_token(self, order_id: str, source: str) -> str:
        token = secrets.token_urlsafe(32)
        now_ms = self.engine.now_ms()

        def unit(session: Session) -> None:
            tokens = list(session.scalars(select(OrderToken).where(
                OrderToken.order_id == order_id, OrderToken.source == source)
                .order_by(OrderToken.created_at_ms)))
            for old in tokens[:max(0, len(tokens) - TOKENS_PER_ORDER_MAX + 3)]:
                session.delete(old)
            session.add(OrderToken(token_hash=token_hash(token), order_id=order_id,
                                   source=source, created_at_ms=now_ms))

        await self.batcher.submit_async(unit)
        return token

    # ----- resend and admin actions -----

    async def resend(self, order_id: str, token: str | None, *, actor: str = "buyer") -> None:
        """Sends the delivery mail again, to the same address; rate-limited per order and
        audited (``mail.resend``). Raises ORDER_NOT_FOUND, ORDER_NOT_DELIVERED, RATE_LIMITED."""
        row = await asyncio.to_thread(self._authorized, order_id, token) if token is not None \
            else await asyncio.to_thread(self._row, order_id)
        if row.status != "delivered":
            raise make_error(ErrorCode.ORDER_NOT_DELIVERED, "the order is not delivered",
                             {"order_id": order_id, "status": row.status})
        limits = self.guard.limits
        self.guard.admit("resends_per_order_max", order_id, limits.resends_per_order_max,
                         limits.resend_window_s)
        now_ms = self.engine.now_ms()

        def unit(session: Session) -> None:
            current = session.get(RetailOrder, order_id)
            assert current is not None
            seq = mails_sent(session, order_id, RESEND_TEMPLATE)
            queue_mail(session, order_id=order_id, template=RESEND_TEMPLATE, seq=seq,
                       email=current.email, locale=current.locale,
                       payload=self._mail_payload(session, current), now_ms=now_ms)
            audit.append(session, actor=actor, action="mail.resend", object_type="order",
                         object_id=order_id, details={"seq": seq}, at_ms=now_ms)

        await self.batcher.submit_async(unit)

    async def change_email(self, order_id: str, email: str, *, actor: str) -> RetailOrderView:
        """An admin changes the order's address (audited, both addresses masked). Raises
        ORDER_NOT_FOUND, INVALID_ARGUMENT."""
        address = check_email(email)
        now_ms = self.engine.now_ms()

        def unit(session: Session) -> RetailOrder:
            row = session.get(RetailOrder, order_id)
            if row is None:
                raise _not_found()
            before = row.email
            row.email = address
            row.updated_at_ms = now_ms
            audit.append(session, actor=actor, action="order.email", object_type="order",
                         object_id=order_id, at_ms=now_ms,
                         details={"before": _mask_email(before), "after": _mask_email(address)})
            return row

        return self._view(await self.batcher.submit_async(unit), admin=True)

    async def admin_order(self, order_id: str) -> RetailOrderView:
        return self._view(await asyncio.to_thread(self._row, order_id), admin=True)

    async def list_orders(self, *, status: str | None, after: tuple[int, str] | None,
                          limit: int) -> list[RetailOrderView]:
        """Orders newest first ((created, id) keyset), ``limit + 1`` read by the caller's
        paging."""
        def read() -> list[RetailOrder]:
            query = select(RetailOrder)
            if status is not None:
                query = query.where(RetailOrder.status == status)
            if after is not None:
                query = query.where((RetailOrder.created_at_ms < after[0]) | (
                    (RetailOrder.created_at_ms == after[0]) & (RetailOrder.order_id < after[1])))
            with self.db.read() as session:
                return list(session.scalars(query.order_by(RetailOrder.created_at_ms.desc(),
                                                           RetailOrder.order_id.desc())
                                            .limit(limit + 1)))
        return [self._view(row, admin=True) for row in await asyncio.to_thread(read)]

    async def refund(self, order_id: str, *, actor: str, reason: str,
                     approval_id: str | None = None) -> RetailOrderView:
        """Refunds a delivered order whose codes were never redeemed (its codes voided in the
        core, the money sent back through the provider, the sale reversed), or a
        ``paid_unfulfillable`` one. Idempotent. Guarded by maker-checker when ``approvals`` are
        wired (action ``refund``, object type ``retail_order``): the approval is checked before
        the provider is asked and consumed in the refund's transaction. Raises ORDER_NOT_FOUND,
        ORDER_NOT_REFUNDABLE, the refusals of ``Approvals.authorize`` (APPROVAL_REQUIRED...),
        PAYMENT_* (the provider refused or cannot refund: nothing changed)."""
        row = await asyncio.to_thread(self._row, order_id)
        if row.status == "refunded":
            return self._view(row, admin=True)
        if row.status not in ("delivered", "paid_unfulfillable"):
            raise make_error(ErrorCode.ORDER_NOT_REFUNDABLE,
                             "only a delivered or unfulfillable order is refunded",
                             {"order_id": order_id, "status": row.status})
        if row.status == "delivered":
            redeemed = [i for i in row.code_ids or [] if self.engine.code_info(i).redemption_ids]
            if redeemed:
                raise make_error(ErrorCode.ORDER_NOT_REFUNDABLE,
                                 "a code of this order was redeemed",
                                 {"order_id": order_id, "redeemed": len(redeemed)})
        approvals = self.approvals
        if approvals is not None:
            await asyncio.to_thread(approvals.check, action="refund", object_type="retail_order",
                                    object_id=order_id, actor=actor, approval_id=approval_id)
        await self._provider_refund(row, reason)
        if row.status == "delivered":
            self.engine.void(list(row.code_ids or []))
            await self.store.wait_async(Engine.last_ticket())
        return self._view(await self._refunded(order_id, actor, reason, guarded=True,
                                               approval_id=approval_id), admin=True)

    async def _provider_refund(self, row: RetailOrder, reason: str) -> None:
        live = self.channels.live(row.channel_id)
        attempt = await asyncio.to_thread(self._attempt, row.attempt_id)
        await asyncio.to_thread(live.provider.refund, live.config, row.attempt_id,
                                row.total_minor, reason[:80] or "refund",
                                provider_ref=None if attempt is None else attempt.provider_ref)

    async def _refunded(self, order_id: str, actor: str, reason: str, *,
                        guarded: bool = False, approval_id: str | None = None) -> RetailOrder:
        """The refund's SQL unit (:meth:`_mark_refunded` on a refundable order); ``guarded``:
        a staff refund, whose approval (maker-checker, when ``approvals`` are wired) is
        consumed here; the automatic refund of an unfulfillable order is not guarded."""
        now_ms = self.engine.now_ms()
        approvals = self.approvals if guarded else None

        def unit(session: Session) -> RetailOrder:
            row = session.get(RetailOrder, order_id)
            assert row is not None
            if row.status in ("delivered", "paid_unfulfillable"):
                if approvals is not None:
                    approvals.authorize(session, action="refund", object_type="retail_order",
                                        object_id=order_id, actor=actor,
                                        approval_id=approval_id)
                self._mark_refunded(session, row, actor, now_ms, {"reason": reason[:200]})
            return row

        return await self.batcher.submit_async(unit)

    def _mark_refunded(self, session: Session, row: RetailOrder, actor: str, now_ms: int,
                       details: dict[str, Any]) -> None:
        """A delivered or unfulfillable order refunded, in the caller's unit: the sale (or the
        receipt) reversed, the order ``refunded``, the buyer's mail queued and the audit entry
        ``order.refund`` (``details`` and the total)."""
        row.refund_txn_id = money.post_refund(
            session, order_id=row.order_id, channel_id=row.channel_id,
            total_minor=row.total_minor, unit_cost_minor=row.unit_cost_minor,
            quantity=row.quantity, currency=row.currency,
            delivered=row.status == "delivered", actor=actor, now_ms=now_ms)
        row.status = "refunded"
        row.updated_at_ms = now_ms
        queue_mail(session, order_id=row.order_id, template="refunded", seq=0,
                   email=row.email, locale=row.locale,
                   payload=self._mail_payload(session, row), now_ms=now_ms)
        audit.append(session, actor=actor, action="order.refund", object_type="order",
                     object_id=row.order_id, at_ms=now_ms,
                     details={**details, "total_minor": row.total_minor})

    # ----- 2. callbacks -----

    async def handle_notify(self, channel_token: str, method: str, headers: Mapping[str, str],
                            query: Sequence[tuple[str, str]], body: bytes) -> NotifyResult | None:
        """One provider callback to the channel of ``channel_token`` (module text, step 2).
        None when no channel has that token (the route answers 404). Never raises for what
        the callback says: refusals are answers."""
        live = self.channels.by_token(channel_token)
        if live is None:
            return None
        provider = live.provider
        now_ms = self.engine.now_ms()
        try:
            parsed = provider.verify_notify(live.config, method.upper(), headers, query, body)
        except CardsvcError as error:
            refusal = error
            log.warning("refused a %s callback to channel %s: %s %s", provider.name,
                        live.view.channel_id, refusal.code.value, refusal.details.get("reason"))
            await self.batcher.submit_async(lambda session: attempts.record_refusal(
                session, live.view.channel_id, refusal, body, now_ms))
            return NotifyResult(provider.ack(False), "refused_verification")
        if isinstance(parsed, IgnoredEvent):
            return NotifyResult(provider.ack(True), "ignored")
        if parsed.status == "refunded":
            await self._void_for_provider_refund(live.view.channel_id, parsed)
        verdict, ok, to_fulfil, to_release = await self.batcher.submit_async(
            lambda session: self._notify_unit(session, live, parsed, now_ms))
        if to_release is not None:
            await self._release_durably(to_release)
        if to_fulfil is not None:
            self.crash("after_paid")
            try:
                await self.fulfil(to_fulfil)
            except CardsvcError as error:  # recovery drives it later; the notify stands
                log.warning("fulfilment of %s deferred: %s", to_fulfil, error.code.value)
        return NotifyResult(provider.ack(ok), verdict, to_fulfil)

    def _notify_unit(self, session: Session, live: LiveChannel, notify: Notify,
                     now_ms: int) -> tuple[str, bool, str | None, str | None]:
        """(inbox verdict, acknowledge?, the order this made paid, the hold to release)."""
        channel_id = live.view.channel_id
        if notify.status == "refunded" and self._refund_not_ready(session, channel_id, notify):
            # Written nothing (no inbox row): the provider sends it again, and by then the
            # order's codes are voided (or it is delivered, and they are voided first).
            return "retry", False, None, None
        inbox_id = attempts.record_inbox(session, channel_id, notify, now_ms)
        if inbox_id is None:
            return "duplicate", True, None, None
        attempt = attempts.lock_attempt(session, notify.out_trade_no, channel_id)
        if attempt is None:
            log.warning("a callback of channel %s names no attempt of it", channel_id)
            attempts.set_verdict(session, inbox_id, "unknown_attempt", None)
            return "unknown_attempt", True, None, None
        try:
            check_binding(notify, attempt.out_trade_no, attempt.amount_minor, attempt.currency)
        except CardsvcError as error:
            log.warning("a %s callback does not match attempt %s: %s", live.provider.name,
                        attempt.out_trade_no, error.details.get("field"))
            attempts.set_verdict(session, inbox_id, "mismatch", str(error.details.get("field")))
            return "mismatch", False, None, None
        if notify.status == "refunded":
            refund_verdict, reason = self._provider_refund_unit(session, attempt, notify,
                                                                now_ms)
            attempts.set_verdict(session, inbox_id, refund_verdict, reason)
            return refund_verdict, True, None, None
        verdict, paid, release = self._apply(
            session, attempt, notify.status, now_ms, fee_minor=notify.fee_minor,
            paid_at_ms=notify.paid_at_ms, provider_trade_no=notify.provider_trade_no)
        attempts.set_verdict(session, inbox_id, verdict[0], verdict[1])
        return verdict[0], True, paid, release

    # A refund the provider reports (the merchant refunded in the provider's own dashboard, or
    # a chargeback): the money has gone back to the buyer whatever we think, so the order is
    # refunded here too. A delivered order's codes are voided first, outside SQL (the core),
    # then the callback's unit reverses the sale; the unit refuses to run (writing nothing, not
    # acknowledging) while a code of the order is neither voided nor used up, so a crash
    # between the two steps, or a delivery racing the callback, ends with the provider's retry.
    # Codes used up before the refund stay redeemed (codes with any redemption are counted in
    # the audit entry). A partial refund is recorded and left to staff.

    async def _void_for_provider_refund(self, channel_id: str, notify: Notify) -> None:
        """Step one of a provider's full refund of a delivered order: its codes that can still
        be used voided, durably. Nothing for anything else (the unit decides)."""
        attempt = await asyncio.to_thread(self._attempt, notify.out_trade_no)
        if attempt is None or attempt.channel_id != channel_id or not _full_refund(notify):
            return
        try:
            check_binding(notify, attempt.out_trade_no, attempt.amount_minor, attempt.currency)
        except CardsvcError:
            return  # the unit records the mismatch
        order = await asyncio.to_thread(self._row, attempt.order_id)
        if order.status != "delivered":
            return
        live = self._live_codes(order)
        if live:
            self.engine.void(live)
            await self.store.wait_async(Engine.last_ticket())

    def _live_codes(self, order: RetailOrder) -> list[int]:
        """The order's codes that can still be used: neither voided nor used up (a code with
        uses left is voided too, whatever it was used for already)."""
        return [code_id for code_id in order.code_ids or []
                if self.engine.code_info(code_id).state not in ("void", "redeemed")]

    def _refund_not_ready(self, session: Session, channel_id: str, notify: Notify) -> bool:
        """Whether a provider's full refund must wait for the provider's retry: its order is
        being fulfilled (``paid``) or delivered with usable codes."""
        if not _full_refund(notify):
            return False
        attempt = attempts.lock_attempt(session, notify.out_trade_no, channel_id)
        if attempt is None:
            return False
        order = session.get(RetailOrder, attempt.order_id)
        if order is None or attempt.amount_minor != notify.amount_minor:
            return False
        return order.status == "paid" or (order.status == "delivered"
                                           and bool(self._live_codes(order)))

    def _provider_refund_unit(self, session: Session, attempt: PaymentAttempt, notify: Notify,
                              now_ms: int) -> tuple[str, str | None]:
        """The provider's refund on the locked, bound attempt: (inbox verdict, reason)."""
        if attempt.state != "paid":
            return "refused", "refund_before_paid"
        if not _full_refund(notify):
            log.warning("a partial refund of attempt %s was reported: left to staff",
                        attempt.out_trade_no)
            return "refused", "partial_refund_noted"
        order = session.get(RetailOrder, attempt.order_id)
        if order is None:
            raise AssertionError(f"attempt {attempt.out_trade_no} has no order")
        if order.status not in ("delivered", "paid_unfulfillable"):
            return "refused", "already_refunded"
        redeemed = sum(bool(self.engine.code_info(code_id).redemption_ids)
                       for code_id in order.code_ids or []) if order.status == "delivered" else 0
        self._mark_refunded(session, order, "payments", now_ms,
                            {"reason": "refunded at the payment provider", "redeemed": redeemed})
        return "applied", "refunded_at_provider"

    def _apply(self, session: Session, attempt: PaymentAttempt, status: Any, now_ms: int, *,
               fee_minor: int | None = None, paid_at_ms: int | None = None,
               provider_trade_no: str | None = None) -> tuple[tuple[str, str | None],
                                                               str | None, str | None]:
        """The state machine on the locked attempt, and its order's consequences: ((verdict,
        reason), the order made paid or None, the hold to release once this commits: that of
        an order whose payment failed, so its codes go back on sale now, not at the hold's
        deadline)."""
        outcome = attempts.apply_event(session, attempt, status, now_ms=now_ms,
                                       fee_minor=fee_minor, paid_at_ms=paid_at_ms,
                                       provider_trade_no=provider_trade_no)
        if not outcome.changed:
            return (outcome.kind, outcome.reason), None, None
        order = session.get(RetailOrder, attempt.order_id)
        if order is None:
            raise AssertionError(f"attempt {attempt.out_trade_no} has no order")
        order.updated_at_ms = now_ms
        if outcome.became_paid:
            order.late = order.status != "pending" or now_ms > order.hold_expires_at_ms
            order.status = "paid"
            order.paid_at_ms = attempt.paid_at_ms
            order.receipt_txn_id = money.post_receipt(
                session, order_id=order.order_id, channel_id=order.channel_id,
                total_minor=order.total_minor, currency=order.currency,
                fee_minor=attempt.fee_minor, actor="payments", now_ms=now_ms,
                ensure=(order.channel_id, order.currency) not in self._accounts_ready)
            return ("applied", None), order.order_id, None
        release = None
        if order.status == "pending":
            order.status = "failed" if outcome.state == "failed" else "expired"
            if order.status == "failed":
                queue_mail(session, order_id=order.order_id, template="failed", seq=0,
                           email=order.email, locale=order.locale,
                           payload=self._mail_payload(session, order), now_ms=now_ms)
                release = order.hold_ref
            self.guard.end(order.hold_ref)
        return ("applied", None), None, release

    # ----- 3. fulfil -----

    async def fulfil(self, order_id: str) -> RetailOrderView:
        """Drives a paid order to delivered (module text, step 3); nothing for any other. The
        one driver of the fulfilment, safe to run twice at once."""
        row = await asyncio.to_thread(self._row, order_id)
        if row.status != "paid":
            return self._view(row)
        try:
            ids, lapsed = self._allocate(row)
        except CardsvcError as error:
            if error.code != ErrorCode.OUT_OF_STOCK:
                raise
            return self._view(await self._unfulfillable(order_id))
        self.crash("after_confirm")
        await self.store.wait_async(Engine.last_ticket())
        now_ms = self.engine.now_ms()
        row = await self.batcher.submit_async(
            lambda session: self._deliver_unit(session, order_id, ids, lapsed, now_ms))
        self.crash("after_delivered")
        self.guard.end(row.hold_ref)
        return self._view(row)

    def _allocate(self, row: RetailOrder) -> tuple[list[int], bool]:
        """The order's codes, and whether its hold had lapsed: allocated by an earlier attempt,
        confirmed from its hold, or (the hold lapsed: a late payment) allocated from the retail
        pool now. Raises OUT_OF_STOCK."""
        engine = self.engine
        try:
            return list(engine.order_code_ids(row.order_id)), row.late
        except CardsvcError as error:
            if error.code != ErrorCode.ORDER_NOT_FOUND:
                raise
        try:
            return list(engine.confirm_hold(row.hold_ref, row.order_id)), row.late
        except CardsvcError as lapsed:
            if lapsed.code not in (ErrorCode.HOLD_EXPIRED, ErrorCode.HOLD_RELEASED,
                                   ErrorCode.HOLD_NOT_FOUND):
                raise
        ids = list(engine.allocate(row.sku, row.quantity, row.order_id, row.pool_id))
        return ids, True

    def _deliver_unit(self, session: Session, order_id: str, ids: Sequence[int], late: bool,
                      now_ms: int) -> RetailOrder:
        row = session.get(RetailOrder, order_id)
        if row is None:
            raise AssertionError(f"retail order {order_id} vanished")
        if row.status != "paid":
            return row
        if len(ids) != row.quantity:
            raise AssertionError(f"order {order_id} got {len(ids)} codes for {row.quantity}")
        row.status = "delivered"
        row.late = row.late or late
        row.code_ids = list(ids)
        row.delivered_at_ms = now_ms
        row.updated_at_ms = now_ms
        row.sale_txn_id = money.post_sale(
            session, order_id=order_id, total_minor=row.total_minor,
            unit_cost_minor=row.unit_cost_minor, quantity=row.quantity, currency=row.currency,
            actor="retail", now_ms=now_ms)
        record_deliveries(session, order_id=order_id, email=row.email, locale=row.locale,
                          link_key=self.link_key, claim_ttl_ms=self.settings.claim_ttl_ms,
                          mail_payload=self._mail_payload(session, row), now_ms=now_ms)
        return row

    async def _unfulfillable(self, order_id: str) -> RetailOrder:
        """Paid, but no stock can be had: ``paid_unfulfillable`` (money held in clearing),
        then refunded through the provider where it can be; otherwise kept for an admin."""
        now_ms = self.engine.now_ms()

        def unit(session: Session) -> RetailOrder:
            row = session.get(RetailOrder, order_id)
            assert row is not None
            if row.status == "paid":
                row.status = "paid_unfulfillable"
                row.error_code = ErrorCode.OUT_OF_STOCK.value
                row.updated_at_ms = now_ms
                audit.append(session, actor="retail", action="order.unfulfillable",
                             object_type="order", object_id=order_id, at_ms=now_ms,
                             details={"total_minor": row.total_minor, "late": row.late})
            return row

        row = await self.batcher.submit_async(unit)
        self.guard.end(row.hold_ref)
        return await self._try_refund_unfulfillable(row)

    async def _try_refund_unfulfillable(self, row: RetailOrder) -> RetailOrder:
        live = self.channels.live(row.channel_id)
        if row.status != "paid_unfulfillable" or not live.provider.supports_refund:
            return row
        try:
            await self._provider_refund(row, "out of stock after a late payment")
        except CardsvcError as error:
            log.warning("refund of unfulfillable order %s failed: %s", row.order_id,
                        error.code.value)
            return row
        return await self._refunded(row.order_id, "retail", "out of stock after payment")

    # ----- 4. recovery -----

    async def recover(self, *, older_than_ms: int = 0) -> dict[str, int]:
        """One round: paid orders delivered, unfulfillable ones refunded, lapsed pending ones
        expired, due attempts queried. Returns counts."""
        counts = {"delivered": 0, "unfulfillable": 0, "expired": 0, "queried": 0, "pending": 0}
        now_ms = self.engine.now_ms()
        for order_id, status in await asyncio.to_thread(self._stuck, now_ms - older_than_ms):
            try:
                if status == "paid":
                    view = await self.fulfil(order_id)
                    counts["delivered" if view.status == "delivered" else "unfulfillable"] += 1
                else:
                    await self._try_refund_unfulfillable(
                        await asyncio.to_thread(self._row, order_id))
                    counts["unfulfillable"] += 1
            except CardsvcError as error:
                log.warning("recovery of %s deferred: %s", order_id, error.code.value)
                counts["pending"] += 1
        counts["queried"] = await self._query_due(now_ms)
        counts["expired"] = await self._expire_due(now_ms)
        return counts

    def _stuck(self, cutoff_ms: int) -> list[tuple[str, str]]:
        with self.db.read() as session:
            return [(row.order_id, row.status) for row in session.execute(
                select(RetailOrder.order_id, RetailOrder.status).where(
                    RetailOrder.status.in_(("paid", "paid_unfulfillable")),
                    RetailOrder.updated_at_ms <= cutoff_ms)
                .order_by(RetailOrder.updated_at_ms).limit(ROUND_MAX))]

    async def _query_due(self, now_ms: int) -> int:
        def due() -> list[attempts.AttemptFacts]:
            with self.db.read() as session:
                return attempts.due_queries(session, now_ms, ROUND_MAX)

        done = 0
        for facts in await asyncio.to_thread(due):
            await self._query_one(facts)
            done += 1
        return done

    async def _query_one(self, facts: attempts.AttemptFacts) -> str | None:
        """Asks the provider about a pending attempt (where it can be asked) and feeds its
        answer to the state machine like a callback (a query is not an inbox row)."""
        live = self.channels.live(facts.channel_id)
        status: str | None = None
        if live.provider.supports_query:
            try:
                result = await asyncio.to_thread(live.provider.query, live.config,
                                                 facts.out_trade_no,
                                                 provider_ref=facts.provider_ref)
                if (result.status != "not_found" and (result.amount_minor in
                                                      (None, facts.amount_minor))):
                    status = result.status
            except CardsvcError as error:
                log.info("query of %s failed: %s", facts.out_trade_no, error.code.value)
        now_ms = self.engine.now_ms()

        def unit(session: Session) -> tuple[str | None, str | None]:
            attempt = attempts.lock_attempt(session, facts.out_trade_no, facts.channel_id)
            if attempt is None:
                return None, None
            attempts.queried(session, attempt, now_ms)
            if status in ("paid", "failed", "expired"):
                return self._apply(session, attempt, status, now_ms)[1:]
            return None, None

        paid, release = await self.batcher.submit_async(unit)
        if release is not None:
            await self._release_durably(release)
        if paid is not None:
            await self.fulfil(paid)
        return status

    async def _expire_due(self, now_ms: int) -> int:
        def due() -> list[tuple[str, str, str]]:
            with self.db.read() as session:
                return [(row.order_id, row.attempt_id, row.channel_id) for row in
                        session.execute(select(RetailOrder.order_id, RetailOrder.attempt_id,
                                               RetailOrder.channel_id).where(
                            RetailOrder.status == "pending",
                            RetailOrder.hold_expires_at_ms <= now_ms - EXPIRY_GRACE_MS)
                            .limit(ROUND_MAX))]

        expired = 0
        for order_id, out_trade_no, channel_id in await asyncio.to_thread(due):
            attempt = await asyncio.to_thread(self._attempt, out_trade_no)
            if (attempt is not None and attempt.state == "pending"
                    and self.channels.live(channel_id).provider.supports_query
                    and await self._query_one(attempts.facts(attempt)) == "paid"):
                continue
            stamp = self.engine.now_ms()

            def unit(session: Session, ref: str = out_trade_no, channel: str = channel_id,
                     stamp: int = stamp) -> None:
                locked = attempts.lock_attempt(session, ref, channel)
                if locked is not None:
                    self._apply(session, locked, "expired", stamp)

            await self.batcher.submit_async(unit)
            await self._release_durably(f"retail/{order_id}")
            expired += 1
        return expired

    # ----- the sandbox's simulator -----

    async def simulate_sandbox(self, out_trade_no: str, *, scenario: str, duplicates: int = 0,
                               delay_ms: int = 0, tamper_amount: bool = False) -> int:
        """The sandbox pay page's button: the simulated provider sends its signed callbacks for
        the attempt (``scenario`` one of ``payments.SCENARIOS``, with extra duplicates, a delay
        before the first, and optionally a wrong amount) to the channel's notify handling, the
        first at once when there is no delay, the rest scheduled. Returns how many. Raises
        ORDER_NOT_FOUND (no such sandbox attempt), INVALID_ARGUMENT (scenario),
        SANDBOX_IN_PRODUCTION."""
        named = SCENARIOS.get(scenario)
        if named is None:
            raise invalid("scenario", "not a sandbox scenario")
        attempt = await asyncio.to_thread(self._attempt, out_trade_no)
        if attempt is None or attempt.provider != "sandbox":
            raise _not_found()
        live = self.channels.for_checkout(attempt.channel_id)
        token = live.view.notify_url.rsplit("/", 1)[-1]
        plan = SandboxScenario(named.statuses, duplicates=min(max(duplicates, 0), 10),
                               delay_ms=max(0, min(delay_ms, 600_000)), spacing_ms=300,
                               reverse=named.reverse, forge=named.forge)
        amount = attempt.amount_minor + (1 if tamper_amount else 0)
        now_ms = self.engine.now_ms()
        deliveries = sandbox_script(live.config, plan, out_trade_no=out_trade_no,
                                    amount_minor=amount, currency=attempt.currency,
                                    start_ms=now_ms)
        for index, delivery in enumerate(deliveries):
            wait_s = max(0.0, (delivery.deliver_at_ms - now_ms) / 1000)
            if index == 0 and wait_s == 0:
                await self.handle_notify(token, "POST", delivery.headers, [], delivery.body)
                continue
            if len(self._tasks) >= SANDBOX_TASKS_MAX:
                break
            task = asyncio.get_running_loop().create_task(
                self._deliver_later(wait_s, token, dict(delivery.headers), delivery.body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(deliveries)

    async def _deliver_later(self, wait_s: float, token: str, headers: dict[str, str],
                             body: bytes) -> None:
        await asyncio.sleep(wait_s)
        try:
            await self.handle_notify(token, "POST", headers, [], body)
        except Exception:  # a scheduled delivery must not kill the loop's task set
            log.exception("a sandbox delivery failed")

    # ----- rows and views -----

    def _row(self, order_id: str) -> RetailOrder:
        with self.db.read() as session:
            row = session.get(RetailOrder, order_id[:64])
            if row is None:
                raise _not_found()
            return row

    def _attempt(self, out_trade_no: str) -> PaymentAttempt | None:
        with self.db.read() as session:
            return session.get(PaymentAttempt, out_trade_no[:32])

    def _authorized(self, order_id: str, token: str | None) -> RetailOrder:
        """The order, when ``token`` is one of its tokens; ORDER_NOT_FOUND otherwise, the same
        answer as for an order that does not exist."""
        if not token or len(token) > 128:
            raise _not_found()
        with self.db.read() as session:
            found = session.get(OrderToken, token_hash(token))
            if found is None or found.order_id != order_id:
                raise _not_found()
            row = session.get(RetailOrder, order_id)
            if row is None:
                raise _not_found()
            return row

    def _view(self, row: RetailOrder, *, admin: bool = False) -> RetailOrderView:
        instructions = None
        try:
            instructions = self.shop.get(row.sku).usage_instructions
        except CardsvcError:
            with self.db.read() as session:
                sku = session.get(Sku, row.sku)
                instructions = None if sku is None else sku.usage_instructions
        return _order_view(row, instructions, admin=admin)

    def _mail_payload(self, session: Session, row: RetailOrder) -> dict[str, Any]:
        try:
            item = self.shop.get(row.sku)
            instructions, in_mail = item.usage_instructions, item.codes_in_mail
        except CardsvcError:  # off sale since: read the catalog
            sku = session.get(Sku, row.sku)
            instructions = None if sku is None else sku.usage_instructions
            in_mail = bool(sku is not None and sku.codes_in_mail)
        return {"email": row.email, "product_name": row.product_name, "quantity": row.quantity,
                "total_minor": row.total_minor, "currency": row.currency,
                "usage_instructions": instructions, "codes_in_mail": in_mail,
                "code_ids": list(row.code_ids or [])}


def _full_refund(notify: Notify) -> bool:
    """Whether a refund callback gives back the whole amount (providers that do not say how
    much refund in full)."""
    return notify.refunded_minor is None or notify.refunded_minor >= notify.amount_minor


def _mask_email(email: str) -> str:
    """``g***@example.com``: enough for the buyer to recognise the address, not to learn it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _ip_like(ip: str) -> bool:
    return bool(re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", ip))


def _order_view(row: RetailOrder, instructions: str | None, *, admin: bool) -> RetailOrderView:
    return RetailOrderView(
        order_id=row.order_id, status=row.status, sku=row.sku, product_name=row.product_name,
        quantity=row.quantity, unit_price_minor=row.unit_price_minor,
        total_minor=row.total_minor, currency=row.currency,
        email=row.email if admin else _mask_email(row.email), channel_id=row.channel_id,
        created_at_ms=row.created_at_ms, hold_expires_at_ms=row.hold_expires_at_ms,
        paid_at_ms=row.paid_at_ms, delivered_at_ms=row.delivered_at_ms, late=row.late,
        usage_instructions=instructions, attempt_id=row.attempt_id)


def _payment_view(started: PaymentStart, live: LiveChannel, out_trade_no: str,
                  expires_at_ms: int) -> PaymentView:
    return PaymentView(kind=started.kind, url=started.url, qr_text=started.qr_text,
                       form_fields=started.form_fields,
                       expires_at_ms=started.expires_at_ms or expires_at_ms,
                       channel_id=live.view.channel_id, channel_name=live.view.display_name,
                       sandbox=live.view.sandbox, out_trade_no=out_trade_no)


def _not_found() -> CardsvcError:
    return make_error(ErrorCode.ORDER_NOT_FOUND, "no such order", {})


__all__ = ["HOLD_TTL_S_DEFAULT", "RETAIL_CRASH_POINTS", "Checkout", "CheckoutRequest",
           "CheckoutResult", "NotifyResult", "PaymentView", "RetailOrderView", "StoreSettings"]
