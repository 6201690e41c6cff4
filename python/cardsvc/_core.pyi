"""Hand-kept stub of ``cardsvc._core``, the Rust engine (``core/src/py/``).

Only ``cardsvc.engine`` imports ``cardsvc._core``; everything else uses ``cardsvc.engine.Engine``.
``mypy.stubtest`` checks this file against the built extension.

Conventions
-----------
* Times are integers: ``*_ms`` are Unix milliseconds; ``valid_from``/``valid_until`` are Unix
  seconds.
* Code ids are integers assigned at import, never reused; each SKU takes ids in chunks of 4096.
* Every failure raises a ``cardsvc.errors.CardsvcError`` subclass whose ``.code`` is a stable string
  from ``error_codes()``; a failed call changes nothing.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import final

from typing_extensions import disjoint_base

from cardsvc.errors import CardsvcError

def error_codes() -> list[str]:
    """Every stable error code the core can raise."""

def scan_journal(data: bytes) -> tuple[int, int, int, int, str | None, bool]:
    """Scans framed journal bytes: ``(valid_len, records, first_seq, last_seq, error, torn_tail)``.

    Stops at the first bad frame; ``torn_tail`` is true when the bad part reaches the end of the
    data (a write cut short by a crash) and false when more data follows it (corruption).
    """

def normalise_code(code: str) -> str:
    """The canonical code text: ASCII whitespace and '-' removed, ASCII letters uppercased.

    Raises INVALID_CODE when the result is empty, too long or not printable ASCII.
    """

__all__ = [
    "BATCH_ITEMS_MAX",
    "CODE_LEN_MAX",
    "HOLD_TTL_MS_MAX",
    "ORDER_QTY_MAX",
    "PIN_FAILURES_DEFAULT",
    "PIN_LEN_MAX",
    "PIN_LOCKOUT_MAX_MS_DEFAULT",
    "PIN_LOCKOUT_MS_DEFAULT",
    "REDEEM_BATCH_MAX",
    "REDEMPTION_LIST_MAX",
    "REF_LEN_MAX",
    "STATES",
    "CodeInfo",
    "CoreEngine",
    "Hold",
    "RedeemBatch",
    "Redemption",
    "SnapshotData",
    "Verification",
    "VerifyBatch",
    "error_codes",
    "normalise_code",
    "scan_journal",
]

STATES: list[str]
"""Code states, in the core's numbering: available, held, allocated, redeemed, frozen, void,
withdrawn."""

CODE_LEN_MAX: int
PIN_LEN_MAX: int
REF_LEN_MAX: int
BATCH_ITEMS_MAX: int
ORDER_QTY_MAX: int
HOLD_TTL_MS_MAX: int
REDEEM_BATCH_MAX: int
"""Most items in one ``redeem_batch`` call."""
REDEMPTION_LIST_MAX: int
"""Most redemptions one ``list_redemptions`` call returns."""
PIN_FAILURES_DEFAULT: int
PIN_LOCKOUT_MS_DEFAULT: int
PIN_LOCKOUT_MAX_MS_DEFAULT: int

@final
class Hold:
    hold_ref: str
    sku: str
    pool: int
    code_ids: list[int]
    expires_at_ms: int
    state: str  # "open" | "confirmed" | "released" | "expired"
    order_ref: str | None

@final
class Verification:
    code_id: int
    status: str  # valid | redeemed | frozen | void | expired | not_yet_valid | not_sold
    sku: str
    uses_left: int
    valid_from: int | None
    valid_until: int | None

@final
class Redemption:
    redemption_id: int
    request_id: str
    code_id: int
    sku: str
    terminal: str
    uses_left: int
    redeemed_at_ms: int
    @property
    def redeemed_at(self) -> datetime: ...
    rolled_back_at_ms: int | None
    rollback_reason: str | None

@final
class CodeInfo:
    code_id: int
    sku: str
    pool: int
    batch: int
    state: str
    frozen_from: str | None
    uses_left: int
    has_pin: bool
    valid_from: int | None
    valid_until: int | None
    order_ref: str | None
    hold_ref: str | None
    redemption_ids: list[int]
    was_withdrawn: bool
    pin_failures: int
    locked_until_ms: int | None

@final
class RedeemBatch:
    """Results of ``redeem_many``, one per input item, materialised lazily.

    ``ok`` is a bytes-like mask (1 = redeemed or replayed). ``codes`` holds an error code string
    per item (``""`` for success). Indexing gives the item's ``Redemption`` or ``CardsvcError``.
    """

    ok_count: int
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Redemption | CardsvcError: ...
    def error_codes(self) -> list[str]: ...
    def redemption_ids(self) -> list[int | None]: ...
    def uses_left(self) -> list[int | None]: ...
    def columns(
        self,
    ) -> tuple[bytes, list[str], list[int], list[int], list[int], list[int], list[str]]:
        """Every item's result as columns, gathered with the GIL released: ``(ok, error_codes,
        redemption_ids, code_ids, uses_left, redeemed_at_ms, skus)``. ``ok[i]`` is 1 for a
        redemption (new or replayed); a failed item has its error code, 0 in the number
        columns and ``""`` as its SKU (index the batch for the error itself). Raises
        REDEMPTION_NOT_FOUND only for results of another engine."""

@final
class VerifyBatch:
    """Results of ``verify_many``, one per input item, materialised lazily."""

    ok_count: int
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Verification | CardsvcError: ...
    def error_codes(self) -> list[str]: ...
    def statuses(self) -> list[str]: ...

@final
class SnapshotData:
    """A snapshot image as a read-only buffer (no copy): ``memoryview(data)``."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

@disjoint_base
class CoreEngine:
    """The in-memory code table. Thread-safe: calls release the GIL and lock per SKU shard."""

    def __new__(cls, lookup_key: bytes, snapshot: bytes | None = None) -> CoreEngine: ...
    # clock
    def now_ms(self) -> int: ...
    def set_clock_ms(self, now_ms: int | None) -> None: ...
    # catalog
    def create_sku(
        self,
        sku: str,
        uses_per_code: int = 1,
        redeem_requires_sale: bool = True,
        validity_days_after_sale: int | None = None,
    ) -> None: ...
    def skus(self) -> list[str]: ...
    def import_codes(
        self,
        sku: str,
        codes: Sequence[str],
        pool: int = 0,
        pins: Sequence[str | None] | None = None,
        valid_from: int | None = None,
        valid_until: int | None = None,
        batch: int = 0,
    ) -> tuple[list[int], list[int]]: ...
    # selling
    def allocate(self, sku: str, qty: int, order_ref: str, pool: int = 0) -> list[int]: ...
    def allocate_many(
        self, requests: Sequence[tuple[str, int, str, int]]
    ) -> list[list[int] | CardsvcError]: ...
    def order_codes(self, order_ref: str) -> list[int]: ...
    def hold_ms(self, sku: str, qty: int, hold_ref: str, ttl_ms: int, pool: int = 0) -> Hold: ...
    def get_hold(self, hold_ref: str) -> Hold: ...
    def confirm_hold(self, hold_ref: str, order_ref: str) -> list[int]: ...
    def release_hold(self, hold_ref: str) -> int: ...
    def expire_holds(self) -> int: ...
    def move_stock(self, sku: str, qty: int, from_pool: int, to_pool: int) -> list[int]: ...
    # terminals
    def lookup(self, code: str) -> int: ...
    def verify(self, code: str, pin: str | None = None) -> Verification: ...
    def verify_many(
        self, codes: Sequence[str], pins: Sequence[str | None] | None = None
    ) -> VerifyBatch: ...
    def redeem(
        self, code: str, request_id: str, terminal: str, pin: str | None = None
    ) -> Redemption: ...
    def redeem_many(
        self,
        codes: Sequence[str],
        request_ids: Sequence[str],
        terminal: str,
        pins: Sequence[str | None] | None = None,
    ) -> RedeemBatch: ...
    def redeem_batch(
        self,
        batch_request_id: str,
        codes: Sequence[str],
        terminal: str,
        pins: Sequence[str | None] | None = None,
    ) -> RedeemBatch:
        """Redeem each code once under one idempotency key for the whole batch (docs/engine.md)."""
    def rollback(self, redemption_id: int, reason: str) -> Redemption: ...
    def get_redemption(self, redemption_id: int) -> Redemption: ...
    def list_redemptions(
        self,
        *,
        terminal: str | None = None,
        code_id: int | None = None,
        since_ms: int = 0,
        until_ms: int | None = None,
        before: tuple[int, int] | None = None,
        limit: int = 50,
    ) -> list[Redemption]:
        """Redemptions newest first by (redeemed_at_ms, redemption_id): of ``terminal``, of
        ``code_id``, at ``since_ms <= at < until_ms``, below the sort key ``before``; at most
        ``limit`` (LIMIT_EXCEEDED over REDEMPTION_LIST_MAX). Reads only."""
    # administration
    def freeze(self, code_ids: Sequence[int]) -> tuple[int, int]: ...
    def unfreeze(self, code_ids: Sequence[int]) -> tuple[int, int]: ...
    def void(self, code_ids: Sequence[int]) -> tuple[int, int]: ...
    def withdraw(self, code_ids: Sequence[int]) -> tuple[int, int, list[tuple[int, str]]]:
        """``(withdrawn, unchanged, refused)``: available codes leave sale (exported)."""
    def restore_to_sale(self, code_ids: Sequence[int]) -> tuple[int, int, list[tuple[int, str]]]:
        """``(restored, unchanged, refused)``: never-redeemed withdrawn codes return to stock."""
    # PIN lockout
    def set_pin_policy(self, failures_max: int, lockout_ms: int, lockout_max_ms: int) -> None: ...
    def pin_policy(self) -> tuple[int, int, int]: ...
    def locked_codes(self, sku: str | None = None) -> list[tuple[int, int, int]]:
        """``(code_id, locked_until_ms, lockouts)`` of every code whose lockout runs now."""
    def unlock(self, code_ids: Sequence[int]) -> tuple[int, int]: ...
    def order_code_ids(self, order_ref: str) -> list[int]: ...
    def batch_code_ids(self, batch: int) -> list[int]: ...
    # inspection
    def code_info(self, code_id: int) -> CodeInfo: ...
    def stock(self, sku: str, pool: int | None = None) -> dict[str, int]: ...
    def stock_by_pool(self, sku: str) -> dict[int, dict[str, int]]: ...
    def code_count(self) -> int: ...
    def memory_bytes(self) -> int: ...
    def check_invariants(self) -> None: ...
    # durability tickets (group commit)
    def appended(self) -> int: ...
    @staticmethod
    def last_ticket() -> int:
        """A ticket covering everything the calling thread's last engine call reported."""
    def durable(self) -> int: ...
    def mark_durable(self, ticket: int) -> None: ...
    def wait_durable(self, ticket: int, timeout_ms: int) -> bool: ...
    def wait_durable_change(self, seen: int, timeout_ms: int) -> int: ...
    def request_durable(self, ticket: int) -> None: ...
    def wait_for_demand(self, timeout_ms: int) -> int: ...
    def drain(self) -> tuple[bytes, int, int, int]:
        """``(framed records, covered ticket, first seq, last seq)`` (seqs 0 when empty)."""
    # journal and snapshots
    def journal_len(self) -> int: ...
    def drain_journal(self) -> bytes: ...
    def apply_journal(self, data: bytes) -> int: ...
    def snapshot(self) -> bytes: ...
    def snapshot_data(self) -> SnapshotData: ...
    def last_snapshot_capture_us(self) -> int: ...
    def restore(self, data: bytes) -> None: ...
    def next_seq(self) -> int: ...
    def state_digest(self) -> bytes: ...
