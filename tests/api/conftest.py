"""Fixtures for the HTTP API tests (STYLE.md, Tests): ``httpx.AsyncClient`` over
``ASGITransport`` against ``create_app(settings)`` with a temporary data directory.

``client`` runs the app's lifespan (opening and, at teardown, closing the store) by entering
``app.router.lifespan_context`` itself, as the ASGI server would; no network is involved.
``raise_app_exceptions=False`` lets a test see the 500 the app renders for an unexpected
exception instead of the exception. Tests may add test-only routes to ``app`` before their first
request; the app the service runs never has them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cardsvc.test") as http:
            yield http
