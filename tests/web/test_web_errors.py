"""Goal: every error is an HTML page with the right status and stable code and no internals,
and the web layer's statuses agree with the JSON API's for every code. Method: compare the
status functions over ``ErrorCode``, then raise each kind of failure from a test route."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.errors import STATUS_OF
from cardsvc.errors import ErrorCode, make_error
from tests.web.conftest import TEST_SECRET, error_code, new_client
from web import WebSettings, create_web
from web.errors import status_of

pytestmark = pytest.mark.anyio
SECRET_TEXT = "SECRET-DETAIL-0042-ZZZZ"


def test_web_statuses_equal_the_api_table_for_every_code() -> None:
    assert {code: status_of(code) for code in ErrorCode} == dict(STATUS_OF)


async def _boom(request: Request) -> Response:
    raise RuntimeError(SECRET_TEXT)


async def _domain(request: Request) -> Response:
    raise make_error(request.path_params["code"], SECRET_TEXT, {"secret": SECRET_TEXT})


@pytest.fixture
async def failing() -> httpx.AsyncClient:
    routes = [Route("/boom", _boom), Route("/domain/{code}", _domain)]
    return new_client(create_web(WebSettings(secret_key=TEST_SECRET), routes=routes))


async def test_unexpected_exceptions_are_a_500_page_without_internals(
        failing: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="cardsvc.web"):
        response = await failing.get("/boom")
    assert response.status_code == 500
    assert error_code(response.text) == ("INTERNAL_ERROR", None)
    assert SECRET_TEXT not in response.text and "RuntimeError" not in response.text
    assert "RuntimeError" in caplog.text and SECRET_TEXT not in caplog.text
    assert response.headers["content-security-policy"]


@pytest.mark.parametrize(("code", "status"), [
    ("ORDER_NOT_FOUND", 404), ("OUT_OF_STOCK", 409), ("INVALID_ARGUMENT", 400),
    ("RATE_LIMITED", 429), ("DATABASE_UNAVAILABLE", 503), ("JOURNAL_CORRUPT", 500),
    ("UNAUTHENTICATED", 401), ("VALIDATION_ERROR", 422),
])
async def test_domain_errors_are_pages_with_their_status_and_code(
        failing: httpx.AsyncClient, code: str, status: int) -> None:
    response = await failing.get(f"/domain/{code}")
    assert response.status_code == status
    assert error_code(response.text) == (code, None)
    assert SECRET_TEXT not in response.text


async def test_unknown_routes_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no/such/page")
    assert missing.status_code == 404
    assert error_code(missing.text) == ("ROUTE_NOT_FOUND", None)
    assert "/no/such/page" not in missing.text.split("<main", 1)[1].split("</main>")[0]
    wrong = await client.get("/demo/echo")
    assert wrong.status_code == 405
    assert error_code(wrong.text) == ("METHOD_NOT_ALLOWED", None)
