"""Goal: the delivery mail leaves from the outbox through a real SMTP server, once per
(order, template), in the order's language, carrying the claim link and not the code (unless
the SKU asks for codes in the mail); a server that is down gets the mail later (back-off), and
the embedded default writes ``.eml`` files into the data directory's ``mail/`` folder. Alert
mail leaves the same way, once per recipient, in the recipient's language, with no code, a
stable Message-ID over a resend, and is counted on its notices once sent.

Method: ``aiosmtpd`` on a free loopback port collects what it is sent; the runtime's mail
worker uses the web layer's composer (the same templates the server wires).
"""

from __future__ import annotations

import email
import email.header
import logging
import socket
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from cardsvc import audit
from cardsvc.access import User, principal_of_user, set_own_email
from cardsvc.delivery import Delivery
from cardsvc.events import OutboxEvent
from cardsvc.reports.tables import AlertEvent
from cardsvc.runtime import MailConfig, Runtime
from tests.fixtures.shop import CODES, SKU, request, run, shop_config, stock_shop
from tests.web.conftest import TEST_SECRET
from web import WebSettings, create_web, mail_composer


class Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Collector, int]]:
    """The test's own SMTP server; its logger (``mail.log``) is kept at WARNING: aiosmtpd logs
    the messages it receives, which for the codes-in-mail test hold a code (the suite's leak
    watch would rightly flag it, but that is the receiving server's log, not ours)."""
    server_log = logging.getLogger("mail.log")
    level = server_log.level
    server_log.setLevel(logging.WARNING)
    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()
        server_log.setLevel(level)


def mail_runtime(data_dir: Path, port: int | None) -> Runtime:
    composer = mail_composer(create_web(WebSettings(secret_key=TEST_SECRET)))
    mail = MailConfig(from_address="shop@example.com",
                      smtp_host=None if port is None else "127.0.0.1",
                      smtp_port=port or 25, composer=composer)
    runtime = Runtime.open(shop_config(data_dir, mail=mail))
    stock_shop(runtime)
    stock_shop(runtime, sku="INMAIL", codes=["MAILED-0001-CODE"], pins=["4242"],
               codes_in_mail=True)
    return runtime


def buy_and_pay(runtime: Runtime, sku: str = SKU, locale: str = "zh_CN") -> str:
    result = run(runtime.checkout.start(request(1, sku=sku, locale=locale)))
    run(runtime.checkout.simulate_sandbox(result.payment.out_trade_no, scenario="paid"))
    return result.order.order_id


def text_of(message: Message) -> str:
    parts = [p.get_payload(decode=True) for p in message.walk()
             if p.get_content_type() == "text/plain"]
    return b"".join(p for p in parts if isinstance(p, bytes)).decode()


def test_delivery_mail_goes_out_once_with_the_claim_link(tmp_path: Path,
                                                          smtp: tuple[Collector, int]) -> None:
    collector, port = smtp
    runtime = mail_runtime(tmp_path / "data", port)
    try:
        order_id = buy_and_pay(runtime)
        assert run(runtime.deliver_mail()) == {"sent": 1, "retry": 0, "failed": 0}
        assert run(runtime.deliver_mail())["sent"] == 0
        [message] = collector.messages
        subject = str(email.header.make_header(email.header.decode_header(message["Subject"])))
        assert message["To"] == "buyer@example.com" and order_id in subject
        body = text_of(message)
        assert "https://shop.test/claim/" in body and f"/orders/{order_id}?t=" in body
        assert "SHOP-" not in body and "感谢您的购买" in body
        link = body.split(f"/orders/{order_id}?t=")[1].split()[0]
        assert run(runtime.checkout.order(order_id, link)).status == "delivered"
        with runtime.db.read() as session:
            states = {row.channel: row.state for row in session.scalars(select(Delivery))}
        assert states["email"] == "sent"
        buy_and_pay(runtime, sku="INMAIL", locale="en")
        run(runtime.deliver_mail())
        english = text_of(collector.messages[-1])
        assert "MAILED-0001-CODE" in english and "Thank you for your order." in english
    finally:
        runtime.close()


def test_a_server_that_is_down_gets_the_mail_later(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    runtime = mail_runtime(tmp_path / "data", port)
    collector = Collector()
    try:
        buy_and_pay(runtime)
        assert run(runtime.deliver_mail()) == {"sent": 0, "retry": 1, "failed": 0}
        with runtime.db.read() as session:
            event = session.scalars(select(OutboxEvent)).one()
            assert event.state == "pending" and event.attempts == 1
        controller = Controller(collector, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            runtime.engine.set_clock_ms(runtime.engine.now_ms() + 61_000)
            assert run(runtime.deliver_mail())["sent"] == 1
        finally:
            controller.stop()
        assert len(collector.messages) == 1
    finally:
        runtime.engine.set_clock_ms(None)
        runtime.close()


def test_embedded_default_writes_eml_files(tmp_path: Path) -> None:
    runtime = mail_runtime(tmp_path / "data", None)
    try:
        buy_and_pay(runtime)
        run(runtime.deliver_mail())
        files = list((tmp_path / "data" / "mail").glob("*.eml"))
        assert len(files) == 1
        message = email.message_from_bytes(files[0].read_bytes())
        assert "/claim/" in text_of(message)
    finally:
        runtime.close()


def test_resend_is_rate_limited_and_audited(tmp_path: Path) -> None:
    runtime = mail_runtime(tmp_path / "data", None)
    try:
        order_id = buy_and_pay(runtime)
        for _ in range(3):
            run(runtime.checkout.resend(order_id, None))
        with pytest.raises(Exception) as limited:
            run(runtime.checkout.resend(order_id, None))
        assert getattr(limited.value, "code", None) == "RATE_LIMITED"
        run(runtime.deliver_mail())
        assert len(list((tmp_path / "data" / "mail").glob("*.eml"))) == 4
        entries = [e for e in audit.list_entries(runtime.db) if e.action == "mail.resend"]
        assert len(entries) == 3
    finally:
        runtime.close()


# ----- alert mail ----------------------------------------------------------------------------


def staff_with_address(runtime: Runtime, login: str, role: str, email_address: str,
                       locale: str = "en") -> None:
    """An active staff user whose alert address is set through the domain call."""
    with runtime.db.write() as session:
        row = User(user_id=f"u-{login}", login=login, display_name=login, role=role,
                   agent_id=None, status="active", failed_logins=0, lockouts=0,
                   created_at_ms=0, updated_at_ms=0)
        session.add(row)
        session.flush()
        principal = principal_of_user(row)
    set_own_email(runtime.db, principal, email_address, locale=locale)


def fire_low_stock(runtime: Runtime) -> dict[str, int]:
    runtime.catalog.update_sku(SKU, {"low_stock_threshold": 100}, actor="test")
    return runtime.alerts.evaluate()


def alert_rows(runtime: Runtime) -> list[tuple[str, int, int]]:
    """(notice, mails queued, mails sent) of every alert notice, oldest first."""
    with runtime.db.read() as session:
        return [(row.notice, row.mails_queued, row.mailed) for row in session.scalars(
            select(AlertEvent).order_by(AlertEvent.event_id))]


def test_an_alert_mail_goes_to_its_recipient_once_without_a_code(
        tmp_path: Path, smtp: tuple[Collector, int]) -> None:
    collector, port = smtp
    runtime = mail_runtime(tmp_path / "data", port)
    try:
        staff_with_address(runtime, "boss", "owner", "boss@example.com")
        staff_with_address(runtime, "chef", "operator", "chef@example.com", locale="zh_CN")
        assert fire_low_stock(runtime)["mails"] == 2
        assert run(runtime.deliver_mail()) == {"sent": 2, "retry": 0, "failed": 0}
        assert run(runtime.deliver_mail())["sent"] == 0
        by_address = {message["To"]: message for message in collector.messages}
        assert sorted(by_address) == ["boss@example.com", "chef@example.com"]
        english, chinese = (text_of(by_address[a]) for a in ("boss@example.com",
                                                             "chef@example.com"))
        assert "Low stock" in english and "https://shop.test/console/alerts" in english
        assert "以下预警需要您处理" in chinese
        for message in collector.messages:
            assert message["Message-ID"].startswith("<alert.")
            whole = message.as_string()
            assert not any(code in whole for code in [*CODES, "MAILED-0001-CODE"])
        assert alert_rows(runtime) == [("fired", 2, 2)]
    finally:
        runtime.close()


def test_an_alert_mail_sent_again_after_a_crash_keeps_its_message_id(
        tmp_path: Path, smtp: tuple[Collector, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """At least once: a crash after the send and before its record sends the mail again on the
    next round, with the same Message-ID, and counts it once."""
    collector, port = smtp
    runtime = mail_runtime(tmp_path / "data", port)
    try:
        staff_with_address(runtime, "boss", "owner", "boss@example.com")
        fire_low_stock(runtime)
        record = runtime.mail._record_alert

        def crash(*args: object) -> None:
            raise RuntimeError("crash before the record")

        monkeypatch.setattr(runtime.mail, "_record_alert", crash)
        with pytest.raises(RuntimeError):
            run(runtime.deliver_mail())
        monkeypatch.setattr(runtime.mail, "_record_alert", record)
        assert run(runtime.deliver_mail())["sent"] == 1
        first, again = collector.messages
        assert first["Message-ID"] == again["Message-ID"]
        assert alert_rows(runtime) == [("fired", 1, 1)]
    finally:
        runtime.close()


def test_alert_mail_waits_while_the_server_is_down(tmp_path: Path) -> None:
    runtime = mail_runtime(tmp_path / "data", free_port())
    try:
        staff_with_address(runtime, "boss", "owner", "boss@example.com")
        fire_low_stock(runtime)
        assert run(runtime.deliver_mail()) == {"sent": 0, "retry": 1, "failed": 0}
        assert alert_rows(runtime) == [("fired", 1, 0)]
    finally:
        runtime.close()
