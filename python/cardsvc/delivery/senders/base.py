"""The mail sender port: what the delivery worker hands a sender, and how a sender fails."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol


@dataclass(frozen=True)
class Mail:
    """One message: the recipient, the subject, the plain-text and HTML bodies, and a stable
    Message-ID (the same for every retry of one delivery, so a receiver can drop a repeat)."""

    to: str
    from_address: str
    subject: str
    text: str
    html: str
    message_id: str


class MailFailure(Exception):
    """The mail did not go out. ``temporary`` failures are retried with back-off (a refused
    connection, a 4xx reply); permanent ones (a 5xx reply for the recipient) are not.
    ``detail`` is short and holds no body text."""

    def __init__(self, detail: str, *, temporary: bool) -> None:
        super().__init__(detail)
        self.detail = detail[:200]
        self.temporary = temporary


class MailSender(Protocol):
    """Sends one mail, or raises :class:`MailFailure`."""

    async def send(self, mail: Mail) -> None: ...


def to_message(mail: Mail) -> bytes:
    """The RFC 5322 bytes of ``mail`` (multipart/alternative, UTF-8)."""
    message = EmailMessage()
    message["From"] = mail.from_address
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = mail.message_id
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message.as_bytes()
