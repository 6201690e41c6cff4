"""Issue 4's HTTP reference points: three ASGI apps that ``bench.http_bench`` serves with uvicorn.

Goal: put our API's verify and redeem figures beside what one uvicorn worker does with (a) a raw
ASGI app, (b) a FastAPI endpoint that does nothing and (c) a FastAPI redeem over an in-memory dict
with a pydantic body and response, measured in the same run on the same machine, so that their
ratios mean something on a shared, noisy machine. The issue quotes about 29,000, 8,500 and
6,000 requests/s for the three on this machine (wrk, 64 connections, uvloop, httptools).

Method: each app is the plainest correct version of its kind.

* ``raw_app``: an ASGI callable (run as ``bench.http_apps:raw_app``). It reads the request body
  (every request of the benchmark is a small JSON POST, and reading it is the least a real
  endpoint does) and answers ``{"ok":true}`` with a prebuilt header list, whatever the method or
  path. It answers the lifespan protocol, so uvicorn runs it with ``--lifespan on``.
* ``create_noop_app()``: FastAPI with ``POST /noop`` returning ``{"ok": true}`` through FastAPI's
  usual response path (a declared return type, serialised by pydantic). It does not read the
  body. Run as ``--factory bench.http_apps:create_noop_app``.
* ``create_redeem_app(codes)``: FastAPI with ``POST /v1/redeem`` taking a pydantic body
  ``{"code", "pin", "request_id"}``, redeeming from a dict of single-use codes
  ``BENCH0000000000``, ``BENCH0000000001``, ... seeded when the app is built, idempotent on
  ``request_id`` (same request: the first result; another code or PIN under it: 409
  ``IDEMPOTENCY_KEY_REUSED``; a used code under a new request id: 409 ``ALREADY_REDEEMED``;
  unknown code: 404 ``CODE_NOT_FOUND``), answering a pydantic ``Redemption``. Errors use our
  envelope ``{"error": {"code", "message", "details"}}``. ``GET /bench/stats`` returns the
  counters the benchmark checks its run against. Run as
  ``--factory bench.http_apps:create_redeem_app_from_env`` with ``BENCH_HTTP_CODES`` codes.

Each FastAPI app names itself in its OpenAPI title (``TITLE_NOOP``, ``TITLE_REDEEM``) and the raw
app sets ``RAW_APP_HEADER`` on every answer, so the benchmark can assert which app it measured.
None of them imports ``cardsvc``: they are what a plain FastAPI service costs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

SKU = "BENCH"
CODE_PREFIX = "BENCH"
CODE_DIGITS = 10
ENV_CODES = "BENCH_HTTP_CODES"
CODES_DEFAULT = 100_000
CODES_MAX = 5_000_000
"""Seeded codes at most: about 200 bytes each in the dict (key, record, and a result per
redemption), so 5M is about 1 GB; a 10 s run at the raw ASGI rate needs about 300,000."""
TITLE_NOOP = "bench FastAPI no-op"
TITLE_REDEEM = "bench FastAPI redeem (dict)"
RAW_APP_HEADER = (b"x-bench-app", b"raw-asgi")
RAW_BODY = b'{"ok":true}'
RAW_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(RAW_BODY)).encode()),
    RAW_APP_HEADER,
]


def bench_code(index: int) -> str:
    """The ``index``-th code of every benchmark target: ``BENCH`` and 10 digits."""
    return f"{CODE_PREFIX}{index:0{CODE_DIGITS}d}"


# ----- (a) raw ASGI ----------------------------------------------------------------------------


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with ``{"ok":true}`` after reading its body; answer lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return  # websockets are not part of the benchmark; uvicorn closes the connection
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more_body = bool(message.get("more_body", False))
    await send({"type": "http.response.start", "status": 200, "headers": RAW_HEADERS})
    await send({"type": "http.response.body", "body": RAW_BODY})


# ----- (b) FastAPI no-op -----------------------------------------------------------------------


def create_noop_app() -> FastAPI:
    """FastAPI with ``POST /noop`` answering ``{"ok": true}``; no docs UI, OpenAPI kept (the
    benchmark reads its title to assert which app runs)."""
    app = FastAPI(title=TITLE_NOOP, docs_url=None, redoc_url=None)

    @app.post("/noop")
    async def noop() -> dict[str, bool]:
        return {"ok": True}

    return app


# ----- (c) FastAPI redeem over a dict ----------------------------------------------------------


class RedeemRequest(BaseModel):
    """The redeem body; bounded like the service's (a code of at most 64 characters)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    pin: str | None = Field(default=None, max_length=32)
    request_id: str = Field(min_length=1, max_length=128)


class Redemption(BaseModel):
    """A successful redemption, as the first answer for its request id gave it."""

    redemption_id: str
    sku: str
    uses_left: int
    redeemed_at: datetime


class Refused(Exception):
    """A refused redemption: HTTP ``status`` and the stable error ``code``."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


@dataclass(slots=True)
class CodeRecord:
    sku: str
    pin: str | None
    uses_left: int


@dataclass
class DictRedeemer:
    """Codes and redemptions in two dicts; single-threaded (one event loop), so no locks.

    ``results`` grows by one entry per successful redemption, so it is bounded by the seeded
    codes times their uses (one each)."""

    codes: dict[str, CodeRecord] = field(default_factory=dict)
    results: dict[str, tuple[str, str | None, Redemption]] = field(default_factory=dict)
    redeemed: int = 0
    replayed: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    @classmethod
    def seeded(cls, count: int) -> DictRedeemer:
        """``count`` single-use codes ``bench_code(0) .. bench_code(count - 1)`` of SKU BENCH,
        without PIN. Raises ValueError when ``count`` is negative or above ``CODES_MAX``."""
        if not 0 <= count <= CODES_MAX:
            raise ValueError(f"codes must be between 0 and {CODES_MAX:,}, got {count}")
        return cls(codes={bench_code(i): CodeRecord(SKU, None, 1) for i in range(count)})

    def redeem(self, code: str, pin: str | None, request_id: str) -> Redemption:
        """Use one use of ``code`` under ``request_id``; the same request again returns the
        first result. Raises Refused: 409 IDEMPOTENCY_KEY_REUSED, 404 CODE_NOT_FOUND,
        409 PIN_MISMATCH, 409 ALREADY_REDEEMED, in that order of precedence."""
        try:
            return self._redeem(code, pin, request_id)
        except Refused as refused:
            self.refused[refused.code] = self.refused.get(refused.code, 0) + 1
            raise

    def _redeem(self, code: str, pin: str | None, request_id: str) -> Redemption:
        first = self.results.get(request_id)
        if first is not None:
            if (first[0], first[1]) != (code, pin):
                raise Refused(409, "IDEMPOTENCY_KEY_REUSED")
            self.replayed += 1
            return first[2]
        record = self.codes.get(code)
        if record is None:
            raise Refused(404, "CODE_NOT_FOUND")
        if record.pin is not None and record.pin != pin:
            raise Refused(409, "PIN_MISMATCH")
        if record.uses_left < 1:
            raise Refused(409, "ALREADY_REDEEMED")
        record.uses_left -= 1
        self.redeemed += 1
        result = Redemption(
            redemption_id=f"rd_{self.redeemed}",
            sku=record.sku,
            uses_left=record.uses_left,
            redeemed_at=datetime.now(UTC),
        )
        self.results[request_id] = (code, pin, result)
        return result

    def stats(self) -> dict[str, object]:
        return {
            "codes": len(self.codes),
            "redeemed": self.redeemed,
            "replayed": self.replayed,
            "refused": dict(self.refused),
        }


def create_redeem_app(codes: int) -> FastAPI:
    """FastAPI with ``POST /v1/redeem`` over ``DictRedeemer.seeded(codes)`` and
    ``GET /bench/stats``. Raises ValueError for a code count out of range."""
    redeemer = DictRedeemer.seeded(codes)
    app = FastAPI(title=TITLE_REDEEM, docs_url=None, redoc_url=None)

    @app.post("/v1/redeem", response_model=Redemption)
    async def redeem(body: RedeemRequest) -> Redemption | JSONResponse:
        try:
            return redeemer.redeem(body.code, body.pin, body.request_id)
        except Refused as refused:
            envelope = {"error": {"code": refused.code, "message": "refused", "details": {}}}
            return JSONResponse(envelope, status_code=refused.status)

    @app.get("/bench/stats")
    async def stats() -> dict[str, object]:
        return redeemer.stats()

    return app


def create_redeem_app_from_env() -> FastAPI:
    """``create_redeem_app`` with ``$BENCH_HTTP_CODES`` codes (default 100,000), for
    ``uvicorn --factory``."""
    return create_redeem_app(int(os.environ.get(ENV_CODES) or CODES_DEFAULT))
