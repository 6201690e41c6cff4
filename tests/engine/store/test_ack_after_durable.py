"""An acknowledgement never reports an effect that is not yet durable, whoever made it.

Goal: DESIGN.md invariant 3, "no response reports an effect that a crash could undo", in the
cases the crash worker's own pattern (operation, ``wait_last()``, acknowledge) does not reach.
Each case reports an effect that is not the caller's own new record:

* an idempotent replay (the same order ref or request id) that another thread's original call
  made moments ago, while the original record is still only in memory;
* a second store writing the same Redis namespace (a second host, a stale instance after a
  fail-over), whose appends Redis refuses, while the first store keeps the journal.

Method: the replay tests build a ``Store`` over a ``FileSink`` whose ``append`` blocks on an
event, so that the original record provably stays in memory while the replay is served. A correct
store either makes the replay's wait time out (JOURNAL_UNAVAILABLE) or returns only once the
original is durable. The Redis test opens two stores over one namespace. A correct store refuses
the second opener, or fails its waits, or keeps what it acknowledged. Each test is bounded by
short wait timeouts and a thread join.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from cardsvc.engine import Engine
from cardsvc.engine.datadir import DataDirLock, load_lookup_key
from cardsvc.engine.sinks import FileSink
from cardsvc.engine.store import Store, StoreConfig, recover
from cardsvc.errors import CardsvcError, ErrorCode

GATE_TIMEOUT_S = 5.0
SHORT_WAIT_S = 0.5

pytestmark = pytest.mark.timeout(60)


class _Server(Protocol):
    # The shape of conftest.RedisServer (conftest modules are not imported by name).
    @property
    def url(self) -> str: ...


class GatedFileSink(FileSink):
    """A file sink whose appends wait until ``gate`` is set (a slow disk, made deterministic)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.gate = threading.Event()
        self.gate.set()

    def append(self, frames: bytes, first_seq: int, last_seq: int) -> None:
        self.gate.wait(GATE_TIMEOUT_S)
        super().append(frames, first_seq, last_seq)


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[Store, GatedFileSink]]:
    """A store over a gated sink, with SKU "ONE" holding two sold-able codes."""
    data_dir = tmp_path / "data"
    lock = DataDirLock(data_dir)
    sink = GatedFileSink(data_dir)
    engine, report = recover(sink, load_lookup_key(data_dir), repair=True)
    store = Store(StoreConfig(data_dir=data_dir), engine, sink, lock, report)
    try:
        store.engine.create_sku("ONE", 1, True)
        store.engine.import_codes("ONE", ["ONE-1", "ONE-2"])
        store.engine.allocate("ONE", 1, "sold")
        store.wait_last()
        yield store, sink
    finally:
        sink.gate.set()
        store.close()


def original_then_replay(store: Store, sink: GatedFileSink, call: Callable[[], object]) -> None:
    """Runs ``call`` in another thread (its record held in memory by the gate), then again in
    this one, and checks that this thread's acknowledgement covers the original record."""
    sink.gate.clear()
    original: list[int] = []

    def run_original() -> None:
        call()
        original.append(Engine.last_ticket())

    thread = threading.Thread(target=run_original, daemon=True)
    thread.start()
    thread.join(GATE_TIMEOUT_S)
    assert original, "the original call did not complete"
    try:
        call()  # the replay: same key, first result, no new record
        try:
            store.wait_last(timeout=SHORT_WAIT_S)
        except CardsvcError as error:
            assert error.code is ErrorCode.JOURNAL_UNAVAILABLE, error
            return
        assert store.engine.durable() >= original[0], (
            f"the replay was acknowledged at durable={store.engine.durable()}, "
            f"before the original record (ticket {original[0]}) was durable"
        )
    finally:
        sink.gate.set()


def test_replayed_order_is_acknowledged_only_once_the_original_is_durable(
    gated: tuple[Store, GatedFileSink],
) -> None:
    store, sink = gated
    original_then_replay(store, sink, lambda: store.engine.allocate("ONE", 1, "o-replayed"))


def test_replayed_redemption_is_acknowledged_only_once_the_original_is_durable(
    gated: tuple[Store, GatedFileSink],
) -> None:
    store, sink = gated
    code = "ONE-1" if store.engine.code_info(store.engine.lookup("ONE-1")).order_ref else "ONE-2"
    original_then_replay(store, sink, lambda: store.engine.redeem(code, "r-replayed", "t-1"))


@pytest.mark.redis
def test_second_store_on_one_redis_namespace_cannot_acknowledge_effects_it_did_not_store(
    tmp_path: Path, redis_server: _Server
) -> None:
    namespace = f"two-writers-{time.monotonic_ns()}"

    def config(name: str) -> StoreConfig:
        return StoreConfig(
            data_dir=tmp_path / name,
            sink="redis",
            redis_url=redis_server.url,
            redis_namespace=namespace,
        )

    first = Store.open(config("first"))
    try:
        try:
            second = Store.open(config("second"))
        except CardsvcError:
            return  # refusing the second writer is a correct outcome
        try:
            for store in (first, second):
                store.engine.create_sku("ONE", 1, True)
                store.engine.import_codes("ONE", [f"ONE-{i}" for i in range(10)])
                store.wait_last()
            for i in range(5):
                first.engine.allocate("ONE", 1, f"first-{i}")
                first.wait_last()
            second.engine.allocate("ONE", 1, "second-acked")
            try:
                second.wait_last(timeout=SHORT_WAIT_S)
            except CardsvcError as error:
                assert error.code is ErrorCode.JOURNAL_UNAVAILABLE, error
                return  # failing to acknowledge is a correct outcome
        finally:
            second.close()
    finally:
        first.close()
    with Store.open(config("second")) as reopened:
        try:
            reopened.engine.order_codes("second-acked")
        except CardsvcError as error:
            raise AssertionError(f"an acknowledged order was lost: {error!r}") from error
