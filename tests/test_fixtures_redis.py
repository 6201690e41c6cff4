"""Goal: the shared ``redis_server`` fixture (conftest.py) gives a private, durable Redis.

Method: connect with the ``redis`` client, write and read a key, and read back the settings the
fixture promises (loopback only, append-only file with fsync on every write).
"""

from __future__ import annotations

from typing import Protocol

import redis


class _Server(Protocol):
    # The shape of conftest.RedisServer (conftest modules are not imported by name).
    @property
    def url(self) -> str: ...


def test_redis_server_is_private_and_durable(redis_server: _Server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping()
        client.set("cardsvc:fixture-check", b"1")
        assert client.get("cardsvc:fixture-check") == b"1"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    finally:
        client.close()
