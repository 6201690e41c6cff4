"""The console's dashboard (``/console``): money of a range of days from the ledger's roll-ups,
orders and redemptions per hour, stock with days of cover, the alerts in force. Every chart is
SVG drawn here (readable without JavaScript, its numbers in a table under it) with a CSV of the
same data (``/console/charts/<name>.csv`` with the same range).

Each section shows only what the visitor's scopes open: money needs ``reconciliation``, the
hourly counts ``masked_views``, stock ``catalog``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.reports import Figures, HourPoint, Overview, StockRow
from web.charts import BarSeries, Series, bar_chart, line_chart
from web.csv_download import csv_response, series_rows
from web.formatting import money
from web.i18n import gettext
from web.pages.common import day_range_ms, parse_date, query_text
from web.render import render_page, renderer_of
from web.sessions import Visitor, console_page, runtime_of

RANGES = ("today", "7d", "30d", "custom")
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Range:
    """The days the dashboard shows: a preset or a custom ``since``..``until``."""

    name: str
    since: date
    until: date


def chosen_range(request: Request, today: date) -> Range:
    """The range of the query (``range=today|7d|30d|custom``, ``since``/``until`` dates);
    anything unreadable falls back to today."""
    name = query_text(request, "range", 16) or "today"
    if name == "7d":
        return Range(name, today - timedelta(days=6), today)
    if name == "30d":
        return Range(name, today - timedelta(days=29), today)
    if name == "custom":
        since = parse_date(query_text(request, "since", 10))
        until = parse_date(query_text(request, "until", 10))
        if since is not None and until is not None:
            return Range(name, since, until)
    return Range("today", today, today)


def _money_of(currency: str) -> Any:
    def fmt(value: float) -> str:
        return money(int(value), currency)
    return fmt


def _hour_series(points: list[HourPoint]) -> list[Series]:
    return [Series(gettext("Orders"), [(p.hour_ms, p.orders) for p in points]),
            Series(gettext("Redemptions"), [(p.hour_ms, p.redemptions) for p in points])]


def _slice_series(overview: Overview, which: str, currency: str) -> tuple[list[str],
                                                                         list[BarSeries]]:
    slices = [s for s in (overview.by_channel if which == "channel" else overview.by_sku)
              if s.figures.currency == currency]
    names = [gettext("Other") if s.key == "other" and s.name == "other" else
             (gettext("Retail store") if s.key == "retail" else s.name) for s in slices]
    return names, [BarSeries(gettext("GMV"), [s.figures.gmv_minor for s in slices]),
                   BarSeries(gettext("Gross profit"), [s.figures.profit_minor for s in slices])]


async def _gather(request: Request, me: Visitor, chosen: Range) -> dict[str, Any]:
    """The data of every section the visitor may see (each one domain read)."""
    runtime = runtime_of(request)
    timezone = renderer_of(request).settings.timezone
    since_ms, until_ms = day_range_ms(chosen.since, chosen.until, timezone)
    if until_ms - since_ms > 31 * 24 * HOUR_MS:
        since_ms = until_ms - 31 * 24 * HOUR_MS
    data: dict[str, Any] = {"overview": None, "hours": None, "stock": None}
    dashboards = runtime.dashboards
    if me.may("reconciliation"):
        data["overview"] = await asyncio.to_thread(dashboards.overview, me.principal,
                                                   chosen.since, chosen.until)
    if me.may("masked_views"):
        data["hours"] = await asyncio.to_thread(dashboards.per_hour, me.principal, since_ms,
                                                until_ms)
    if me.may("catalog"):
        data["stock"] = await asyncio.to_thread(dashboards.stock, me.principal)
    return data


@console_page()
async def dashboard(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    chosen = chosen_range(request, runtime.dashboards.today())
    timezone = renderer_of(request).settings.timezone
    data = await _gather(request, me, chosen)
    overview: Overview | None = data["overview"]
    charts: dict[str, Any] = {}
    if data["hours"] is not None:
        charts["hours"] = line_chart(gettext("Orders and redemptions per hour"),
                                     _hour_series(data["hours"]), timezone=timezone)
    totals: list[Figures] = overview.totals if overview is not None else []
    if overview is not None and totals:
        currency = totals[0].currency
        for which, title in (("channel", gettext("Sales by channel")),
                             ("sku", gettext("Sales by product"))):
            names, series = _slice_series(overview, which, currency)
            if names:
                charts[which] = bar_chart(f"{title} ({currency})", names, series,
                                          value_format=_money_of(currency))
    alerts: list[Any] = []
    query = request.url.query
    return await render_page(request, "console/dashboard.html", {
        "range": chosen, "ranges": RANGES, "overview": overview, "totals": totals,
        "stock": data["stock"], "charts": charts, "alerts": alerts,
        "csv_query": ("?" + query) if query else "", "me": me})


@console_page()
async def chart_csv(request: Request, me: Visitor) -> Response:
    """The data of one dashboard chart (or the stock table) as CSV, for the same range."""
    runtime = runtime_of(request)
    name = request.path_params["name"]
    chosen = chosen_range(request, runtime.dashboards.today())
    data = await _gather(request, me, chosen)
    stem = f"{name}-{chosen.since.isoformat()}-{chosen.until.isoformat()}"
    if name == "hourly" and data["hours"] is not None:
        header, rows = series_rows(_hour_series(data["hours"]))
        return csv_response(stem, header, rows)
    if name in ("channel", "sku") and data["overview"] is not None:
        return csv_response(stem, *_slice_csv(data["overview"], name))
    if name == "stock" and data["stock"] is not None:
        return csv_response(f"stock-{runtime.dashboards.today().isoformat()}", *_stock_csv(
            data["stock"]))
    raise HTTPException(404)


def _slice_csv(overview: Overview, which: str) -> tuple[list[str], list[list[Any]]]:
    slices = overview.by_channel if which == "channel" else overview.by_sku
    header = [which, "name", "currency", "orders", "refunds", "quantity", "gmv_minor",
              "commission_minor", "cost_minor", "profit_minor"]
    rows = [[s.key, s.name, f.currency, f.orders, f.refunds, f.quantity, f.gmv_minor,
             f.commission_minor, f.cost_minor, f.profit_minor]
            for s in slices for f in (s.figures,)]
    return header, rows


def _stock_csv(stock: list[StockRow]) -> tuple[list[str], list[list[Any]]]:
    header = ["sku", "name", "pool", "available", "sold_7d", "per_day", "days_of_cover",
              "low_stock_threshold", "low"]
    rows = [[r.sku, r.name, r.pool, r.available, r.sold_7d, r.per_day, r.days_of_cover,
             r.threshold, "yes" if r.low else "no"] for r in stock]
    return header, rows


ROUTES = [
    Route("/console", dashboard, methods=["GET"], name="console_dashboard"),
    Route("/console/charts/{name:str}.csv", chart_csv, methods=["GET"],
          name="console_chart_csv"),
]
