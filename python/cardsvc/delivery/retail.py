"""Retail deliveries: one record per order and channel (``page``, ``email``, ``claim``,
``api``), the claim links, and the reveal of a retail order's codes to its buyer.

The codes leave only through :class:`~cardsvc.delivery.reveal.Revealer` (the one plaintext
exit). The order page shows them in full on its first view and masked after that; showing them
in full again is an audited action (``code.reveal``, actor ``buyer``), and so is every claim.
The claim link's token is 128 bits derived from the link key (``cardsvc.crypto.links``) and
stored as its SHA-256 only, with an expiry; opening the link reveals nothing, the first POST
records when, from which address and with which browser (the audit entry is the trace), and
later POSTs show the codes masked.

The functions taking a ``Session`` work in the caller's transaction (the checkout saga writes
the delivery records in the same transaction as the delivered order and its outbox event).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from cardsvc import audit, events
from cardsvc.crypto import derive_token, token_hash
from cardsvc.db import Database
from cardsvc.delivery.reveal import Revealer
from cardsvc.delivery.tables import ClaimLink, Delivery, DeliveryAttempt
from cardsvc.errors import ErrorCode, make_error
from cardsvc.masking import mask_code

CHANNELS = ("page", "email", "claim", "api")
MAIL_TEMPLATES = ("delivered", "failed", "refunded")
CLAIM_TTL_MS_DEFAULT = 30 * 86_400_000
"""A claim link works for 30 days; the order page (token cookie, mail link) keeps working."""
MAIL_KIND = "mail.send"
_DELIVERIES = cast(Table, Delivery.__table__)
_INSERT_DELIVERY = insert(_DELIVERIES)
_INSERT_CLAIM = insert(cast(Table, ClaimLink.__table__))
DETAIL_CHARS_MAX = 200


@dataclass(frozen=True, slots=True)
class ShownCode:
    """One code as the page shows it: in full (``masked`` False) or masked."""

    code: str
    pin: str | None
    masked: bool


@dataclass(frozen=True, slots=True)
class ClaimState:
    """A claim link as its GET page sees it (nothing revealed)."""

    order_id: str
    claimed_at_ms: int | None
    expired: bool


def claim_token(link_key: bytes, order_id: str) -> str:
    """The claim link token of an order (recomputed for the mail and the order page)."""
    return derive_token(link_key, "claim", order_id)


def record_deliveries(session: Session, *, order_id: str, email: str, locale: str,
                      link_key: bytes, claim_ttl_ms: int, mail_payload: dict[str, object],
                      now_ms: int) -> None:
    """The delivered order's records: the page and the API ready, the claim link ready (its
    token's hash stored with its expiry), the delivery mail queued through the outbox.
    Idempotent (an order already recorded gets nothing new)."""
    exists = session.scalar(select(Delivery.delivery_id).where(
        Delivery.order_id == order_id, Delivery.channel == "page"))
    if exists is not None:
        return
    # Core inserts (no ORM unit of work): every paid order makes these rows.
    connection = session.connection()
    connection.execute(_INSERT_DELIVERY, [
        _delivery_values(order_id, channel, "", 0, "ready", None, locale, now_ms)
        for channel in ("page", "api", "claim")])
    connection.execute(_INSERT_CLAIM, {
        "token_hash": token_hash(claim_token(link_key, order_id)), "order_id": order_id,
        "expires_at_ms": now_ms + claim_ttl_ms, "created_at_ms": now_ms,
        "claimed_at_ms": None, "claimed_ip": None, "claimed_ua": None})
    _queue(session, order_id=order_id, template="delivered", seq=0, email=email,
           locale=locale, payload=mail_payload, now_ms=now_ms)


def queue_mail(session: Session, *, order_id: str, template: str, seq: int, email: str,
               locale: str, payload: dict[str, object], now_ms: int) -> bool:
    """Queues one mail (its delivery record and its outbox event), idempotent per (order,
    template, seq). Returns False when it was queued before."""
    if template not in MAIL_TEMPLATES:
        raise AssertionError(f"unknown mail template {template}")
    exists = session.scalar(select(Delivery.delivery_id).where(
        Delivery.order_id == order_id, Delivery.channel == "email",
        Delivery.template == template, Delivery.seq == seq))
    if exists is not None:
        return False
    _queue(session, order_id=order_id, template=template, seq=seq, email=email, locale=locale,
           payload=payload, now_ms=now_ms)
    return True


def _queue(session: Session, *, order_id: str, template: str, seq: int, email: str,
           locale: str, payload: dict[str, object], now_ms: int) -> None:
    delivery_id = session.connection().execute(_INSERT_DELIVERY.returning(
        _DELIVERIES.c.delivery_id), _delivery_values(order_id, "email", template, seq, "queued",
                                                    email, locale, now_ms)).scalar_one()
    events.emit(session, kind=MAIL_KIND, subject=order_id,
                dedupe=f"mail:{order_id}:{template}:{seq}",
                payload={**payload, "delivery_id": delivery_id, "template": template,
                         "locale": locale, "order_id": order_id}, now_ms=now_ms)


def mails_sent(session: Session, order_id: str, template: str) -> int:
    """How many mails of ``template`` the order has (the next resend's ``seq``)."""
    return session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.order_id == order_id, Delivery.channel == "email",
        Delivery.template == template)) or 0


def _delivery_values(order_id: str, channel: str, template: str, seq: int, state: str,
                     address: str | None, locale: str, now_ms: int) -> dict[str, object]:
    return {"order_id": order_id, "channel": channel, "template": template, "seq": seq,
            "state": state, "address": address, "locale": locale, "attempts": 0,
            "last_error": None, "created_at_ms": now_ms, "updated_at_ms": now_ms,
            "done_at_ms": None}


def record_attempt(session: Session, delivery_id: int, outcome: str, detail: str | None,
                   now_ms: int, *, state: str | None = None) -> None:
    """One try of a delivery, and its new state."""
    row = session.get(Delivery, delivery_id)
    if row is None:
        return
    row.attempts += 1
    row.updated_at_ms = now_ms
    if state is not None:
        row.state = state
        if state in ("sent", "viewed", "claimed"):
            row.done_at_ms = row.done_at_ms or now_ms
    if outcome == "failed":
        row.last_error = (detail or "")[:DETAIL_CHARS_MAX]
    session.add(DeliveryAttempt(delivery_id=delivery_id, at_ms=now_ms, outcome=outcome,
                                detail=None if detail is None else detail[:DETAIL_CHARS_MAX]))


class RetailReveal:
    """The page's, the API's and the claim link's view of a delivered order's codes."""

    def __init__(self, db: Database, revealer: Revealer, link_key: bytes,
                 clock_ms: Callable[[], int]) -> None:
        self.db = db
        self.revealer = revealer
        self.link_key = link_key
        self.clock_ms = clock_ms

    def show(self, order_id: str, code_ids: Sequence[int], *, channel: str, full: bool,
             ip: str | None) -> tuple[list[ShownCode], bool]:
        """The codes for ``channel`` (``page`` or ``api``): in full on the channel's first view
        or when ``full`` (an audited reveal), masked otherwise. Returns the codes and whether
        they are shown in full."""
        now_ms = self.clock_ms()
        with self.db.write() as session:
            row = session.scalar(select(Delivery).where(Delivery.order_id == order_id,
                                                        Delivery.channel == channel))
            first = row is not None and row.state == "ready"
            if row is not None and (first or full):
                record_attempt(session, row.delivery_id, "revealed" if full else "viewed",
                               None, now_ms, state="viewed")
            if full and not first:
                audit.append(session, actor="buyer", action="code.reveal", object_type="order",
                             object_id=order_id, at_ms=now_ms,
                             details={"channel": channel, "codes": len(code_ids),
                                      "ip": (ip or "")[:64]})
        return _shown(self.revealer.reveal(code_ids), masked=not (first or full)), first or full

    def claim_state(self, token: str) -> ClaimState:
        """The claim link ``token`` (GET: reveals nothing). Raises ORDER_NOT_FOUND for an
        unknown token (the same answer as for any other miss)."""
        with self.db.read() as session:
            row = session.get(ClaimLink, token_hash(token))
            if row is None:
                raise _claim_not_found()
            return ClaimState(row.order_id, row.claimed_at_ms,
                              row.expires_at_ms <= self.clock_ms())

    def claim(self, token: str, code_ids_of: Callable[[str], Sequence[int]], *, ip: str,
              user_agent: str) -> tuple[ClaimState, list[ShownCode]]:
        """The claim link's POST: the codes in full the first time (recording time, address
        and browser, audited as ``code.claim``), masked after. Raises ORDER_NOT_FOUND (unknown
        or expired link)."""
        now_ms = self.clock_ms()
        with self.db.write() as session:
            row = session.get(ClaimLink, token_hash(token))
            if row is None or row.expires_at_ms <= now_ms:
                raise _claim_not_found()
            first = row.claimed_at_ms is None
            if first:
                row.claimed_at_ms = now_ms
                row.claimed_ip = ip[:64]
                row.claimed_ua = user_agent[:200]
                delivery = session.scalar(select(Delivery).where(
                    Delivery.order_id == row.order_id, Delivery.channel == "claim"))
                if delivery is not None:
                    record_attempt(session, delivery.delivery_id, "claimed", ip[:64], now_ms,
                                   state="claimed")
                audit.append(session, actor="buyer", action="code.claim", object_type="order",
                             object_id=row.order_id, at_ms=now_ms,
                             details={"ip": ip[:64], "user_agent": user_agent[:200]})
            state = ClaimState(row.order_id, row.claimed_at_ms, False)
        codes = self.revealer.reveal(code_ids_of(state.order_id))
        return state, _shown(codes, masked=not first)


def _shown(codes: list[tuple[str, str | None]], *, masked: bool) -> list[ShownCode]:
    if not masked:
        return [ShownCode(code, pin, False) for code, pin in codes]
    return [ShownCode(mask_code(code), None if pin is None else mask_code(pin), True)
            for code, pin in codes]


def _claim_not_found() -> Exception:
    return make_error(ErrorCode.ORDER_NOT_FOUND, "no such order", {})
