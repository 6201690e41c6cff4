"""Times as the API shows them. Internally every time is an integer of Unix milliseconds
(``*_ms``) or, for code validity, Unix seconds, as the core keeps them."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ms: int | None) -> str | None:
    """RFC 3339 UTC text (millisecond precision, ``Z``) of a time in Unix milliseconds; None
    stays None. Pure."""
    if ms is None:
        return None
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def iso_s(seconds: int | None) -> str | None:
    """:func:`iso` of a time in Unix seconds."""
    return None if seconds is None else iso(seconds * 1000)
