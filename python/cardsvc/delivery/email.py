"""The delivery worker's mail: it reads ``mail.send`` events from the outbox (written in the
transaction of the order they report), composes each mail with the composer the server wires
(the web layer's templates: zh-CN and en, text and HTML, autoescaped), sends it through the
configured sender (SMTP, or the data directory's ``mail/`` folder on the embedded defaults) and
records the attempt; a failed send is retried with back-off (``cardsvc.events``), a permanent
failure marks the delivery ``failed`` for staff.

By default a delivery mail carries the claim link and the order link, not the codes; a SKU with
``codes_in_mail`` puts the codes in it too (read through the one plaintext exit). Sending is at
least once: a crash between the send and its record sends the mail again on restart, with the
same Message-ID so a receiver can drop the repeat.

Alert mail (``ALERT_MAIL_KIND``, queued by ``reports.Alerts`` in the transaction of the notices
it reports): one digest per recipient, composed with the ``alert`` template and a link to the
console or portal alerts page, never a code. Its Message-ID is the outbox event's, stable over
retries; the send is recorded with ``on_alert_mailed`` (the notices' ``mailed`` counts) in the
same transaction that marks the event done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from cardsvc import events
from cardsvc.crypto import derive_token
from cardsvc.db import Database
from cardsvc.delivery.retail import MAIL_KIND, claim_token, record_attempt
from cardsvc.delivery.reveal import Revealer
from cardsvc.delivery.senders.base import Mail, MailFailure, MailSender
from cardsvc.masking import mask_code

log = logging.getLogger("cardsvc.delivery")

Composer = Callable[[str, str, Mapping[str, Any]], tuple[str, str, str]]
"""``(template, locale, context) -> (subject, text body, HTML body)``."""
ROUND_MAX = 50
"""Mails one worker round sends at most (buyers' mail first, then alert mail)."""
ALERT_MAIL_KIND = "mail.alert"
"""The outbox kind of an alert digest (``reports.Alerts`` queues it)."""
AlertMailed = Callable[[Session, Sequence[int]], None]
"""``(session, alert event ids)``: records, in the worker's transaction, that a digest listing
those notices was sent (the runtime wires ``reports.mark_mailed``)."""


def order_link_token(link_key: bytes, order_id: str) -> str:
    """The token of the order link a mail carries (its hash is one of the order's tokens)."""
    return derive_token(link_key, "order-mail", order_id)


@dataclass
class MailWorker:
    """Sends the outbox's mails. ``composer`` None: mails wait in the outbox (nothing to
    render them with, e.g. a command-line process)."""

    db: Database
    revealer: Revealer
    sender: MailSender
    composer: Composer | None
    link_key: bytes
    public_url: str
    from_address: str
    clock_ms: Callable[[], int]
    on_alert_mailed: AlertMailed | None = None

    async def run_once(self, limit: int = ROUND_MAX) -> dict[str, int]:
        """One round: every due mail event (at most ``limit``: buyers' mail first, then alert
        mail). Returns counts of mails sent, retried later and failed for good."""
        counts = {"sent": 0, "retry": 0, "failed": 0}
        if self.composer is None:
            return counts
        now_ms = self.clock_ms()
        due = await asyncio.to_thread(self._due, now_ms, limit)
        for event in due:
            outcome = await (self._send_alert(event) if event.kind == ALERT_MAIL_KIND
                             else self._send(event))
            counts[outcome] += 1
        return counts

    def _due(self, now_ms: int, limit: int) -> list[events.Event]:
        with self.db.read() as session:
            found = events.due(session, MAIL_KIND, now_ms, limit)
            if len(found) < limit:
                found += events.due(session, ALERT_MAIL_KIND, now_ms, limit - len(found))
            return found

    async def _send_alert(self, event: events.Event) -> str:
        try:
            mail = self._compose_alert(event)
            await self.sender.send(mail)
        except MailFailure as failure:
            return await asyncio.to_thread(self._alert_failed, event, failure)
        await asyncio.to_thread(self._record_alert, event, self.clock_ms())
        return "sent"

    def _compose_alert(self, event: events.Event) -> Mail:
        assert self.composer is not None
        payload = event.payload
        area = "portal" if payload.get("area") == "portal" else "console"
        context = {**payload, "alerts_url": f"{self.public_url.rstrip('/')}/{area}/alerts"}
        subject, text, html = self.composer("alert", str(payload.get("locale", "zh_CN")),
                                            context)
        return Mail(to=str(payload["email"]), from_address=self.from_address, subject=subject,
                    text=text, html=html, message_id=f"<alert.{event.event_id}@cardsvc>")

    def _record_alert(self, event: events.Event, now_ms: int) -> None:
        with self.db.write() as session:
            events.done(session, event.event_id, now_ms)
            if self.on_alert_mailed is not None:
                self.on_alert_mailed(session, [int(i) for i in
                                               event.payload.get("alert_event_ids", [])])

    def _alert_failed(self, event: events.Event, failure: MailFailure) -> str:
        log.warning("alert mail %s to %s failed: %s", event.event_id,
                    masked_address(str(event.payload.get("email", ""))), failure.detail)
        with self.db.write() as session:
            state = events.retry_later(
                session, event.event_id, event.attempts if failure.temporary
                else events.ATTEMPTS_MAX, failure.detail, self.clock_ms())
        return "failed" if state == "failed" else "retry"

    async def _send(self, event: events.Event) -> str:
        payload = event.payload
        delivery_id = int(payload["delivery_id"])
        try:
            mail = await asyncio.to_thread(self._compose, payload)
            await self.sender.send(mail)
        except MailFailure as failure:
            return await asyncio.to_thread(self._failed, event, delivery_id, failure)
        now_ms = self.clock_ms()
        await asyncio.to_thread(self._record, event.event_id, delivery_id, now_ms)
        return "sent"

    def _compose(self, payload: Mapping[str, Any]) -> Mail:
        assert self.composer is not None
        order_id = str(payload["order_id"])
        base = self.public_url.rstrip("/")
        context: dict[str, Any] = {
            **payload,
            "order_url": f"{base}/orders/{order_id}?t={order_link_token(self.link_key, order_id)}",
            "claim_url": f"{base}/claim/{claim_token(self.link_key, order_id)}",
            "codes": [],
        }
        if payload.get("codes_in_mail") and payload.get("template") == "delivered":
            context["codes"] = [{"code": code, "pin": pin} for code, pin in
                                self.revealer.reveal([int(i) for i in payload["code_ids"]])]
        subject, text, html = self.composer(str(payload["template"]),
                                            str(payload.get("locale", "zh_CN")), context)
        return Mail(to=str(payload["email"]), from_address=self.from_address, subject=subject,
                    text=text, html=html,
                    message_id=f"<{payload['delivery_id']}.{order_id}@cardsvc>")

    def _record(self, event_id: int, delivery_id: int, now_ms: int) -> None:
        with self.db.write() as session:
            events.done(session, event_id, now_ms)
            record_attempt(session, delivery_id, "sent", None, now_ms, state="sent")

    def _failed(self, event: events.Event, delivery_id: int, failure: MailFailure) -> str:
        now_ms = self.clock_ms()
        log.warning("mail for delivery %s failed: %s", delivery_id, failure.detail)
        with self.db.write() as session:
            if failure.temporary:
                state = events.retry_later(session, event.event_id, event.attempts,
                                           failure.detail, now_ms)
            else:
                state = "failed"
                events.retry_later(session, event.event_id, events.ATTEMPTS_MAX,
                                   failure.detail, now_ms)
            record_attempt(session, delivery_id, "failed", failure.detail, now_ms,
                           state="failed" if state == "failed" else None)
        return "failed" if state == "failed" else "retry"


def masked_address(email: str) -> str:
    """An address as logs and the staff console show it (``*****@example.com``)."""
    local, _, domain = email.partition("@")
    return f"{mask_code(local)}@{domain}"
