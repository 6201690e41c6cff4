"""Delivery: how codes reach the people entitled to them. ``reveal.py`` is the one plaintext exit
(the only opener of sealed payloads); ``exports.py`` records and writes watermarked exports.
Email, claim links and delivery records join them here.
"""

from cardsvc.delivery.exports import COLUMNS, ExportResult, Exports, OrderCodes
from cardsvc.delivery.reveal import RevealedCode, Revealer
from cardsvc.delivery.tables import Export

__all__ = ["COLUMNS", "Export", "ExportResult", "Exports", "OrderCodes", "RevealedCode",
           "Revealer"]
