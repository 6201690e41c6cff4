"""Export of plaintext codes: the one way besides order delivery that codes leave in the clear.

An export writes CSV with the columns ``export_id,code_id,sku,batch_id,code,pin``. Every row
carries the export's id as a watermark, and the first line names it too, so a leaked file names
its export, and the export log (``exports``) and the audit log (``code.export``) name who made
it, when, what and how many. The export is recorded *before* the first code is written: a failed
export is over-reported, never unreported. Codes are opened through the one plaintext exit
(``cardsvc.delivery.reveal``).

Only keys with the ``export`` scope (never granted by default) reach the API; the CLI
(``cardsvc export``) reads the SQL store only, so it works beside a running server. What an
order's export holds is the sales package's to say (its delivered codes), so :class:`Exports`
asks an :data:`OrderCodes` port the runtime wires.
"""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access import Approvals
from cardsvc.catalog import Batch, CodePayload
from cardsvc.db import Database
from cardsvc.delivery.reveal import Revealer
from cardsvc.delivery.tables import Export
from cardsvc.errors import ErrorCode, invalid, make_error
from cardsvc.times import iso

COLUMNS = ("export_id", "code_id", "sku", "batch_id", "code", "pin")

OrderCodes = Callable[[Session, str], list[int]]
"""The code ids an order delivered (``cardsvc.sales.delivered_code_ids``). Raises
ORDER_NOT_FOUND for an unknown order or one that delivered nothing."""


@dataclass(frozen=True)
class ExportResult:
    export_id: str
    object_type: str
    object_id: str
    codes: int


class Exports:
    """Recorded, watermarked exports of a batch's or an order's codes. With ``approvals``, an
    export runs only under an approved maker-checker request (``code_export``), consumed when
    the export is recorded: the file can be fetched once per approval."""

    def __init__(self, db: Database, revealer: Revealer, order_codes: OrderCodes,
                 approvals: Approvals | None = None) -> None:
        self.db = db
        self.revealer = revealer
        self.order_codes = order_codes
        self.approvals = approvals

    def export_codes(self, out: TextIO, *, actor: str, batch_id: int | None = None,
                     order_id: str | None = None,
                     progress: Callable[[int], None] | None = None,
                     approval_id: str | None = None) -> ExportResult:
        """Writes the codes of one batch or one order to ``out`` as watermarked CSV, after
        recording the export (``exports`` row and ``code.export`` audit entry). Raises
        BATCH_NOT_FOUND, ORDER_NOT_FOUND, INVALID_ARGUMENT, PAYLOAD_CORRUPT."""
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
        """Records the export now and returns it with its CSV as ``(text, codes in it)`` chunks,
        decrypted lazily (memory stays flat). Raises as :meth:`export_codes` (PAYLOAD_CORRUPT
        while iterating), and the refusals of ``Approvals.authorize`` (APPROVAL_REQUIRED...)
        when exports are guarded."""
        object_type, object_id, ids = self._code_ids(batch_id, order_id)
        export_id = "exp_" + secrets.token_hex(8)
        now_ms = int(time.time() * 1000)
        with self.db.write() as session:
            if self.approvals is not None:
                self.approvals.authorize(session, action="code_export", object_type=object_type,
                                         object_id=object_id, actor=actor,
                                         approval_id=approval_id)
            session.add(Export(export_id=export_id, actor=actor, object_type=object_type,
                               object_id=object_id, codes=len(ids), created_at_ms=now_ms))
            audit.append(session, actor=actor, action="code.export", object_type=object_type,
                         object_id=object_id,
                         details={"export_id": export_id, "codes": len(ids)}, at_ms=now_ms)
        header = (f"# cardsvc export {export_id} of {object_type} {object_id} by {actor} at "
                  f"{iso(now_ms)}: {len(ids)} codes\n" + ",".join(COLUMNS) + "\n")
        result = ExportResult(export_id, object_type, object_id, len(ids))
        return result, self._chunks(header, export_id, ids)

    def _chunks(self, header: str, export_id: str,
                ids: Sequence[int]) -> Iterator[tuple[str, int]]:
        yield header, 0
        for chunk in self.revealer.stream(ids):
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            for item in chunk:
                writer.writerow((export_id, item.code_id, item.sku, item.batch_id, item.code,
                                 item.pin or ""))
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
