"""Goal: templates escape everything, fail loudly on a missing variable, and show money, dates
and codes correctly in both languages; forms report errors and flash messages show once.
Method: render through the app's environment under each locale, and drive the demo pages
in-process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from jinja2 import UndefinedError
from starlette.applications import Starlette

from tests.web.conftest import SAME_ORIGIN, form_token
from web.formatting import datetime_ms, masked, money
from web.i18n import ActiveLocale, activated, load_catalogs

pytestmark = pytest.mark.anyio
NEW_YEAR_MS = 1_767_225_600_000
"""2026-01-01 00:00 UTC, 08:00 in Shanghai."""


@pytest.fixture(params=["zh_CN", "en"])
def locale(request: pytest.FixtureRequest) -> Iterator[str]:
    catalogs = load_catalogs()
    with activated(ActiveLocale(request.param, catalogs[request.param])):
        yield request.param


def test_money_in_each_locale(locale: str) -> None:
    expected = {"zh_CN": ("¥12.50", "-¥1,234.05", "JP¥1,200"),
                "en": ("CNY\u00a012.50", "-CNY\u00a01,234.05", "JPY\u00a01,200")}[locale]
    assert (money(1250, "CNY"), money(-123405, "CNY"), money(1200, "JPY")) == expected


@pytest.mark.parametrize("bad", [1.5, True, 10**16])
def test_money_refuses_what_is_not_minor_units(bad: object) -> None:
    with pytest.raises(ValueError):
        money(bad, "CNY")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        money(100, "cny")


def test_dates_are_local_to_the_deployment(locale: str) -> None:
    text = datetime_ms(NEW_YEAR_MS, "Asia/Shanghai")
    assert text == {"zh_CN": "2026年1月1日 08:00:00", "en": "Jan 1, 2026, 8:00:00\u202fAM"}[locale]


def test_masking_keeps_only_the_last_four() -> None:
    assert masked("CARD-2026-0001-7788") == "***************7788"
    assert masked("1234") == "****"
    assert masked(masked("CARD-2026-0001-7788")) == masked("CARD-2026-0001-7788")


def test_templates_autoescape_and_are_strict(web_app: Starlette) -> None:
    env = web_app.state.renderer.env
    template = env.from_string("<p>{{ value }}</p>")
    assert template.render(value="<script>x</script>") == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    text_template = env.from_string("{{ value }}")
    assert text_template.render(value="a&b") == "a&amp;b"
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing }}").render()


def test_new_style_gettext_escapes_its_arguments(web_app: Starlette, locale: str) -> None:
    env = web_app.state.renderer.env
    html = env.from_string('{{ _("You said: %(message)s", message=m) }}').render(m="<i>")
    assert "&lt;i&gt;" in html and "<i>" not in html


async def test_an_invalid_form_shows_its_error_with_status_422(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", data={"csrf_token": token, "message": "   "},
                                 headers=SAME_ORIGIN)
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.text
    assert 'id="f-message-error"' in response.text


async def test_an_overlong_field_is_refused_and_cut(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", headers=SAME_ORIGIN,
                                 data={"csrf_token": token, "message": "长" * 201})
    assert response.status_code == 422
    assert "最多 200 个字符" in response.text


async def test_a_flash_is_escaped_and_shown_once(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    await client.post("/demo/echo", headers=SAME_ORIGIN,
                      data={"csrf_token": token, "message": "<img src=x>"})
    first = (await client.get("/")).text
    assert "&lt;img src=x&gt;" in first and "<img src=x>" not in first
    assert "flash-success" not in (await client.get("/")).text


async def test_a_forged_flash_cookie_shows_nothing(client: httpx.AsyncClient) -> None:
    client.cookies.set("__Host-flash", "W1siaW5mbyIsICJoaSJdXQ.1.AAAA")
    assert "flashes" not in (await client.get("/")).text


async def test_kit_renders_macros_and_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    html = (await client.get("/demo/kit")).text
    assert "¥12.50" in html and '<time datetime="2026-01-01T00:00:00.000Z">' in html
    assert "CARD-2026-0001-7788" not in html and "7788</code>" in html
    assert 'rel="next" href="/demo/kit?cursor=5"' in html
    second = (await client.get("/demo/kit?cursor=5")).text
    assert "ORD-1006" in second and "ORD-1001" not in second
    assert 'href="/demo/kit"' in second  # the first page link drops the cursor
