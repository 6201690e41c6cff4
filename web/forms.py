"""Reading and checking page forms, with every size bounded.

A page declares its fields (:class:`TextField`: a name, a bound on characters, whether it is
required) and calls :func:`read_form`. The result holds the submitted values (to show the form
again) and one translated error per field. Checks here are about the *form* (present, not too
long); rules about the *business* (is this quantity allowed, is this code valid) stay in the
domain function the route calls next, whose ``CardsvcError`` the route turns into a field error
or an error page. The parser is Starlette's, bounded: no files unless a field asks for them,
a fixed number of fields, each part at most ``form_bytes_max``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.requests import Request

from web.i18n import gettext, ngettext
from web.security.csrf import CSRF_FIELD
from web.settings import FORM_BYTES_MAX

FORM_FIELDS_MAX = 64
"""More fields than any page form has; beyond it the parser refuses the body."""


@dataclass(frozen=True)
class TextField:
    """A single-line or multi-line text input: its name, its bound and whether it is required.

    ``max_chars`` is also rendered as the input's ``maxlength``; the server checks it again,
    because a browser's limit is only a convenience."""

    name: str
    max_chars: int
    required: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.max_chars <= FORM_BYTES_MAX:
            raise ValueError("a text field holds 1 to form_bytes_max characters")


@dataclass
class FormResult:
    """What a form submitted: ``values`` (normalised text) and ``errors`` (per field)."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every field passed its checks."""
        return not self.errors

    def value(self, name: str) -> str:
        """The submitted text of field ``name`` ("" when absent), to fill the form again."""
        return self.values.get(name, "")

    def error(self, name: str) -> str | None:
        """The error message of field ``name``, or None."""
        return self.errors.get(name)


def clean_text(raw: str) -> str:
    """Form text as we keep it: NFC-normalised (so the same Chinese text typed on two systems
    compares equal), stripped of surrounding white space, with CR LF turned into LF."""
    return unicodedata.normalize("NFC", raw.replace("\r\n", "\n")).strip()


def check_text(spec: TextField, raw: str) -> tuple[str, str | None]:
    """(the cleaned value, its error message or None) for one submitted value."""
    value = clean_text(raw)
    if not value:
        return value, gettext("This field is required.") if spec.required else None
    if len(value) > spec.max_chars:
        message = ngettext("Use at most %(max)d character.", "Use at most %(max)d characters.",
                           spec.max_chars)
        return value[:spec.max_chars], message % {"max": spec.max_chars}
    return value, None


async def read_form(request: Request, fields: Sequence[TextField], *,
                    part_bytes_max: int = FORM_BYTES_MAX) -> FormResult:
    """The submitted ``fields`` of the request's form, checked. Unknown fields (and the CSRF
    token, already checked by the middleware) are ignored; a file where text was expected is
    an error on that field. Starlette refuses a body with more than 64 fields or a part over
    ``part_bytes_max`` bytes before any check runs (a 400 page)."""
    async with request.form(max_files=0, max_fields=FORM_FIELDS_MAX,
                            max_part_size=part_bytes_max) as submitted:
        result = FormResult()
        for spec in fields:
            if spec.name == CSRF_FIELD:
                continue
            raw = submitted.get(spec.name)
            if isinstance(raw, UploadFile):
                result.errors[spec.name] = gettext("This field takes text, not a file.")
                continue
            value, error = check_text(spec, raw or "")
            result.values[spec.name] = value
            if error is not None:
                result.errors[spec.name] = error
        return result
