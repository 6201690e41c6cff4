"""Languages: the message catalogs, choosing a locale per request, and ``gettext`` for Python
code and templates alike.

* Catalogs are ``web/translations/<locale>/LC_MESSAGES/messages.po``. They are compiled in
  memory when the application is built (Babel's ``read_po`` then ``write_mo``), so there is no
  ``.mo`` file to forget to rebuild, to commit or to go stale: editing a ``.po`` and restarting
  is the whole workflow (docs/web.md, i18n). Compiling both catalogs takes a few milliseconds.
* The locale of a request is, in order: a valid ``?lang=`` (which also stores the choice in
  the ``lang`` cookie), the ``lang`` cookie, the best ``Accept-Language`` match, zh-CN.
* :class:`LocaleMiddleware` makes the chosen catalog the *active* one for the request (a
  context variable), so :func:`gettext` in a route, a form helper or a template, and the
  formatting filters, all speak the request's language without passing it around.
"""

from __future__ import annotations

import contextvars
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.security.cookies import CookiePolicy
from web.settings import SUPPORTED_LOCALES

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
LANG_COOKIE = "lang"
LANG_PARAM = "lang"
LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
"""A language choice is a preference, kept for a year."""
ACCEPT_LANGUAGE_CHARS_MAX = 512
"""Longer headers are cut before parsing; real browsers send well under 100 characters."""
ACCEPT_LANGUAGE_ENTRIES_MAX = 16

LANGUAGE_TAGS = {"zh_CN": "zh-CN", "en": "en"}
"""The BCP 47 tag of each supported locale, for ``<html lang>`` and the ``?lang=`` switch."""
LANGUAGE_NAMES = {"zh_CN": "简体中文", "en": "English"}
"""Each language named in itself, as language switchers do (not translated, on purpose)."""


@dataclass(frozen=True)
class ActiveLocale:
    """The locale of the request being handled and its compiled catalog."""

    locale: str
    translations: NullTranslations

    @property
    def tag(self) -> str:
        """The BCP 47 tag (``zh-CN``) for ``<html lang>`` and links."""
        return LANGUAGE_TAGS[self.locale]


_FALLBACK = ActiveLocale(SUPPORTED_LOCALES[0], NullTranslations())
_active: contextvars.ContextVar[ActiveLocale] = contextvars.ContextVar(
    "cardsvc_web_locale", default=_FALLBACK)


def load_catalogs(directory: Path = TRANSLATIONS_DIR) -> dict[str, NullTranslations]:
    """Every supported locale's catalog, compiled from its ``.po`` file in memory. Fuzzy
    entries are left out (Babel's default), so an unreviewed translation shows the source
    text. Raises FileNotFoundError when a supported locale has no catalog (a packaging bug)."""
    catalogs: dict[str, NullTranslations] = {}
    for locale in SUPPORTED_LOCALES:
        path = directory / locale / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as po_file:
            catalog = read_po(po_file, locale=locale)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        catalogs[locale] = Translations(fp=buffer)
    return catalogs


def normal_locale(text: str) -> str | None:
    """The supported locale a language tag names (``zh``, ``zh-CN``, ``zh_Hans``, ``en-GB``
    and the like), or None. Every Chinese variant maps to zh_CN, the only Chinese catalog."""
    primary = text.strip().replace("_", "-").split("-", 1)[0].lower()
    if primary == "zh":
        return "zh_CN"
    if primary == "en":
        return "en"
    return None


def from_accept_language(header: str) -> str | None:
    """The supported locale with the highest ``q`` in an ``Accept-Language`` header (the
    first listed wins a tie), or None when it names none of them. Bounded: the header is cut to
    512 characters and 16 entries."""
    best: tuple[float, int, str] | None = None
    entries = header[:ACCEPT_LANGUAGE_CHARS_MAX].split(",")[:ACCEPT_LANGUAGE_ENTRIES_MAX]
    for position, entry in enumerate(entries):
        tag, _, params = entry.partition(";")
        locale = normal_locale(tag)
        if locale is None:
            continue
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if quality <= 0:
            continue
        if best is None or (quality, -position) > (best[0], -best[1]):
            best = (quality, position, locale)
    return None if best is None else best[2]


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _query_lang(scope: Scope) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    if LANG_PARAM + "=" not in query:
        return None
    for key, value in parse_qsl(query, max_num_fields=64, separator="&"):
        if key == LANG_PARAM:
            return normal_locale(value)
    return None


def choose_locale(scope: Scope, cookies: CookiePolicy, default: str) -> tuple[str, bool]:
    """(the request's locale, whether it came from ``?lang=`` and so should be stored)."""
    chosen = _query_lang(scope)
    if chosen is not None:
        return chosen, True
    stored = normal_locale(cookies.read(scope, LANG_COOKIE) or "")
    if stored is not None:
        return stored, False
    return from_accept_language(_header(scope, b"accept-language")) or default, False


class LocaleMiddleware:
    """Activates the request's locale for everything inside it; stores a ``?lang=`` choice.

    The ``lang`` cookie is ``SameSite=Lax`` rather than Strict: it is a preference, not a
    credential, and a visitor following a link from elsewhere should still see their language.
    """

    def __init__(self, app: ASGIApp, *, catalogs: Mapping[str, NullTranslations],
                 cookies: CookiePolicy, default_locale: str) -> None:
        self.app = app
        self.catalogs = dict(catalogs)
        self.cookies = cookies
        self.default_locale = default_locale

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        locale, store = choose_locale(scope, self.cookies, self.default_locale)
        scope.setdefault("state", {})["locale"] = locale
        cookie = self.cookies.header(scope, LANG_COOKIE, locale, max_age_s=LANG_COOKIE_MAX_AGE_S,
                                     samesite="lax") if store else None

        async def send_with_cookie(message: Message) -> None:
            if cookie is not None and message["type"] == "http.response.start":
                message.setdefault("headers", []).append(
                    (b"set-cookie", cookie.encode("latin-1")))
            await send(message)

        with activated(ActiveLocale(locale, self.catalogs[locale])):
            await self.app(scope, receive, send_with_cookie)


@contextmanager
def activated(active: ActiveLocale) -> Iterator[None]:
    """Makes ``active`` the locale of :func:`gettext` and the filters inside the block."""
    token = _active.set(active)
    try:
        yield
    finally:
        _active.reset(token)


def active() -> ActiveLocale:
    """The locale of the request being handled (zh-CN, untranslated, outside any request)."""
    return _active.get()


def gettext(message: str) -> str:
    """``message`` in the active locale (itself when the catalog lacks it)."""
    return _active.get().translations.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of ``singular``/``plural`` for ``n`` in the active locale."""
    return _active.get().translations.ngettext(singular, plural, n)


def N_(message: str) -> str:  # noqa: N802 (the gettext convention extraction looks for)
    """Marks ``message`` for extraction without translating it yet: for module-level texts
    that :func:`gettext` translates later, when a request's locale is active."""
    return message
