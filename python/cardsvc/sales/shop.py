"""The shop's catalog: the SKUs on sale to retail buyers, with their retail price, limits and
stock level, read from SQL at most every ``CACHE_TTL_S`` and from the core's counts per request.

A SKU is in the shop when it is on sale and has a retail price. Stock is shown as ``in_stock``,
``low`` (at or below the SKU's low-stock threshold, default LOW_STOCK_DEFAULT) or ``sold_out``;
the exact count only for a SKU whose ``show_exact_stock`` flag is set. Retail draws from the
SKU's ``retail_pool`` (the shared pool by default), the same stock agents draw from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from cardsvc.catalog import RETAIL_QUANTITY_MAX, SHARED_POOL, Pool, Sku
from cardsvc.db import Database
from cardsvc.engine import Engine
from cardsvc.errors import ErrorCode, make_error

CACHE_TTL_S = 2.0
"""How stale an admin's edit may look in the shop (the price cache's bound too)."""
LOW_STOCK_DEFAULT = 10
QUANTITY_MAX_DEFAULT = 5
"""Codes per retail order when the SKU sets no limit."""
SHOP_SKUS_MAX = 500


@dataclass(frozen=True, slots=True)
class ShopSku:
    """A SKU as the shop sells it (money in minor units)."""

    sku: str
    name: str
    kind: str
    category: str | None
    description: str | None
    usage_instructions: str | None
    validity_text: str | None
    price_minor: int
    currency: str
    unit_cost_minor: int | None
    quantity_min: int
    quantity_max: int
    pool_id: int
    show_exact_stock: bool
    low_stock_threshold: int
    purchase_limit_per_buyer: int | None
    codes_in_mail: bool


@dataclass(frozen=True, slots=True)
class StockLevel:
    """What the shop says about a SKU's stock: ``level`` and, only when the SKU allows it,
    ``count``."""

    level: str
    count: int | None


class ShopCatalog:
    """The shop's SKUs, cached."""

    def __init__(self, db: Database, engine: Engine, *,
                 clock_s: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.engine = engine
        self._clock_s = clock_s
        self._lock = threading.Lock()
        self._skus: dict[str, ShopSku] = {}
        self._loaded_at: float | None = None

    def skus(self) -> list[ShopSku]:
        """The SKUs on sale, by category then name."""
        return sorted(self._cache().values(),
                      key=lambda s: ((s.category or "").casefold(), s.name.casefold(), s.sku))

    def get(self, sku: str) -> ShopSku:
        """Raises SKU_NOT_FOUND when the SKU is not in the shop (unknown, off sale, no retail
        price)."""
        found = self._cache().get(sku)
        if found is None:
            raise make_error(ErrorCode.SKU_NOT_FOUND, "no such product in the shop",
                             {"sku": sku[:64]})
        return found

    def stock(self, item: ShopSku) -> StockLevel:
        """The stock level from the core's counts (memory speed)."""
        counts = self.engine.stock(item.sku, item.pool_id)
        sellable = max(0, counts.get("available", 0) - counts.get("expired", 0))
        level = ("sold_out" if sellable == 0 else
                 "low" if sellable <= item.low_stock_threshold else "in_stock")
        return StockLevel(level, sellable if item.show_exact_stock else None)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def _cache(self) -> dict[str, ShopSku]:
        now = self._clock_s()
        loaded = self._loaded_at
        if loaded is not None and now - loaded < CACHE_TTL_S:
            return self._skus
        with self._lock:
            if self._loaded_at is not None and now - self._loaded_at < CACHE_TTL_S:
                return self._skus
            self._skus = self._load()
            self._loaded_at = now
            return self._skus

    def _load(self) -> dict[str, ShopSku]:
        with self.db.read() as session:
            pools = {row.name: row.pool_id for row in session.scalars(select(Pool))}
            rows = list(session.scalars(select(Sku).where(
                Sku.on_sale.is_(True), Sku.retail_price_minor.is_not(None))
                .order_by(Sku.sku).limit(SHOP_SKUS_MAX)))
        out: dict[str, ShopSku] = {}
        for row in rows:
            pool_name = row.retail_pool or SHARED_POOL
            pool_id = 0 if pool_name == SHARED_POOL else pools.get(pool_name)
            if pool_id is None or row.retail_price_minor is None or row.retail_price_minor <= 0:
                continue  # a pool that does not exist, or a free product: not sold to retail
            low = row.retail_quantity_min or 1
            high = min(row.retail_quantity_max or max(low, QUANTITY_MAX_DEFAULT),
                       RETAIL_QUANTITY_MAX)
            out[row.sku] = ShopSku(
                sku=row.sku, name=row.name, kind=row.kind, category=row.category,
                description=row.description, usage_instructions=row.usage_instructions,
                validity_text=row.validity_text, price_minor=row.retail_price_minor,
                currency=row.currency, unit_cost_minor=row.cost_minor, quantity_min=low,
                quantity_max=max(low, high), pool_id=pool_id,
                show_exact_stock=bool(row.show_exact_stock),
                low_stock_threshold=(row.low_stock_threshold if row.low_stock_threshold
                                     is not None else LOW_STOCK_DEFAULT),
                purchase_limit_per_buyer=row.purchase_limit_per_buyer,
                codes_in_mail=bool(row.codes_in_mail))
        return out
