"""The typed face of the Rust engine: the only module that imports ``cardsvc._core``.

``Engine`` subclasses the Rust class, so every hot-path method is the Rust method itself with no
Python frame in between; this module only adds conveniences whose cost is off the hot path.

Example::

    from cardsvc.engine import Engine
    eng = Engine(lookup_key=os.urandom(32))
    eng.create_sku("VIP", uses_per_code=1, redeem_requires_sale=True)
    ids, duplicates = eng.import_codes("VIP", ["CODE1", "CODE2"])
    eng.allocate("VIP", 1, order_ref="o-1")
    r = eng.redeem("CODE1", request_id="r-1", terminal="t-1")
"""

from __future__ import annotations

from cardsvc import _core
from cardsvc._core import (
    CodeInfo,
    Hold,
    RedeemBatch,
    Redemption,
    Verification,
    VerifyBatch,
)

__all__ = [
    "BATCH_ITEMS_MAX",
    "CODE_LEN_MAX",
    "ORDER_QTY_MAX",
    "PIN_FAILURES_DEFAULT",
    "PIN_LEN_MAX",
    "PIN_LOCKOUT_MAX_MS_DEFAULT",
    "PIN_LOCKOUT_MS_DEFAULT",
    "REDEEM_BATCH_MAX",
    "REF_LEN_MAX",
    "STATES",
    "CodeInfo",
    "Engine",
    "Hold",
    "RedeemBatch",
    "Redemption",
    "Verification",
    "VerifyBatch",
    "core_error_codes",
    "normalise_code",
    "scan_journal",
]

STATES: list[str] = list(_core.STATES)
ORDER_QTY_MAX: int = _core.ORDER_QTY_MAX
REF_LEN_MAX: int = _core.REF_LEN_MAX
CODE_LEN_MAX: int = _core.CODE_LEN_MAX
PIN_LEN_MAX: int = _core.PIN_LEN_MAX
BATCH_ITEMS_MAX: int = _core.BATCH_ITEMS_MAX
REDEEM_BATCH_MAX: int = _core.REDEEM_BATCH_MAX
PIN_FAILURES_DEFAULT: int = _core.PIN_FAILURES_DEFAULT
PIN_LOCKOUT_MS_DEFAULT: int = _core.PIN_LOCKOUT_MS_DEFAULT
PIN_LOCKOUT_MAX_MS_DEFAULT: int = _core.PIN_LOCKOUT_MAX_MS_DEFAULT
LOOKUP_KEY_LEN = 32


def core_error_codes() -> list[str]:
    """Every error code the Rust core can raise (for the drift test and the HTTP table)."""
    return list(_core.error_codes())


def scan_journal(data: bytes) -> tuple[int, int, int, int, str | None, bool]:
    """Scans framed journal bytes (see ``_core.scan_journal``)."""
    return _core.scan_journal(data)


def normalise_code(code: str) -> str:
    """The canonical text of a code (see ``_core.normalise_code``)."""
    return _core.normalise_code(code)


class Engine(_core.CoreEngine):
    """The in-memory code table, pools, holds and redemption table.

    ``lookup_key`` (32 bytes) keys the hash under which codes are found; the plaintext of a code
    is never stored in the engine. All methods are thread-safe and release the GIL.
    """

    def hold(
        self, sku: str, qty: int, *, hold_ref: str, ttl_seconds: float, pool: int = 0
    ) -> Hold:
        """Reserve ``qty`` codes of ``sku`` from ``pool`` until ``ttl_seconds`` from now.

        Idempotent on ``hold_ref``. Raises OUT_OF_STOCK, SKU_NOT_FOUND, QUANTITY_MUST_BE_POSITIVE,
        LIMIT_EXCEEDED, INVALID_ARGUMENT (ttl not positive) or IDEMPOTENCY_KEY_REUSED.
        """
        return self.hold_ms(sku, qty, hold_ref, _seconds_to_ms(ttl_seconds), pool)

    # Administration by order and by batch: the ids are looked up, then changed in one call per
    # SKU. Each change is idempotent (codes already in the target state are skipped), so a retry
    # after a failure between the two steps is safe. Returns (changed, skipped).

    def freeze_order(self, order_ref: str) -> tuple[int, int]:
        """Freezes every code of an order. Raises ORDER_NOT_FOUND."""
        return self.freeze(self.order_code_ids(order_ref))

    def unfreeze_order(self, order_ref: str) -> tuple[int, int]:
        """Unfreezes every frozen code of an order. Raises ORDER_NOT_FOUND."""
        return self.unfreeze(self.order_code_ids(order_ref))

    def void_order(self, order_ref: str) -> tuple[int, int]:
        """Voids every code of an order. Raises ORDER_NOT_FOUND."""
        return self.void(self.order_code_ids(order_ref))

    def freeze_batch(self, batch: int) -> tuple[int, int]:
        """Freezes every code imported with ``batch`` (held codes are skipped)."""
        return self.freeze(self.batch_code_ids(batch))

    def unfreeze_batch(self, batch: int) -> tuple[int, int]:
        """Unfreezes every frozen code imported with ``batch``."""
        return self.unfreeze(self.batch_code_ids(batch))

    def void_batch(self, batch: int) -> tuple[int, int]:
        """Voids every code imported with ``batch`` (held codes are skipped)."""
        return self.void(self.batch_code_ids(batch))

    def set_pin_lockout(
        self,
        *,
        failures_max: int = PIN_FAILURES_DEFAULT,
        lockout_seconds: float = PIN_LOCKOUT_MS_DEFAULT / 1000,
        lockout_max_seconds: float = PIN_LOCKOUT_MAX_MS_DEFAULT / 1000,
    ) -> None:
        """Lock a code for ``lockout_seconds`` after ``failures_max`` wrong PINs, doubling per
        further lockout up to ``lockout_max_seconds``. Raises INVALID_ARGUMENT."""
        self.set_pin_policy(
            failures_max, _seconds_to_ms(lockout_seconds), _seconds_to_ms(lockout_max_seconds)
        )


def _seconds_to_ms(seconds: float) -> int:
    # Reject NaN/inf and bools early; the core checks the range and raises INVALID_ARGUMENT.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError("ttl_seconds must be a number")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return -1
    return int(seconds * 1000)
