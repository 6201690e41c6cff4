"""The command line's way to a running server: HTTP over the control socket in the data
directory (``DATA_DIR/control.sock``, mode 0600, created by ``cardsvc serve``).

Whoever may open the data directory's files may connect to the socket, and the server treats its
requests as the host's command line (``cardsvc.access.HOST_PRINCIPAL``, audited as ``cli``):
nothing more than what the command line could do by opening the data directory itself, which a
running server forbids (it holds the directory's lock). So a command that the server can do
(``import``, ``reconcile``) asks the server when one runs, and opens the data directory itself
when none does: no key to create, no downtime. Answers are the API's JSON; an error envelope
becomes the CardsvcError of its code.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from cardsvc.engine import CONTROL_SOCKET_NAME
from cardsvc.errors import ErrorCode, make_error

UNIX_PATH_LEN_MAX = 100
"""sockaddr_un holds 108 bytes; a longer path is reached through ``/proc/self/fd/<n>/``."""
TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=None, pool=5.0)
"""Uploads may take long to send (no write bound); a request the server does not answer in two
minutes is given up (reconciliation of a large platform takes seconds)."""
BASE_URL = "http://cardsvc-control"


class ControlClient:
    """An HTTP client of the server behind ``data_dir``'s control socket; a context manager."""

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / CONTROL_SOCKET_NAME
        self._dir_fd = -1
        target = str(path)
        if len(os.fsencode(target)) > UNIX_PATH_LEN_MAX:
            self._dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
            target = f"/proc/self/fd/{self._dir_fd}/{CONTROL_SOCKET_NAME}"
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=target), base_url=BASE_URL,
                                 timeout=TIMEOUT)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        """The server's answer to one request. Raises the CardsvcError of an error envelope
        (INTERNAL_ERROR for an answer that is not one), IO_ERROR when the server stops
        answering."""
        try:
            response = self.http.request(method, path, **options)
        except httpx.TransportError as error:
            raise make_error(ErrorCode.IO_ERROR, "the running server stopped answering on its "
                             f"control socket ({type(error).__name__})") from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def json(self, method: str, path: str, **options: Any) -> Any:
        """:meth:`call`'s JSON body."""
        return self.call(method, path, **options).json()


def connect(data_dir: Path) -> ControlClient | None:
    """A client of the server running on ``data_dir``, or None when none answers there (no
    control socket, or a stale one left by a server that was killed)."""
    if not (data_dir / CONTROL_SOCKET_NAME).exists():
        return None
    client = ControlClient(data_dir)
    try:
        client.http.get("/healthz")
    except httpx.TransportError:
        client.close()
        return None
    return client


def _error_of(response: httpx.Response) -> Exception:
    try:
        error = response.json()["error"]
        code = ErrorCode(error["code"])
        return make_error(code, str(error["message"]), dict(error.get("details") or {}))
    except (ValueError, KeyError, TypeError):
        return make_error(ErrorCode.INTERNAL_ERROR,
                          f"the server answered {response.status_code} without an error code")
