"""Goal: every user-visible string of the web layer is translated in both catalogs, and each
request is answered in the language it asked for. Method: extract the strings with Babel and
compare them with the catalogs (scripts/web_i18n.py), then request pages with ``?lang=``, the
``lang`` cookie and ``Accept-Language`` and read ``<html lang>``."""

from __future__ import annotations

import re

import httpx
import pytest

from scripts.web_i18n import check, extract
from web.i18n import from_accept_language, normal_locale

pytestmark = pytest.mark.anyio


def _lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', html)
    assert found is not None
    return found.group(1)


def test_every_string_is_translated_in_both_catalogs() -> None:
    problems = check()
    assert problems == [], "\n".join(
        ["run `python -m scripts.web_i18n update`, then translate:", *problems])


def test_extraction_sees_templates_and_python() -> None:
    where = {path for message in extract() for path, _ in message.locations}
    assert any(path.startswith("web/templates/") for path in where)
    assert "web/errors.py" in where and "web/forms.py" in where


async def test_default_language_is_chinese(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    assert _lang(html) == "zh-CN"
    assert "跳到正文" in html


async def test_accept_language_picks_english(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"accept-language": "en-GB,en;q=0.9,zh;q=0.1"})
    assert _lang(response.text) == "en"
    assert "Skip to the content" in response.text


async def test_lang_switch_sets_a_cookie_that_wins_over_accept_language(
        client: httpx.AsyncClient) -> None:
    switched = await client.get("/?lang=en")
    assert _lang(switched.text) == "en"
    cookie = next(c for c in switched.headers.get_list("set-cookie") if "lang=" in c)
    assert cookie.startswith("__Host-lang=en;") and "SameSite=Lax" in cookie
    later = await client.get("/demo/kit", headers={"accept-language": "zh-CN"})
    assert _lang(later.text) == "en"
    back = await client.get("/?lang=zh-CN")
    assert _lang(back.text) == "zh-CN"


async def test_unknown_languages_fall_back_to_chinese(client: httpx.AsyncClient) -> None:
    response = await client.get("/?lang=fr", headers={"accept-language": "fr-FR,de"})
    assert _lang(response.text) == "zh-CN"
    assert not any("lang=" in c for c in response.headers.get_list("set-cookie"))


async def test_language_links_keep_the_page_and_its_query(client: httpx.AsyncClient) -> None:
    html = (await client.get("/demo/kit?cursor=5")).text
    assert 'href="/demo/kit?cursor=5&amp;lang=en"' in html


async def test_error_pages_are_translated(client: httpx.AsyncClient) -> None:
    assert "页面不存在" in (await client.get("/missing")).text
    assert "Page not found" in (await client.get("/missing?lang=en")).text


@pytest.mark.parametrize(("header", "locale"), [
    ("zh-CN,zh;q=0.9", "zh_CN"),
    ("zh-TW", "zh_CN"),
    ("en-US,en;q=0.5", "en"),
    ("fr;q=1, en;q=0.2", "en"),
    ("en;q=0.4, zh;q=0.8", "zh_CN"),
    ("en;q=0", None),
    ("de, fr", None),
    ("", None),
    ("en;q=abc", None),
    ("x" * 10_000, None),
])
def test_accept_language_parsing(header: str, locale: str | None) -> None:
    assert from_accept_language(header) == locale


@pytest.mark.parametrize(("tag", "locale"), [
    ("zh-CN", "zh_CN"), ("zh_CN", "zh_CN"), ("ZH", "zh_CN"), ("zh-Hans", "zh_CN"),
    ("en", "en"), ("en-GB", "en"), ("fr", None), ("", None),
])
def test_language_tags(tag: str, locale: str | None) -> None:
    assert normal_locale(tag) == locale
