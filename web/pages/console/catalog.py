"""The catalog pages: SKUs (list with stock, create, edit: on sale, retail price, thresholds),
their stock by pool and stock moves, and the named pools. Scope ``catalog`` (the API's
``/v1/skus`` routes), stock moves ``stock``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from babel.numbers import get_currency_precision
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.catalog import KINDS
from cardsvc.errors import CardsvcError
from web.forms import FormResult, TextField, read_form
from web.i18n import gettext
from web.pages.common import error_text, int_field, money_field, redirect
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

MONEY_FIELDS = ("face_value", "cost", "retail_price")
SKU_FIELDS = (
    TextField("sku", 64, required=False), TextField("name", 200),
    TextField("kind", 16, required=False), TextField("currency", 3, required=False),
    TextField("face_value", 24, required=False), TextField("cost", 24, required=False),
    TextField("retail_price", 24, required=False),
    TextField("uses_per_code", 9, required=False),
    TextField("redeem_requires_sale", 3, required=False),
    TextField("validity_days_after_sale", 6, required=False),
    TextField("low_stock_threshold", 12, required=False),
    TextField("purchase_limit_per_buyer", 9, required=False),
    TextField("on_sale", 3, required=False),
)
MOVE_FIELDS = (TextField("quantity", 12), TextField("from_pool", 64), TextField("to_pool", 64))
POOL_FIELDS = (TextField("pool", 64), TextField("agent_id", 64, required=False))


def _digits(currency: str) -> int:
    try:
        return int(get_currency_precision(currency or "CNY"))
    except Exception:  # an unknown code: the domain refuses it with its own error
        return 2


def sku_changes(form: FormResult, *, creating: bool) -> dict[str, Any]:
    """The SKU fields of the form in domain units (money in minor units), with a field error
    for each value that is not a number; empty optional fields clear the value on edit."""
    values: dict[str, Any] = {"name": form.value("name")}
    currency = form.value("currency") or "CNY"
    values["currency"] = currency
    if form.value("kind"):
        values["kind"] = form.value("kind")
    for name in MONEY_FIELDS:
        text = form.value(name)
        if not text:
            values[f"{name}_minor"] = None
            continue
        amount = money_field(text, digits=_digits(currency))
        if amount is None:
            form.errors[name] = gettext("Give an amount like 12.50.")
        values[f"{name}_minor"] = amount
    for name in ("low_stock_threshold", "purchase_limit_per_buyer"):
        text = form.value(name)
        number = int_field(text) if text else None
        if text and number is None:
            form.errors[name] = gettext("Give a whole number.")
        values[name] = number
    values["on_sale"] = form.value("on_sale") == "yes"
    if creating:
        values["uses_per_code"] = int_field(form.value("uses_per_code") or "1", minimum=1) or 1
        values["redeem_requires_sale"] = form.value("redeem_requires_sale") == "yes"
        days = form.value("validity_days_after_sale")
        values["validity_days_after_sale"] = int_field(days, minimum=1) if days else None
        if not form.value("sku"):
            form.errors["sku"] = gettext("This field is required.")
    return values


@console_page("catalog")
async def sku_list(request: Request, me: Visitor) -> Response:
    skus = await asyncio.to_thread(runtime_of(request).catalog.list_with_stock)
    return await render_page(request, "console/skus.html", {"skus": skus, "me": me})


@console_page("catalog")
async def sku_new(request: Request, me: Visitor) -> Response:
    return await render_page(request, "console/sku_form.html",
                             {"form": None, "sku": None, "kinds": KINDS, "problem": None})


@console_page("catalog")
async def sku_create(request: Request, me: Visitor) -> Response:
    form = await read_form(request, SKU_FIELDS)
    values = sku_changes(form, creating=True)
    problem = None
    if form.ok:
        runtime = runtime_of(request)
        sku = form.value("sku")
        extra = {key: value for key, value in values.items()
                 if key not in ("name", "uses_per_code", "redeem_requires_sale",
                                "validity_days_after_sale") and value is not None}
        try:
            await asyncio.to_thread(
                runtime.catalog.create_sku, sku, values["name"],
                uses_per_code=values["uses_per_code"],
                redeem_requires_sale=values["redeem_requires_sale"],
                validity_days_after_sale=values["validity_days_after_sale"], actor=me.actor,
                **extra)
        except CardsvcError as error:
            problem = _field_problem(form, error)
        else:
            return redirect(request, f"/console/skus/{sku}",
                            flash=gettext("The product is created."))
    return await render_page(request, "console/sku_form.html",
                             {"form": form, "sku": None, "kinds": KINDS, "problem": problem},
                             status=422)


def _field_problem(form: FormResult, error: CardsvcError) -> str | None:
    """Puts a domain refusal on its field when it names one of the form's; else returns it
    for the top of the form."""
    field = str(error.details.get("field", ""))
    field = field.removesuffix("_minor")
    if field and field in {spec.name for spec in SKU_FIELDS}:
        form.errors[field] = error_text(error)
        return None
    return error_text(error)


@console_page("catalog")
async def sku_detail(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    sku = request.path_params["sku"]
    stock = await asyncio.to_thread(runtime.catalog.stock, sku)
    return await render_page(request, "console/sku.html", await _sku_context(
        request, me, sku, stock, None, None))


async def _sku_context(request: Request, me: Visitor, sku_id: str, stock: dict[str, Any],
                       form: FormResult | None, problem: str | None) -> dict[str, Any]:
    runtime = runtime_of(request)
    sku = await asyncio.to_thread(runtime.catalog.get_sku, sku_id)
    prices = await asyncio.to_thread(runtime.price_lists.list_prices, sku=sku_id, grade=None,
                                     agent_id=None)
    return {"sku": sku, "stock": stock, "form": form, "kinds": KINDS, "problem": problem,
            "prices": prices, "me": me, "pools": sorted(stock["by_pool"])}


@console_page("catalog")
async def sku_update(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    sku = request.path_params["sku"]
    form = await read_form(request, SKU_FIELDS)
    values = sku_changes(form, creating=False)
    problem = None
    if form.ok:
        try:
            await asyncio.to_thread(runtime.catalog.update_sku, sku, values, actor=me.actor)
        except CardsvcError as error:
            problem = _field_problem(form, error)
        else:
            return redirect(request, f"/console/skus/{sku}",
                            flash=gettext("The product is saved."))
    stock = await asyncio.to_thread(runtime.catalog.stock, sku)
    return await render_page(request, "console/sku.html",
                             await _sku_context(request, me, sku, stock, form, problem),
                             status=422)


@console_page("stock")
async def stock_move(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    sku = request.path_params["sku"]
    form = await read_form(request, MOVE_FIELDS)
    quantity = int_field(form.value("quantity"), minimum=1, maximum=10_000_000)
    if not form.ok or quantity is None:
        return redirect(request, f"/console/skus/{sku}",
                        flash=gettext("Give a quantity and both pools."), level="error")
    try:
        moved = await asyncio.to_thread(runtime.catalog.move_stock, sku, quantity,
                                        form.value("from_pool"), form.value("to_pool"),
                                        actor=me.actor)
    except CardsvcError as error:
        return redirect(request, f"/console/skus/{sku}", flash=error_text(error),
                        level="error")
    return redirect(request, f"/console/skus/{sku}",
                    flash=gettext("%(count)d codes moved.") % {"count": moved["moved"]})


@console_page("catalog")
async def pools(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    names = await asyncio.to_thread(runtime.catalog.pool_names)
    return await render_page(request, "console/pools.html",
                             {"pools": sorted(names.items()), "form": None, "problem": None})


@console_page("catalog")
async def pool_create(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    form = await read_form(request, POOL_FIELDS)
    problem = None
    if form.ok:
        try:
            await asyncio.to_thread(runtime.agent_updates.create_pool, form.value("pool"),
                                    agent_id=form.value("agent_id") or None, actor=me.actor)
        except CardsvcError as error:
            problem = error_text(error)
        else:
            return redirect(request, "/console/pools", flash=gettext("The pool is created."))
    names = await asyncio.to_thread(runtime.catalog.pool_names)
    return await render_page(request, "console/pools.html",
                             {"pools": sorted(names.items()), "form": form, "problem": problem},
                             status=422)


ROUTES = [
    Route("/console/skus", sku_list, methods=["GET"], name="console_skus"),
    Route("/console/skus/new", sku_new, methods=["GET"], name="console_sku_new"),
    Route("/console/skus", sku_create, methods=["POST"], name="console_sku_create"),
    Route("/console/skus/{sku}", sku_detail, methods=["GET"], name="console_sku"),
    Route("/console/skus/{sku}", sku_update, methods=["POST"], name="console_sku_update"),
    Route("/console/skus/{sku}/move", stock_move, methods=["POST"], name="console_stock_move"),
    Route("/console/pools", pools, methods=["GET"], name="console_pools"),
    Route("/console/pools", pool_create, methods=["POST"], name="console_pool_create"),
]
