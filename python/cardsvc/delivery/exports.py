"""Export of plaintext codes: the one way besides order delivery that codes leave in the clear.

An export writes CSV with the columns ``export_id,code_id,sku,batch_id,code,pin``. Every row
carries the export's id as a watermark, and the first line names it too, so a leaked file names
its export, and the export log (``exports``) and the audit log name who made it, when, what and
how many. Every text cell goes through ``cardsvc.csv_safe`` (a code beginning with ``=`` never
becomes a live formula), and the second line names that rule so a reader can undo it.

**Exported codes leave sale.** A file that holds unsold codes hands them to whoever holds the
file, so a batch export first *withdraws* its available codes through the engine
(``Engine.withdraw``: ``available`` → ``withdrawn``, never sold again, still redeemable), waits
until that is durable, and records what it withdrew and what it refused (codes held by an open
hold, which a buyer may be paying for right now; codes sold, redeemed, frozen or void, which are
not in sale and belong to their orders) — all before the first code is written. The file then
holds exactly the withdrawn codes. :meth:`Exports.restore` puts a never-delivered export's
codes back on sale (``Engine.restore_to_sale``: never a code that was redeemed), audited.
An order's export writes the order's delivered codes, which are sold already (no withdrawal).

Sequence (crash-safe: over-reported, never unreported): the ``exports`` row and the audit entry
``code.export`` (intent), then the withdrawal and its journal wait, then the row's outcome and
the audit entry ``code.withdraw``, then the codes (opened through ``cardsvc.delivery.reveal``).

Only keys with the ``export`` scope (never granted by default) reach the API. The CLI
(``cardsvc export``) exports an order from the SQL store alone (beside a running server); a
batch export needs the store, so from the CLI it runs only while the server is stopped.
"""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access import Approvals
from cardsvc.catalog import Batch, CodePayload
from cardsvc.csv_safe import RULE_COMMENT, safe_row
from cardsvc.db import Database
from cardsvc.delivery.reveal import Revealer
from cardsvc.delivery.tables import Export
from cardsvc.engine import Store
from cardsvc.errors import ErrorCode, invalid, make_error
from cardsvc.times import iso

COLUMNS = ("export_id", "code_id", "sku", "batch_id", "code", "pin")
REFUSED_LISTED_MAX = 1000
"""Refused codes listed by id in the export record (all are counted by state)."""
WITHDRAW_CHUNK = 100_000
"""Codes per engine ``withdraw`` call: one call holds the SKU's lock for its length."""

OrderCodes = Callable[[Session, str], list[int]]
"""The code ids an order delivered (``cardsvc.sales.delivered_code_ids``). Raises
ORDER_NOT_FOUND for an unknown order or one that delivered nothing."""


@dataclass(frozen=True)
class ExportResult:
    """An export as recorded: ``codes`` written; for a batch, ``withdrawn`` (this export took
    them out of sale), ``already_withdrawn`` and ``refused`` (counts by state)."""

    export_id: str
    object_type: str
    object_id: str
    codes: int
    withdrawn: int = 0
    already_withdrawn: int = 0
    refused: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Restored:
    """What :meth:`Exports.restore` did: codes back on sale, unchanged (already on sale), and
    refused by state (redeemed once, sold, frozen, void: never sold again)."""

    export_id: str
    restored: int
    unchanged: int
    refused: dict[str, int]


class Exports:
    """Recorded, watermarked exports of a batch's or an order's codes. ``store`` (the engine)
    is needed for batch exports and restores; without it they are refused. With ``approvals``,
    an export runs only under an approved maker-checker request (``code_export``), consumed
    when the export is recorded: the file can be fetched once per approval."""

    def __init__(self, db: Database, revealer: Revealer, order_codes: OrderCodes,
                 store: Store | None = None, clock: Callable[[], int] | None = None,
                 approvals: Approvals | None = None) -> None:
        self.db = db
        self.revealer = revealer
        self.order_codes = order_codes
        self.store = store
        self.clock = clock if clock is not None else _wall_ms
        self.approvals = approvals

    def export_codes(self, out: TextIO, *, actor: str, batch_id: int | None = None,
                     order_id: str | None = None,
                     progress: Callable[[int], None] | None = None,
                     approval_id: str | None = None) -> ExportResult:
        """Writes the codes of one batch or one order to ``out`` as watermarked CSV, after
        recording the export (and, for a batch, withdrawing its codes from sale). Raises
        BATCH_NOT_FOUND, ORDER_NOT_FOUND, INVALID_ARGUMENT, PAYLOAD_CORRUPT,
        JOURNAL_UNAVAILABLE, and the APPROVAL_* refusals when exports are guarded."""
        result, chunks = self.export_stream(actor=actor, batch_id=batch_id, order_id=order_id,
                                            approval_id=approval_id)
        written = 0
        for text, count in chunks:
            out.write(text)
            written += count
            if progress is not None:
                progress(written)
        return result

    def export_stream(self, *, actor: str, batch_id: int | None = None,
                      order_id: str | None = None, approval_id: str | None = None,
                      ) -> tuple[ExportResult, Iterator[tuple[str, int]]]:
        """Records the export (and withdraws a batch's codes, durably) now and returns it with
        its CSV as ``(text, codes in it)`` chunks, decrypted lazily (memory stays flat). Raises
        as :meth:`export_codes` (PAYLOAD_CORRUPT while iterating), and the refusals of
        ``Approvals.authorize`` (APPROVAL_REQUIRED...) when exports are guarded."""
        object_type, object_id, ids = self._code_ids(batch_id, order_id)
        if object_type == "batch" and self.store is None:
            raise invalid("batch_id", "a batch export withdraws its codes from sale, which "
                                      "needs the store (stop the server, or use the API)")
        export_id = "exp_" + secrets.token_hex(8)
        now_ms = self.clock()
        with self.db.write() as session:
            if self.approvals is not None:
                self.approvals.authorize(session, action="code_export", object_type=object_type,
                                         object_id=object_id, actor=actor,
                                         approval_id=approval_id)
            session.add(Export(export_id=export_id, actor=actor, object_type=object_type,
                               object_id=object_id, codes=len(ids), created_at_ms=now_ms,
                               status="withdrawing" if object_type == "batch" else "written"))
            audit.append(session, actor=actor, action="code.export", object_type=object_type,
                         object_id=object_id,
                         details={"export_id": export_id, "codes": len(ids)}, at_ms=now_ms)
        result = ExportResult(export_id, object_type, object_id, len(ids))
        if object_type == "batch":
            result, ids = self._withdraw(result, ids, actor)
        header = (f"# cardsvc export {export_id} of {object_type} {object_id} by {actor} at "
                  f"{iso(now_ms)}: {len(ids)} codes\n{RULE_COMMENT}\n"
                  + ",".join(COLUMNS) + "\n")
        return result, self._chunks(header, export_id, ids)

    def _withdraw(self, result: ExportResult,
                  ids: list[int], actor: str) -> tuple[ExportResult, list[int]]:
        """Withdraws the batch's codes from sale, waits until durable, records the outcome
        (row and ``code.withdraw``); returns the result and the ids to write."""
        assert self.store is not None
        engine = self.store.engine
        withdrawn = unchanged = 0
        refused: list[tuple[int, str]] = []
        for start in range(0, len(ids), WITHDRAW_CHUNK):
            changed, same, refusals = engine.withdraw(ids[start:start + WITHDRAW_CHUNK])
            withdrawn += changed
            unchanged += same
            refused += refusals
        self.store.wait_last()
        refused_ids = {code_id for code_id, _ in refused}
        written = [code_id for code_id in ids if code_id not in refused_ids]
        by_state: dict[str, int] = {}
        for _, state in refused:
            by_state[state] = by_state.get(state, 0) + 1
        details: dict[str, Any] = {
            "export_id": result.export_id, "withdrawn": withdrawn,
            "already_withdrawn": unchanged, "refused": by_state, "codes": len(written)}
        now_ms = self.clock()
        with self.db.write() as session:
            row = session.get(Export, result.export_id)
            assert row is not None
            row.status, row.codes, row.withdrawn = "written", len(written), withdrawn
            row.refused = {"by_state": by_state,
                           "listed": [list(item) for item in refused[:REFUSED_LISTED_MAX]]}
            row.code_ranges = code_ranges(written)
            audit.append(session, actor=actor, action="code.withdraw",
                         object_type=result.object_type, object_id=result.object_id,
                         details=details, at_ms=now_ms)
        return ExportResult(result.export_id, result.object_type, result.object_id,
                            len(written), withdrawn, unchanged, by_state), written

    def restore(self, export_id: str, *, actor: str) -> Restored:
        """Puts the codes of a batch export that was never delivered back on sale
        (``Engine.restore_to_sale``: a code that was ever redeemed stays withdrawn), audited
        ``export.restore``. Idempotent (a second call restores nothing more). Raises
        EXPORT_NOT_FOUND, INVALID_ARGUMENT (an order's export, or no store)."""
        if self.store is None:
            raise invalid("export_id", "restoring codes to sale needs the store")
        with self.db.read() as session:
            row = session.get(Export, export_id)
            if row is None:
                raise make_error(ErrorCode.EXPORT_NOT_FOUND, "no such export",
                                 {"export_id": export_id})
            if row.object_type != "batch":
                raise invalid("export_id", "only a batch export took codes out of sale")
            ranges = list(row.code_ranges or [])
        ids = [code_id for first, last in ranges for code_id in range(first, last + 1)]
        restored = unchanged = 0
        by_state: dict[str, int] = {}
        for start in range(0, len(ids), WITHDRAW_CHUNK):
            changed, same, refusals = self.store.engine.restore_to_sale(
                ids[start:start + WITHDRAW_CHUNK])
            restored += changed
            unchanged += same
            for _, state in refusals:
                by_state[state] = by_state.get(state, 0) + 1
        self.store.wait_last()
        now_ms = self.clock()
        with self.db.write() as session:
            row = session.get(Export, export_id)
            assert row is not None
            if restored:
                row.restored_at_ms, row.restored_by = now_ms, actor
            audit.append(session, actor=actor, action="export.restore", object_type="export",
                         object_id=export_id,
                         details={"restored": restored, "unchanged": unchanged,
                                  "refused": by_state, "batch_id": row.object_id},
                         at_ms=now_ms)
        return Restored(export_id, restored, unchanged, by_state)

    def _chunks(self, header: str, export_id: str,
                ids: Sequence[int]) -> Iterator[tuple[str, int]]:
        yield header, 0
        for chunk in self.revealer.stream(ids):
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            for item in chunk:
                writer.writerow(safe_row((export_id, item.code_id, item.sku, item.batch_id,
                                          item.code, item.pin)))
            yield text.getvalue(), len(chunk)

    def _code_ids(self, batch_id: int | None,
                  order_id: str | None) -> tuple[str, str, list[int]]:
        """What to export: ``(object_type, object_id, code ids)``. Raises BATCH_NOT_FOUND,
        ORDER_NOT_FOUND (also for an order that delivered nothing), INVALID_ARGUMENT."""
        if (batch_id is None) == (order_id is None):
            raise invalid("batch", "give exactly one of batch, order")
        with self.db.read() as session:
            if order_id is not None:
                return "order", order_id, self.order_codes(session, order_id)
            if session.get(Batch, batch_id) is None:
                raise make_error(ErrorCode.BATCH_NOT_FOUND, "no such batch",
                                 {"batch_id": batch_id})
            ids = list(session.scalars(select(CodePayload.code_id)
                                       .where(CodePayload.batch_id == batch_id)
                                       .order_by(CodePayload.code_id)))
            return "batch", str(batch_id), ids


def code_ranges(ids: Sequence[int]) -> list[list[int]]:
    """Sorted ids as inclusive ``[first, last]`` runs (a batch's ids are dense: a few runs for
    millions of codes). Pure."""
    runs: list[list[int]] = []
    for code_id in sorted(ids):
        if runs and runs[-1][1] + 1 == code_id:
            runs[-1][1] = code_id
        else:
            runs.append([code_id, code_id])
    return runs


def _wall_ms() -> int:
    return int(time.time() * 1000)
