"""Goal: a row with several problems (``,1,extra`` under ``code,pin`` is an
empty code *and* an extra column) is reported problem by problem, in both modes, over HTTP and
from the CLI; per_row imports the good rows; all_or_nothing rejects the file and imports
nothing. Before the fix the report table was keyed by (batch, line), so the second problem of a
line broke the insert and the whole batch failed with INTERNAL_ERROR and an empty report.

Method: the same three-row CSV is uploaded through the API in each mode (polling the batch until
it leaves ``importing``) and imported with ``cardsvc import`` on a stopped data directory; the
batch, the downloadable report and the stock are read back (the migration itself is tested in
``tests/catalog/test_batch_issues_migration.py``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cardsvc.cli import main
from cardsvc.engine.store import StoreConfig
from cardsvc.runtime import Runtime, ServiceConfig
from tests.fixtures.http import CODES, Api
from tests.fixtures.uploads import upload_bytes

TWO_PROBLEMS = b"code,pin\nGOOD-0001,1\n,1,extra\nGOOD-0002,2\n"
"""Line 3 has an empty code and a cell beyond the header."""
LINE_3 = [("3", "code", "empty"), ("3", "row", "extra_columns")]


async def report_rows(api: Api, batch_id: int) -> list[tuple[str, str, str]]:
    response = await api.call("GET", f"/v1/batches/{batch_id}/report", api.keys["admin"])
    assert response.status_code == 200, response.text
    rows = csv.DictReader(io.StringIO(response.text))
    return [(row["line"], row["field"], row["reason"]) for row in rows]


@pytest.mark.anyio
async def test_all_or_nothing_rejects_and_reports_every_problem_of_the_line(
    catalog: Api,
) -> None:
    batch = await upload_bytes(catalog, TWO_PROBLEMS)
    assert (batch["status"], batch["imported"], batch["error_code"]) == (
        "rejected", 0, "INVALID_ARGUMENT")
    assert await report_rows(catalog, batch["batch_id"]) == LINE_3
    assert (await catalog.admin("GET", "/v1/skus/VIP/stock"))["available"] == len(CODES)


@pytest.mark.anyio
async def test_per_row_imports_the_good_rows_and_reports_every_problem_of_the_line(
    catalog: Api,
) -> None:
    batch = await upload_bytes(catalog, TWO_PROBLEMS, mode="per_row")
    assert (batch["status"], batch["imported"], batch["error_code"]) == ("ready", 2, None)
    assert await report_rows(catalog, batch["batch_id"]) == LINE_3
    assert (await catalog.admin("GET", "/v1/skus/VIP/stock"))["available"] == len(CODES) + 2


@pytest.mark.parametrize(("mode", "status", "available"),
                         [("all_or_nothing", 1, 0), ("per_row", 0, 2)])
def test_cli_reports_every_problem_of_the_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, status: int, available: int,
) -> None:
    data_dir = tmp_path / "data"
    services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=data_dir)))
    services.catalog.create_sku("VIP", "vip", actor="test")
    services.close()
    source = tmp_path / "codes.csv"
    source.write_bytes(TWO_PROBLEMS)
    report = tmp_path / "report.csv"
    assert main(["import", str(source), "--sku", "VIP", "--data-dir", str(data_dir),
                 "--mode", mode, "--report", str(report)]) == status
    assert "Traceback" not in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(report.read_text())))
    assert [(r["line"], r["field"], r["reason"]) for r in rows] == LINE_3
    services = Runtime.open(ServiceConfig(store=StoreConfig(data_dir=data_dir)))
    try:
        assert services.catalog.stock("VIP")["available"] == available
    finally:
        services.close()
