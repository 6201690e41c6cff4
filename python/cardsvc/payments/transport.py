"""The real :class:`~cardsvc.payments.providers.base.Transport`: httpx, bounded in time and size.

Adapters never import this module; the process wiring builds one ``HttpxTransport`` and hands it
to every provider. Bounds, all explicit (STYLE.md: never rely on library defaults):

* time: connect, read (per chunk) and write timeouts, plus a total deadline checked between
  chunks, so a provider that drips one byte at a time is cut off after about
  ``total_timeout_s + read_timeout_s``;
* size: a ``Content-Length`` over ``response_bytes_max`` is refused before reading the body;
  without one, reading stops (and the connection is dropped) as soon as the bound is passed;
* no compression (``Accept-Encoding: identity``; an encoded answer is refused), so the bound is
  on what is held in memory, not on what a decompressor might expand it to;
* no redirects, and plain ``http://`` only to hosts named in ``http_hosts_allowed`` (loopback
  test servers); providers are reached over https.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from cardsvc.payments.providers.base import HttpResponse, config_invalid, provider_unavailable

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
TOTAL_TIMEOUT_S = 20.0
"""Providers answer in well under a second; WeChat Pay's SDK waits 30 s in total, Alipay's
suggests 15 s. A checkout waits on ``start``, so the bound stays short."""
RESPONSE_BYTES_MAX = 1024 * 1024
"""A provider's query or refund answer is a few KiB; 1 MiB is generous and is the memory one
call in flight may hold."""
REQUEST_BYTES_MAX = 256 * 1024
"""What we send is a few KiB; a bigger body is a bug."""


class HttpxTransport:
    """Sends provider requests with httpx (thread-safe: one instance for the process).

    ``client`` may be given (tests, custom TLS); by default one is built with the timeouts, no
    redirects and TLS verification on. Raises, from :meth:`request`, PAYMENT_PROVIDER_UNAVAILABLE
    (``timeout``, ``connect``, ``too_large``, ``encoded``, ``transport``) and
    PAYMENT_CONFIG_INVALID (a URL that is not https, or http to a host not allowed).
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        total_timeout_s: float = TOTAL_TIMEOUT_S,
        response_bytes_max: int = RESPONSE_BYTES_MAX,
        http_hosts_allowed: frozenset[str] = frozenset(),
        client: httpx.Client | None = None,
    ) -> None:
        if min(connect_timeout_s, read_timeout_s, total_timeout_s) <= 0 or response_bytes_max <= 0:
            raise ValueError("timeouts and the response bound must be positive")
        self._total_timeout_s = total_timeout_s
        self._response_bytes_max = response_bytes_max
        self._http_hosts_allowed = http_hosts_allowed
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s,
                                  write=read_timeout_s, pool=connect_timeout_s),
            follow_redirects=False,
            verify=True,
            trust_env=False,
        )

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        self._client.close()

    def request(self, method: str, url: str, headers: Mapping[str, str],
                body: bytes | None) -> HttpResponse:
        """Send one request and return the whole (bounded) answer, whatever its status.

        Effects: one HTTP exchange; nothing is retried. Raises as the class docstring says.
        """
        target = self._check_url(url)
        if body is not None and len(body) > REQUEST_BYTES_MAX:
            raise ValueError("request body over REQUEST_BYTES_MAX")
        sent = {**headers, "Accept-Encoding": "identity"}
        deadline = time.monotonic() + self._total_timeout_s
        host = target.host
        try:
            with self._client.stream(method, target, headers=sent, content=body) as response:
                return self._read(response, host, deadline)
        except httpx.TimeoutException:
            raise provider_unavailable(host, "timeout") from None
        except httpx.ConnectError:
            raise provider_unavailable(host, "connect") from None
        except httpx.HTTPError:
            raise provider_unavailable(host, "transport") from None

    def _check_url(self, url: str) -> httpx.URL:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise config_invalid("transport", "url", "not a valid URL") from None
        if target.scheme == "https":
            return target
        if target.scheme == "http" and target.host in self._http_hosts_allowed:
            return target
        raise config_invalid("transport", "url", "not https (plain http only to allowed hosts)")

    def _read(self, response: httpx.Response, host: str, deadline: float) -> HttpResponse:
        length = response.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self._response_bytes_max):
            raise provider_unavailable(host, "too_large", max=self._response_bytes_max)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise provider_unavailable(host, "encoded")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > self._response_bytes_max:
                raise provider_unavailable(host, "too_large", max=self._response_bytes_max)
            if time.monotonic() > deadline:
                raise provider_unavailable(host, "timeout")
            chunks.append(chunk)
        headers = {name.lower(): value for name, value in response.headers.items()}
        return HttpResponse(response.status_code, headers, b"".join(chunks))
