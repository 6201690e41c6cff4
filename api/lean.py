"""The lean path of the hot routes: ``POST /v1/verify``, ``/v1/redeem``, ``/v1/redeem/batch``,
``/v1/holds``, ``/v1/orders`` and the storefront's ``/v1/shop/checkouts``, the calls terminals,
flash sales, agents' systems and buyers make thousands of times a second.

FastAPI's own handling of a request (dependency solving, the body read through ``json.loads``
and validated as Python objects, the response model validating values the code just built,
``jsonable_encoder``, the exit stacks) costs several times the work of the call itself (issue
12's profile). These routes stay declared in their routers exactly as before, so the
OpenAPI schema and the service's middleware are unchanged; :class:`LeanRoutes`, the innermost
middleware of the FastAPI app, answers a POST to one of them itself, per request:

1. read the body; a body that is not JSON by its ``content-type`` goes to FastAPI's handler;
2. decode and validate the bytes in one step with a precompiled pydantic validator
   (``TypeAdapter.validate_json``) of the route's request model, or of a ``TypedDict`` with the
   same rules for the batch (``tests/api/test_lean.py`` compares their JSON schemas). **A body
   that fails validation is handed, bytes and all, to FastAPI's own handler**, so every
   refusal (422 ``VALIDATION_ERROR`` and its details, and the order of the checks: a body that
   is not JSON is refused before authentication, a well-formed but invalid one after it) is
   FastAPI's, byte for byte;
3. one call for authentication and the scope check (``api.deps.authenticate``, the same as the
   ``CallerDep``/``require`` dependencies; none for the shop's public checkout, whose route has
   no caller), then the same single domain call as the route, which applies the risk limits
   (the buyers' caps for a checkout) and waits for the journal before it returns;
4. the response body serialised by orjson from a dict in the response model's field order (the
   same bytes pydantic would write; the tests compare both paths), and a ``CardsvcError``
   rendered by ``api.errors.cardsvc_error_response``, as the exception handler does.

Anything else that escapes (a bug) propagates to the same middleware as from any route.
``Settings.lean_routes`` (``CARDSVC_LEAN_ROUTES=off``) leaves the middleware out, and FastAPI's
handlers answer these routes as they answer every other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, cast

import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict

from api.deps import agent_of, authenticate
from api.errors import cardsvc_error_response
from api.routes import API_PREFIX
from api.routes.orders import HoldCreate, OrderCreate, OrderOut, hold_json, order_json
from api.routes.redemption import (
    CODE_TEXT_LEN_MAX,
    PIN_TEXT_LEN_MAX,
    REDEEM_BATCH_ITEMS_MAX,
    REQUEST_ID_LEN_MAX,
    RedeemRequest,
    VerifyRequest,
)
from api.routes.shop import CheckoutIn, payment_json, retail_order_json
from cardsvc.access import Principal
from cardsvc.errors import CardsvcError
from cardsvc.runtime import Runtime
from cardsvc.sales import CheckoutRequest, OrderRequest
from cardsvc.times import iso, iso_s

JSON_HEADERS = [(b"content-type", b"application/json")]


@with_config(ConfigDict(strict=True, extra="forbid"))
class BatchItem(TypedDict):
    """``api.routes.redemption.RedeemRequest`` as a ``TypedDict`` (no model instance per
    item: a third of the model's decoding time on a 1,000-item batch)."""

    code: Annotated[str, Field(min_length=1, max_length=CODE_TEXT_LEN_MAX)]
    pin: NotRequired[Annotated[str | None, Field(max_length=PIN_TEXT_LEN_MAX)]]
    request_id: Annotated[str, Field(min_length=1, max_length=REQUEST_ID_LEN_MAX)]


@with_config(ConfigDict(strict=True, extra="forbid"))
class BatchBody(TypedDict):
    """``api.routes.redemption.RedeemBatchRequest`` as a ``TypedDict``."""

    items: Annotated[list[BatchItem], Field(min_length=1, max_length=REDEEM_BATCH_ITEMS_MAX)]


Handler = Callable[[Runtime, Principal | None, Scope, str, Any], Awaitable[tuple[int, Any]]]
"""A lean route's work: ``(runtime, caller (None on a public route), the request's scope,
client ip, decoded body)`` to ``(status, json)``."""


class LeanRoutes:
    """The lean path (module docstring) as the innermost middleware of the FastAPI app: a
    ``POST`` to one of :data:`LEAN_ROUTES` is answered here, and every other request (and every
    body the validator refuses) goes on to FastAPI's routing and handlers, ``app``. It sits
    inside the service's own middleware (the last-resort 500, the body bound), so those apply
    to it as to any route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = LEAN_ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        await self._lean(route, scope, receive, send)

    async def _lean(self, route: LeanRoute, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client left before sending its body; there is no one to answer
        body: bytes = message.get("body", b"")
        if message.get("more_body"):
            chunks = [body]
            while message.get("more_body"):
                message = await receive()
                if message["type"] != "http.request":
                    return
                chunks.append(message.get("body", b""))
            body = b"".join(chunks)
        authorization, content_type = _headers(scope)
        data: Any = None
        if _is_json(content_type) and body:
            try:
                data = route.validate_json(body)
            except ValidationError:
                data = None
        if data is None:
            await self.app(scope, _replay(body, receive), send)
            return
        runtime = cast(Runtime, scope["app"].state.runtime)
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        try:
            caller = None
            if route.scope_name is not None:
                caller = await authenticate(runtime, scope, authorization, ip)
                caller.require(route.scope_name)
            status, payload = await route.handler(runtime, caller, scope, ip, data)
        except CardsvcError as error:
            await cardsvc_error_response(error)(scope, receive, send)
            return
        content = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(content)).encode()),
                                *JSON_HEADERS]})
        await send({"type": "http.response.body", "body": content})


def _headers(scope: Scope) -> tuple[str, str | None]:
    """The ``authorization`` header (``""`` when absent) and the ``content-type`` (None), the
    first of each as Starlette's ``Headers.get`` gives them."""
    authorization: str | None = None
    content_type: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    return authorization or "", content_type


def _header(scope: Scope, wanted: bytes) -> str | None:
    """The first value of header ``wanted`` (lower case), as Starlette's ``Headers.get``."""
    for name, value in scope["headers"]:
        if name == wanted:
            return cast(bytes, value).decode("latin-1")
    return None


def _is_json(content_type: str | None) -> bool:
    """Whether the body is JSON for certain: ``application/json``, parameters allowed. Every
    other form (none at all, ``+json`` subtypes, odd spacing or case) takes FastAPI's path,
    which decides as it always has (a missing type depends on its ``strict_content_type``)."""
    if content_type is None:
        return False
    return content_type == "application/json" or content_type.startswith("application/json;")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the connection sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# ----- the routes' work (each is its route's one domain call and its rendering) -------------------


def _caller(caller: Principal | None) -> Principal:
    assert caller is not None  # every route but the shop's checkout authenticates
    return caller


async def _verify(runtime: Runtime, caller: Principal | None, scope: Scope, ip: str,
                  body: Any) -> tuple[int, Any]:
    result = await runtime.terminals.verify(_caller(caller), ip, body.code, body.pin)
    return 200, {"status": result.status, "sku": result.sku, "uses_left": result.uses_left,
                 "valid_from": iso_s(result.valid_from),
                 "valid_until": iso_s(result.valid_until)}


def _redemption_json(redemption_id: str, sku: str, uses_left: int, redeemed_at: str,
                     request_id: str) -> dict[str, Any]:
    """A redemption in ``RedemptionOut``'s field order (single and batch answers alike)."""
    return {"redemption_id": redemption_id, "sku": sku, "uses_left": uses_left,
            "redeemed_at": redeemed_at, "request_id": request_id}


async def _redeem(runtime: Runtime, caller: Principal | None, scope: Scope, ip: str,
                  body: Any) -> tuple[int, Any]:
    result = await runtime.terminals.redeem(_caller(caller), ip, body.code, body.pin,
                                            body.request_id)
    return 200, _redemption_json(result.redemption_id, result.sku, result.uses_left,
                                 iso(result.redeemed_at_ms) or "", result.request_id)


async def _redeem_batch(runtime: Runtime, caller: Principal | None, scope: Scope, ip: str,
                        body: Any) -> tuple[int, Any]:
    items = body["items"]
    batch = await runtime.terminals.redeem_columns(
        _caller(caller), ip, [item["code"] for item in items],
        [item.get("pin") for item in items], [item["request_id"] for item in items])
    errors = batch.errors
    times: dict[int, str] = {}  # a batch's redemptions mostly share their millisecond
    results: list[dict[str, Any]] = []
    append = results.append
    for index, (public_id, sku, uses_left, at_ms, request_id) in enumerate(zip(
            batch.redemption_ids, batch.skus, batch.uses_left, batch.redeemed_at_ms,
            batch.request_ids, strict=True)):
        if public_id is None:
            error = errors[index]
            append({"index": index, "ok": False, "redemption": None, "error": {
                "code": error.code.value, "message": error.message, "details": error.details}})
            continue
        at = times.get(at_ms)
        if at is None:
            at = times[at_ms] = iso(at_ms) or ""
        append({"index": index, "ok": True, "redemption": _redemption_json(
            public_id, sku, uses_left, at, request_id), "error": None})
    return 200, {"redeemed": batch.redeemed, "failed": len(errors), "results": results}


async def _hold(runtime: Runtime, caller: Principal | None, scope: Scope, ip: str,
                body: Any) -> tuple[int, Any]:
    caller = _caller(caller)
    hold = await runtime.holds.hold(agent_of(caller), body.sku, body.quantity, body.ttl_seconds,
                                    buyer_id=body.buyer_id, client_hold_id=body.client_hold_id,
                                    limits=runtime.risk.limits_of(caller), actor=caller.key_id)
    return (200 if hold.replayed else 201), hold_json(hold)


_ORDER_FIELDS = tuple((name, field.default) for name, field in OrderOut.model_fields.items())
"""The response model's fields in its order, with their defaults (what pydantic writes)."""


async def _order(runtime: Runtime, caller: Principal | None, scope: Scope, ip: str,
                 body: Any) -> tuple[int, Any]:
    caller = _caller(caller)
    request = OrderRequest(agent_of(caller), body.client_order_id, body.sku, body.quantity)
    order, created = await runtime.orders.place(request, actor=caller.key_id,
                                                limits=runtime.risk.limits_of(caller))
    out = order_json(order)
    return (201 if created else 200), {name: out.get(name, default)
                                       for name, default in _ORDER_FIELDS}


async def _checkout(runtime: Runtime, caller: Principal | None, scope: Scope, ip: str,
                    body: Any) -> tuple[int, Any]:
    result = await runtime.checkout.start(CheckoutRequest(
        sku=body.sku, quantity=body.quantity, email=body.email, channel_id=body.channel_id,
        ip=ip, password=body.password, challenge=body.challenge,
        buyer_token=_header(scope, b"x-order-token"), locale=body.locale))
    return 201, {"order": retail_order_json(result.order), "token": result.token,
                 "payment": payment_json(result.payment)}


@dataclass(frozen=True, slots=True)
class LeanRoute:
    """One lean route: the validator of its body, the scope its caller needs (None: a public
    route, no caller), its work."""

    validate_json: Callable[[bytes], Any]
    scope_name: str | None
    handler: Handler


def _route(shape: Any, scope_name: str | None, handler: Handler) -> LeanRoute:
    return LeanRoute(TypeAdapter(shape).validate_json, scope_name, handler)


LEAN_ROUTES: dict[str, LeanRoute] = {
    f"{API_PREFIX}/verify": _route(VerifyRequest, "verify", _verify),
    f"{API_PREFIX}/redeem": _route(RedeemRequest, "redeem", _redeem),
    f"{API_PREFIX}/redeem/batch": _route(BatchBody, "redeem", _redeem_batch),
    f"{API_PREFIX}/holds": _route(HoldCreate, "holds", _hold),
    f"{API_PREFIX}/orders": _route(OrderCreate, "orders", _order),
    f"{API_PREFIX}/shop/checkouts": _route(CheckoutIn, None, _checkout),
}
"""Path (POST) -> its lean route. Each path is a POST route of the API (``tests/api/test_lean.py``
checks it against the app's OpenAPI paths)."""
