"""Goal: charts are deterministic, escaped, accessible SVG with a data table, bounded in what
they accept, and their CSV downloads cannot carry spreadsheet formulas. Method: render charts
from fixed data under a locale and inspect the markup; parse it as XML to prove it is well
formed."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import Decimal

import pytest

from web.charts import (
    POINTS_MAX,
    SERIES_MAX,
    BarSeries,
    Series,
    bar_chart,
    line_chart,
    nice_ticks,
    sparkline,
    time_ticks,
)
from web.csv_download import bar_rows, csv_response, csv_text, neutralise, series_rows
from web.i18n import ActiveLocale, activated, load_catalogs

T0 = 1_767_225_600_000
HOUR = 3_600_000
ZONE = "Asia/Shanghai"
HOSTILE = '<script>alert("x")</script> & "quotes"'


@pytest.fixture(autouse=True)
def chinese() -> Iterator[None]:
    with activated(ActiveLocale("zh_CN", load_catalogs()["zh_CN"])):
        yield


def _series() -> list[Series]:
    return [Series("订单", [(T0 + h * HOUR, (h * 37) % 23 + 5) for h in range(24)]),
            Series(HOSTILE, [(T0 + h * HOUR, (h * 11) % 5) for h in range(0, 24, 2)])]


def _svg(markup: str) -> ET.Element:
    svg = re.search(r"<svg.*?</svg>", markup, re.DOTALL)
    assert svg is not None
    return ET.fromstring(svg.group(0))


def test_line_chart_is_deterministic_and_well_formed() -> None:
    first = line_chart("每小时订单", _series(), timezone=ZONE)
    assert first == line_chart("每小时订单", _series(), timezone=ZONE)
    root = _svg(first)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    assert root.find(f"{ns}title") is not None and root.find(f"{ns}desc") is not None
    assert len(root.findall(f".//{ns}polyline")) == 2
    assert root.get("aria-labelledby", "").endswith("-title " + root.get("aria-labelledby",
                                                                        "").split()[0][:-6]
                                                    + "-desc")


def test_every_text_is_escaped() -> None:
    for markup in (line_chart(HOSTILE, _series(), timezone=ZONE, description=HOSTILE),
                   bar_chart(HOSTILE, [HOSTILE], [BarSeries(HOSTILE, [3])]),
                   sparkline([1, 2], label=HOSTILE)):
        assert "<script>" not in markup
        assert "&lt;script&gt;" in markup
        assert " style=" not in markup


def test_line_chart_has_a_legend_and_a_full_data_table() -> None:
    markup = line_chart("每小时订单", _series(), timezone=ZONE)
    assert 'class="chart-legend"' in markup and "swatch series-1" in markup
    table = markup.split("<table>", 1)[1]
    assert table.count("<tr>") == 1 + 24  # header and one row per distinct time
    assert "以表格查看数据" in markup
    assert "2026年1月1日 08:00:00" in table


def test_time_ticks_fall_on_local_hours() -> None:
    ticks, step = time_ticks(T0, T0 + 23 * HOUR, ZONE)
    assert step == 6 * HOUR
    assert all((tick + 8 * HOUR) % step == 0 for tick in ticks)
    day_ticks, day_step = time_ticks(T0, T0 + 20 * 24 * HOUR, ZONE)
    assert day_step == 7 * 24 * HOUR and all((t + 8 * HOUR) % (24 * HOUR) == 0 for t in day_ticks)


@pytest.mark.parametrize(("low", "high", "ticks"), [
    (0, 27, [0, 10, 20, 30]),
    (-3, 7, [-4, -2, 0, 2, 4, 6, 8]),
    (5, 5, [0, 2, 4, 6, 8, 10]),
    (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1]),  # a quiet day: no negative axis
    (-2, -2, [-4, -3, -2, -1, 0]),
    (0.001, 0.0042, [0.001, 0.002, 0.003, 0.004, 0.005]),
    (0, 1_000_000, [0, 200_000, 400_000, 600_000, 800_000, 1_000_000]),
])
def test_nice_ticks(low: float, high: float, ticks: list[float]) -> None:
    assert nice_ticks(low, high) == ticks


def test_bar_chart_stacked_and_grouped() -> None:
    categories = ["游戏点数 100", "视频会员月卡连续包月自动续费"]
    series = [BarSeries("代理商", [120, 45]), BarSeries("零售店", [60, 30])]
    stacked = bar_chart("各商品销量", categories, series, stacked=True)
    grouped = bar_chart("各商品销量", categories, series)
    assert stacked != grouped
    assert stacked.count('class="bar series-') == 4
    assert "视频会员月卡连…</text>" in stacked  # cut in the drawing
    assert "视频会员月卡连续包月自动续费</th>" in stacked  # whole in the table
    assert ">Gift card, fi…</text>" in bar_chart(
        "t", ["Gift card, fifty yuan, no expiry"], [BarSeries("s", [1])])
    root = _svg(grouped)
    assert root.get("viewBox", "").startswith("0 0 360 ")


def test_single_series_bars_print_their_values() -> None:
    markup = bar_chart("销量", ["A", "B"], [BarSeries("代理商", [1200, -300])])
    assert 'class="bar-value"' in markup and ">1,200</text>" in markup and ">-300</text>" in markup


@pytest.mark.parametrize("build", [
    lambda: line_chart("t", [], timezone=ZONE),
    lambda: line_chart("t", [Series(str(i), []) for i in range(SERIES_MAX + 1)], timezone=ZONE),
    lambda: line_chart("t", [Series("s", [(i, 1) for i in range(POINTS_MAX + 1)])],
                       timezone=ZONE),
    lambda: line_chart("t", [Series("s", [(2, 1), (1, 1)])], timezone=ZONE),
    lambda: line_chart("t", [Series("s", [(1, float("nan"))])], timezone=ZONE),
    lambda: bar_chart("t", ["a"], [BarSeries("s", [1, 2])]),
    lambda: bar_chart("t", ["a"], [BarSeries("s", [-1])], stacked=True),
    lambda: bar_chart("t", ["a"], [BarSeries("s", [float("inf")])]),
    lambda: sparkline([True, 1], label="x"),
])
def test_bad_input_is_refused(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_sparkline_is_labelled_for_screen_readers() -> None:
    markup = sparkline([3, 1, 4, 1, 5], label="订单")
    label = re.search(r'aria-label="([^"]+)"', markup)
    assert label is not None
    assert label.group(1).startswith("订单") and all(n in label.group(1) for n in "3515")
    assert sparkline([], label="订单").endswith("</svg>")


@pytest.mark.parametrize(("text", "safe"), [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"), ("", ""),
])
def test_formula_cells_are_neutralised(text: str, safe: str) -> None:
    assert neutralise(text) == safe


def test_csv_keeps_numbers_and_neutralises_text() -> None:
    text = csv_text(["=name", "amount"], [["=HYPERLINK(1)", -1250], ["零售", Decimal("-12.50")],
                                          [None, 0]])
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows == [["'=name", "amount"], ["'=HYPERLINK(1)", "-1250"], ["零售", "-12.50"],
                    ["", "0"]]
    assert "\r\n" in text


def test_chart_data_as_csv() -> None:
    header, rows = series_rows(_series())
    assert header == ["time_ms", "订单", HOSTILE]
    assert rows[0] == [T0, 5, 0] and rows[1] == [T0 + HOUR, 19, None]
    bar_header, bar_data = bar_rows(["=A"], [BarSeries("x", [1.5])])
    assert bar_header == ["category", "x"] and bar_data == [["=A", Decimal("1.5")]]
    assert "'=A" in csv_text(bar_header, bar_data)


def test_csv_response_headers() -> None:
    response = csv_response("订单 2026", ["a"], [["b"]])
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="_2026.csv"')
    assert "filename*=UTF-8''%E8%AE%A2%E5%8D%95%202026.csv" in disposition
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
