"""Goal: no request body larger than ``request_body_bytes_max`` reaches an endpoint; its sender
gets a clear 400 ``LIMIT_EXCEEDED`` naming the bound, whether the body declares its length or is
sent in chunks, and a body at the bound passes.

Method: an app with a 64-byte bound and test-only routes, one taking a pydantic body and one
reading the raw body itself, each counting its calls; bodies with a ``Content-Length`` and
chunked bodies (an async generator, which httpx sends with ``Transfer-Encoding: chunked``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel

from cardsvc.errors import ErrorCode
from server.app import create_app
from server.settings import Settings

pytestmark = pytest.mark.anyio

BOUND = 64


class Note(BaseModel):
    text: str


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", request_body_bytes_max=BOUND)


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def app(settings: Settings, calls: list[str]) -> FastAPI:
    app = create_app(settings)
    router = APIRouter(prefix="/test")

    @router.post("/note")
    async def note(body: Note) -> dict[str, Any]:
        calls.append("note")
        return {"length": len(body.text)}

    @router.post("/raw")
    async def raw(request: Request) -> dict[str, Any]:
        calls.append("raw")
        return {"length": len(await request.body())}

    app.include_router(router)
    return app


def _note_of_size(size: int) -> bytes:
    body = b'{"text": "' + b"x" * (size - len(b'{"text": ""}')) + b'"}'
    assert len(body) == size
    return body


async def _chunks(total: int, chunk: int = 20) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        part = min(chunk, total - sent)
        yield b"y" * part
        sent += part


def _assert_limit_exceeded(response: httpx.Response) -> None:
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == ErrorCode.LIMIT_EXCEEDED.value
    assert error["details"]["field"] == "request_body"
    assert error["details"]["max"] == BOUND
    assert error["details"]["got"] > BOUND


async def test_body_at_the_bound_reaches_the_endpoint(
    client: httpx.AsyncClient, calls: list[str]
) -> None:
    response = await client.post(
        "/test/note", content=_note_of_size(BOUND), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert calls == ["note"]


async def test_declared_length_over_the_bound_is_refused_unread(
    client: httpx.AsyncClient, calls: list[str]
) -> None:
    response = await client.post(
        "/test/note",
        content=_note_of_size(BOUND + 1),
        headers={"content-type": "application/json"},
    )
    _assert_limit_exceeded(response)
    assert response.json()["error"]["details"]["got"] == BOUND + 1
    assert calls == []


@pytest.mark.parametrize("route", ["/test/note", "/test/raw"])
async def test_chunked_body_over_the_bound_is_refused(
    client: httpx.AsyncClient, calls: list[str], route: str
) -> None:
    response = await client.post(
        route, content=_chunks(BOUND * 3), headers={"content-type": "application/json"}
    )
    _assert_limit_exceeded(response)
    # The pydantic route is never called; the raw route is called but fails reading the body.
    assert "note" not in calls


async def test_chunked_body_within_the_bound_passes(
    client: httpx.AsyncClient, calls: list[str]
) -> None:
    response = await client.post("/test/raw", content=_chunks(BOUND))
    assert response.status_code == 200
    assert response.json() == {"length": BOUND}
    assert calls == ["raw"]
