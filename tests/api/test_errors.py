"""Goal: every error leaves the API in DESIGN.md's envelope with the status of ``STATUS_OF``, and
no error reveals what it must not: a 500 shows nothing of its cause, a validation error never
echoes the input, an unknown path is not repeated back (paths and bodies may hold a code).

Method: test-only routes, added to the app in the test, raise each ``ErrorCode``, an unexpected
``RuntimeError`` and take pydantic bodies; requests go through ``ASGITransport`` (see conftest).
Assertions check the status, ``error.code``, the details' structure and the absence of the
secrets planted in the request or the exception, never message text.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import text

from api.errors import STATUS_OF, log_unexpected
from cardsvc import audit
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, make_error

pytestmark = pytest.mark.anyio

SECRET = "SECRETCODE-7731-9925"


class Order(BaseModel):
    code: str
    qty: int


class Prices(BaseModel):
    by_code: dict[str, int]


def _test_router() -> APIRouter:
    router = APIRouter(prefix="/test")

    @router.get("/raise/{code}")
    async def raise_code(code: ErrorCode) -> None:
        raise make_error(code, f"planted {SECRET}", {"field": "x", "planted": SECRET})

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError(f"secret {SECRET}")

    @router.post("/order")
    async def order(body: Order) -> dict[str, Any]:
        return {"qty": body.qty}

    @router.post("/prices")
    async def prices(body: Prices) -> dict[str, Any]:
        return {"count": len(body.by_code)}

    return router


@pytest.fixture
def routed_app(app: FastAPI) -> FastAPI:
    app.include_router(_test_router())
    return app


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


@pytest.mark.parametrize("code", list(ErrorCode))
async def test_each_error_code_gets_its_table_status_and_envelope(
    routed_app: FastAPI, client: httpx.AsyncClient, code: ErrorCode
) -> None:
    response = await client.get(f"/test/raise/{code.value}")
    assert response.status_code == STATUS_OF[code]
    error = _error(response)
    assert error["code"] == code.value
    if STATUS_OF[code] == 500:
        assert error["details"] == {}
        assert SECRET not in response.text
    else:
        assert error["details"]["field"] == "x"


async def test_unexpected_exception_is_500_internal_error_revealing_nothing(
    routed_app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cardsvc.api"):
        response = await client.get("/test/crash")
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == ErrorCode.INTERNAL_ERROR.value
    assert error["details"] == {}
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    assert "RuntimeError" in caplog.text
    assert SECRET not in caplog.text


async def test_validation_error_is_422_with_locations_and_no_input(
    routed_app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post("/test/order", json={"code": SECRET, "qty": f"many {SECRET}"})
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == ErrorCode.VALIDATION_ERROR.value
    problem = {"loc": ["body", "qty"], "type": "int_parsing"}
    assert error["details"] == {"errors": [problem], "count": 1}
    assert SECRET not in response.text


async def test_malformed_json_is_422_json_invalid_without_echo(
    routed_app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/test/order",
        content=f'{{"code": "{SECRET}", "qty": '.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == ErrorCode.VALIDATION_ERROR.value
    assert [problem["type"] for problem in error["details"]["errors"]] == ["json_invalid"]
    assert SECRET not in response.text


async def test_validation_error_masks_locations_taken_from_input_keys(
    routed_app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post("/test/prices", json={"by_code": {SECRET: "not a number"}})
    assert response.status_code == 422
    error = _error(response)
    (problem,) = error["details"]["errors"]
    assert problem["loc"][:2] == ["body", "by_code"]
    assert problem["loc"][2].endswith(SECRET[-4:])
    assert SECRET not in response.text
    assert SECRET[:-4] not in response.text


async def test_unknown_path_is_404_route_not_found_without_echoing_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"/v1/codes/{SECRET}")
    assert response.status_code == 404
    assert _error(response)["code"] == ErrorCode.ROUTE_NOT_FOUND.value
    assert SECRET not in response.text


async def test_wrong_method_is_405_method_not_allowed_with_allow_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/healthz")
    assert response.status_code == 405
    assert _error(response)["code"] == ErrorCode.METHOD_NOT_ALLOWED.value
    assert "GET" in response.headers["allow"]


def test_an_unexpected_error_is_logged_with_its_innermost_project_frames(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = Database.open(tmp_path, None)
    try:
        with db.write() as session:
            session.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON audit_log "
                                 "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        with pytest.raises(Exception) as caught:
            audit.record(db, actor="t", action=SECRET, object_type="x", object_id="y",
                         details={}, at_ms=1)
    finally:
        db.close()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="cardsvc.api"):
        log_unexpected(caught.value)
    [line] = [record.getMessage() for record in caplog.records if record.name == "cardsvc.api"]
    assert "python/cardsvc/audit/chain.py" in line  # where the project called into the library
    assert "sqlalchemy" in line  # and where it was raised
    assert SECRET not in line and "refused" not in line  # never the message or the SQL
