"""Readers over everything: a code's whole story (``trace``), the platform's reconciliation of
ledger, orders and stock (``reconcile``), roll-ups of sales folded from the ledger and of
redemptions (``rollups``), the dashboards' figures read from them (``dashboards``), code search
(``codes``), agents as the console and portal read them (``agents``) and alerts (``alerts``),
with their tables.
"""

from cardsvc.reports.agents import AgentPage, AgentReports, AgentRow, PriceLine
from cardsvc.reports.alerts import (
    ALERT_KINDS,
    COOLDOWN_MS_DEFAULT,
    STAFF_ROLES_OF_KIND,
    STUCK_PAYMENT_MS_DEFAULT,
    SUBSCRIBABLE,
    Alerts,
    AlertsPage,
    mark_mailed,
)
from cardsvc.reports.codes import CodeRow, CodeSearch
from cardsvc.reports.dashboards import (
    COVER_DAYS,
    RANGE_DAYS_MAX,
    Dashboards,
    Figures,
    HourPoint,
    Overview,
    Slice,
    StockRow,
)
from cardsvc.reports.reconcile import Reconciliations
from cardsvc.reports.reconcile import report as reconciliation_report
from cardsvc.reports.retail import channel_reconciliation
from cardsvc.reports.rollups import RETAIL, Rollups
from cardsvc.reports.trace import trace_code, trace_code_id

__all__ = [
    "ALERT_KINDS",
    "COOLDOWN_MS_DEFAULT",
    "COVER_DAYS",
    "RANGE_DAYS_MAX",
    "RETAIL",
    "STAFF_ROLES_OF_KIND",
    "STUCK_PAYMENT_MS_DEFAULT",
    "SUBSCRIBABLE",
    "AgentPage",
    "AgentReports",
    "AgentRow",
    "Alerts",
    "AlertsPage",
    "CodeRow",
    "CodeSearch",
    "Dashboards",
    "Figures",
    "HourPoint",
    "Overview",
    "PriceLine",
    "Reconciliations",
    "Rollups",
    "Slice",
    "StockRow",
    "channel_reconciliation",
    "mark_mailed",
    "reconciliation_report",
    "trace_code",
    "trace_code_id",
]
