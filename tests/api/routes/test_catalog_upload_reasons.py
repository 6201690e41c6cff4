"""Goal: an upload the importer refuses says why: the batch ends
``rejected`` with its ``error_code``, ``error_details`` (``reason`` and, where there is one,
``line``) and ``error_message``, the downloadable report names the reason, nothing is sellable;
``cardsvc import`` prints the same in one line. UTF-16 with a byte order mark imports, and a
GBK file imports when the upload says ``encoding=gb18030`` (never guessed).

Method: each hostile file is generated here as bytes and uploaded through the API (the batch is
polled until it leaves ``importing``); the stock of the SKU is compared with the catalog
fixture's. The CLI runs ``cardsvc.cli.main`` on a stopped data directory.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from cardsvc.cli import main
from cardsvc.engine.store import StoreConfig
from cardsvc.runtime import Runtime, ServiceConfig
from tests.fixtures.http import CODES, Api
from tests.fixtures.uploads import upload_bytes

ROWS = "code,pin\nREASON-0001,1111\nREASON-0002,2222\n"

REFUSED: list[tuple[str, bytes, dict[str, Any]]] = [
    ("latin1", "code,note\nREASON-0001,ok\nREASON-0002,café\n".encode("latin-1"),
     {"field": "file", "reason": "not_utf8", "line": 3}),
    ("utf16_without_bom", ROWS.encode("utf-16-le"),
     {"field": "file", "reason": "utf16_without_bom"}),
    ("utf32", b"\xff\xfe\x00\x00" + ROWS.encode("utf-32-le"),
     {"field": "file", "reason": "utf32"}),
    ("empty", b"", {"field": "file", "reason": "empty_file"}),
    ("blank_rows", b"\r\n\r\n,\r\n", {"field": "file", "reason": "only_blank_rows"}),
    ("header_less", b"REASON-0001,1111\nREASON-0002,2222\n",
     {"field": "header", "reason": "no_header", "line": 1}),
    ("header_only", b"code,pin\n", {"field": "file", "reason": "no_rows"}),
]


async def report_rows(api: Api, batch_id: int) -> list[tuple[str, str, str]]:
    response = await api.call("GET", f"/v1/batches/{batch_id}/report", api.keys["admin"])
    rows = csv.DictReader(io.StringIO(response.text))
    return [(row["line"], row["field"], row["reason"]) for row in rows]


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "data", "details"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_a_refused_upload_names_its_reason_and_line_and_changes_nothing(
    catalog: Api, name: str, data: bytes, details: dict[str, Any]
) -> None:
    batch = await upload_bytes(catalog, data)
    assert (batch["status"], batch["imported"], batch["error_code"]) == (
        "rejected", 0, "INVALID_ARGUMENT")
    assert batch["error_details"] == details
    assert batch["error_message"]
    line = str(details.get("line", 0))
    assert await report_rows(catalog, batch["batch_id"]) == [
        (line, details["field"], details["reason"])]
    assert (await catalog.admin("GET", "/v1/skus/VIP/stock"))["available"] == len(CODES)


@pytest.mark.anyio
async def test_utf16_with_a_byte_order_mark_imports(catalog: Api) -> None:
    batch = await upload_bytes(catalog, "\ufeff".encode("utf-16-le") + ROWS.encode("utf-16-le"))
    assert (batch["status"], batch["imported"], batch["error_details"]) == ("ready", 2, None)


@pytest.mark.anyio
async def test_gbk_imports_only_when_the_upload_names_gb18030(catalog: Api) -> None:
    data = "卡号,卡密\nREASON-0001,1111\nREASON-0002,2222\n".encode("gbk")
    refused = await upload_bytes(catalog, data)
    assert (refused["status"], refused["error_details"]) == (
        "rejected", {"field": "file", "reason": "not_utf8", "line": 1})
    batch = await upload_bytes(catalog, data, encoding="gb18030")
    assert (batch["status"], batch["imported"]) == ("ready", 2)


@pytest.mark.anyio
async def test_an_unknown_encoding_is_refused_before_a_batch_exists(catalog: Api) -> None:
    response = await catalog.http.post(
        "/v1/batches/upload", headers=catalog.auth(catalog.keys["admin"]),
        files={"file": ("c.csv", ROWS.encode(), "text/csv")},
        data={"sku": "VIP", "encoding": "latin-1"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_cli_prints_the_reason_and_line_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=data_dir)))
    services.catalog.create_sku("VIP", "vip", actor="test")
    services.close()
    source = tmp_path / "codes.csv"
    source.write_bytes(REFUSED[0][1])
    assert main(["import", str(source), "--sku", "VIP", "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    [line] = [text for text in err.splitlines() if text.strip()]
    assert "INVALID_ARGUMENT" in line and "not_utf8" in line and "line 3" in line
    assert "Traceback" not in err
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("卡号,卡密\nCLI-0001,1111\n".encode("gbk"))
    assert main(["import", str(gbk), "--sku", "VIP", "--data-dir", str(data_dir),
                 "--encoding", "gb18030"]) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(("code", "pin", "error"), [
    ("=HYPERLINK(1)", "1111", "INVALID_CODE"), (" +CODE-0001", None, "INVALID_CODE"),
    ("CODE-0001", "-12", "INVALID_PIN"), ("CODE-0001", "@12", "INVALID_PIN")])
async def test_a_listed_code_or_pin_starting_a_formula_is_refused_before_a_batch_exists(
    catalog: Api, code: str, pin: str | None, error: str
) -> None:
    before = await catalog.admin("GET", "/v1/skus/VIP/stock")
    body = {"sku": "VIP", "codes": [{"code": "CODE-0000"}, {"code": code, "pin": pin}]}
    response = await catalog.call("POST", "/v1/batches", catalog.keys["admin"], json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == error
    assert response.json()["error"]["details"]["reason"] == "formula_prefix"
    assert response.json()["error"]["details"]["index"] == 1
    assert await catalog.admin("GET", "/v1/skus/VIP/stock") == before
