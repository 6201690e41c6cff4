"""DEMO PAGES, to be replaced by the storefront: they prove the foundation, nothing more.

* ``GET /``: the landing page in the base layout, with the echo form.
* ``POST /demo/echo``: a form behind the CSRF check; a valid message is flashed back on ``/``
  after a redirect (post, redirect, get), an invalid one shows the form again with its error.
* ``GET /demo/kit``: every macro and chart on one page (money, dates, codes, a paged table,
  charts, copy and countdown), a living reference for page authors and the phone-width test.
* ``GET /demo/kit.csv``: the kit's chart data as a CSV download.

They call no domain function: the data is fixed here, so the output is the same every run.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from web.charts import BarSeries, Series, bar_chart, line_chart, sparkline
from web.csv_download import csv_response, series_rows
from web.flash import add_flash
from web.forms import TextField, read_form
from web.i18n import gettext
from web.render import render_page, renderer_of

ECHO_FIELDS = (TextField("message", max_chars=200),)
_T0 = 1_767_225_600_000
"""2026-01-01 00:00 UTC, the fixed start of the demo data."""
_HOUR = 3_600_000
KIT_ROWS = [
    {"order": f"ORD-{1000 + n}", "code": f"CARD-{n:04d}-{(n * 7919) % 10000:04d}",
     "amount_minor": 1250 * n, "at_ms": _T0 + n * _HOUR}
    for n in range(1, 31)
]
KIT_PAGE_SIZE = 5


def _kit_series() -> list[Series]:
    orders = Series(gettext("Orders"), [(_T0 + h * _HOUR, (h * 37) % 23 + 5) for h in range(24)])
    refunds = Series(gettext("Refunds"), [(_T0 + h * _HOUR, (h * 11) % 5) for h in range(24)])
    return [orders, refunds]


async def landing(request: Request) -> Response:
    """The landing page with an empty echo form."""
    return await render_page(request, "demo/landing.html", {"form": None})


async def echo(request: Request) -> Response:
    """Checks the echo form: 422 with the form again, or a flash and a 303 to ``/``."""
    form = await read_form(request, ECHO_FIELDS)
    if not form.ok:
        return await render_page(request, "demo/landing.html", {"form": form}, status=422)
    renderer = renderer_of(request)
    response = RedirectResponse(request.scope.get("root_path", "") + "/", status_code=303)
    add_flash(response, request, signer=renderer.signer, cookies=renderer.cookies,
              text=gettext("You said: %(message)s") % {"message": form.value("message")},
              level="success")
    return response


def _cursor(request: Request) -> int:
    """The demo table's cursor: the index of the first row shown (an opaque string in real
    lists, where it would be the last key seen)."""
    raw = request.query_params.get("cursor", "0")
    return int(raw) if raw.isdigit() and int(raw) < len(KIT_ROWS) else 0


async def kit(request: Request) -> Response:
    """Every macro and chart with fixed data."""
    settings = renderer_of(request).settings
    start = _cursor(request)
    rows = KIT_ROWS[start:start + KIT_PAGE_SIZE]
    following = start + KIT_PAGE_SIZE
    series = _kit_series()
    skus = [gettext("Game points 100"), gettext("Video membership, one month"),
            gettext("Shopping card 50")]
    context = {
        "rows": rows,
        "next_cursor": str(following) if following < len(KIT_ROWS) else None,
        "first_page": start > 0,
        "line": line_chart(gettext("Orders per hour"), series, timezone=settings.timezone),
        "bars": bar_chart(gettext("Sales by product"), skus, [
            BarSeries(gettext("Agents"), [120, 45, 80]),
            BarSeries(gettext("Store"), [60, 30, 10]),
        ], stacked=True),
        "spark": sparkline([v for _, v in series[0].points], label=gettext("Orders")),
        "deadline_ms": int(time.time() * 1000) + 15 * 60_000,
    }
    return await render_page(request, "demo/kit.html", context)


async def kit_csv(request: Request) -> Response:
    """The kit's line chart data as CSV."""
    header, rows = series_rows(_kit_series())
    return csv_response("orders-per-hour.csv", header, rows)


ROUTES = [
    Route("/", landing, methods=["GET"], name="demo_landing"),
    Route("/demo/echo", echo, methods=["POST"], name="demo_echo"),
    Route("/demo/kit", kit, methods=["GET"], name="demo_kit"),
    Route("/demo/kit.csv", kit_csv, methods=["GET"], name="demo_kit_csv"),
]
