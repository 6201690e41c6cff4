"""Goal: the probes tell the truth. ``/healthz`` answers while the process lives; ``/readyz``
answers 200 with the durability guarantee in force once the store is recovered, and 503
``JOURNAL_UNAVAILABLE`` while the journal cannot be written, recovering on its own after.
OpenAPI and the docs page are served.

Method: requests through ``ASGITransport`` (see conftest). The journal failure is real: the
sink's ``append`` is replaced by one that raises ``JOURNAL_UNAVAILABLE`` and a mutation gives
the writer something to write, so the writer's own retry loop sets and later clears the error.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from cardsvc.engine.store import Store
from cardsvc.errors import ErrorCode, make_error

pytestmark = pytest.mark.anyio

POLL_DEADLINE_S = 5.0


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_the_no_loss_guarantee_of_the_file_journal(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    durability = body["durability"]
    assert durability["sink"] == "file"
    assert durability["guarantee"]["level"] == "no_loss"
    assert durability["journal_writable"] is True
    assert durability["last_error"] is None
    assert durability["recovery"]["records_replayed"] == 0


async def _poll_readyz(client: httpx.AsyncClient, status: int) -> httpx.Response:
    with anyio.fail_after(POLL_DEADLINE_S):
        while True:
            response = await client.get("/readyz")
            if response.status_code == status:
                return response
            await anyio.sleep(0.02)


async def test_readyz_is_503_while_the_journal_fails_and_200_again_after(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store: Store = app.state.runtime.store

    def failing_append(frames: bytes, first_seq: int, last_seq: int) -> None:
        del frames, first_seq, last_seq
        raise make_error(ErrorCode.JOURNAL_UNAVAILABLE, "test: the disk is gone", {"sink": "file"})

    with monkeypatch.context() as patch:
        patch.setattr(store.sink, "append", failing_append)
        store.engine.create_sku("SKU-READY")  # a record the writer must now fail to write
        failing = await _poll_readyz(client, 503)
        error: dict[str, Any] = failing.json()["error"]
        assert error["code"] == ErrorCode.JOURNAL_UNAVAILABLE.value
        assert error["details"]["durability"]["journal_writable"] is False
        assert failing.headers["retry-after"] == "1"
    recovered = await _poll_readyz(client, 200)
    assert recovered.json()["durability"]["journal_writable"] is True


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/healthz", "/readyz"} <= set(paths)
    assert "ErrorEnvelope" in spec.json()["components"]["schemas"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
