"""Helpers for the catalog's upload tests: send a file to ``POST /v1/batches/upload`` and poll
the batch (bounded) until it leaves ``importing``."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api.conftest import Api

POLL_S = 30.0
POLL_EVERY_S = 0.02


async def post_upload(api: Api, data: bytes, name: str = "codes.csv",
                      **form: str) -> tuple[int, dict[str, Any]]:
    """The upload's status and body (the batch, or an error envelope)."""
    files = {"file": (name, data, "application/octet-stream")}
    response = await api.http.post("/v1/batches/upload", headers=api.auth(api.keys["admin"]),
                                   files=files, data={"sku": "VIP", **form})
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def wait_done(api: Api, batch: dict[str, Any]) -> dict[str, Any]:
    """The batch once it has left ``importing`` (AssertionError after POLL_S)."""
    for _ in range(int(POLL_S / POLL_EVERY_S)):
        if batch["status"] != "importing":
            return batch
        await asyncio.sleep(POLL_EVERY_S)
        batch = await api.admin("GET", f"/v1/batches/{batch['batch_id']}")
    raise AssertionError(f"batch {batch['batch_id']} did not finish in time")


async def upload_bytes(api: Api, data: bytes, name: str = "codes.csv",
                       **form: str) -> dict[str, Any]:
    """Uploads ``data`` (202 expected) and returns the finished batch."""
    status, batch = await post_upload(api, data, name, **form)
    assert status == 202, batch
    return await wait_done(api, batch)
