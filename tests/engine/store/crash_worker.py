"""A child program for the crash tests: a stream of acknowledged store operations.

Goal: give ``test_crash_recovery`` a process to kill with SIGKILL at random moments, together with
an exact record of which effects were acknowledged before the kill. An effect counts as
acknowledged only once ``store.wait_last()`` has returned for it (DESIGN.md invariant 3, ack after
durable). Only then does the worker append one JSON line describing it to the side file, and it
fsyncs the side file after every line so that the line itself survives kill -9. Everything the
side file lists must therefore still be present after any crash.

Method: ``python -m tests.engine.store.crash_worker --data-dir D --journal file|redis
[--redis-url U] --side-file F --seed N`` opens ``Store.open`` (recovering whatever the previous
incarnation left behind). It makes sure the SKUs exist and hold their first batch of codes,
idempotently: a batch is imported only when its first code is unknown. It then runs
``WORKER_THREADS`` threads doing a random mix of allocate, hold+confirm, hold+release, abandoned
holds (left to expire), redeem (of codes it knows were sold, and of codes of the SKU that needs no
sale), rollback and deliberate retries, which must return the original result. When a SKU runs
out, a thread imports a further batch. One more thread takes snapshots at short random intervals,
so kills also land in snapshot writing. Every ref and request id carries the incarnation number
``N`` (``--seed``), so nothing is reused by accident across restarts; retries reuse refs on
purpose. A broken expectation (a retry returning something else, an unexpected error code) ends
the worker with ``EXIT_VIOLATION`` or ``EXIT_CRASH``, and the test reports it. Before
``RUN_SECONDS_MAX`` the worker never exits on its own.

Each side-file line is ``{"inc": N, "op": OP, ...}``. OP is one of ``import``, ``allocate``,
``hold``, ``confirm``, ``release``, ``redeem``, ``rollback_intent``, ``rollback`` or ``retry``.
``rollback_intent`` is written *before* a rollback is attempted, so the checker knows which
rollbacks may have taken effect without being acknowledged.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cardsvc.engine import Engine
from cardsvc.engine.store import Store, StoreConfig
from cardsvc.errors import CardsvcError, ErrorCode

WORKER_THREADS = 4
RUN_SECONDS_MAX = 90.0
"""The worker stops by itself after this long (the test kills it much earlier)."""
SNAPSHOT_EVERY_RECORDS = 200
"""The store's own snapshot trigger; the worker's snapshot thread adds more snapshots."""
SNAPSHOT_INTERVAL_S = (0.05, 0.3)
SEGMENT_BYTES_MAX = 16 << 10
"""Small journal segments, so kills also land around segment rotation."""
BATCHES_MAX = 40
"""Imports per SKU are bounded; past this, OUT_OF_STOCK is simply tolerated."""
QTY_MAX = 3
HOLD_TTL_S = (2.0, 5.0)
ABANDONED_HOLD_TTL_S = (0.2, 1.0)
RETRY_PROBABILITY = 0.15
THINK_TIME_S = (0.0, 0.004)
"""A pause between a thread's operations: keeps the side file (and each check) small while four
threads still overlap, so group commit is exercised."""
DURABLE_WAIT_TRIES = 6
"""Set-up waits retry JOURNAL_UNAVAILABLE this often (the test restarts Redis within seconds)."""
REDIS_NAMESPACE = "crash"
TERMINAL_PREFIX = "t-"

EXIT_VIOLATION = 3
EXIT_CRASH = 4
EXIT_OPEN_FAILED = 5


@dataclass(frozen=True)
class SkuSpec:
    """A SKU the worker sells or redeems, and how many codes each import batch holds."""

    name: str
    uses_per_code: int
    redeem_requires_sale: bool
    batch_codes: int


SKUS: tuple[SkuSpec, ...] = (
    SkuSpec("ONE", 1, True, 1500),
    SkuSpec("MULTI", 3, True, 500),
    SkuSpec("FREE", 1, False, 500),
)
SKU_BY_NAME = {spec.name: spec for spec in SKUS}
SOLD_SKUS = tuple(spec for spec in SKUS if spec.redeem_requires_sale)


def code_text(sku: str, batch: int, index: int) -> str:
    """The deterministic text of code ``index`` of import ``batch`` of ``sku``."""
    return f"{sku}-{batch:03d}-{index:05d}"


def batch_texts(spec: SkuSpec, batch: int) -> list[str]:
    return [code_text(spec.name, batch, i) for i in range(spec.batch_codes)]


def store_config(
    data_dir: Path, journal: str, redis_url: str | None, namespace: str = REDIS_NAMESPACE
) -> StoreConfig:
    """The configuration the worker opens the store with; the test opens it the same way."""
    return StoreConfig(
        data_dir=data_dir,
        sink=journal,
        redis_url=redis_url,
        redis_namespace=namespace,
        snapshot_every_records=SNAPSHOT_EVERY_RECORDS,
        snapshot_every_seconds=1.0,
        segment_bytes_max=SEGMENT_BYTES_MAX,
    )


def read_side_file(path: Path) -> list[dict[str, Any]]:
    """Every whole line of the side file. A final line without its newline was cut by a kill
    in the middle of writing it, so its effect was never acknowledged to anyone."""
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line]


class SideFile:
    """The append-only record of acknowledged effects, fsynced after every line."""

    def __init__(self, path: Path, incarnation: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self._incarnation = incarnation

    def append(self, op: str, **fields: Any) -> None:
        line = json.dumps({"inc": self._incarnation, "op": op, **fields}, separators=(",", ":"))
        data = memoryview((line + "\n").encode())
        with self._lock:
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)


def violation(message: str) -> NoReturn:
    """A broken promise of the store: report it and end the process at once."""
    sys.stderr.write(f"VIOLATION: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_VIOLATION)


def crash(where: str) -> NoReturn:
    sys.stderr.write(f"CRASH in {where}:\n{traceback.format_exc()}\n")
    sys.stderr.flush()
    os._exit(EXIT_CRASH)


@dataclass(frozen=True)
class AckedOrder:
    sku: str
    qty: int
    order_ref: str
    ids: list[int]


@dataclass(frozen=True)
class AckedConfirm:
    hold_ref: str
    order_ref: str
    ids: list[int]


@dataclass(frozen=True)
class AckedRedeem:
    code_id: int
    request_id: str
    terminal: str
    redemption_id: int


class Worker:
    """The shared state of one incarnation: what it knows was sold, redeemed and acknowledged."""

    def __init__(self, store: Store, side: SideFile, incarnation: int) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.side = side
        self.incarnation = incarnation
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.import_lock = threading.Lock()
        self.texts: dict[int, str] = {}
        self.sold: list[int] = []
        self.free: list[int] = []
        self.batches: dict[str, int] = {}
        self.rollback_candidates: list[tuple[int, int]] = []
        self.orders: list[AckedOrder] = []
        self.confirms: list[AckedConfirm] = []
        self.redeems: list[AckedRedeem] = []

    # ----- set-up -----

    def wait_durable(self) -> None:
        """``wait_last`` for set-up steps, riding out a short Redis outage."""
        for attempt in range(DURABLE_WAIT_TRIES):
            try:
                self.store.wait_last()
                return
            except CardsvcError as error:
                if (
                    error.code is not ErrorCode.JOURNAL_UNAVAILABLE
                    or attempt + 1 == DURABLE_WAIT_TRIES
                ):
                    raise

    def known(self, text: str) -> bool:
        try:
            self.engine.lookup(text)
        except CardsvcError as error:
            if error.code is ErrorCode.CODE_NOT_FOUND:
                return False
            raise
        return True

    def prepare(self, history: Sequence[dict[str, Any]]) -> None:
        for spec in SKUS:
            if spec.name not in self.engine.skus():
                self.engine.create_sku(spec.name, spec.uses_per_code, spec.redeem_requires_sale)
                self.wait_durable()
            batches = 0
            while batches < BATCHES_MAX and self.known(code_text(spec.name, batches, 0)):
                batches += 1
            self.batches[spec.name] = batches
            if batches == 0:
                self.import_batch(spec, self.wait_durable)
            self.load_codes(spec)
        self.load_history(history)

    def load_codes(self, spec: SkuSpec) -> None:
        for batch in range(self.batches[spec.name]):
            for text in batch_texts(spec, batch):
                code_id = self.engine.lookup(text)
                self.texts[code_id] = text
                if not spec.redeem_requires_sale:
                    self.free.append(code_id)
                elif self.engine.code_info(code_id).state in ("allocated", "redeemed"):
                    self.sold.append(code_id)

    def load_history(self, history: Sequence[dict[str, Any]]) -> None:
        """Earlier incarnations' acknowledged effects become retry and rollback candidates."""
        rollback_attempted: set[int] = set()
        for line in history:
            op = line["op"]
            if op == "allocate":
                self.orders.append(
                    AckedOrder(line["sku"], line["qty"], line["order_ref"], line["ids"])
                )
            elif op == "confirm":
                self.confirms.append(AckedConfirm(line["hold_ref"], line["order_ref"], line["ids"]))
            elif op == "redeem":
                self.redeems.append(
                    AckedRedeem(
                        line["code_id"], line["request_id"], line["terminal"], line["redemption_id"]
                    )
                )
            elif op == "rollback_intent":
                rollback_attempted.add(line["redemption_id"])
        self.rollback_candidates = [
            (r.redemption_id, r.code_id)
            for r in self.redeems
            if r.redemption_id not in rollback_attempted
        ]

    def import_batch(self, spec: SkuSpec, wait: Callable[[], None]) -> None:
        """Imports the next batch of ``spec``; the caller holds ``import_lock`` or is alone."""
        batch = self.batches[spec.name]
        texts = batch_texts(spec, batch)
        ids, duplicates = self.engine.import_codes(spec.name, texts)
        if duplicates:
            violation(f"batch {batch} of {spec.name} was new but {len(duplicates)} codes existed")
        with self.lock:
            self.texts.update(zip(ids, texts, strict=True))
            if not spec.redeem_requires_sale:
                self.free.extend(ids)
            self.batches[spec.name] = batch + 1
        wait()
        self.side.append("import", sku=spec.name, batch=batch, count=len(ids))

    def restock(self, spec: SkuSpec) -> None:
        with self.import_lock:
            if self.batches[spec.name] < BATCHES_MAX:
                self.import_batch(spec, self.store.wait_last)

    # ----- operations (each acknowledges only after wait_last) -----

    def op_allocate(self, rng: random.Random, tid: int, key: str) -> None:
        del tid
        spec, qty, order_ref = rng.choice(SOLD_SKUS), rng.randint(1, QTY_MAX), f"o-{key}"
        try:
            ids = self.engine.allocate(spec.name, qty, order_ref)
        except CardsvcError as error:
            if error.code is not ErrorCode.OUT_OF_STOCK:
                raise
            self.restock(spec)
            return
        self.store.wait_last()
        self.side.append("allocate", sku=spec.name, qty=qty, order_ref=order_ref, ids=ids)
        order = AckedOrder(spec.name, qty, order_ref, ids)
        with self.lock:
            self.sold.extend(ids)
            self.orders.append(order)
        if rng.random() < RETRY_PROBABILITY:
            self.retry_order(order)

    def op_hold(self, rng: random.Random, tid: int, key: str, then: str) -> None:
        del tid
        spec, qty, hold_ref = rng.choice(SOLD_SKUS), rng.randint(1, QTY_MAX), f"h-{key}"
        ttl = rng.uniform(*(ABANDONED_HOLD_TTL_S if then == "abandon" else HOLD_TTL_S))
        try:
            hold = self.engine.hold(spec.name, qty, hold_ref=hold_ref, ttl_seconds=ttl)
        except CardsvcError as error:
            if error.code is not ErrorCode.OUT_OF_STOCK:
                raise
            self.restock(spec)
            return
        self.store.wait_last()
        ids = list(hold.code_ids)
        self.side.append(
            "hold", sku=spec.name, qty=qty, hold_ref=hold_ref, ids=ids,
            expires_at_ms=hold.expires_at_ms,
        )  # fmt: skip
        if then == "confirm":
            self.confirm(rng, hold_ref, f"c-{key}", ids)
        elif then == "release":
            returned = self.engine.release_hold(hold_ref)
            if returned not in (0, len(ids)):
                violation(f"release of {hold_ref} returned {returned} of {len(ids)} codes")
            self.store.wait_last()
            self.side.append("release", hold_ref=hold_ref, returned=returned)

    def confirm(self, rng: random.Random, hold_ref: str, order_ref: str, held: list[int]) -> None:
        try:
            ids = self.engine.confirm_hold(hold_ref, order_ref)
        except CardsvcError as error:
            if error.code is ErrorCode.HOLD_EXPIRED:
                return  # the wait outlived the hold (a slow sink); expiry is a legal outcome
            raise
        if sorted(ids) != sorted(held):
            violation(f"confirm of {hold_ref} gave {ids}, the hold had {held}")
        self.store.wait_last()
        self.side.append("confirm", hold_ref=hold_ref, order_ref=order_ref, ids=ids)
        acked = AckedConfirm(hold_ref, order_ref, ids)
        with self.lock:
            self.sold.extend(ids)
            self.confirms.append(acked)
        if rng.random() < RETRY_PROBABILITY:
            self.retry_confirm(acked)

    def pick_redeemable(self, rng: random.Random) -> tuple[int, str] | None:
        with self.lock:
            pool = self.sold if (rng.random() < 0.6 and self.sold) else self.free
            if not pool:
                return None
            code_id = rng.choice(pool)
            text = self.texts.get(code_id)
        return None if text is None else (code_id, text)

    def op_redeem(self, rng: random.Random, tid: int, key: str) -> None:
        picked = self.pick_redeemable(rng)
        if picked is None:
            return
        code_id, text = picked
        request_id, terminal = f"r-{key}", f"{TERMINAL_PREFIX}{tid}"
        try:
            redemption = self.engine.redeem(text, request_id, terminal)
        except CardsvcError as error:
            if error.code is ErrorCode.ALREADY_REDEEMED:
                return
            raise
        if redemption.code_id != code_id:
            violation(f"redeeming code {code_id} redeemed code {redemption.code_id}")
        self.store.wait_last()
        self.side.append(
            "redeem", sku=redemption.sku, code_id=code_id, request_id=request_id,
            terminal=terminal, redemption_id=redemption.redemption_id,
            uses_left=redemption.uses_left,
        )  # fmt: skip
        acked = AckedRedeem(code_id, request_id, terminal, redemption.redemption_id)
        with self.lock:
            self.redeems.append(acked)
            self.rollback_candidates.append((redemption.redemption_id, code_id))
        if rng.random() < RETRY_PROBABILITY:
            self.retry_redeem(acked)

    def op_rollback(self, rng: random.Random, tid: int, key: str) -> None:
        del tid, key
        with self.lock:
            if not self.rollback_candidates:
                return
            candidates = self.rollback_candidates
            index = rng.randrange(len(candidates))
            candidates[index], candidates[-1] = candidates[-1], candidates[index]
            redemption_id, code_id = candidates.pop()
        self.side.append("rollback_intent", redemption_id=redemption_id, code_id=code_id)
        rolled = self.engine.rollback(redemption_id, "crash test")
        if rolled.rolled_back_at_ms is None or rolled.code_id != code_id:
            violation(f"rollback of {redemption_id} returned {rolled!r}")
        self.store.wait_last()
        self.side.append("rollback", redemption_id=redemption_id, code_id=code_id)

    # ----- retries: the same key must give the first result -----

    def op_retry(self, rng: random.Random, tid: int, key: str) -> None:
        del tid, key
        with self.lock:
            kind = rng.choice(("order", "confirm", "redeem"))
            order = rng.choice(self.orders) if kind == "order" and self.orders else None
            confirm = rng.choice(self.confirms) if kind == "confirm" and self.confirms else None
            redeem = rng.choice(self.redeems) if kind == "redeem" and self.redeems else None
        if order is not None:
            self.retry_order(order)
        elif confirm is not None:
            self.retry_confirm(confirm)
        elif redeem is not None:
            self.retry_redeem(redeem)

    def retry_order(self, order: AckedOrder) -> None:
        again = self.engine.allocate(order.sku, order.qty, order.order_ref)
        if sorted(again) != sorted(order.ids):
            violation(f"retried order {order.order_ref} gave {again}, first {order.ids}")
        self.side.append("retry", kind="order", key=order.order_ref)

    def retry_confirm(self, confirm: AckedConfirm) -> None:
        again = self.engine.confirm_hold(confirm.hold_ref, confirm.order_ref)
        if sorted(again) != sorted(confirm.ids):
            violation(f"retried confirm {confirm.hold_ref} gave {again}, first {confirm.ids}")
        self.side.append("retry", kind="confirm", key=confirm.hold_ref)

    def retry_redeem(self, redeem: AckedRedeem) -> None:
        with self.lock:
            text = self.texts.get(redeem.code_id)
        if text is None:
            violation(f"acknowledged redeemed code {redeem.code_id} is unknown after restart")
        try:
            again = self.engine.redeem(text, redeem.request_id, redeem.terminal)
        except CardsvcError as exc:
            # A retry of a redemption rolled back since says so (and takes no use).
            if exc.code != "REDEMPTION_ROLLED_BACK":
                raise
            if exc.details.get("redemption_id") != redeem.redemption_id:
                violation(f"retried redeem {redeem.request_id} gave {exc!r}")
            self.side.append("retry", kind="redeem", key=redeem.request_id)
            return
        if again.redemption_id != redeem.redemption_id or again.code_id != redeem.code_id:
            violation(f"retried redeem {redeem.request_id} gave {again!r}")
        self.side.append("retry", kind="redeem", key=redeem.request_id)

    # ----- threads -----

    def operations(self) -> list[tuple[Callable[[random.Random, int, str], None], int]]:
        def hold_then(then: str) -> Callable[[random.Random, int, str], None]:
            return lambda rng, tid, key: self.op_hold(rng, tid, key, then)

        return [
            (self.op_allocate, 30),
            (hold_then("confirm"), 10),
            (hold_then("release"), 8),
            (hold_then("abandon"), 3),
            (self.op_redeem, 30),
            (self.op_rollback, 8),
            (self.op_retry, 8),
        ]

    def run_thread(self, tid: int, deadline: float) -> None:
        rng = random.Random(f"{self.incarnation}-{tid}")
        ops = self.operations()
        functions, weights = [op for op, _ in ops], [weight for _, weight in ops]
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                n += 1
                time.sleep(rng.uniform(*THINK_TIME_S))
                operation = rng.choices(functions, weights)[0]
                try:
                    operation(rng, tid, f"{self.incarnation}-{tid}-{n}")
                except CardsvcError as error:
                    if error.code is not ErrorCode.JOURNAL_UNAVAILABLE:
                        raise
                    time.sleep(0.05)  # the sink is down; the effect stays unacknowledged
        except BaseException:
            crash(f"worker thread {tid}")

    def run_snapshots(self, deadline: float) -> None:
        rng = random.Random(f"{self.incarnation}-snapshots")
        try:
            while not self.stop.wait(rng.uniform(*SNAPSHOT_INTERVAL_S)):
                if time.monotonic() >= deadline:
                    return
                try:
                    self.store.snapshot_now()
                except CardsvcError as error:
                    if error.code is not ErrorCode.JOURNAL_UNAVAILABLE:
                        raise
        except BaseException:
            crash("snapshot thread")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crash_worker", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--journal", choices=("file", "redis"), required=True)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--redis-namespace", default=REDIS_NAMESPACE)
    parser.add_argument("--side-file", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True, help="the incarnation number")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    history = read_side_file(args.side_file)
    side = SideFile(args.side_file, args.seed)
    config = store_config(args.data_dir, args.journal, args.redis_url, args.redis_namespace)
    try:
        store = Store.open(config)
    except CardsvcError as error:
        sys.stderr.write(f"open failed: {error!r}: {error.message}\n")
        return EXIT_OPEN_FAILED
    deadline = time.monotonic() + RUN_SECONDS_MAX
    worker = Worker(store, side, args.seed)
    try:
        worker.prepare(history)
    except BaseException:
        crash("prepare")
    threads = [
        threading.Thread(target=worker.run_thread, args=(tid, deadline), daemon=True)
        for tid in range(WORKER_THREADS)
    ]
    threads.append(threading.Thread(target=worker.run_snapshots, args=(deadline,), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 5.0)
    worker.stop.set()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
