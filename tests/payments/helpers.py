"""Shared test tools for the payment providers: throwaway RSA keys, a manual clock, a recording
transport, and a real HTTP server on 127.0.0.1 standing in for a provider's API."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cardsvc.payments.providers.base import HttpResponse

T0_MS = 1_717_200_000_000
"""2024-06-01T00:00:00Z: the tests' "now"."""


@lru_cache(maxsize=16)
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    """A throwaway 2048-bit RSA key per label (generated once per test session)."""
    del label
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def bare_base64(pem: str) -> str:
    """A PEM body without armour or newlines (what Alipay's key tool prints)."""
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


@dataclass
class ManualClock:
    """A clock the test moves by hand."""

    now_ms: int = T0_MS

    def __call__(self) -> int:
        return self.now_ms


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None


@dataclass
class FakeTransport:
    """Records every request and answers with ``handler(call)``."""

    handler: Callable[[Call], HttpResponse]
    calls: list[Call] = field(default_factory=list)

    def request(self, method: str, url: str, headers: Mapping[str, str],
                body: bytes | None) -> HttpResponse:
        call = Call(method, url, dict(headers), body)
        self.calls.append(call)
        return self.handler(call)


def json_response(status: int, body: bytes | str,
                  headers: Mapping[str, str] | None = None) -> HttpResponse:
    raw = body.encode() if isinstance(body, str) else body
    return HttpResponse(status, {"content-type": "application/json", **(headers or {})}, raw)


# ---------------------------------------------------------------------------------------------
# A real local HTTP server.


@dataclass(frozen=True)
class Reply:
    """What the local server sends: ``chunks`` are written one by one (after ``delay_s``); with
    ``content_length`` None the body is delimited by closing the connection."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] = ()
    content_length: int | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


Route = Callable[[Received], Reply]


class LocalServer:
    """A threading HTTP/1.0 server on 127.0.0.1 with a free port; ``route`` answers every
    request. ``bytes_sent`` counts body bytes actually written (to prove a bound cut a body)."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.received: list[Received] = []
        self.bytes_sent = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Received(self.command, self.path, dict(self.headers.items()), body)
                with server._lock:
                    server.received.append(request)
                reply = server.route(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.content_length is not None:
                        self.send_header("Content-Length", str(reply.content_length))
                    self.end_headers()
                    for chunk in reply.chunks:
                        if reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                        self.wfile.write(chunk)
                        with server._lock:
                            server.bytes_sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _handle  # noqa: N815
            do_POST = _handle  # noqa: N815

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def repeat_chunks(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` zero bytes in chunks (generated lazily: a 100 MB reply costs no memory)."""
    block = b"\0" * chunk
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece
