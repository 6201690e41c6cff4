"""Goal: ``cardsvc import`` and ``cardsvc reconcile`` work while the server runs (no downtime):
they reach it through the control socket in the data directory, which only the directory's
owner can open (mode 0600), and act there as the host's command line (audited ``cli``); a TCP
request can never pass for one of the socket's; without a server the commands open the data
directory themselves as before.

Method: a real ``cardsvc serve``; the commands run as ``python -m cardsvc`` subprocesses beside
it; the effects are read back over HTTP. ``Composed`` is checked directly for the marking of
control requests.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.deps import CONTROL_SCOPE_KEY
from server.app import Composed
from tests.fixtures.serving import create_cli_key, free_loopback_port, start_server, stop


def cardsvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cardsvc", *args], capture_output=True,
                          text=True, timeout=120)


def test_import_and_reconcile_go_through_the_running_server(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_loopback_port()
    process = start_server(data_dir, port, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        socket_path = data_dir / "control.sock"
        assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        admin = {"authorization": f"Bearer {create_cli_key(data_dir, '--role', 'admin')}"}
        made = httpx.post(f"{url}/v1/skus", json={"sku": "VIP", "name": "VIP"}, headers=admin)
        assert made.status_code == 201, made.text
        codes = tmp_path / "codes.csv"
        codes.write_text("code,pin\nCTRL-0001-AAAA,1234\nCTRL-0002-BBBB,5678\n"
                         "CTRL-0001-AAAA,1234\n")
        report = tmp_path / "report.csv"
        imported = cardsvc("import", str(codes), "--sku", "VIP", "--mode", "per_row",
                           "--report", str(report), "--data-dir", str(data_dir))
        assert imported.returncode == 0, imported.stderr
        assert "ready; 2 imported, 1 duplicates" in imported.stdout
        assert "CTRL-0001-AAAA" not in imported.stdout + report.read_text()
        stock = httpx.get(f"{url}/v1/skus/VIP/stock", headers=admin).json()
        assert stock["available"] == 2
        batches = httpx.get(f"{url}/v1/batches", headers=admin).json()["items"]
        assert batches[0]["created_by"] == "cli"
        reconciled = cardsvc("reconcile", "--data-dir", str(data_dir))
        assert reconciled.returncode == 0, reconciled.stderr
        refused = cardsvc("import", str(codes), "--sku", "NOPE", "--data-dir", str(data_dir))
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
        assert refused.stderr.startswith("error: SKU_NOT_FOUND: ")
    finally:
        stop(process)
    assert not (data_dir / "control.sock").exists()  # removed when the server stops
    offline = cardsvc("reconcile", "--data-dir", str(data_dir))
    assert offline.returncode == 0, offline.stderr  # no server: the data directory itself


@pytest.mark.anyio
@pytest.mark.parametrize(("control", "server", "marked"), [
    ("/srv/data/.control-ab/control.sock", ("/srv/data/.control-ab/control.sock", None), True),
    ("/srv/data/.control-ab/control.sock", ("127.0.0.1", 8000), False),
    ("/srv/data/.control-ab/control.sock", ("/elsewhere.sock", None), False),
    (None, ("/srv/data/.control-ab/control.sock", None), False),
])
async def test_only_requests_of_the_control_socket_are_marked(
        control: str | None, server: tuple[str, int | None], marked: bool) -> None:
    seen: list[Any] = []

    async def api(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get(CONTROL_SCOPE_KEY))

    composed = Composed(api, api, control)  # type: ignore[arg-type]
    forged = {"type": "http", "path": "/v1/skus", "server": server, CONTROL_SCOPE_KEY: True}
    await composed(forged, None, None)  # type: ignore[arg-type]
    assert seen == [marked]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
