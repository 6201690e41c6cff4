"""The storefront's mail bodies, rendered with the pages' templates (``templates/mail/``): for
each event (``delivered``, ``failed``, ``refunded``; ``alert``, a digest of alert notices for
a staff or agent's user: names, subjects and a link, never a code) a subject, a plain-text and
an HTML body, in the order's (or user's) language (zh-CN or en), autoescaped like every
template. The server hands
:func:`mail_composer` to the delivery worker (``cardsvc.delivery.MailWorker``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette

from web.i18n import ActiveLocale, activated, load_catalogs
from web.render import Renderer
from web.settings import SUPPORTED_LOCALES

MailComposer = Callable[[str, str, Mapping[str, Any]], tuple[str, str, str]]
TEMPLATES = ("delivered", "failed", "refunded", "alert")


def mail_composer(app: Starlette) -> MailComposer:
    """The composer of the web app ``app`` (built by :func:`web.create_web`)."""
    renderer = app.state.renderer
    assert isinstance(renderer, Renderer)
    env = renderer.env
    catalogs = load_catalogs()

    def compose(template: str, locale: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
        if template not in TEMPLATES:
            raise ValueError(f"no mail template {template!r}")
        chosen = locale if locale in SUPPORTED_LOCALES else SUPPORTED_LOCALES[0]
        with activated(ActiveLocale(chosen, catalogs[chosen])):
            subject = env.get_template(f"mail/{template}.subject.txt").render(context)
            text = env.get_template(f"mail/{template}.txt").render(context)
            html = env.get_template(f"mail/{template}.html").render(context)
        return " ".join(subject.split()), text, html

    return compose
