"""The listening sockets of ``cardsvc serve``: the TCP address, and the control socket in the data
directory through which the command line reaches the running server.

Both are bound here, before uvicorn starts, so that a refusal (the port in use) is one line with
a stable code, and so that the control socket exists only with the permissions it must have.
The control socket (``DATA_DIR/control.sock``, ``cardsvc.engine.CONTROL_SOCKET_NAME``) is bound
in a private directory (mode 0700), set to mode 0600 and only then renamed into place, so at no
moment can anyone but the data directory's owner connect to it; a request arriving on it acts as
``cardsvc.access.HOST_PRINCIPAL`` (the host's command line, audited as ``cli``), exactly as
the command line does when it opens the data directory itself. ``server.app.Composed`` tells its
requests apart by the socket's bound name in the ASGI scope (``server``), which uvicorn takes
from the listening socket, never from the request.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cardsvc.engine import CONTROL_SOCKET_NAME
from cardsvc.errors import ErrorCode, make_error

UNIX_PATH_LEN_MAX = 100
"""sockaddr_un holds 108 bytes; longer data directory paths are bound through
``/proc/self/fd/<n>/`` (Linux), which is short whatever the directory's own path."""
BACKLOG = 2048


@dataclass
class Listeners:
    """The sockets uvicorn serves, and the control socket's bound name (None: none)."""

    sockets: list[socket.socket]
    control_name: str | None
    control_path: Path | None

    def close(self) -> None:
        """Closes the sockets and removes the control socket's file. Idempotent."""
        for sock in self.sockets:
            sock.close()
        self.remove_control()

    def remove_control(self) -> None:
        """Removes the control socket's file (the server is stopping). Idempotent."""
        if self.control_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.control_path)
            self.control_path = None


def bind_tcp(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening. Raises IO_ERROR (the address is in
    use or cannot be bound), naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise make_error(ErrorCode.IO_ERROR, f"cannot listen on {host}:{port}: "
                         f"{error.strerror or error}", {"field": "port"}) from None
    sock.set_inheritable(True)
    return sock


def bind_control(data_dir: Path) -> tuple[socket.socket, str, Path]:
    """The control socket ``data_dir/control.sock`` (mode 0600), listening, with the name it was
    bound under and its path. A stale socket of an earlier server is replaced (the caller holds
    the data directory's lock, so no live server owns it). Raises IO_ERROR."""
    final = data_dir / CONTROL_SOCKET_NAME
    private = data_dir / f".control-{secrets.token_hex(4)}"
    dir_fd = -1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        private.mkdir(mode=0o700)
        dir_fd = os.open(private, os.O_RDONLY | os.O_DIRECTORY)
        name = str(private / CONTROL_SOCKET_NAME)
        if len(os.fsencode(name)) > UNIX_PATH_LEN_MAX:
            name = f"/proc/self/fd/{dir_fd}/{CONTROL_SOCKET_NAME}"
        sock.bind(name)
        os.chmod(private / CONTROL_SOCKET_NAME, 0o600)
        sock.listen(BACKLOG)
        os.replace(private / CONTROL_SOCKET_NAME, final)
    except OSError as error:
        sock.close()
        raise make_error(ErrorCode.IO_ERROR, "cannot create the control socket in the data "
                         f"directory: {error.strerror or error}",
                         {"field": "data_dir"}) from None
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
        with contextlib.suppress(OSError):
            private.rmdir()
    sock.set_inheritable(True)
    return sock, name, final


def bind_listeners(host: str, port: int, data_dir: Path) -> Listeners:
    """The TCP socket and the control socket of one server. Raises IO_ERROR (nothing is left
    bound then)."""
    tcp = bind_tcp(host, port)
    try:
        control, name, path = bind_control(data_dir)
    except BaseException:
        tcp.close()
        raise
    return Listeners([tcp, control], name, path)
