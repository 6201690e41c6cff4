"""Goal: the tester's hostile workbooks, uploaded over HTTP, are refused
with a stable code and a named bound, change nothing (no code sellable, no batch left
importing) and keep the server's memory flat, while a normal upload after them imports.

Method: the files are generated here (``bench.xlsx_files``: a cell in column XFD on each of
3,000 rows, one 256 MiB inline string in a ~0.3 MB file, a 512 MiB member of zeros) and uploaded
through the API; the batch is polled until it leaves ``importing``. Memory is the process's
resident set (VmRSS) before and after, with a generous margin (the tester saw +2 GB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import xlsx_files
from tests.fixtures.http import CODES, Api
from tests.fixtures.uploads import upload_bytes

pytestmark = pytest.mark.anyio

MIB = 1 << 20


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


HOSTILE = [
    ("xfd", lambda path: xlsx_files.xfd_columns(path, 3_000), "all_or_nothing",
     ("INVALID_ARGUMENT", {"field": "file", "reason": "invalid_rows", "problems": 3_000,
                           "first_line": 2})),
    ("xfd_per_row", lambda path: xlsx_files.xfd_columns(path, 3_000), "per_row",
     ("INVALID_ARGUMENT", {"field": "file", "reason": "no_codes"})),
    ("huge_string", lambda path: xlsx_files.huge_inline_string(path, 256 * MIB),
     "all_or_nothing", ("LIMIT_EXCEEDED", {"field": "xlsx_ratio", "max": 100,
                                           "member": "xl/worksheets/sheet1.xml"})),
    ("zip_bomb", lambda path: xlsx_files.zip_bomb(path, 512 * MIB), "all_or_nothing",
     ("LIMIT_EXCEEDED", {"field": "xlsx_ratio", "max": 100, "member": "xl/media/padding.bin"})),
]


@pytest.mark.parametrize(("name", "make", "mode", "expected"), HOSTILE,
                         ids=[case[0] for case in HOSTILE])
async def test_a_hostile_workbook_is_refused_with_its_bound_and_changes_nothing(
    catalog: Api, tmp_path: Path, name: str, make: Any, mode: str,
    expected: tuple[str, dict[str, Any]],
) -> None:
    data = make(tmp_path / f"{name}.xlsx").read_bytes()
    assert len(data) < 2 * MIB
    before = rss_mib()
    batch = await upload_bytes(catalog, data, name=f"{name}.xlsx", mode=mode)
    grown = rss_mib() - before
    assert (batch["status"], batch["imported"]) == ("rejected", 0)
    assert (batch["error_code"], batch["error_details"]) == expected
    assert (await catalog.admin("GET", "/v1/skus/VIP/stock"))["available"] == len(CODES)
    assert grown < 200, f"RSS grew by {grown:.0f} MiB"
    after = await upload_bytes(catalog, b"code\nAFTER-0001\n")
    assert (after["status"], after["imported"]) == ("ready", 1)
