"""Delivery: how codes reach the people entitled to them. ``reveal.py`` is the one plaintext exit
(the only opener of sealed payloads); ``exports.py`` records and writes watermarked exports;
``retail.py`` keeps a retail order's delivery records (page, email, claim link, API) and shows
its codes; ``email.py`` is the worker that sends the outbox's mails through ``senders/``.
"""

from cardsvc.delivery.email import (
    ALERT_MAIL_KIND,
    AlertMailed,
    Composer,
    MailWorker,
    masked_address,
    order_link_token,
)
from cardsvc.delivery.exports import COLUMNS, ExportResult, Exports, OrderCodes
from cardsvc.delivery.retail import (
    CLAIM_TTL_MS_DEFAULT,
    MAIL_KIND,
    MAIL_TEMPLATES,
    ClaimState,
    RetailReveal,
    ShownCode,
    claim_token,
    mails_sent,
    queue_mail,
    record_deliveries,
)
from cardsvc.delivery.reveal import RevealedCode, Revealer
from cardsvc.delivery.senders import FolderSender, Mail, MailFailure, MailSender, SmtpSender
from cardsvc.delivery.tables import ClaimLink, Delivery, DeliveryAttempt, Export

__all__ = [
    "ALERT_MAIL_KIND",
    "CLAIM_TTL_MS_DEFAULT",
    "COLUMNS",
    "MAIL_KIND",
    "MAIL_TEMPLATES",
    "AlertMailed",
    "ClaimLink",
    "ClaimState",
    "Composer",
    "Delivery",
    "DeliveryAttempt",
    "Export",
    "ExportResult",
    "Exports",
    "FolderSender",
    "Mail",
    "MailFailure",
    "MailSender",
    "MailWorker",
    "OrderCodes",
    "RetailReveal",
    "RevealedCode",
    "Revealer",
    "ShownCode",
    "SmtpSender",
    "claim_token",
    "mails_sent",
    "masked_address",
    "order_link_token",
    "queue_mail",
    "record_deliveries",
]
