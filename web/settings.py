"""The HTML layer's settings: its signing secret, how it reaches browsers, its bounds.

``WebSettings`` is immutable and validated on construction, so a bad value fails when the
application is built (``INVALID_ARGUMENT`` naming the field), not on the first request.
``server/`` builds it once, with :func:`load_secret_key` reading the secret from the data
directory, and hands it to :func:`web.create_web`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cardsvc import files
from cardsvc.errors import invalid

SECRET_KEY_BYTES_MIN = 32
"""256 bits: HMAC-SHA256 gains nothing from a longer key and loses strength with a shorter one."""
SECRET_FILE_NAME = "web-secret.key"
"""The file in the data directory holding the signing secret (32 random bytes, mode 0600)."""
FORM_BYTES_MAX = 64 * 1024
"""64 KiB: a page form (login, checkout, a price edit) is well under 4 KiB. The CSRF check reads
an urlencoded body into memory to find its token, so this also bounds that buffer per request."""
REQUEST_BYTES_MAX = 1 << 20
"""1 MiB for any request body the web layer accepts (multipart included); uploads of code files
go through the JSON API, which has its own larger, disk-spooled bound."""
UPLOAD_BYTES_MAX = 1 << 30
"""1 GiB for a code file uploaded through the console (about 20 million codes of CSV), the same
bound as the API's upload; Starlette spools file parts to disk, so it bounds disk, not memory."""
STATIC_MAX_AGE_S = 365 * 24 * 3600
"""One year: hashed static URLs never change content, so browsers may keep them that long."""
SUPPORTED_LOCALES = ("zh_CN", "en")
"""The catalogs under web/translations; the first is the default (DESIGN.md: zh-CN and en)."""

ENV_TLS_TERMINATED = "CARDSVC_WEB_TLS_TERMINATED"
ENV_TRUSTED_ORIGINS = "CARDSVC_WEB_TRUSTED_ORIGINS"
ENV_DEV_COOKIES = "CARDSVC_WEB_DEV_COOKIES"
ENV_TIMEZONE = "CARDSVC_WEB_TIMEZONE"




@dataclass(frozen=True)
class WebSettings:
    """How the web layer runs.

    * ``secret_key`` signs CSRF tokens and flash cookies; ``previous_secret_keys`` still verify
      (so a rotation does not void every open form at once) but never sign.
    * ``tls_terminated``: a proxy in front terminates TLS, so every request counts as HTTPS
      (expected ``Origin`` scheme, HSTS) even when it reaches us over plain HTTP.
    * ``trusted_origins``: extra origins (``https://shop.example``) whose forms may post here,
      for a public name the ``Host`` header does not carry.
    * ``dev_plain_http_cookies``: on plain-HTTP requests, name cookies ``dev-<name>`` without
      ``Secure`` instead of ``__Host-<name>`` (docs/web.md, Cookies). Off by default: a plain-HTTP
      production request then gets cookies the browser refuses, which fails closed.
    * ``timezone``: the IANA zone dates are shown in until users pick their own.
    * ``demo_pages``: mount the demo pages (``/`` and ``/demo/...``) that the storefront replaces.

    Raises INVALID_ARGUMENT (details: ``field``) for a value out of range.
    """

    secret_key: bytes
    previous_secret_keys: tuple[bytes, ...] = ()
    tls_terminated: bool = False
    trusted_origins: tuple[str, ...] = ()
    dev_plain_http_cookies: bool = False
    default_locale: str = SUPPORTED_LOCALES[0]
    timezone: str = "Asia/Shanghai"
    form_bytes_max: int = FORM_BYTES_MAX
    request_bytes_max: int = REQUEST_BYTES_MAX
    upload_bytes_max: int = UPLOAD_BYTES_MAX
    static_max_age_s: int = STATIC_MAX_AGE_S
    demo_pages: bool = True

    def __post_init__(self) -> None:
        for key in (self.secret_key, *self.previous_secret_keys):
            if len(key) < SECRET_KEY_BYTES_MIN:
                raise invalid("secret_key", f"secret keys need {SECRET_KEY_BYTES_MIN} bytes")
        for origin in self.trusted_origins:
            if origin != _normal_origin(origin):
                raise invalid("trusted_origins", "an origin is scheme://host[:port], no path")
        if self.default_locale not in SUPPORTED_LOCALES:
            raise invalid("default_locale", "default_locale must be zh_CN or en")
        if not 0 < self.form_bytes_max <= self.request_bytes_max:
            raise invalid("form_bytes_max", "form_bytes_max must be in 1..request_bytes_max")
        if self.static_max_age_s < 0:
            raise invalid("static_max_age_s", "static_max_age_s must not be negative")

    @classmethod
    def from_env(cls, data_dir: Path, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> WebSettings:
        """Settings with the secret of ``data_dir`` (created on first use) and the
        ``CARDSVC_WEB_*`` variables of ``environ`` (default ``os.environ``): TLS_TERMINATED and
        DEV_COOKIES (``1``/``0``), TRUSTED_ORIGINS (comma separated) and TIMEZONE. Keyword
        overrides that are not None win. Raises INVALID_ARGUMENT for malformed values."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "secret_key": load_secret_key(data_dir),
            "tls_terminated": _flag(env, ENV_TLS_TERMINATED),
            "dev_plain_http_cookies": _flag(env, ENV_DEV_COOKIES),
            "trusted_origins": tuple(
                part.strip() for part in env.get(ENV_TRUSTED_ORIGINS, "").split(",")
                if part.strip()
            ),
            "timezone": env.get(ENV_TIMEZONE) or "Asia/Shanghai",
        }
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise invalid(name, f"{name} must be 1 or 0")


def _normal_origin(origin: str) -> str:
    """``origin`` reduced to ``scheme://host[:port]`` in lower case (what browsers send)."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def load_secret_key(data_dir: Path) -> bytes:
    """The web signing secret kept in ``data_dir/web-secret.key``, created when missing (32
    random bytes, mode 0600, fsynced), so tokens survive restarts and every process of one
    deployment shares it. The file is written aside and hard-linked into place, so a racing
    process sees either no file or a whole one, and both racers end with the winner's bytes.
    Raises INVALID_ARGUMENT when the file exists but is too short (a truncated copy)."""
    try:
        return files.load_random_key(data_dir, SECRET_FILE_NAME, SECRET_KEY_BYTES_MIN)
    except ValueError:
        raise invalid("secret_key", f"{SECRET_FILE_NAME} holds fewer than "
                      f"{SECRET_KEY_BYTES_MIN} bytes") from None
