"""Finding codes for support and operators, never through plaintext in SQL:

* by the **full code**: the core's keyed-hash lookup (``Engine.lookup``), one code;
* by the **last 4 characters and the SKU**: the keyed suffix digest stored with each payload
  (``cardsvc.catalog.code_index``, whose leakage is discussed there), an index lookup;
* by **order**: the core's code list of that order; by **batch**: a keyset page of the
  payloads' (batch, code id) index.

Results are pages of :class:`CodeRow` (cursor pagination over code ids), each with its masked
form (opened and masked by ``delivery.Revealer.masked``: no plaintext leaves), its state and
where it belongs, and a link to its trace (``reports.trace``), which is audited.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from cardsvc.access import Principal
from cardsvc.catalog import Batch, CodePayload, Sku, suffix_digest, typed_suffix
from cardsvc.db import Database
from cardsvc.delivery import Revealer
from cardsvc.engine import Store
from cardsvc.errors import ErrorCode, make_error
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of
from cardsvc.reports.trace import trace_code_id


@dataclass(frozen=True)
class CodeRow:
    """One code as a list shows it (never its text: ``masked`` only)."""

    code_id: int
    masked: str
    sku: str
    state: str
    uses_left: int
    batch_id: int
    order_id: str | None
    valid_until_s: int | None


class CodeSearch:
    """Searches and traces over the core, the payloads' suffix index and the revealer."""

    def __init__(self, store: Store, db: Database, revealer: Revealer,
                 suffix_key: bytes) -> None:
        self.store = store
        self.db = db
        self.revealer = revealer
        self.suffix_key = suffix_key

    def _rows(self, ids: list[int]) -> list[CodeRow]:
        engine = self.store.engine
        masked = self.revealer.masked(ids)
        rows = []
        for code_id in ids:
            info = engine.code_info(code_id)
            rows.append(CodeRow(code_id, masked.get(code_id, "****"), info.sku, info.state,
                                info.uses_left, info.batch, info.order_ref, info.valid_until))
        return rows

    def by_code(self, principal: Principal, code: str) -> int:
        """The id of ``code`` (the core's keyed-hash lookup). Raises FORBIDDEN without
        ``trace``, CODE_NOT_FOUND, INVALID_CODE."""
        principal.require("trace")
        return self.store.engine.lookup(code)

    def by_suffix(self, principal: Principal, sku: str, last4: str, *,
                  cursor: str | None = None, limit: int | None = None) -> Page[CodeRow]:
        """Codes of ``sku`` ending in ``last4`` (any case, separators ignored), by code id.
        Raises FORBIDDEN, INVALID_ARGUMENT (``last4``, cursor), SKU_NOT_FOUND."""
        principal.require("trace")
        size = check_page_size(limit)
        suffix = typed_suffix(last4)
        after = decode_cursor(cursor, (int,))
        digest = suffix_digest(self.suffix_key, sku, suffix)
        with self.db.read() as session:
            if session.get(Sku, sku) is None:
                raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": sku})
            statement = select(CodePayload.code_id).where(CodePayload.suffix_digest == digest)
            if after is not None:
                statement = statement.where(CodePayload.code_id > after[0])
            ids = list(session.scalars(statement.order_by(CodePayload.code_id)
                                       .limit(size + 1)))
        page = page_of(ids, size, key=lambda code_id: (code_id,))
        return Page(self._rows(page.items), page.next)

    def by_order(self, principal: Principal, order_id: str, *, cursor: str | None = None,
                 limit: int | None = None) -> Page[CodeRow]:
        """An order's codes. Raises FORBIDDEN, ORDER_NOT_FOUND (no codes under that order)."""
        principal.require("trace")
        ids = sorted(self.store.engine.order_code_ids(order_id))
        if not ids:
            raise make_error(ErrorCode.ORDER_NOT_FOUND, "no codes under that order",
                             {"order_id": order_id})
        return self._slice(ids, cursor, limit)

    def by_batch(self, principal: Principal, batch_id: int, *, cursor: str | None = None,
                 limit: int | None = None) -> Page[CodeRow]:
        """A batch's codes by code id: a keyset page of ``ix_code_payloads_batch_code`` (every
        code of a batch has its sealed payload), so a page costs the same for a batch of ten
        codes or ten million. Raises FORBIDDEN, INVALID_ARGUMENT (cursor), BATCH_NOT_FOUND."""
        principal.require("trace")
        size = check_page_size(limit)
        after = decode_cursor(cursor, (int,))
        with self.db.read() as session:
            if session.get(Batch, batch_id) is None:
                raise make_error(ErrorCode.BATCH_NOT_FOUND, "no such batch",
                                 {"batch_id": batch_id})
            statement = select(CodePayload.code_id).where(CodePayload.batch_id == batch_id)
            if after is not None:
                statement = statement.where(CodePayload.code_id > after[0])
            ids = list(session.scalars(statement.order_by(CodePayload.code_id)
                                       .limit(size + 1)))
        page = page_of(ids, size, key=lambda code_id: (code_id,))
        return Page(self._rows(page.items), page.next)

    def _slice(self, ids: list[int], cursor: str | None, limit: int | None) -> Page[CodeRow]:
        size = check_page_size(limit)
        after = decode_cursor(cursor, (int,))
        # Ids are sorted: the first one after the cursor by bisection.
        start = 0 if after is None else bisect.bisect_right(ids, int(after[0]))
        page = page_of(ids[start:start + size + 1], size, key=lambda code_id: (code_id,))
        return Page(self._rows(page.items), page.next)

    def trace(self, principal: Principal, code_id: int) -> dict[str, Any]:
        """The whole story of one code (``reports.trace``), audited as ``code.trace``. Raises
        FORBIDDEN without ``trace``, CODE_NOT_FOUND."""
        principal.require("trace")
        self.store.engine.code_info(code_id)
        masked = self.revealer.masked([code_id]).get(code_id, "****")
        return trace_code_id(self.store, self.db, code_id, masked, actor=principal.actor)
