"""The claim link's page: ``GET /claim/<token>`` shows what the link is for and a button, and
reveals nothing (a mail scanner opening the link burns nothing); ``POST`` reveals the codes in
full the first time (recording when, from where and with which browser) and masked after."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from web.pages.store.common import client_ip, runtime_of, shop_context
from web.render import render_page


async def claim_page(request: Request) -> Response:
    state, order = await runtime_of(request).checkout.claim_page(
        request.path_params["token"][:64])
    return await render_page(request, "store/claim.html", {
        **shop_context(request), "state": state, "order": order, "codes": None,
        "token": request.path_params["token"][:64]})


async def claim(request: Request) -> Response:
    token = request.path_params["token"][:64]
    state, order, codes = await runtime_of(request).checkout.claim(
        token, ip=client_ip(request), user_agent=request.headers.get("user-agent", "")[:200])
    return await render_page(request, "store/claim.html", {
        **shop_context(request), "state": state, "order": order, "codes": codes,
        "token": token})


ROUTES = [
    Route("/claim/{token}", claim_page, methods=["GET"], name="claim_page"),
    Route("/claim/{token}", claim, methods=["POST"], name="claim"),
]
