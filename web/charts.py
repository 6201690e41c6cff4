"""Charts drawn on the server as SVG: readable without JavaScript, accessible, deterministic.

Three kinds, each returning ``Markup`` to drop into a template:

* :func:`line_chart`: time series (Unix ms on x), several series, y ticks at 1-2-2.5-5 steps,
  x ticks at whole minutes, hours or days of the display time zone;
* :func:`bar_chart`: categories as horizontal bars (long Chinese SKU names fit on a phone),
  several series grouped or stacked, value ticks and, for one series, the value at each bar;
* :func:`sparkline`: a word-sized trend for tables and cards.

Accessibility: every chart is an ``<svg role="img">`` labelled by its ``<title>`` and a
``<desc>`` summarising each series (range, lowest, highest), followed by an HTML legend and a
``<details>`` data table with every value, so screen readers and people who prefer numbers get
all of it. Series differ by dash pattern as well as colour (CSS classes ``series-0`` to
``series-7`` in site.css), so they stay apart in grey scale and for colour-blind readers.

Safety and tests: every text (titles, names, labels) is escaped; numbers are written with a
fixed precision and ids derive from a hash of the inputs, so the same data gives the same bytes
(tests compare output exactly). Inputs are bounded (:data:`SERIES_MAX`, :data:`POINTS_MAX`,
:data:`CATEGORIES_MAX`); NaN and infinities are refused. Colours come from CSS, so the
CSP's ``style-src 'self'`` holds: no ``style`` attribute is ever written.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton
from babel.numbers import format_decimal
from markupsafe import Markup, escape

from web.formatting import datetime_ms
from web.i18n import active, gettext

SERIES_MAX = 8
"""Eight colours and dash patterns stay distinguishable; more lines are unreadable anyway."""
POINTS_MAX = 2000
"""Per series: a month of hourly buckets is 744; more points than pixels only add bytes."""
CATEGORIES_MAX = 60
LABEL_WIDTH_EM_MAX = 8.5
"""Category labels are cut (with an ellipsis) to fit the 98-unit label column at site.css's
11-unit font size: seven wide (CJK) characters and the ellipsis, or about thirteen Latin ones;
the data table has them whole."""
Number = int | float
ValueFormat = Callable[[Number], str]

_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_TIME_STEPS_MS = (
    _MINUTE, 5 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE, _HOUR, 3 * _HOUR, 6 * _HOUR,
    12 * _HOUR, _DAY, 2 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY, 90 * _DAY, 365 * _DAY,
)


@dataclass(frozen=True)
class Series:
    """A named time series: ``(time in Unix ms, value)`` points in increasing time."""

    name: str
    points: Sequence[tuple[int, Number]]


@dataclass(frozen=True)
class BarSeries:
    """A named series of a bar chart: one value per category, in the categories' order."""

    name: str
    values: Sequence[Number]


def default_value_format(value: Number) -> str:
    """A number with the active locale's grouping and at most two decimals."""
    return format_decimal(value, format="#,##0.##", locale=active().locale)


def _f(value: float) -> str:
    """A coordinate with one decimal: enough for the screen, and the same text every run."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _check_values(values: Sequence[Number], what: str) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise ValueError(f"{what} values must be finite numbers")


def _chart_id(kind: str, *parts: object) -> str:
    digest = hashlib.sha256(repr((kind, parts)).encode()).hexdigest()[:10]
    return f"chart-{digest}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) from
    at most ``low`` to at least ``high``."""
    if high < low:
        low, high = high, low
    if high == low:
        # A flat series sits on a baseline from zero: all zeros (a quiet day's counts) on 0..1,
        # never a negative axis no value can reach.
        low, high = (0.0, 1.0) if low == 0 else sorted((0.0, low * 2))
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    stop = math.ceil(high / step) * step
    steps = round((stop - start) / step)
    return [round(start + index * step, 10) for index in range(steps + 1)]


def time_ticks(start_ms: int, end_ms: int, timezone: str, count: int = 5) -> tuple[list[int], int]:
    """(tick times, step): the smallest step of whole minutes, hours or days that gives at most
    ``count`` + 1 ticks, aligned to the ``timezone``'s local midnight and hours."""
    span = max(end_ms - start_ms, _MINUTE)
    step = next((s for s in _TIME_STEPS_MS if span / s <= count), _TIME_STEPS_MS[-1])
    offset_s = ZoneInfo(timezone).utcoffset(datetime.fromtimestamp(start_ms / 1000, UTC))
    offset = int(offset_s.total_seconds() * 1000) if offset_s is not None else 0
    first = math.ceil((start_ms + offset) / step) * step - offset
    return list(range(first, end_ms + 1, step)), step


def _time_label(ms: int, step: int, timezone: str) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(timezone))
    skeleton = "MMMd" if step >= _DAY else "Hm"
    return format_skeleton(skeleton, moment, locale=active().locale)


def _summary(name: str, values: Sequence[Number], fmt: ValueFormat) -> str:
    if not values:
        return gettext("%(name)s: no data.") % {"name": name}
    return gettext("%(name)s: from %(first)s to %(last)s, lowest %(low)s, highest %(high)s.") % {
        "name": name, "first": fmt(values[0]), "last": fmt(values[-1]),
        "low": fmt(min(values)), "high": fmt(max(values))}


def _svg_open(chart_id: str, width: int, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" viewBox="0 0 {width} '
        f'{height}" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
    ]


def _legend(names: Sequence[str]) -> str:
    items = "".join(
        f'<li><span class="swatch series-{index}" aria-hidden="true"></span>{escape(name)}</li>'
        for index, name in enumerate(names))
    return f'<ul class="chart-legend">{items}</ul>'


def _table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + f'<th scope="row">{escape(row[0])}</th>'
        + "".join(f'<td class="num">{escape(cell)}</td>' for cell in row[1:]) + "</tr>"
        for row in rows)
    summary = escape(gettext("Show the data as a table"))
    return (f'<details class="chart-data"><summary>{summary}</summary>'
            f'<div class="table-wrap"><table><caption>{escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>")


def _figure(chart_id: str, svg: list[str], legend_names: Sequence[str], table: str) -> Markup:
    legend = _legend(legend_names) if len(legend_names) > 1 else ""
    return Markup(f'<figure class="chart" id="{chart_id}">' + "".join(svg) + "</svg>"
                  + legend + table + "</figure>")


@dataclass(frozen=True)
class _Frame:
    """The plot area inside the SVG and the value range mapped onto it."""

    left: float
    top: float
    right: float
    bottom: float

    def x(self, value: float, low: float, high: float) -> float:
        return self.left + (value - low) / ((high - low) or 1) * (self.right - self.left)

    def y(self, value: float, low: float, high: float) -> float:
        return self.bottom - (value - low) / ((high - low) or 1) * (self.bottom - self.top)


def _check_line_input(series: Sequence[Series]) -> None:
    if not 0 < len(series) <= SERIES_MAX:
        raise ValueError(f"a line chart has 1 to {SERIES_MAX} series")
    for one in series:
        if len(one.points) > POINTS_MAX:
            raise ValueError(f"a series has at most {POINTS_MAX} points")
        _check_values([value for _, value in one.points], "series")
        times = [time for time, _ in one.points]
        if times != sorted(times):
            raise ValueError("series points must be in increasing time")


def line_chart(title: str, series: Sequence[Series], *, timezone: str,
               value_format: ValueFormat = default_value_format, description: str = "",
               width: int = 360, height: int = 220) -> Markup:
    """A line chart of ``series`` (see the module text). Times are shown in ``timezone``.
    ``width``/``height`` set the drawing's proportions; it scales to its container. Raises
    ValueError for no series, more than 8, more than 2000 points in one, points out of time
    order, or values that are not finite numbers."""
    _check_line_input(series)
    chart_id = _chart_id("line", title, [(s.name, tuple(s.points)) for s in series])
    times = [time for one in series for time, _ in one.points]
    values = [value for one in series for _, value in one.points]
    t_low, t_high = (min(times), max(times)) if times else (0, _DAY)
    y_ticks = nice_ticks(min(values, default=0), max(values, default=1))
    y_low, y_high = y_ticks[0], y_ticks[-1]
    frame = _Frame(left=48, top=10, right=width - 10, bottom=height - 26)
    desc = " ".join([description, *(_summary(s.name, [v for _, v in s.points], value_format)
                                    for s in series)]).strip()
    svg = _svg_open(chart_id, width, height, title, desc)
    svg.append('<g class="grid" aria-hidden="true">')
    for tick in y_ticks:
        y = _f(frame.y(tick, y_low, y_high))
        svg.append(f'<line x1="{_f(frame.left)}" x2="{_f(frame.right)}" y1="{y}" y2="{y}"/>'
                   f'<text class="tick tick-y" x="{_f(frame.left - 4)}" y="{y}">'
                   f"{escape(value_format(tick))}</text>")
    x_ticks, step = time_ticks(t_low, t_high, timezone)
    for tick in x_ticks:
        x = _f(frame.x(tick, t_low, t_high))
        svg.append(f'<line class="tick-mark" x1="{x}" x2="{x}" y1="{_f(frame.bottom)}" '
                   f'y2="{_f(frame.bottom + 4)}"/><text class="tick tick-x" x="{x}" '
                   f'y="{_f(frame.bottom + 16)}">{escape(_time_label(tick, step, timezone))}'
                   "</text>")
    svg.append("</g>")
    for index, one in enumerate(series):
        points = " ".join(f"{_f(frame.x(t, t_low, t_high))},{_f(frame.y(v, y_low, y_high))}"
                          for t, v in one.points)
        svg.append(f'<g class="series series-{index}"><title>{escape(one.name)}</title>'
                   f'<polyline points="{points}"/>')
        if len(one.points) <= 31:
            svg.extend(f'<circle cx="{_f(frame.x(t, t_low, t_high))}" '
                       f'cy="{_f(frame.y(v, y_low, y_high))}" r="2.5"/>' for t, v in one.points)
        svg.append("</g>")
    headers, rows = line_table(series, timezone, value_format)
    return _figure(chart_id, svg, [s.name for s in series], _table(title, headers, rows))


def line_table(series: Sequence[Series], timezone: str,
               value_format: ValueFormat = default_value_format) -> tuple[list[str],
                                                                         list[list[str]]]:
    """The data of a line chart as a table of display text: a time column (local, medium
    format) and one column per series; a series without a point at a time shows an empty cell."""
    by_time: dict[int, dict[int, Number]] = {}
    for index, one in enumerate(series):
        for time, value in one.points:
            by_time.setdefault(time, {})[index] = value
    headers = [gettext("Time"), *(s.name for s in series)]
    rows = [[datetime_ms(time, timezone),
             *(value_format(cells[i]) if i in cells else "" for i in range(len(series)))]
            for time, cells in sorted(by_time.items())]
    return headers, rows


def _check_bar_input(categories: Sequence[str], series: Sequence[BarSeries],
                     stacked: bool) -> None:
    if not 0 < len(series) <= SERIES_MAX:
        raise ValueError(f"a bar chart has 1 to {SERIES_MAX} series")
    if len(categories) > CATEGORIES_MAX:
        raise ValueError(f"a bar chart has at most {CATEGORIES_MAX} categories")
    for one in series:
        if len(one.values) != len(categories):
            raise ValueError("each bar series has one value per category")
        _check_values(one.values, "bar")
        if stacked and any(value < 0 for value in one.values):
            raise ValueError("stacked bars take values of zero or more")


def _em(char: str) -> float:
    """A character's approximate width in ems: 1 for wide (CJK) forms, 0.55 for the rest."""
    return 1.0 if unicodedata.east_asian_width(char) in ("W", "F") else 0.55


def _short(label: str) -> str:
    """``label`` cut to :data:`LABEL_WIDTH_EM_MAX` ems, an ellipsis marking the cut."""
    if sum(_em(char) for char in label) <= LABEL_WIDTH_EM_MAX:
        return label
    width, kept = 1.0, []  # the ellipsis takes about one em
    for char in label:
        width += _em(char)
        if width > LABEL_WIDTH_EM_MAX:
            break
        kept.append(char)
    return "".join(kept) + "…"


def bar_chart(title: str, categories: Sequence[str], series: Sequence[BarSeries], *,
              stacked: bool = False, value_format: ValueFormat = default_value_format,
              description: str = "", width: int = 360) -> Markup:
    """A horizontal bar chart: one row per category, one bar per series (side by side, or one
    on another when ``stacked``). The height follows the number of rows. Raises ValueError for
    no series or more than 8, more than 60 categories, a series whose length differs from the
    categories', values that are not finite, or negative values when stacked."""
    _check_bar_input(categories, series, stacked)
    chart_id = _chart_id("bar", title, tuple(categories),
                         [(s.name, tuple(s.values)) for s in series], stacked)
    lanes = 1 if stacked else len(series)
    row_height = max(22, 9 * lanes + 8)
    height = 10 + row_height * max(len(categories), 1) + 24
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    values = totals if stacked else [v for s in series for v in s.values]
    ticks = nice_ticks(min(0, *values) if values else 0, max(0, *values) if values else 1)
    low, high = ticks[0], ticks[-1]
    # One series prints its value after each bar: leave room for it on the right.
    frame = _Frame(left=104, top=10, right=width - (40 if len(series) == 1 else 12),
                   bottom=height - 24)
    desc = " ".join([description, *(_summary(s.name, list(s.values), value_format)
                                    for s in series)]).strip()
    svg = _svg_open(chart_id, width, height, title, desc)
    svg.append('<g class="grid" aria-hidden="true">')
    for tick in ticks:
        x = _f(frame.x(tick, low, high))
        svg.append(f'<line x1="{x}" x2="{x}" y1="{_f(frame.top)}" y2="{_f(frame.bottom)}"/>'
                   f'<text class="tick tick-x" x="{x}" y="{_f(frame.bottom + 16)}">'
                   f"{escape(value_format(tick))}</text>")
    svg.append("</g>")
    for row, category in enumerate(categories):
        top = frame.top + row * row_height
        svg.append(f'<text class="category" x="{_f(frame.left - 6)}" '
                   f'y="{_f(top + row_height / 2)}"><title>{escape(category)}</title>'
                   f"{escape(_short(category))}</text>")
        svg.extend(_bars(frame, series, row, top, row_height, stacked, low, high,
                         value_format))
    headers = [gettext("Category"), *(s.name for s in series)]
    rows = [[category, *(value_format(s.values[i]) for s in series)]
            for i, category in enumerate(categories)]
    return _figure(chart_id, svg, [s.name for s in series], _table(title, headers, rows))


def _bars(frame: _Frame, series: Sequence[BarSeries], row: int, top: float, row_height: float,
          stacked: bool, low: float, high: float, value_format: ValueFormat) -> list[str]:
    """The bars of one category row (and its value label when there is one series)."""
    parts: list[str] = []
    lanes = 1 if stacked else len(series)
    lane_height = (row_height - 6) / lanes
    base = 0.0
    for index, one in enumerate(series):
        value = one.values[row]
        start, end = (base, base + value) if stacked else (0.0, float(value))
        x0, x1 = sorted((frame.x(start, low, high), frame.x(end, low, high)))
        y = top + 3 + (0 if stacked else index * lane_height)
        parts.append(f'<rect class="bar series-{index}" x="{_f(x0)}" y="{_f(y)}" '
                     f'width="{_f(x1 - x0)}" height="{_f(lane_height)}"><title>'
                     f"{escape(one.name)}: {escape(value_format(value))}</title></rect>")
        base = end if stacked else base
    if len(series) == 1:
        value = series[0].values[row]
        x = frame.x(max(float(value), 0.0), low, high)
        parts.append(f'<text class="bar-value" x="{_f(x + 3)}" y="{_f(top + row_height / 2)}">'
                     f"{escape(value_format(value))}</text>")
    return parts


def sparkline(values: Sequence[Number], *, label: str,
              value_format: ValueFormat = default_value_format, width: int = 100,
              height: int = 24) -> Markup:
    """A small trend line of ``values`` (equally spaced), labelled for screen readers with
    ``label`` and the last, lowest and highest values. Raises ValueError for more than 2000
    values or values that are not finite numbers."""
    if len(values) > POINTS_MAX:
        raise ValueError(f"a sparkline has at most {POINTS_MAX} values")
    _check_values(values, "sparkline")
    aria = _summary(label, values, value_format)
    open_tag = (f'<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" width="{width}" '
                f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
                f'aria-label="{escape(aria)}">')
    if len(values) < 2:
        return Markup(open_tag + "</svg>")
    low, high = min(values), max(values)
    frame = _Frame(left=2, top=2, right=width - 2, bottom=height - 2)
    coords = [(frame.x(i, 0, len(values) - 1), frame.y(v, low, high))
              for i, v in enumerate(values)]
    points = " ".join(f"{_f(x)},{_f(y)}" for x, y in coords)
    last_x, last_y = coords[-1]
    return Markup(open_tag + f'<polyline points="{points}"/><circle cx="{_f(last_x)}" '
                  f'cy="{_f(last_y)}" r="2"/></svg>')
