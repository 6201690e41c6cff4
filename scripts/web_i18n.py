"""The web layer's translation workflow: extract, update, check (docs/web.md, i18n).

    python -m scripts.web_i18n check    # exit 1 and list the problems when catalogs lag
    python -m scripts.web_i18n update   # add new strings (empty) to both catalogs, drop stale

Strings are extracted with Babel from ``web/**.py`` (``gettext``, ``ngettext``, ``N_``, ``_``)
and ``web/templates`` (``_``, ``gettext``, ``ngettext``, ``{% trans %}``) as ``web/babel.cfg``
says. ``check`` is what ``tests/web/test_i18n.py`` runs: every extracted string must be in
*both* catalogs with a non-empty, non-fuzzy translation (every plural form), the catalogs must
hold no string the code no longer uses, and Babel's checks (``%(name)s`` placeholders match)
must pass. So a page cannot ship a string that one language would show untranslated.
``update`` never invents translations: it leaves new entries empty for a person to fill, and
``check`` keeps failing until they do. The catalogs are compiled at start-up, in memory
(:func:`web.i18n.load_catalogs`), so there is no compile step.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
WEB_DIR = ROOT / "web"
MAPPING = WEB_DIR / "babel.cfg"
TRANSLATIONS = WEB_DIR / "translations"
LOCALES = ("zh_CN", "en")
PO_WIDTH = 100


def extract() -> Catalog:
    """Every translatable string of the web layer, with where it occurs."""
    with MAPPING.open() as mapping_file:
        method_map, options_map = parse_mapping_cfg(  # type: ignore[no-untyped-call]
            mapping_file, str(MAPPING))
    template = Catalog(project="cardsvc-web", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
            WEB_DIR, method_map, options_map, strip_comment_tags=True):
        template.add(message, None, [(f"web/{filename}", lineno)], auto_comments=comments,
                     context=context)
    return template


def po_path(locale: str) -> Path:
    """The catalog file of ``locale``."""
    return TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"


def read_catalog(locale: str) -> Catalog:
    """The catalog of ``locale`` as stored."""
    with po_path(locale).open("rb") as po_file:
        return read_po(po_file, locale=locale)


def _translated(message: Message) -> bool:
    if isinstance(message.string, tuple | list):
        return all(message.string)
    return bool(message.string)


def problems(template: Catalog, locale: str, catalog: Catalog) -> list[str]:
    """What is wrong with ``catalog`` against the extracted ``template`` (empty when fine)."""
    found: list[str] = []
    for message in template:
        if not message.id:
            continue
        stored = catalog.get(message.id, message.context)
        where = ", ".join(f"{path}:{line}" for path, line in message.locations[:2])
        if stored is None:
            found.append(f"{locale}: missing {message.id!r} ({where})")
        elif stored.fuzzy or not _translated(stored):
            found.append(f"{locale}: untranslated {message.id!r} ({where})")
    for stored in catalog:
        if stored.id and template.get(stored.id, stored.context) is None:
            found.append(f"{locale}: stale {stored.id!r} (no longer in the code)")
    for message, errors in catalog.check():
        found.extend(f"{locale}: {message.id!r}: {error}" for error in errors)
    return found


def check() -> list[str]:
    """Every problem of every catalog (see the module text)."""
    template = extract()
    return [problem for locale in LOCALES
            for problem in problems(template, locale, read_catalog(locale))]


def update() -> None:
    """Merges the extracted strings into both catalogs: new ones empty, stale ones dropped."""
    template = extract()
    for locale in LOCALES:
        catalog = read_catalog(locale)
        catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
        catalog.obsolete.clear()
        with po_path(locale).open("wb") as po_file:
            write_po(po_file, catalog, width=PO_WIDTH, sort_output=True, include_lineno=False)


def main(argv: list[str]) -> int:
    """The command line: ``check`` or ``update``."""
    if argv == ["update"]:
        update()
        return 0
    if argv == ["check"]:
        found = check()
        for problem in found:
            print(problem)
        return 1 if found else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
