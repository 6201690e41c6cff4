"""The catalog: SKUs, named pools, batches of codes (import and generation), stock, and the
admin actions on codes (freeze, unfreeze, void).

Each operation touches both stores, so each is written to be safe at every crash point:

* **SKU**: the core's SKU is created first (journaled), then the SQL row with its audit entry.
  A crash between leaves a core SKU without a row; the retry finds ``SKU_EXISTS`` in the core
  and completes the row.
* **Batch** (the import saga): (1) SQL: the batch row, ``importing``, with its wrapped data key;
  (2) core: the codes imported into the batch's *staging pool*, from which nothing is sold;
  (3) SQL: every code's sealed payload and the batch ``ready``, in one transaction; (4) core:
  the codes moved from the staging pool into the target pool. Codes are therefore never sellable
  before their payloads are stored (an order could not deliver them). Recovery
  (:meth:`Catalog.recover`) voids the codes of a batch still ``importing`` (their payloads never
  committed) and marks it ``failed``, and finishes step 4 for a ``ready`` batch whose staging
  pool still holds codes.

Every mutation waits until the core's journal holds it before it returns (ack after durable).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select

from cardsvc import audit, crypto
from cardsvc.db import Database
from cardsvc.db.models import Batch, CodePayload, Pool, Sku
from cardsvc.engine import Engine
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.masking import mask_code
from cardsvc.store import Store

SHARED_POOL = "shared"
"""Pool 0: the stock every agent may draw from unless configured otherwise."""
STAGING_POOL_BASE = 1 << 31
"""Batch ``b`` imports into core pool ``STAGING_POOL_BASE + b``, which no order draws from."""
BATCH_CODES_MAX = 100_000
"""Codes in one import request (the API's body limit allows about 10,000); the CLI streams
bigger files in batches of this size."""
GENERATE_COUNT_MAX = 1_000_000
GENERATE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
"""Generated codes avoid look-alikes (0/O, 1/I/L)."""
GENERATE_LENGTH_MIN = 8
GENERATE_LENGTH_MAX = 64
GENERATE_RETRIES_MAX = 5
STATES = ("available", "held", "allocated", "redeemed", "frozen", "void", "expired")


def _invalid(field: str, message: str) -> CardsvcError:
    return make_error(ErrorCode.INVALID_ARGUMENT, message, {"field": field})


@dataclass(frozen=True)
class CodeInput:
    """One code to import, as given (its text is kept exactly, for delivery)."""

    code: str
    pin: str | None = None


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    imported: int
    duplicates: list[dict[str, Any]]  # [{"index", "code" (masked)}]
    status: str


class Catalog:
    """SKUs, pools, batches and stock over the store (core) and the SQL database."""

    def __init__(self, store: Store, db: Database, master: crypto.MasterKey) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.master = master
        self.data_keys = crypto.DataKeyCache()

    # ----- SKUs -----

    def create_sku(
        self,
        sku: str,
        name: str,
        *,
        uses_per_code: int = 1,
        redeem_requires_sale: bool = True,
        validity_days_after_sale: int | None = None,
        actor: str,
    ) -> dict[str, Any]:
        """Creates a SKU in the core and the catalog. Raises SKU_EXISTS, INVALID_ARGUMENT,
        LIMIT_EXCEEDED (from the core's checks of the id and settings)."""
        with self.db.read() as session:
            if session.get(Sku, sku) is not None:
                raise make_error(ErrorCode.SKU_EXISTS, "the SKU exists", {"sku": sku})
        try:
            self.engine.create_sku(sku, uses_per_code, redeem_requires_sale,
                                   validity_days_after_sale)
            self.store.wait_last()
        except CardsvcError as error:
            # Created in the core by an attempt that crashed before its row: complete it.
            if error.code != ErrorCode.SKU_EXISTS:
                raise
            self.store.wait_visible()
        now_ms = self.engine.now_ms()
        row = Sku(sku=sku, name=name, uses_per_code=uses_per_code,
                  redeem_requires_sale=redeem_requires_sale,
                  validity_days_after_sale=validity_days_after_sale, created_at_ms=now_ms)
        with self.db.write() as session:
            if session.get(Sku, sku) is not None:
                raise make_error(ErrorCode.SKU_EXISTS, "the SKU exists", {"sku": sku})
            session.add(row)
            audit.append(session, actor=actor, action="sku.create", object_type="sku",
                         object_id=sku, details=sku_dict(row), at_ms=now_ms)
        return sku_dict(row)

    def get_sku(self, sku: str) -> dict[str, Any]:
        """Raises SKU_NOT_FOUND."""
        with self.db.read() as session:
            row = session.get(Sku, sku)
            if row is None:
                raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": sku})
            return sku_dict(row)

    def list_skus(self) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return [sku_dict(row) for row in session.scalars(select(Sku).order_by(Sku.sku))]

    # ----- pools -----

    def create_pool(self, name: str, *, agent_id: str | None = None, actor: str) -> dict[str, Any]:
        """A new named pool (core pools need no creation: a number is enough). Raises
        POOL_EXISTS, AGENT_NOT_FOUND."""
        from cardsvc.agents import require_agent

        now_ms = self.engine.now_ms()
        with self.db.write() as session:
            if name == SHARED_POOL or session.scalar(
                select(Pool.pool_id).where(Pool.name == name)
            ) is not None:
                raise make_error(ErrorCode.POOL_EXISTS, "the pool exists", {"pool": name})
            if agent_id is not None:
                require_agent(session, agent_id)
            pool_id = (session.scalar(select(func.max(Pool.pool_id))) or 0) + 1
            session.add(Pool(pool_id=pool_id, name=name, agent_id=agent_id, created_at_ms=now_ms))
            audit.append(session, actor=actor, action="pool.create", object_type="pool",
                         object_id=name, details={"pool_id": pool_id, "agent_id": agent_id},
                         at_ms=now_ms)
        return {"pool": name, "pool_id": pool_id, "agent_id": agent_id}

    def pool_id(self, name: str | None) -> int:
        """The core number of a pool name (``shared`` or None: 0). Raises POOL_NOT_FOUND."""
        if name is None or name == SHARED_POOL:
            return 0
        with self.db.read() as session:
            pool_id = session.scalar(select(Pool.pool_id).where(Pool.name == name))
        if pool_id is None:
            raise make_error(ErrorCode.POOL_NOT_FOUND, "no such pool", {"pool": name})
        return pool_id

    def pool_names(self) -> dict[int, str]:
        with self.db.read() as session:
            names = {row.pool_id: row.name for row in session.scalars(select(Pool))}
        names[0] = SHARED_POOL
        return names

    # ----- stock -----

    def stock(self, sku: str) -> dict[str, Any]:
        """Counts by state for the SKU, in total and per named pool; codes still staging in an
        unfinished import are not counted. Raises SKU_NOT_FOUND."""
        self.get_sku(sku)
        self.store.wait_visible()
        names = self.pool_names()
        by_pool: dict[str, dict[str, int]] = {}
        total: dict[str, int] = {}
        for pool_id, counts in sorted(self.engine.stock_by_pool(sku).items()):
            if pool_id >= STAGING_POOL_BASE:
                continue
            by_pool[names.get(pool_id, str(pool_id))] = dict(counts)
            for state, count in counts.items():
                total[state] = total.get(state, 0) + count
        for state in STATES:
            total.setdefault(state, 0)
        return {"sku": sku, **total, "by_pool": by_pool}

    # ----- batches -----

    def import_batch(
        self,
        sku: str,
        codes: Sequence[CodeInput],
        *,
        pool: str | None = None,
        valid_from: int | None = None,
        valid_until: int | None = None,
        source: str = "import",
        actor: str,
    ) -> BatchResult:
        """Imports codes into ``pool`` as one batch (the saga in the module docstring).

        ``valid_from``/``valid_until`` are Unix seconds. Duplicates (of earlier batches or
        within this one) are skipped and listed by input index, masked. Raises SKU_NOT_FOUND,
        POOL_NOT_FOUND, INVALID_ARGUMENT (``valid_until`` in the past or before ``valid_from``),
        LIMIT_EXCEEDED (more than BATCH_CODES_MAX codes), INVALID_CODE / INVALID_PIN (details:
        ``index``; nothing is imported).
        """
        self.get_sku(sku)
        pool_id = self.pool_id(pool)
        if len(codes) > BATCH_CODES_MAX:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "too many codes in one batch",
                             {"field": "codes", "max": BATCH_CODES_MAX, "got": len(codes)})
        now_s = self.engine.now_ms() // 1000
        if valid_until is not None and valid_until < now_s:
            raise _invalid("valid_until", "valid_until is in the past")
        batch_id, data_key = self._begin_batch(sku, pool_id, valid_from, valid_until, source,
                                               len(codes), actor)
        staging = STAGING_POOL_BASE + batch_id
        try:
            ids, duplicate_indices = self.engine.import_codes(
                sku, [item.code for item in codes], staging, [item.pin for item in codes],
                valid_from, valid_until, batch_id,
            )
        except CardsvcError:
            self._fail_batch(batch_id, void=False)
            raise
        duplicate_set = set(duplicate_indices)
        fresh = [item for index, item in enumerate(codes) if index not in duplicate_set]
        self.store.wait_last()
        try:
            self._store_payloads(batch_id, data_key, ids, fresh, len(duplicate_indices), actor)
        except Exception:
            # The codes never left the staging pool: void them so nothing can sell them later.
            self._fail_batch(batch_id, void=True)
            raise
        if ids:
            self.engine.move_stock(sku, len(ids), staging, pool_id)
            self.store.wait_last()
        duplicates = [{"index": i, "code": mask_code(codes[i].code)} for i in duplicate_indices]
        return BatchResult(batch_id, len(ids), duplicates, "ready")

    def generate_batch(
        self,
        sku: str,
        count: int,
        *,
        length: int = 16,
        prefix: str = "",
        pool: str | None = None,
        valid_from: int | None = None,
        valid_until: int | None = None,
        actor: str,
    ) -> BatchResult:
        """Generates ``count`` new random codes (``prefix`` + ``length`` characters of
        GENERATE_ALPHABET) as one batch, retrying the rare collisions. Raises as
        :meth:`import_batch`, and INVALID_ARGUMENT for a bad length or prefix."""
        if not 1 <= count <= min(GENERATE_COUNT_MAX, BATCH_CODES_MAX):
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "count out of range",
                             {"field": "count", "max": BATCH_CODES_MAX, "got": count})
        if not GENERATE_LENGTH_MIN <= length <= GENERATE_LENGTH_MAX:
            raise _invalid("length", f"length must be {GENERATE_LENGTH_MIN}..{GENERATE_LENGTH_MAX}")
        if len(prefix) > 16 or not ((prefix.isascii() and prefix.replace("-", "").isalnum())
                                    or prefix == ""):
            raise _invalid("prefix", "prefix must be up to 16 letters, digits or dashes")
        texts = self._fresh_codes(prefix, length, count)
        return self.import_batch(sku, [CodeInput(text) for text in texts], pool=pool,
                                 valid_from=valid_from, valid_until=valid_until,
                                 source="generate", actor=actor)

    def _fresh_codes(self, prefix: str, length: int, count: int) -> list[str]:
        """``count`` distinct random codes none of which the core knows. A collision needs two
        equal draws from 32^length values (1.2e24 at 16), so the loop runs once in practice."""
        texts: dict[str, None] = {}
        for _ in range(GENERATE_RETRIES_MAX):
            candidates = [_random_code(prefix, length) for _ in range(count - len(texts))]
            found = self.engine.verify_many(candidates).error_codes()
            for text, error in zip(candidates, found, strict=True):
                if error == ErrorCode.CODE_NOT_FOUND:
                    texts[text] = None
            if len(texts) >= count:
                return list(texts)[:count]
        raise make_error(ErrorCode.INTERNAL_ERROR, "could not generate distinct codes",
                         {"count": count})

    def get_batch(self, batch_id: int) -> dict[str, Any]:
        """Raises BATCH_NOT_FOUND."""
        with self.db.read() as session:
            row = session.get(Batch, batch_id)
            if row is None:
                raise make_error(ErrorCode.BATCH_NOT_FOUND, "no such batch",
                                 {"batch_id": batch_id})
            return batch_dict(row, self.pool_names())

    def _begin_batch(
        self, sku: str, pool_id: int, valid_from: int | None, valid_until: int | None,
        source: str, submitted: int, actor: str,
    ) -> tuple[int, bytes]:
        data_key = crypto.new_data_key()
        row = Batch(sku=sku, pool_id=pool_id, status="importing", source=source,
                    data_key_wrapped=crypto.wrap_data_key(self.master, data_key),
                    master_key_id=self.master.key_id,
                    valid_from_ms=None if valid_from is None else valid_from * 1000,
                    valid_until_ms=None if valid_until is None else valid_until * 1000,
                    submitted=submitted, imported=0, duplicates=0,
                    created_at_ms=self.engine.now_ms(), created_by=actor)
        with self.db.write() as session:
            session.add(row)
            session.flush()
            batch_id = row.batch_id
        if batch_id >= STAGING_POOL_BASE:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "batch ids exhausted",
                             {"field": "batch_id", "max": STAGING_POOL_BASE - 1, "got": batch_id})
        return batch_id, data_key

    def _store_payloads(
        self, batch_id: int, data_key: bytes, ids: Sequence[int], fresh: Sequence[CodeInput],
        duplicates: int, actor: str,
    ) -> None:
        rows = [
            {"code_id": code_id, "batch_id": batch_id,
             "sealed": crypto.seal_code(data_key, code_id, item.code, item.pin)}
            for code_id, item in zip(ids, fresh, strict=True)
        ]
        now_ms = self.engine.now_ms()
        with self.db.write() as session:
            if rows:
                session.execute(insert(CodePayload), rows)
            batch = session.get(Batch, batch_id)
            if batch is None:  # the row was written by _begin_batch
                raise AssertionError(f"batch {batch_id} vanished")
            batch.status = "ready"
            batch.imported = len(ids)
            batch.duplicates = duplicates
            audit.append(session, actor=actor, action="batch.import", object_type="batch",
                         object_id=str(batch_id),
                         details={"sku": batch.sku, "pool_id": batch.pool_id,
                                  "imported": len(ids), "duplicates": duplicates,
                                  "source": batch.source},
                         at_ms=now_ms)

    def _fail_batch(self, batch_id: int, *, void: bool) -> None:
        if void:
            self.engine.void_batch(batch_id)
            self.store.wait_last()
        with self.db.write() as session:
            batch = session.get(Batch, batch_id)
            if batch is not None:
                batch.status = "failed"

    def recover(self) -> dict[str, int]:
        """Finishes or undoes every batch a crash interrupted (see the module docstring).
        Returns how many batches were failed and how many finished."""
        failed = finished = 0
        with self.db.read() as session:
            pending = [(row.batch_id, row.sku, row.pool_id, row.status)
                       for row in session.scalars(
                           select(Batch).where(Batch.status.in_(("importing", "ready"))))]
        for batch_id, sku, pool_id, status in pending:
            staging = STAGING_POOL_BASE + batch_id
            if status == "importing":
                self._fail_batch(batch_id, void=True)
                failed += 1
                continue
            left = self.engine.stock(sku, staging).get("available", 0)
            if left:
                self.engine.move_stock(sku, left, staging, pool_id)
                self.store.wait_last()
                finished += 1
        return {"failed": failed, "finished": finished}

    # ----- delivery -----

    def reveal(self, code_ids: Sequence[int]) -> list[tuple[str, str | None]]:
        """The plaintext ``(code, pin)`` of each code id, in order. Only order delivery and
        export call this (DESIGN.md invariant 5). Raises PAYLOAD_CORRUPT when a payload fails
        authentication, INTERNAL_ERROR when one is missing."""
        with self.db.read() as session:
            rows = {
                row.code_id: (row.batch_id, row.sealed)
                for row in session.execute(
                    select(CodePayload.code_id, CodePayload.batch_id, CodePayload.sealed)
                    .where(CodePayload.code_id.in_(list(code_ids)))
                )
            }
            wrapped = {
                row.batch_id: (row.master_key_id, row.data_key_wrapped)
                for row in session.execute(
                    select(Batch.batch_id, Batch.master_key_id, Batch.data_key_wrapped)
                    .where(Batch.batch_id.in_({batch for batch, _ in rows.values()}))
                )
            }
        out: list[tuple[str, str | None]] = []
        for code_id in code_ids:
            found = rows.get(code_id)
            if found is None:
                raise make_error(ErrorCode.INTERNAL_ERROR, "a code's payload is missing",
                                 {"code_id": code_id})
            batch_id, sealed = found
            master_key_id, data_key_wrapped = wrapped[batch_id]
            data_key = self.data_keys.get_or_unwrap(batch_id, self.master, master_key_id,
                                                    data_key_wrapped)
            out.append(crypto.open_code(data_key, code_id, sealed))
        return out

    # ----- admin actions on codes -----

    def set_state(
        self, action: str, *, code: str | None = None, order_id: str | None = None,
        batch_id: int | None = None, actor: str,
    ) -> dict[str, Any]:
        """``freeze``, ``unfreeze`` or ``void`` one code, an order's codes or a batch's codes
        (exactly one target). Returns ``{"changed", "unchanged"}``. Raises CODE_NOT_FOUND,
        ORDER_NOT_FOUND (no codes under that order), BATCH_NOT_FOUND, INVALID_ARGUMENT."""
        targets = [name for name, value in
                   (("code", code), ("order_id", order_id), ("batch_id", batch_id))
                   if value is not None]
        if len(targets) != 1:
            raise _invalid("code", "give exactly one of code, order_id, batch_id")
        engine = self.engine
        if code is not None:
            code_id = engine.lookup(code)
            ids = [code_id]
            object_type, object_id = "code", str(code_id)
        elif order_id is not None:
            ids = engine.order_code_ids(order_id)
            if not ids:
                raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order",
                                 {"order_id": order_id})
            object_type, object_id = "order", order_id
        else:
            assert batch_id is not None
            self.get_batch(batch_id)
            ids = engine.batch_code_ids(batch_id)
            object_type, object_id = "batch", str(batch_id)
        method = {"freeze": engine.freeze, "unfreeze": engine.unfreeze, "void": engine.void}[action]
        changed, unchanged = method(ids)
        self.store.wait_last()
        now_ms = engine.now_ms()
        with self.db.write() as session:
            audit.append(session, actor=actor, action=f"code.{action}", object_type=object_type,
                         object_id=object_id, details={"changed": changed, "codes": len(ids)},
                         at_ms=now_ms)
        return {"changed": changed, "unchanged": unchanged}


def _random_code(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(GENERATE_ALPHABET) for _ in range(length))


def sku_dict(row: Sku) -> dict[str, Any]:
    return {
        "sku": row.sku,
        "name": row.name,
        "uses_per_code": row.uses_per_code,
        "redeem_requires_sale": row.redeem_requires_sale,
        "validity_days_after_sale": row.validity_days_after_sale,
        "created_at_ms": row.created_at_ms,
    }


def batch_dict(row: Batch, pool_names: dict[int, str]) -> dict[str, Any]:
    return {
        "batch_id": row.batch_id,
        "sku": row.sku,
        "pool": pool_names.get(row.pool_id, str(row.pool_id)),
        "status": row.status,
        "source": row.source,
        "submitted": row.submitted,
        "imported": row.imported,
        "duplicates": row.duplicates,
        "valid_from_ms": row.valid_from_ms,
        "valid_until_ms": row.valid_until_ms,
        "created_at_ms": row.created_at_ms,
        "created_by": row.created_by,
    }
