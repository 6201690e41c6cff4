"""Group commit: one journal flush serves many waiting callers, threads and coroutines alike.

Goal: prove the "group commit" half of DESIGN.md invariant 3. A caller waits until the journal
holds its record, yet callers waiting at the same time share one sink append (one fdatasync or
one Redis write), so the number of flushes (``store.flushes``) is far smaller than the number of
acknowledged operations. Every caller that returns from its wait really is durable
(``durable() >= ticket``), and the acknowledged effects survive a reopen. The async form
(``await store.wait_async(ticket)``) lets 1000 coroutines on one event loop wait at once, and
all of them complete, on a second event loop too.

Method: ``THREADS`` threads released together by a barrier each allocate and ``wait_last()``
``OPS_PER_THREAD`` times. A control run does the same work from one thread, where no flush can be
shared, and shows that ``flushes`` does count one append per wait there; the concurrent ratio is
therefore meaningful. The async test gathers ``COROUTINES`` coroutines that each allocate and then
await their ticket. Both sinks are covered (Redis through the session ``redis_server``).
Everything is bounded by barrier, join and ``asyncio.wait_for`` timeouts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from cardsvc.engine import Engine
from cardsvc.engine.store import Store, StoreConfig

THREADS = 16
OPS_PER_THREAD = 100
SERIAL_OPS = 200
COROUTINES = 1000
SHARING_MIN = 4
"""A concurrent run must acknowledge at least this many operations per flush on average."""
JOIN_TIMEOUT_S = 60.0
SKU = "GC"

pytestmark = pytest.mark.timeout(120)


class _Server(Protocol):
    # The shape of conftest.RedisServer (conftest modules are not imported by name).
    @property
    def url(self) -> str: ...


def config_for(tmp_path: Path, sink: str, request: pytest.FixtureRequest) -> StoreConfig:
    if sink == "file":
        return StoreConfig(data_dir=tmp_path / "data")
    server: _Server = request.getfixturevalue("redis_server")
    namespace = f"gc-{request.node.name}-{time.monotonic_ns()}"
    return StoreConfig(
        data_dir=tmp_path / "data", sink="redis", redis_url=server.url, redis_namespace=namespace
    )


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def config(tmp_path: Path, request: pytest.FixtureRequest) -> StoreConfig:
    return config_for(tmp_path, str(request.param), request)


@pytest.fixture
def store(config: StoreConfig) -> Iterator[Store]:
    store = Store.open(config)
    try:
        store.engine.create_sku(SKU, 1, True)
        codes = THREADS * OPS_PER_THREAD + SERIAL_OPS + 2 * COROUTINES
        store.engine.import_codes(SKU, [f"GC-{i:06d}" for i in range(codes)])
        store.wait_last()
        yield store
    finally:
        store.close()


def allocate_and_wait(store: Store, order_ref: str) -> None:
    store.engine.allocate(SKU, 1, order_ref)
    ticket = Engine.last_ticket()
    store.wait_last()
    assert store.engine.durable() >= ticket, (order_ref, ticket, store.engine.durable())


def test_one_flush_serves_many_threads_waiting_for_durability(
    store: Store, config: StoreConfig
) -> None:
    before = store.flushes
    for i in range(SERIAL_OPS):
        allocate_and_wait(store, f"serial-{i}")
    serial_flushes = store.flushes - before
    # Alone, every wait needs its own append: the counter really counts appends.
    assert serial_flushes >= SERIAL_OPS * 0.9, serial_flushes

    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT_S)
    acked: list[str] = []
    acked_lock = threading.Lock()

    def work(thread: int) -> None:
        barrier.wait()
        for i in range(OPS_PER_THREAD):
            order_ref = f"t{thread}-{i}"
            allocate_and_wait(store, order_ref)
            with acked_lock:
                acked.append(order_ref)

    before = store.flushes
    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads)
    flushes = store.flushes - before
    print(f"{config.sink}: {len(acked)} threaded acks in {flushes} flushes")
    assert len(acked) == THREADS * OPS_PER_THREAD
    assert flushes * SHARING_MIN <= len(acked), (flushes, len(acked))

    store.close()
    with Store.open(config) as reopened:
        for order_ref in acked:
            assert len(reopened.engine.order_codes(order_ref)) == 1, order_ref


async def allocate_and_wait_async(store: Store, order_ref: str) -> int:
    store.engine.allocate(SKU, 1, order_ref)
    ticket = Engine.last_ticket()  # taken before any await, on the loop's own thread
    await store.wait_async(ticket)
    assert store.engine.durable() >= ticket
    return ticket


async def gather_waits(store: Store, prefix: str) -> list[int]:
    waits = (allocate_and_wait_async(store, f"{prefix}-{i}") for i in range(COROUTINES))
    return await asyncio.wait_for(asyncio.gather(*waits), JOIN_TIMEOUT_S)


def test_a_thousand_coroutines_awaiting_durability_all_complete_sharing_flushes(
    store: Store, config: StoreConfig
) -> None:
    before = store.flushes
    tickets = asyncio.run(gather_waits(store, "first-loop"))
    flushes = store.flushes - before
    print(f"{config.sink}: {COROUTINES} coroutine acks in {flushes} flushes")
    assert len(set(tickets)) == COROUTINES
    assert flushes * SHARING_MIN <= COROUTINES, flushes

    # A second event loop (a new asyncio.run, a restarted server) is served as well.
    again = asyncio.run(gather_waits(store, "second-loop"))
    assert len(again) == COROUTINES and min(again) > max(tickets)

    store.close()
    with Store.open(config) as reopened:
        for prefix in ("first-loop", "second-loop"):
            for i in range(COROUTINES):
                assert len(reopened.engine.order_codes(f"{prefix}-{i}")) == 1
