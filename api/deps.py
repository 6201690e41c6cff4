"""Reusable FastAPI dependencies, declared once as ``Annotated`` types so routers stay thin.

* ``RuntimeDep``: the running service's parts and use cases (``cardsvc.runtime.Runtime``),
  opened by the app's lifespan.
* ``CallerDep``: the authenticated caller (``cardsvc.access.Principal``) from
  ``Authorization: Bearer <key>`` (``cardsvc.access.AccessGate.authenticate``): UNAUTHENTICATED
  (401) without a valid key, and requests without a valid key are throttled per client address
  (429), never requests with one.
* ``client_ip``: the client address, computed here only (the TCP peer; uvicorn replaces it with
  the ``X-Forwarded-For`` client only when the peer is one of ``CARDSVC_TRUSTED_PROXIES``).
* ``require(scope)``: a dependency giving the caller when its key holds ``scope``, else
  FORBIDDEN (403). ``admin`` holds every scope but ``export``; the finer scopes (``catalog``,
  ``stock``, ``ledger``, ``withdrawals``...) are what an admin key limited to one job holds, and
  what the console's staff roles hold (``cardsvc.access.SCOPES_OF_USER_ROLE``): each route
  names the one scope its work needs, so the API and the console authorise alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, cast

from fastapi import Depends, Request

from cardsvc.access import HOST_PRINCIPAL, Principal
from cardsvc.errors import ErrorCode, make_error
from cardsvc.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime, set on ``app.state.runtime`` by the lifespan."""
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CONTROL_SCOPE_KEY = "cardsvc.control"
"""The ASGI scope key ``server.app.Composed`` sets to True on requests of the control socket
(and to False on every other, so no request can carry it in)."""


def client_ip(request: Request) -> str:
    """The client address of a request: the TCP peer, which uvicorn replaces with the
    ``X-Forwarded-For`` client only when the peer is a trusted proxy (``server.cli``). The one
    place the API computes it."""
    return request.client.host if request.client is not None else "unknown"


async def get_caller(request: Request) -> Principal:
    """The caller of a request (``AccessGate.authenticate``). Raises UNAUTHENTICATED, or
    RATE_LIMITED for a request without a valid key from an address over its budget. A request
    that came through the server's control socket (the server marks it: ``cardsvc.control``;
    only the data directory's owner can connect) is the host's command line. Runs on the event
    loop (a dependency declared ``def`` would cost a thread-pool round trip per request)."""
    return await authenticate(cast(Runtime, request.app.state.runtime), request.scope,
                              request.headers.get("authorization", ""), client_ip(request))


async def authenticate(runtime: Runtime, scope: Mapping[str, Any], header: str,
                       ip: str) -> Principal:
    """:func:`get_caller` on its parts: the request's ASGI scope, its ``Authorization``
    header's text (``""`` when absent) and the client IP (shared with the lean routes of
    ``api.lean``, which have no ``Request``)."""
    if scope.get(CONTROL_SCOPE_KEY) is True:
        return HOST_PRINCIPAL
    return await runtime.gate.authenticate(header, ip)


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
