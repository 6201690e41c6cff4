"""Goal: a file of codes uploaded over HTTP (or imported with ``cardsvc import``) becomes one
batch: all its good codes sellable, duplicates skipped and reported, a malformed row rejecting
the whole file (all_or_nothing) or only itself (per_row), and nothing half-imported.

Method: httpx over ASGITransport against the real app; uploads run as background jobs, so the
tests poll ``GET /v1/batches/{id}`` (bounded) until the batch leaves ``importing``; stock and
the downloadable report are checked through the API. The CLI import runs ``cardsvc.cli.main``
on a stopped data directory.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import pytest

from cardsvc.cli import main
from tests.fixtures.http import CODES, Api

pytestmark = pytest.mark.anyio

POLL_S = 10.0


async def upload(api: Api, text: str, **form: str) -> dict[str, Any]:
    files = {"file": ("codes.csv", text.encode(), "text/csv")}
    response = await api.http.post("/v1/batches/upload", headers=api.auth(api.keys["admin"]),
                                   files=files, data={"sku": "VIP", **form})
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    for _ in range(int(POLL_S / 0.02)):
        if batch["status"] != "importing":
            return batch
        await asyncio.sleep(0.02)
        batch = await api.admin("GET", f"/v1/batches/{batch['batch_id']}")
    raise AssertionError("the upload did not finish in time")


def csv_text(rows: list[tuple[str, str]]) -> str:
    return "code,pin\n" + "".join(f"{code},{pin}\n" for code, pin in rows)


async def test_uploaded_file_becomes_one_sellable_batch(catalog: Api) -> None:
    rows = [(f"UPLOADED-{i:05d}", f"{i:06d}") for i in range(300)] + [(CODES[0], "1")]
    batch = await upload(catalog, csv_text(rows), supplier="Acme", unit_cost_minor="700")
    assert (batch["status"], batch["imported"], batch["duplicates"]) == ("ready", 300, 1)
    assert (batch["source"], batch["source_name"], batch["supplier"]) == (
        "upload", "codes.csv", "Acme")
    stock = await catalog.admin("GET", "/v1/skus/VIP/stock")
    assert stock["available"] == len(CODES) + 300
    report = await catalog.call("GET", f"/v1/batches/{batch['batch_id']}/report",
                                catalog.keys["admin"])
    [row] = list(csv.DictReader(io.StringIO(report.text)))
    assert (row["line"], row["reason"]) == ("302", "duplicate")


async def test_malformed_row_rejects_the_whole_file(catalog: Api) -> None:
    rows = [(f"GOOD-{i:05d}", "123456") for i in range(50)] + [("bad\x01code", "1")]
    batch = await upload(catalog, csv_text(rows))
    assert (batch["status"], batch["imported"]) == ("rejected", 0)
    assert (await catalog.admin("GET", "/v1/skus/VIP/stock"))["available"] == len(CODES)
    report = await catalog.call("GET", f"/v1/batches/{batch['batch_id']}/report",
                                catalog.keys["admin"])
    [row] = list(csv.DictReader(io.StringIO(report.text)))
    assert (row["line"], row["field"]) == ("52", "code")


async def test_per_row_mode_skips_and_reports_bad_rows(catalog: Api) -> None:
    rows = [(f"GOOD-{i:05d}", "123456") for i in range(50)] + [("", "1")]
    batch = await upload(catalog, csv_text(rows), mode="per_row")
    assert (batch["status"], batch["imported"]) == ("ready", 50)
    report = await catalog.call("GET", f"/v1/batches/{batch['batch_id']}/report",
                                catalog.keys["admin"])
    assert [r["line"] for r in csv.DictReader(io.StringIO(report.text))] == ["52"]


async def test_upload_for_unknown_sku_is_refused_at_once(catalog: Api) -> None:
    response = await catalog.http.post(
        "/v1/batches/upload", headers=catalog.auth(catalog.keys["admin"]),
        files={"file": ("c.csv", b"code\nX-1\n", "text/csv")}, data={"sku": "NOPE"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SKU_NOT_FOUND"


def test_cli_import_loads_a_file_and_writes_its_report(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    from cardsvc.engine.store import StoreConfig
    from cardsvc.runtime import Runtime, ServiceConfig

    services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=data_dir)))
    services.catalog.create_sku("VIP", "vip", actor="test")
    services.close()
    source = tmp_path / "codes.csv"
    source.write_text(csv_text([(f"CLI-{i:05d}", "") for i in range(200)] + [("CLI-00001", "")]))
    report = tmp_path / "report.csv"
    status = main(["import", str(source), "--sku", "VIP", "--data-dir", str(data_dir),
                   "--supplier", "Acme", "--report", str(report)])
    assert status == 0
    assert "CLI-00001" not in report.read_text()
    assert report.read_text().count("duplicate") == 1
    services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=data_dir)))
    try:
        assert services.catalog.stock("VIP")["available"] == 200
    finally:
        services.close()
