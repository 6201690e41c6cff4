"""Readers over everything: a code's whole story (``trace``) and the platform's reconciliation
of ledger, orders and stock (``reconcile``). Dashboards and alerts join them here.
"""

from cardsvc.reports.reconcile import report as reconciliation_report
from cardsvc.reports.retail import channel_reconciliation
from cardsvc.reports.trace import trace_code

__all__ = ["channel_reconciliation", "reconciliation_report", "trace_code"]
