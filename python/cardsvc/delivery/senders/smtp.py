"""Mail over SMTP with ``aiosmtplib``: one connection per mail, bounded in time, STARTTLS when
configured (or implicit TLS on port 465), optional login."""

from __future__ import annotations

from dataclasses import dataclass

import aiosmtplib

from cardsvc.delivery.senders.base import Mail, MailFailure, to_message

TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SmtpSender:
    """Sends through ``host:port``; ``starttls`` upgrades a plain connection, ``use_tls`` is
    implicit TLS; ``username``/``password`` log in when given (kept out of ``repr``)."""

    host: str
    port: int = 25
    starttls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = TIMEOUT_S

    def __repr__(self) -> str:
        return f"SmtpSender(host={self.host!r}, port={self.port})"

    async def send(self, mail: Mail) -> None:
        """Raises MailFailure: temporary for connection problems and 4xx replies, permanent
        for 5xx replies."""
        try:
            await aiosmtplib.send(
                to_message(mail), sender=mail.from_address, recipients=[mail.to],
                hostname=self.host, port=self.port, start_tls=self.starttls or None,
                use_tls=self.use_tls, username=self.username, password=self.password,
                timeout=self.timeout_s)
        except aiosmtplib.SMTPResponseException as error:
            raise MailFailure(f"smtp {error.code}", temporary=error.code < 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise MailFailure(f"smtp {type(error).__name__}", temporary=True) from None
