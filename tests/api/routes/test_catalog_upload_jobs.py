"""Goal: one slow upload does not block the others, the import queue is bounded, an import can
be cancelled, and the HTTP event loop never parses a file. Before the fix
uploads ran one at a time on a single shared thread: a file that took 11 minutes held every
upload behind it, and nothing could stop it.

Method: the API over ASGITransport. A job is held at a known point by wrapping
``import_jobs.import_file`` so that its progress callback waits on a ``threading.Event`` the
test sets; no test depends on timing. The queue's size is set by replacing the service's
``ImportJobs`` with a small one. Stock and the batch are read back through the API; the
cancelled batch's imported codes must be void, none sellable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cardsvc.catalog import file_import, import_jobs
from cardsvc.catalog.batches import STAGING_POOL_BASE
from cardsvc.catalog.import_jobs import ImportJobs
from tests.fixtures.http import CODES, Api
from tests.fixtures.uploads import post_upload, upload_bytes, wait_done

pytestmark = pytest.mark.anyio

HOLD_S = 30.0


def csv_rows(prefix: str, count: int) -> bytes:
    return ("code,pin\n" + "".join(f"{prefix}-{i:06d},{i:06d}\n" for i in range(count))).encode()


class Gate:
    """Holds the import of files whose name contains ``marker`` once it has loaded ``rows``
    rows (or at the check, ``rows`` 0), until ``open()``; records the threads imports ran on."""

    def __init__(self, marker: str, rows: int = 0) -> None:
        self.marker, self.rows = marker, rows
        self.reached = threading.Event()
        self.released = threading.Event()
        self.threads: list[str] = []

    def open(self) -> None:
        self.released.set()

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def import_file(batches: Any, path: Any, meta: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            held = self.marker in str(meta.source_name)

            def progress(phase: str, rows: int) -> None:
                if held and (phase == "load" or self.rows == 0) and rows >= self.rows:
                    self.reached.set()
                    assert self.released.wait(HOLD_S), "the test never opened the gate"

            if held and self.rows == 0:
                progress("check", 0)
            return real(batches, path, meta, progress=progress, **kwargs)

        return import_file


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate("slow")
    monkeypatch.setattr(import_jobs, "import_file", held.wrap(file_import.import_file))
    try:
        yield held
    finally:
        held.open()


async def wait_for(event: threading.Event) -> None:
    import anyio

    with anyio.fail_after(HOLD_S):
        while not event.is_set():
            await anyio.sleep(0.01)


def small_queue(api: Api, workers: int, depth_max: int) -> ImportJobs:
    """Replaces the service's import queue with one of ``workers`` and ``depth_max``."""
    runtime = api.runtime
    runtime.jobs.close()
    runtime.jobs = ImportJobs(runtime.batches, runtime.jobs.uploads_dir, workers=workers,
                              depth_max=depth_max)
    return runtime.jobs


async def test_a_held_upload_does_not_block_another(catalog: Api, gate: Gate) -> None:
    status, slow = await post_upload(catalog, csv_rows("SLOW", 50), name="slow.csv")
    assert status == 202
    await wait_for(gate.reached)
    fast = await upload_bytes(catalog, csv_rows("FAST", 50), name="fast.csv")
    assert (fast["status"], fast["imported"]) == ("ready", 50)
    assert (await catalog.admin("GET", f"/v1/batches/{slow['batch_id']}"))["status"] == \
        "importing"
    gate.open()
    assert (await wait_done(catalog, slow))["status"] == "ready"
    # Every import ran on an import worker, never on the event loop's thread.
    assert gate.threads and all(name.startswith("cardsvc-import-") for name in gate.threads)


async def test_a_full_queue_refuses_an_upload_and_creates_nothing(catalog: Api,
                                                                   gate: Gate) -> None:
    small_queue(catalog, workers=1, depth_max=1)
    status, running = await post_upload(catalog, csv_rows("SLOW", 10), name="slow.csv")
    assert status == 202
    await wait_for(gate.reached)
    status, waiting = await post_upload(catalog, csv_rows("WAIT", 10), name="wait.csv")
    assert status == 202
    before = await catalog.admin("GET", "/v1/skus/VIP/stock")
    status, refused = await post_upload(catalog, csv_rows("FULL", 10), name="full.csv")
    assert status == 400
    assert refused["error"]["code"] == "LIMIT_EXCEEDED"
    assert refused["error"]["details"] == {"field": "import_queue", "max": 1}
    assert (await catalog.call("GET", f"/v1/batches/{waiting['batch_id'] + 1}",
                               catalog.keys["admin"])).status_code == 404
    gate.open()
    assert (await wait_done(catalog, running))["status"] == "ready"
    assert (await wait_done(catalog, waiting))["status"] == "ready"
    after = await catalog.admin("GET", "/v1/skus/VIP/stock")
    assert after["available"] == before["available"] + 20


async def test_cancel_voids_what_the_import_loaded_and_ends_it_cancelled(
    catalog: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_import, "LOAD_CHUNK_ROWS", 100)
    held = Gate("slow", rows=100)
    monkeypatch.setattr(import_jobs, "import_file", held.wrap(file_import.import_file))
    try:
        status, batch = await post_upload(catalog, csv_rows("CANCEL", 1_000), name="slow.csv")
        assert status == 202
        await wait_for(held.reached)  # the first chunk is imported (staged, not sellable)
        asked = await catalog.call("POST", f"/v1/batches/{batch['batch_id']}/cancel",
                                   catalog.keys["admin"])
        assert asked.status_code == 202, asked.text
        assert asked.json()["status"] == "importing"
    finally:
        held.open()
    done = await wait_done(catalog, batch)
    assert (done["status"], done["error_code"]) == ("cancelled", "IMPORT_CANCELLED")
    assert done["error_details"] == {"reason": "cancelled"}
    stock = await catalog.admin("GET", "/v1/skus/VIP/stock")
    assert stock["available"] == len(CODES)
    # The first chunk reached the core (in the batch's staging pool) and was voided there.
    staged = catalog.runtime.engine.stock("VIP", STAGING_POOL_BASE + batch["batch_id"])
    assert (staged.get("void", 0), staged.get("available", 0)) == (100, 0)
    again = await catalog.call("POST", f"/v1/batches/{batch['batch_id']}/cancel",
                               catalog.keys["admin"])
    assert (again.status_code, again.json()["status"]) == (202, "cancelled")


async def test_a_waiting_upload_cancelled_ends_without_reading_its_file(
    catalog: Api, gate: Gate
) -> None:
    small_queue(catalog, workers=1, depth_max=2)
    status, running = await post_upload(catalog, csv_rows("SLOW", 10), name="slow.csv")
    assert status == 202
    await wait_for(gate.reached)
    status, waiting = await post_upload(catalog, csv_rows("WAIT", 10), name="wait.csv")
    assert status == 202
    asked = await catalog.call("POST", f"/v1/batches/{waiting['batch_id']}/cancel",
                               catalog.keys["admin"])
    assert (asked.status_code, asked.json()["status"]) == (202, "cancelled")  # at once
    gate.open()
    done = await wait_done(catalog, waiting)
    assert (done["status"], done["imported"], done["processed"]) == ("cancelled", 0, 0)
    assert (await wait_done(catalog, running))["status"] == "ready"


async def test_cancel_of_a_finished_or_unknown_batch_is_refused(catalog: Api) -> None:
    done = await upload_bytes(catalog, csv_rows("DONE", 5))
    response = await catalog.call("POST", f"/v1/batches/{done['batch_id']}/cancel",
                                  catalog.keys["admin"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "BATCH_NOT_CANCELLABLE"
    assert response.json()["error"]["details"]["status"] == "ready"
    response = await catalog.call("POST", "/v1/batches/999999/cancel", catalog.keys["admin"])
    assert (response.status_code, response.json()["error"]["code"]) == (404, "BATCH_NOT_FOUND")
    response = await catalog.call("POST", f"/v1/batches/{done['batch_id']}/cancel",
                                  catalog.keys["agent"])
    assert response.status_code == 403


async def test_closing_the_service_cancels_a_running_import(catalog: Api, gate: Gate) -> None:
    status, batch = await post_upload(catalog, csv_rows("SLOW", 10), name="slow.csv")
    assert status == 202
    await wait_for(gate.reached)
    jobs = catalog.runtime.jobs
    closing = threading.Thread(target=jobs.close)
    closing.start()
    gate.open()
    closing.join(HOLD_S)
    assert not closing.is_alive()
    done = await catalog.admin("GET", f"/v1/batches/{batch['batch_id']}")
    assert (done["status"], done["error_details"]["reason"]) == ("cancelled", "server_stopping")
    # Later uploads find a fresh queue (the fixture's teardown closes it).
    catalog.runtime.jobs = ImportJobs(catalog.runtime.batches, catalog.runtime.jobs.uploads_dir)
