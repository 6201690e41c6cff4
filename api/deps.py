"""Reusable FastAPI dependencies, declared once as ``Annotated`` types so routers stay thin.

* ``RuntimeDep``: the running service's parts and use cases (``cardsvc.runtime.Runtime``),
  opened by the app's lifespan.
* ``CallerDep``: the authenticated caller (``cardsvc.access.apikeys.Principal``) from
  ``Authorization: Bearer <key>``; UNAUTHENTICATED (401) without a valid key. Failed attempts
  count against the client IP's brute-force guard, so key guessing is throttled too.
* ``require(scope)``: a dependency giving the caller when its key holds ``scope``, else
  FORBIDDEN (403). ``admin`` holds every scope but ``export``; the finer scopes (``catalog``,
  ``stock``, ``ledger``, ``withdrawals``...) are what an admin key limited to one job holds, and
  what the console's staff roles hold (``cardsvc.access.SCOPES_OF_USER_ROLE``): each route
  names the one scope its work needs, so the API and the console authorise alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends, Request

from cardsvc.access import Principal
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.runtime import Runtime

BEARER = "bearer "


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime, set on ``app.state.runtime`` by the lifespan."""
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def client_ip(request: Request) -> str:
    """The peer address (the service listens on loopback or behind a proxy that the operator
    trusts; ``--proxy-headers`` makes uvicorn put the forwarded address here)."""
    return request.client.host if request.client is not None else "unknown"


async def get_caller(request: Request) -> Principal:
    """The caller of a request. Raises UNAUTHENTICATED, or RATE_LIMITED while the client IP is
    locked out for failed attempts. Runs on the event loop (a dependency declared ``def`` would
    cost a thread-pool round trip per request); a key not in the cache is read from SQL in a
    worker thread."""
    runtime = cast(Runtime, request.app.state.runtime)
    ip = client_ip(request)
    limits = runtime.risk.limits
    runtime.risk.admit_auth(ip, limits)
    header = request.headers.get("authorization", "")
    try:
        if header[: len(BEARER)].lower() != BEARER:
            raise make_error(ErrorCode.UNAUTHENTICATED,
                             "a valid API key is required (Authorization: Bearer <key>)")
        text = header[len(BEARER):].strip()
        cached = runtime.keys.authenticate_cached(text)
        if cached is not None:
            return cached
        return await asyncio.to_thread(runtime.keys.authenticate, text)
    except CardsvcError as error:
        if error.code == ErrorCode.UNAUTHENTICATED:
            runtime.risk.record_failures(None, ip, limits)
        raise


CallerDep = Annotated[Principal, Depends(get_caller)]


def require(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, when its key holds ``scope``; FORBIDDEN otherwise."""

    async def check(caller: CallerDep) -> Principal:
        caller.require(scope)
        return caller

    check.__name__ = f"require_{scope}"
    return check


AdminDep = Annotated[Principal, Depends(require("admin"))]
CatalogDep = Annotated[Principal, Depends(require("catalog"))]
StockDep = Annotated[Principal, Depends(require("stock"))]
LedgerDep = Annotated[Principal, Depends(require("ledger"))]
WithdrawalsDep = Annotated[Principal, Depends(require("withdrawals"))]
ReconciliationDep = Annotated[Principal, Depends(require("reconciliation"))]
AuditDep = Annotated[Principal, Depends(require("audit"))]
TraceDep = Annotated[Principal, Depends(require("trace"))]
FreezeDep = Annotated[Principal, Depends(require("freeze"))]
VerifierDep = Annotated[Principal, Depends(require("verify"))]
RedeemerDep = Annotated[Principal, Depends(require("redeem"))]
RollbackDep = Annotated[Principal, Depends(require("rollback"))]
OrdersDep = Annotated[Principal, Depends(require("orders"))]
HoldsDep = Annotated[Principal, Depends(require("holds"))]


def agent_of(caller: Principal) -> str:
    """The agent an agent key acts for. Raises FORBIDDEN for a key of another role."""
    if caller.agent_id is None:
        raise make_error(ErrorCode.FORBIDDEN, "this needs an agent's key",
                         {"role": caller.role})
    return caller.agent_id


def is_platform(caller: Principal) -> bool:
    """Whether the caller acts for the platform (an admin key or a staff user), not for an
    agent or a terminal."""
    return caller.agent_id is None and caller.role not in ("terminal", "agent")


def acting_agent(caller: Principal, scope: str = "admin") -> str | None:
    """Who a use case acts for: None for the platform (which then needs ``scope``), the
    caller's agent for an agent's key or user (FORBIDDEN for a terminal)."""
    if is_platform(caller):
        caller.require(scope)
        return None
    return agent_of(caller)
