"""The catalog: SKUs (with their prices and sale settings), named pools, stock, and the admin
actions on codes (freeze, unfreeze, void). Batches of codes are ``cardsvc.catalog.batches``.

A SKU lives in both stores: the core's SKU is created first (journaled), then the SQL row with
its audit entry. A crash between leaves a core SKU without a row; the retry finds ``SKU_EXISTS``
in the core and completes the row. The settings the core enforces (uses per code, sale before
redemption, validity after sale) are fixed at creation; the rest is edited here, audited with
its before and after values.

Every mutation waits until the core's journal holds it before it returns (ack after durable).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access import Approvals
from cardsvc.catalog.tables import Batch, Pool, Sku
from cardsvc.checks import (
    MONEY_MINOR_MAX,
    check_currency,
    check_id,
    check_int,
    check_name,
    check_price,
    check_text,
)
from cardsvc.db import Database
from cardsvc.db.base import NAME_LEN_MAX
from cardsvc.engine import Engine
from cardsvc.engine.store import Store
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of

SHARED_POOL = "shared"
"""Pool 0: the stock every agent may draw from unless configured otherwise."""
STAGING_POOL_MIN = 1 << 31
"""Core pools from here up are batches' staging pools (``cardsvc.catalog.batches``): never named,
never counted in stock."""
KINDS = ("card_key", "voucher", "direct_recharge", "link")
UNLOCK_IDS_MAX = 1000
"""Codes one unlock call names by id (one core call, one audit entry)."""
RETAIL_FIELDS = ("category", "description", "usage_instructions", "validity_text",
                 "retail_quantity_min", "retail_quantity_max", "show_exact_stock", "retail_pool",
                 "codes_in_mail")
"""The storefront's fields: what the shop shows and how retail sells the SKU."""
EDITABLE = ("name", "kind", "currency", "face_value_minor", "cost_minor", "retail_price_minor",
            "purchase_limit_per_buyer", "low_stock_threshold", "on_sale", *RETAIL_FIELDS)
"""SKU fields an admin may change after creation (the others are the core's)."""
NOT_NULL = ("name", "kind", "currency", "on_sale", "show_exact_stock", "codes_in_mail")
TEXT_CHARS_MAX = 4000
"""A description or usage instructions: a few paragraphs, shown on the product page and mail."""
RETAIL_QUANTITY_MAX = 100
"""The most codes one retail order may hold (a SKU may set less): a shop sells a few codes per
buyer, and a hold of more would let one checkout lock up a flash sale."""
"""EDITABLE fields that always have a value (the others may be cleared with null)."""
STATES = ("available", "held", "allocated", "redeemed", "frozen", "void", "withdrawn",
          "expired")
"""Stock counts by state (the core's states, plus ``expired``: unsold codes past their
``valid_until``, also counted in ``available``). ``withdrawn``: out of sale because an export
put them in a file (still redeemable)."""
POOL_CURSOR = (int, int)
"""The sort key of the pool list: (``created_at_ms``, ``pool_id``), newest first; ``shared``
(pool 0, which has no row) sorts last as (0, 0)."""


@dataclass(frozen=True)
class PoolInfo:
    """A named stock pool: its name, the core's number for it, the agent whose channel it is
    (None: the platform's), when it was named (0 for ``shared``, which always existed)."""

    pool: str
    pool_id: int
    agent_id: str | None
    created_at_ms: int


SHARED_POOL_INFO = PoolInfo("shared", 0, None, 0)




def check_sku_fields(fields: dict[str, Any]) -> None:
    """Raises INVALID_ARGUMENT (details: ``field``) for an unknown or out-of-range field."""
    for name, value in fields.items():
        if name not in EDITABLE:
            raise invalid(name, f"{name} cannot be changed")
        if value is None and name in NOT_NULL:
            raise invalid(name, f"{name} cannot be null")
        if name == "kind" and value not in KINDS:
            raise invalid(name, f"kind must be one of {', '.join(KINDS)}")
        if name == "currency":
            check_currency(name, value)
        if name.endswith("_minor") and value is not None:
            if not 0 <= value <= MONEY_MINOR_MAX:
                raise invalid(name, f"{name} must be between 0 and {MONEY_MINOR_MAX}")
            check_price(name, value)
        if name in ("purchase_limit_per_buyer", "low_stock_threshold") and value is not None \
                and value < 0:
            raise invalid(name, f"{name} must not be negative")
        if name == "name":
            check_name(value)
        _check_retail_field(name, value)


def _check_retail_field(name: str, value: Any) -> None:
    if value is None:
        return
    if name in ("description", "usage_instructions") and (
            not isinstance(value, str) or len(value) > TEXT_CHARS_MAX):
        raise invalid(name, f"{name} must be text of at most {TEXT_CHARS_MAX} characters")
    if name in ("category", "validity_text"):
        check_name(value, name)
    if name == "retail_pool":
        check_id(name, value)
    if name in ("show_exact_stock", "codes_in_mail") and not isinstance(value, bool):
        raise invalid(name, f"{name} must be true or false")
    if name in ("retail_quantity_min", "retail_quantity_max"):
        check_int(name, value, 1, RETAIL_QUANTITY_MAX)


class Catalog:
    """SKUs, pools, batches and stock over the store (core) and the SQL database. With
    ``approvals``, voiding a whole batch runs only under an approved maker-checker request
    (``batch_void``)."""

    def __init__(self, store: Store, db: Database, approvals: Approvals | None = None) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.approvals = approvals

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
        **fields: Any,
    ) -> dict[str, Any]:
        """Creates a SKU in the core and the catalog; ``fields`` are any of EDITABLE but
        ``name``. Raises SKU_EXISTS, INVALID_ARGUMENT, LIMIT_EXCEEDED (from the core's checks of
        the id and settings)."""
        check_sku_fields({"name": name, **fields})
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
                  validity_days_after_sale=validity_days_after_sale, created_at_ms=now_ms,
                  kind="card_key", currency="CNY", on_sale=True, updated_at_ms=now_ms,
                  show_exact_stock=False, codes_in_mail=False)
        for name_, value in fields.items():
            setattr(row, name_, value)
        with self.db.write() as session:
            if session.get(Sku, sku) is not None:
                raise make_error(ErrorCode.SKU_EXISTS, "the SKU exists", {"sku": sku})
            session.add(row)
            audit.append(session, actor=actor, action="sku.create", object_type="sku",
                         object_id=sku, details=sku_dict(row), at_ms=now_ms)
        return sku_dict(row)

    def update_sku(self, sku: str, changes: dict[str, Any], *, actor: str) -> dict[str, Any]:
        """Changes editable fields (EDITABLE); audited as ``sku.update`` with the fields' old
        and new values. Raises SKU_NOT_FOUND, INVALID_ARGUMENT."""
        check_sku_fields(changes)
        now_ms = self.engine.now_ms()
        with self.db.write() as session:
            row = session.get(Sku, sku)
            if row is None:
                raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": sku})
            before = {name: getattr(row, name) for name in changes}
            changed = {name: value for name, value in changes.items() if before[name] != value}
            if changed:
                for name, value in changed.items():
                    setattr(row, name, value)
                row.updated_at_ms = now_ms
                audit.append(session, actor=actor, action="sku.update", object_type="sku",
                             object_id=sku, details={"before": {n: before[n] for n in changed},
                                                     "after": changed}, at_ms=now_ms)
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

    def list_with_stock(self) -> list[dict[str, Any]]:
        """Every SKU with its stock counts summed over its named pools (``available``,
        ``allocated``, ``redeemed``...) and ``low_stock``: the catalog page in one read of SQL
        and one counter read per SKU."""
        self.store.wait_visible()
        out = []
        for item in self.list_skus():
            totals = dict.fromkeys(STATES, 0)
            for pool_id, counts in self.engine.stock_by_pool(item["sku"]).items():
                if pool_id < STAGING_POOL_MIN:
                    for state, count in counts.items():
                        totals[state] = totals.get(state, 0) + count
            threshold = item["low_stock_threshold"]
            low = threshold is not None and totals["available"] <= threshold
            out.append({**item, "stock": totals, "low_stock": low})
        return out

    # ----- pools -----

    def create_pool(self, name: str, *, actor: str) -> dict[str, Any]:
        """A new named pool of no agent (core pools need no creation: a number is enough).
        Raises POOL_EXISTS. A pool for an agent: ``cardsvc.agents.AgentUpdates.create_pool``."""
        now_ms = self.engine.now_ms()
        with self.db.write() as session:
            return insert_pool(session, name, None, actor=actor, now_ms=now_ms)

    def pool_id(self, name: str | None) -> int:
        """The core number of a pool name (``shared`` or None: 0). Raises POOL_NOT_FOUND."""
        if name is None or name == SHARED_POOL:
            return 0
        with self.db.read() as session:
            pool_id = session.scalar(select(Pool.pool_id).where(Pool.name == name))
        if pool_id is None:
            raise make_error(ErrorCode.POOL_NOT_FOUND, "no such pool", {"pool": name})
        return pool_id

    def list_pools(self, *, agent_id: str | None = None, cursor: str | None = None,
                   limit: int | None = None) -> Page[PoolInfo]:
        """Named pools newest first (``cardsvc.paging``), ``shared`` last; with ``agent_id``,
        only that agent's channel pools. Reads only. Raises INVALID_ARGUMENT (a foreign
        cursor), LIMIT_EXCEEDED (``limit``)."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, POOL_CURSOR)
        query = select(Pool)
        if agent_id is not None:
            query = query.where(Pool.agent_id == agent_id)
        if after is not None:
            query = query.where(or_(Pool.created_at_ms < after[0], and_(
                Pool.created_at_ms == after[0], Pool.pool_id < after[1])))
        query = query.order_by(Pool.created_at_ms.desc(), Pool.pool_id.desc()).limit(size + 1)
        with self.db.read() as session:
            rows = [PoolInfo(row.name, row.pool_id, row.agent_id, row.created_at_ms)
                    for row in session.scalars(query)]
        shared_key = (SHARED_POOL_INFO.created_at_ms, SHARED_POOL_INFO.pool_id)
        if agent_id is None and len(rows) <= size and (after is None or shared_key < after):
            rows.append(SHARED_POOL_INFO)
        return page_of(rows, size, key=lambda info: (info.created_at_ms, info.pool_id))

    def pool_names(self) -> dict[int, str]:
        with self.db.read() as session:
            names = {row.pool_id: row.name for row in session.scalars(select(Pool))}
        names[0] = SHARED_POOL
        return names

    def move_stock(self, sku: str, quantity: int, from_pool: str, to_pool: str, *,
                   actor: str) -> dict[str, Any]:
        """Moves ``quantity`` sellable codes of ``sku`` between named pools (FEFO: the earliest
        expiring first), e.g. into an agent's channel pool and back. Journaled before it
        returns; audited (``stock.move``). Raises POOL_NOT_FOUND, SKU_NOT_FOUND, OUT_OF_STOCK
        (details: ``available``), INVALID_ARGUMENT (the same pool twice)."""
        self.get_sku(sku)
        source, target = self.pool_id(from_pool), self.pool_id(to_pool)
        if source == target:
            raise invalid("from_pool", "from_pool and the target pool are the same")
        moved = self.engine.move_stock(sku, quantity, source, target)
        self.store.wait_last()
        now_ms = self.engine.now_ms()
        with self.db.write() as session:
            audit.append(session, actor=actor, action="stock.move", object_type="sku",
                         object_id=sku, details={"from_pool": from_pool, "to_pool": to_pool,
                                                 "quantity": len(moved)}, at_ms=now_ms)
        return {"sku": sku, "from_pool": from_pool, "to_pool": to_pool, "moved": len(moved)}

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
            if pool_id >= STAGING_POOL_MIN:
                continue
            by_pool[names.get(pool_id, str(pool_id))] = dict(counts)
            for state, count in counts.items():
                total[state] = total.get(state, 0) + count
        for state in STATES:
            total.setdefault(state, 0)
        threshold = self.get_sku(sku)["low_stock_threshold"]
        sellable = total["available"] - total["expired"]
        low = threshold is not None and sellable <= threshold
        return {"sku": sku, **total, "by_pool": by_pool, "low_stock": low}

    # ----- admin actions on codes -----

    def set_state(
        self, action: str, *, code: str | None = None, order_id: str | None = None,
        batch_id: int | None = None, actor: str, reason: str | None = None,
        approval_id: str | None = None, code_id: int | None = None,
    ) -> dict[str, Any]:
        """``freeze``, ``unfreeze`` or ``void`` one code, an order's codes or a batch's codes
        (exactly one target; ``code_id`` names one code by its id, as the console's trace page
        does), with an optional ``reason`` for the audit log. Voiding a batch is
        guarded by maker-checker (``approval_id``: an approved ``batch_void`` of it, checked
        before the core voids anything and consumed with the audit entry). Returns
        ``{"changed", "unchanged"}``; audited (``code.<action>``, which a code's trace shows)
        only when something changed or an approval was consumed. Raises CODE_NOT_FOUND,
        ORDER_NOT_FOUND (no codes under that order), BATCH_NOT_FOUND, INVALID_ARGUMENT,
        LIMIT_EXCEEDED (reason), and the refusals of ``Approvals.authorize``
        (APPROVAL_REQUIRED...)."""
        targets = [name for name, value in
                   (("code", code), ("order_id", order_id), ("batch_id", batch_id),
                    ("code_id", code_id)) if value is not None]
        if len(targets) != 1:
            raise invalid("code", "give exactly one of code, order_id, batch_id")
        if action not in ("freeze", "unfreeze", "void"):
            raise invalid("action", "action must be freeze, unfreeze or void")
        if reason is not None:
            check_text("reason", reason, NAME_LEN_MAX)
        guarded = action == "void" and batch_id is not None and self.approvals is not None
        engine = self.engine
        if code is not None or code_id is not None:
            found = engine.lookup(code) if code is not None else code_id
            assert found is not None
            engine.code_info(found)  # CODE_NOT_FOUND for an id no code has
            ids = [found]
            object_type, object_id = "code", str(found)
        elif order_id is not None:
            ids = engine.order_code_ids(order_id)
            if not ids:
                raise make_error(ErrorCode.ORDER_NOT_FOUND, "no such order",
                                 {"order_id": order_id})
            object_type, object_id = "order", order_id
        else:
            assert batch_id is not None
            with self.db.read() as session:
                if session.get(Batch, batch_id) is None:
                    raise make_error(ErrorCode.BATCH_NOT_FOUND, "no such batch",
                                     {"batch_id": batch_id})
            ids = engine.batch_code_ids(batch_id)
            object_type, object_id = "batch", str(batch_id)
        if guarded:
            assert self.approvals is not None
            self.approvals.check(action="batch_void", object_type="batch", object_id=object_id,
                                 actor=actor, approval_id=approval_id)
        method = {"freeze": engine.freeze, "unfreeze": engine.unfreeze, "void": engine.void}[action]
        changed, unchanged = method(ids)
        self.store.wait_last()
        now_ms = engine.now_ms()
        details: dict[str, Any] = {"changed": changed, "codes": len(ids)}
        if reason is not None:
            details["reason"] = reason
        if changed or guarded:  # a request that changed nothing leaves no record
            with self.db.write() as session:
                if guarded:
                    assert self.approvals is not None
                    self.approvals.authorize(session, action="batch_void", object_type="batch",
                                             object_id=object_id, actor=actor,
                                             approval_id=approval_id)
                audit.append(session, actor=actor, action=f"code.{action}",
                             object_type=object_type, object_id=object_id, details=details,
                             at_ms=now_ms)
        return {"changed": changed, "unchanged": unchanged}

    # ----- PIN lockouts -----

    def locked_codes(self, *, sku: str | None = None, limit: int | None = None,
                     cursor: str | None = None) -> Page[dict[str, Any]]:
        """Codes whose PIN lockout runs now (``Engine.locked_codes``), the latest-ending first,
        a page at a time: ``code_id``, ``sku``, ``locked_until_ms``, ``lockouts`` (how many in a
        row), ``pin_failures``. Never a code's text. Raises SKU_NOT_FOUND, INVALID_ARGUMENT,
        LIMIT_EXCEEDED."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, (int, int))
        if sku is not None:
            self.get_sku(sku)
        locked = sorted(self.engine.locked_codes(sku), key=lambda item: (item[1], item[0]),
                        reverse=True)
        if after is not None:
            locked = [item for item in locked if (item[1], item[0]) < (after[0], after[1])]
        page = page_of(locked[:size + 1], size, key=lambda item: (item[1], item[0]))
        items = []
        for code_id, until_ms, lockouts in page.items:
            info = self.engine.code_info(code_id)
            items.append({"code_id": code_id, "sku": info.sku, "locked_until_ms": until_ms,
                          "lockouts": lockouts, "pin_failures": info.pin_failures})
        return Page(items, page.next)

    def unlock(self, *, code: str | None = None, code_ids: list[int] | None = None,
               actor: str) -> dict[str, Any]:
        """Ends the PIN lockout of one code (by its text) or of codes by id (at most
        UNLOCK_IDS_MAX) and clears their failure counts; audited ``code.unlock``. Returns
        ``{"unlocked", "unchanged"}``. Raises CODE_NOT_FOUND, INVALID_CODE, INVALID_ARGUMENT,
        LIMIT_EXCEEDED."""
        if (code is None) == (code_ids is None):
            raise invalid("code", "give exactly one of code, code_ids")
        ids = [self.engine.lookup(code)] if code is not None else list(code_ids or [])
        if not ids:
            raise invalid("code_ids", "give at least one code id")
        if len(ids) > UNLOCK_IDS_MAX:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, f"at most {UNLOCK_IDS_MAX} codes a call",
                             {"field": "code_ids", "max": UNLOCK_IDS_MAX})
        unlocked, unchanged = self.engine.unlock(ids)
        self.store.wait_last()
        with self.db.write() as session:
            audit.append(session, actor=actor, action="code.unlock", object_type="code",
                         object_id=str(ids[0]) if len(ids) == 1 else "many",
                         details={"code_ids": ids[:100], "unlocked": unlocked,
                                  "codes": len(ids)}, at_ms=self.engine.now_ms())
        return {"unlocked": unlocked, "unchanged": unchanged}


def check_pool_free(session: Session, name: str) -> None:
    """Raises POOL_EXISTS when ``name`` is ``shared`` or names a pool already."""
    if name == SHARED_POOL or session.scalar(
        select(Pool.pool_id).where(Pool.name == name)
    ) is not None:
        raise make_error(ErrorCode.POOL_EXISTS, "the pool exists", {"pool": name})


def insert_pool(session: Session, name: str, agent_id: str | None, *, actor: str,
                now_ms: int) -> dict[str, Any]:
    """Adds the named pool ``name`` recording ``agent_id`` (which the caller has checked
    exists), with its audit entry, in the caller's transaction. Raises POOL_EXISTS."""
    check_pool_free(session, name)
    pool_id = (session.scalar(select(func.max(Pool.pool_id))) or 0) + 1
    session.add(Pool(pool_id=pool_id, name=name, agent_id=agent_id, created_at_ms=now_ms))
    audit.append(session, actor=actor, action="pool.create", object_type="pool",
                 object_id=name, details={"pool_id": pool_id, "agent_id": agent_id},
                 at_ms=now_ms)
    return {"pool": name, "pool_id": pool_id, "agent_id": agent_id}


def sku_dict(row: Sku) -> dict[str, Any]:
    return {
        "sku": row.sku,
        "name": row.name,
        "kind": row.kind,
        "uses_per_code": row.uses_per_code,
        "redeem_requires_sale": row.redeem_requires_sale,
        "validity_days_after_sale": row.validity_days_after_sale,
        "currency": row.currency,
        "face_value_minor": row.face_value_minor,
        "cost_minor": row.cost_minor,
        "retail_price_minor": row.retail_price_minor,
        "purchase_limit_per_buyer": row.purchase_limit_per_buyer,
        "low_stock_threshold": row.low_stock_threshold,
        "on_sale": row.on_sale,
        **{name: getattr(row, name) for name in RETAIL_FIELDS},
        "created_at_ms": row.created_at_ms,
        "updated_at_ms": row.updated_at_ms,
    }


_SKUS_FOUND = select(Sku.sku).where(Sku.sku.in_(bindparam("b_skus", expanding=True)))
"""Built once: the commit groups of the order and hold paths ask it per group."""


def skus_found(session: Session, skus: Iterable[str]) -> set[str]:
    """Which of ``skus`` exist, in one query. Reads only."""
    wanted = sorted(set(skus))
    if not wanted:
        return set()
    return set(session.connection().execute(_SKUS_FOUND, {"b_skus": wanted}).scalars())
