"""Mail senders behind one port (``base``): SMTP (``smtp``) and a folder of ``.eml`` files
(``maildir``, the embedded default)."""

from cardsvc.delivery.senders.base import Mail, MailFailure, MailSender, to_message
from cardsvc.delivery.senders.maildir import FolderSender
from cardsvc.delivery.senders.smtp import SmtpSender

__all__ = ["FolderSender", "Mail", "MailFailure", "MailSender", "SmtpSender", "to_message"]
