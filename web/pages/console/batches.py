"""Batches of codes: upload a supplier file (imported in the background by the import queue,
its progress shown live and cancellable), generate codes, read a batch with its duplicate and
issue report, and ask for the two guarded actions on it (void the batch, export its codes),
which a second person approves on the approvals page. Scope ``stock`` (exports: ``export``).

The upload form is multipart with the CSRF token as its first part (the middleware checks it
before the file is read); the file is spooled to disk by Starlette and handed to
``ImportJobs.start_upload``, which answers at once with the batch ``importing``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cardsvc.catalog import BATCH_STATUSES, BatchMeta, CodeFormat
from cardsvc.errors import CardsvcError
from web.forms import FORM_FIELDS_MAX, TextField, check_text
from web.i18n import gettext
from web.pages.common import (
    error_text,
    int_field,
    money_field,
    parse_date,
    path_int,
    query_cursor,
    query_text,
    redirect,
    sku_options,
)
from web.render import render_page
from web.sessions import Visitor, console_page, runtime_of

META_FIELDS = (
    TextField("sku", 64), TextField("pool", 64, required=False),
    TextField("supplier", 200, required=False), TextField("unit_cost", 24, required=False),
    TextField("currency", 3, required=False), TextField("purchase_date", 10, required=False),
    TextField("valid_from", 10, required=False), TextField("valid_until", 10, required=False),
    TextField("mode", 16, required=False), TextField("encoding", 16, required=False),
)
GENERATE_FIELDS = (*META_FIELDS, TextField("count", 9), TextField("length", 3, required=False),
                   TextField("prefix", 16, required=False), TextField("group", 3, required=False),
                   TextField("pin_length", 3, required=False))
GENERATE_COUNT_WEB_MAX = 1_000_000
"""Codes one generation from the console makes (about 10 s of work): more through the API or
the command line."""
REQUEST_FIELDS = (TextField("reason", 200),)
PART_BYTES_MAX = 64 * 1024


def _seconds(text: str, *, end_of_day: bool = False) -> int | None:
    day = parse_date(text)
    if day is None:
        return None
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return int(moment.timestamp()) + (86_399 if end_of_day else 0)


def _meta(values: dict[str, str], errors: dict[str, str], source: str,
          source_name: str | None = None) -> BatchMeta:
    cost = None
    if values.get("unit_cost"):
        cost = money_field(values["unit_cost"])
        if cost is None:
            errors["unit_cost"] = gettext("Give an amount like 12.50.")
    return BatchMeta(
        sku=values.get("sku", ""), pool=values.get("pool") or None,
        valid_from=_seconds(values.get("valid_from", "")),
        valid_until=_seconds(values.get("valid_until", ""), end_of_day=True), source=source,
        supplier=values.get("supplier") or None, unit_cost_minor=cost,
        currency=(values.get("currency") or None) if cost is not None else None,
        purchase_date=values.get("purchase_date") or None, source_name=source_name)


async def _read(request: Request, fields: tuple[TextField, ...],
                ) -> tuple[dict[str, str], dict[str, str], UploadFile | None]:
    """The text fields and the uploaded file of a multipart (or urlencoded) form."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    upload: UploadFile | None = None
    form = await request.form(max_files=1, max_fields=FORM_FIELDS_MAX,
                              max_part_size=PART_BYTES_MAX)
    for spec in fields:
        raw = form.get(spec.name)
        value, error = check_text(spec, raw if isinstance(raw, str) else "")
        values[spec.name] = value
        if error is not None:
            errors[spec.name] = error
    found = form.get("file")
    if isinstance(found, UploadFile):
        upload = found
    return values, errors, upload


@console_page("stock")
async def new_batch(request: Request, me: Visitor) -> Response:
    skus = await asyncio.to_thread(runtime_of(request).catalog.list_skus)
    return await render_page(request, "console/batch_new.html", {
        "sku_options": _options(skus), "values": {"sku": request.query_params.get("sku", "")},
        "errors": {}, "problem": None, "tab": "upload"})


def _options(skus: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sku_options(skus)


async def _again(request: Request, values: dict[str, str], errors: dict[str, str],
                 problem: str | None, tab: str) -> Response:
    skus = await asyncio.to_thread(runtime_of(request).catalog.list_skus)
    return await render_page(request, "console/batch_new.html", {
        "sku_options": _options(skus), "values": values, "errors": errors, "problem": problem,
        "tab": tab}, status=422)


@console_page("stock")
async def upload(request: Request, me: Visitor) -> Response:
    """Starts the import of an uploaded CSV/XLSX file; to the batch's page (its progress)."""
    values, errors, file = await _read(request, META_FIELDS)
    if file is None or not file.filename:
        errors["file"] = gettext("Choose a CSV or XLSX file.")
    meta = _meta(values, errors, "upload",
                 PurePath(file.filename or "upload.csv").name[:200] if file else None)
    if errors or file is None:
        return await _again(request, values, errors, None, "upload")
    runtime = runtime_of(request)
    try:
        batch = await asyncio.to_thread(runtime.jobs.start_upload, meta, file.file,
                                        actor=me.actor,
                                        mode=values.get("mode") or "all_or_nothing",
                                        encoding=values.get("encoding") or "utf-8")
    except CardsvcError as error:
        return await _again(request, values, errors, error_text(error), "upload")
    finally:
        await file.close()
    return redirect(request, f"/console/batches/{batch['batch_id']}",
                    flash=gettext("The file is uploaded; its codes are being imported."))


@console_page("stock")
async def generate(request: Request, me: Visitor) -> Response:
    """Generates codes as a new batch (up to GENERATE_COUNT_WEB_MAX), then its page."""
    values, errors, _ = await _read(request, GENERATE_FIELDS)
    count = int_field(values.get("count", ""), minimum=1, maximum=GENERATE_COUNT_WEB_MAX)
    if count is None:
        errors["count"] = gettext("Give a number from 1 to %(max)s.") % {
            "max": f"{GENERATE_COUNT_WEB_MAX:,}"}
    meta = _meta(values, errors, "generate")
    try:
        fmt = CodeFormat(length=int_field(values.get("length") or "16", minimum=6,
                                          maximum=64) or 16,
                         group=int_field(values.get("group") or "4", maximum=16) or 0,
                         prefix=values.get("prefix", "").upper(), check=True,
                         pin_length=int_field(values.get("pin_length") or "0", maximum=32) or 0)
    except CardsvcError as error:
        errors["prefix"] = error_text(error)
    if errors or count is None:
        return await _again(request, values, errors, None, "generate")
    runtime = runtime_of(request)
    try:
        result = await asyncio.to_thread(runtime.batches.generate, meta, fmt, count,
                                         actor=me.actor)
    except CardsvcError as error:
        return await _again(request, values, errors, error_text(error), "generate")
    return redirect(request, f"/console/batches/{result.batch_id}",
                    flash=gettext("%(count)s codes generated.") % {"count": f"{count:,}"})


@console_page("stock")
async def batch_page(request: Request, me: Visitor) -> Response:
    runtime = runtime_of(request)
    batch_id = _batch_id(request)
    batch = await asyncio.to_thread(runtime.batches.get, batch_id)
    issues = await asyncio.to_thread(_first_issues, runtime, batch_id)
    approvals = await asyncio.to_thread(runtime.approvals.list, me.principal,
                                        object_type="batch", object_id=str(batch_id), limit=10)
    return await render_page(request, "console/batch.html", {
        "batch": batch, "issues": issues, "approvals": approvals.items, "me": me})


ISSUES_SHOWN = 20


def _first_issues(runtime: Any, batch_id: int) -> list[Any]:
    issues = []
    for issue in runtime.batches.report(batch_id):
        issues.append(issue)
        if len(issues) >= ISSUES_SHOWN:
            break
    return issues


def _batch_id(request: Request) -> int:
    return path_int(request, "batch_id", maximum=(1 << 31) - 1)


@console_page("stock")
async def progress(request: Request, me: Visitor) -> Response:
    """The batch's state and counts as JSON, for the page's live progress bar."""
    batch = await asyncio.to_thread(runtime_of(request).batches.get, _batch_id(request))
    return JSONResponse({"state": batch["status"], "processed": batch["processed"],
                         "total": batch["submitted"], "imported": batch["imported"],
                         "duplicates": batch["duplicates"]},
                        headers={"cache-control": "no-store"})


@console_page("stock")
async def cancel(request: Request, me: Visitor) -> Response:
    batch_id = _batch_id(request)
    try:
        await asyncio.to_thread(runtime_of(request).jobs.cancel, batch_id, actor=me.actor)
    except CardsvcError as error:
        return redirect(request, f"/console/batches/{batch_id}", flash=error_text(error),
                        level="error")
    return redirect(request, f"/console/batches/{batch_id}",
                    flash=gettext("The import is being stopped."), level="info")


@console_page("stock")
async def report(request: Request, me: Visitor) -> Response:
    """The batch's report (rejected rows and duplicates, codes masked) as CSV."""
    runtime = runtime_of(request)
    batch_id = _batch_id(request)
    await asyncio.to_thread(runtime.batches.get, batch_id)

    def lines() -> Any:
        yield "\ufeffline,field,reason,code\r\n"
        for issue in runtime.batches.report(batch_id):
            yield f"{issue.line},{issue.field},{issue.reason},{issue.masked or ''}\r\n"

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="batch-{batch_id}-report.csv"'})


async def _ask(request: Request, me: Visitor, action: str) -> Response:
    batch_id = _batch_id(request)
    fields = await _read_reason(request)
    if fields is None:
        return redirect(request, f"/console/batches/{batch_id}",
                        flash=gettext("Say why (a reason is kept with the request)."),
                        level="error")
    runtime = runtime_of(request)
    await asyncio.to_thread(runtime.batches.get, batch_id)
    info, _ = await asyncio.to_thread(runtime.approvals.request, me.principal, action, "batch",
                                      str(batch_id), fields)
    return redirect(request, f"/console/approvals/{info.approval_id}",
                    flash=gettext("Asked for approval. Another staff member approves it on the "
                                  "approvals page."), level="info")


async def _read_reason(request: Request) -> str | None:
    values, errors, _ = await _read(request, REQUEST_FIELDS)
    return None if errors else values["reason"]


@console_page("stock")
async def ask_void(request: Request, me: Visitor) -> Response:
    return await _ask(request, me, "batch_void")


@console_page("export")
async def ask_export(request: Request, me: Visitor) -> Response:
    return await _ask(request, me, "code_export")


@console_page("stock")
async def batch_list(request: Request, me: Visitor) -> Response:
    """Batches newest first (``Batches.list_batches``), ``?status=`` and ``?sku=`` filter."""
    status = query_text(request, "status", 16)
    if status not in BATCH_STATUSES:
        status = None
    runtime = runtime_of(request)
    page = await asyncio.to_thread(runtime.batches.list_batches,
                                   sku=query_text(request, "sku", 64), status=status,
                                   cursor=query_cursor(request))
    return await render_page(request, "console/batches.html", {
        "items": page.items, "next_cursor": page.next, "status": status,
        "statuses": BATCH_STATUSES, "first_page": query_cursor(request) is not None})


ROUTES = [
    Route("/console/batches", batch_list, methods=["GET"], name="console_batches"),
    Route("/console/batches/new", new_batch, methods=["GET"], name="console_batch_new"),
    Route("/console/batches/upload", upload, methods=["POST"], name="console_batch_upload"),
    Route("/console/batches/generate", generate, methods=["POST"],
          name="console_batch_generate"),
    Route("/console/batches/{batch_id}", batch_page, methods=["GET"], name="console_batch"),
    Route("/console/batches/{batch_id}/progress", progress, methods=["GET"],
          name="console_batch_progress"),
    Route("/console/batches/{batch_id}/cancel", cancel, methods=["POST"],
          name="console_batch_cancel"),
    Route("/console/batches/{batch_id}/report.csv", report, methods=["GET"],
          name="console_batch_report"),
    Route("/console/batches/{batch_id}/void", ask_void, methods=["POST"],
          name="console_batch_void"),
    Route("/console/batches/{batch_id}/export", ask_export, methods=["POST"],
          name="console_batch_export"),
]
UPLOAD_PATHS = ("/console/batches/upload",)
