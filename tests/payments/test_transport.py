"""Goal: the httpx transport that carries every provider call is bounded for real: it returns
any status as data, refuses a response over the size bound without reading it all (100 MB is
cut off after about the bound), gives up on slow and dripping servers on time, sends no plain
http except to allowed hosts, and follows no redirects.

Method: a real HTTP server on 127.0.0.1 (a free port, threads) answering per test, with the
bytes it managed to write counted; wall time measured around the calls.
"""

from __future__ import annotations

import socket
import time

import pytest

from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.payments.transport import HttpxTransport

from .helpers import LocalServer, Received, Reply, repeat_chunks

HUNDRED_MB = 100 * 1024 * 1024
LOCAL = frozenset({"127.0.0.1"})


def _transport(**bounds: float) -> HttpxTransport:
    return HttpxTransport(http_hosts_allowed=LOCAL, **bounds)  # type: ignore[arg-type]


def _reason(caught: pytest.ExceptionInfo[CardsvcError]) -> str:
    assert caught.value.code is ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE
    return str(caught.value.details["reason"])


def test_any_status_comes_back_as_data_with_lower_case_headers() -> None:
    def route(request: Received) -> Reply:
        status = 404 if request.path == "/missing" else 200
        body = request.body or b"hello"
        return Reply(status, {"X-Provider": "fake"}, [body], len(body))

    with LocalServer(route) as server:
        transport = _transport()
        try:
            ok = transport.request("POST", server.base_url + "/echo",
                                   {"Content-Type": "text/plain"}, b"ping")
            missing = transport.request("GET", server.base_url + "/missing", {}, None)
        finally:
            transport.close()
    assert (ok.status, ok.body, ok.headers["x-provider"]) == (200, b"ping", "fake")
    assert (missing.status, missing.body) == (404, b"hello")
    assert server.received[0].headers["Accept-Encoding"] == "identity"


def test_a_declared_100_mb_response_is_refused_without_reading_it() -> None:
    with LocalServer(lambda request: Reply(200, {}, repeat_chunks(HUNDRED_MB),
                                           HUNDRED_MB)) as server:
        transport = _transport()
        started = time.monotonic()
        try:
            with pytest.raises(CardsvcError) as caught:
                transport.request("GET", server.base_url + "/big", {}, None)
        finally:
            transport.close()
        elapsed = time.monotonic() - started
        time.sleep(0.2)
    assert _reason(caught) == "too_large"
    assert elapsed < 5
    assert server.bytes_sent < HUNDRED_MB // 5  # only what socket buffers took, never it all


def test_an_undeclared_100_mb_response_is_cut_after_the_bound() -> None:
    with LocalServer(lambda request: Reply(200, {}, repeat_chunks(HUNDRED_MB))) as server:
        transport = _transport(response_bytes_max=1024 * 1024)
        try:
            with pytest.raises(CardsvcError) as caught:
                transport.request("GET", server.base_url + "/stream", {}, None)
        finally:
            transport.close()
        time.sleep(0.2)
    assert _reason(caught) == "too_large"
    assert server.bytes_sent < HUNDRED_MB // 5


def test_a_response_within_the_bound_is_read_whole() -> None:
    size = 512 * 1024
    with LocalServer(lambda request: Reply(200, {}, repeat_chunks(size))) as server:
        transport = _transport(response_bytes_max=1024 * 1024)
        try:
            response = transport.request("GET", server.base_url + "/ok", {}, None)
        finally:
            transport.close()
    assert len(response.body) == size


def test_a_slow_server_times_out_on_the_read_timeout() -> None:
    with LocalServer(lambda request: Reply(200, {}, [b"late"], 4, delay_s=3.0)) as server:
        transport = _transport(read_timeout_s=0.5)
        started = time.monotonic()
        try:
            with pytest.raises(CardsvcError) as caught:
                transport.request("GET", server.base_url + "/slow", {}, None)
        finally:
            transport.close()
    assert _reason(caught) == "timeout"
    assert time.monotonic() - started < 2.5


def test_a_dripping_server_is_cut_off_by_the_total_deadline() -> None:
    drip = Reply(200, {}, (b"x" for _ in range(100)), chunk_delay_s=0.2)
    with LocalServer(lambda request: drip) as server:
        transport = _transport(read_timeout_s=1.0, total_timeout_s=1.0)
        started = time.monotonic()
        try:
            with pytest.raises(CardsvcError) as caught:
                transport.request("GET", server.base_url + "/drip", {}, None)
        finally:
            transport.close()
    assert _reason(caught) == "timeout"
    assert time.monotonic() - started < 3.0


def test_a_closed_port_is_a_connect_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = _transport(connect_timeout_s=1.0)
    try:
        with pytest.raises(CardsvcError) as caught:
            transport.request("GET", f"http://127.0.0.1:{port}/", {}, None)
    finally:
        transport.close()
    assert _reason(caught) == "connect"


def test_compressed_answers_are_refused() -> None:
    reply = Reply(200, {"Content-Encoding": "gzip"}, [b"\x1f\x8b"], 2)
    with LocalServer(lambda request: reply) as server:
        transport = _transport()
        try:
            with pytest.raises(CardsvcError) as caught:
                transport.request("GET", server.base_url + "/gz", {}, None)
        finally:
            transport.close()
    assert _reason(caught) == "encoded"


def test_redirects_are_returned_not_followed() -> None:
    reply = Reply(302, {"Location": "http://127.0.0.1:1/elsewhere"}, [b""], 0)
    with LocalServer(lambda request: reply) as server:
        transport = _transport()
        try:
            response = transport.request("GET", server.base_url + "/moved", {}, None)
        finally:
            transport.close()
        assert len(server.received) == 1
    assert response.status == 302


def test_plain_http_goes_only_to_allowed_hosts() -> None:
    transport = HttpxTransport()
    try:
        for url in ("http://127.0.0.1:9/", "ftp://example.com/", "not a url"):
            with pytest.raises(CardsvcError) as caught:
                transport.request("GET", url, {}, None)
            assert caught.value.code is ErrorCode.PAYMENT_CONFIG_INVALID
    finally:
        transport.close()
