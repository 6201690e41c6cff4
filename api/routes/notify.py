"""Payment providers' callbacks: ``/pay/notify/<channel token>`` (POST; EPay also GET), outside
``/v1`` and outside the OpenAPI schema, since providers, not API clients, call it.

The route reads the raw body (at most 256 KiB, counted as it arrives), the method, the headers
and the query pairs in order (repeats visible), makes one domain call
(``Checkout.handle_notify``) and answers with the provider's own tokens (``ack``), never the
error envelope. An unknown token is a plain 404: it names no channel.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import RuntimeDep
from cardsvc.payments import NOTIFY_PATH

router = APIRouter(include_in_schema=False)
NOTIFY_BODY_BYTES_MAX = 256 * 1024
"""The adapters' own bound (``providers.base.NOTIFY_BODY_BYTES_MAX``); more is never read."""


async def _bounded_body(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > NOTIFY_BODY_BYTES_MAX:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.api_route(NOTIFY_PATH + "{token}", methods=["GET", "POST"])
async def notify(token: str, request: Request, runtime: RuntimeDep) -> Response:
    body = await _bounded_body(request)
    if body is None:
        return Response(b"fail", status_code=413, media_type="text/plain",
                        headers={"connection": "close"})
    result = await runtime.checkout.handle_notify(
        token[:128], request.method, dict(request.headers),
        list(request.query_params.multi_items()), body)
    if result is None:
        return Response(b"", status_code=404)
    answer = result.answer
    return Response(answer.body, status_code=answer.status_code, media_type=answer.content_type)
