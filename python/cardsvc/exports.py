"""Export of plaintext codes: the one way besides order delivery that codes leave in the clear.

An export writes CSV with the columns ``export_id,code_id,sku,batch_id,code,pin``. Every row
carries the export's id as a watermark, and the first line names it too, so a leaked file names
its export, and the export log (``exports``) and the audit log (``code.export``) name who made
it, when, what and how many. The export is recorded *before* the first code is written: a failed
export is over-reported, never unreported.

Only keys with the ``export`` scope (never granted by default) reach the API; the CLI
(``cardsvc export``) reads the SQL store only, so it works beside a running server.
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

from cardsvc import audit, crypto
from cardsvc.catalog.tables import Batch, CodePayload
from cardsvc.crypto.envelope import DataKeyCache
from cardsvc.crypto.opening import open_code
from cardsvc.db import Database
from cardsvc.db.models import Export, Order
from cardsvc.errors import ErrorCode, make_error
from cardsvc.times import iso

CHUNK_CODES = 10_000
"""Codes decrypted and written at a time: memory stays flat for any export size."""
COLUMNS = ("export_id", "code_id", "sku", "batch_id", "code", "pin")


@dataclass(frozen=True)
class ExportResult:
    export_id: str
    object_type: str
    object_id: str
    codes: int


def _code_ids(db: Database, batch_id: int | None, order_id: str | None) -> tuple[str, str,
                                                                                   list[int]]:
    """What to export: ``(object_type, object_id, code ids)``. Raises BATCH_NOT_FOUND,
    ORDER_NOT_FOUND (also for an order that delivered nothing), INVALID_ARGUMENT."""
    if (batch_id is None) == (order_id is None):
        raise make_error(ErrorCode.INVALID_ARGUMENT, "give exactly one of batch, order",
                         {"field": "batch"})
    with db.read() as session:
        if batch_id is not None:
            if session.get(Batch, batch_id) is None:
                raise make_error(ErrorCode.BATCH_NOT_FOUND, "no such batch",
                                 {"batch_id": batch_id})
            ids = list(session.scalars(select(CodePayload.code_id)
                                       .where(CodePayload.batch_id == batch_id)
                                       .order_by(CodePayload.code_id)))
            return "batch", str(batch_id), ids
        assert order_id is not None
        order = session.get(Order, order_id)
        if order is None or order.status != "fulfilled":
            raise make_error(ErrorCode.ORDER_NOT_FOUND, "no fulfilled order with that id",
                             {"order_id": order_id})
        return "order", order_id, list(order.code_ids or [])


def export_codes(
    db: Database,
    keyring: crypto.MasterKeys,
    out: TextIO,
    *,
    actor: str,
    batch_id: int | None = None,
    order_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Writes the codes of one batch or one order to ``out`` as watermarked CSV, after
    recording the export (``exports`` row and ``code.export`` audit entry). Raises
    BATCH_NOT_FOUND, ORDER_NOT_FOUND, INVALID_ARGUMENT, PAYLOAD_CORRUPT."""
    result, chunks = export_stream(db, keyring, actor=actor, batch_id=batch_id,
                                   order_id=order_id)
    written = 0
    for text, count in chunks:
        out.write(text)
        written += count
        if progress is not None:
            progress(written)
    return result


def export_stream(
    db: Database,
    keyring: crypto.MasterKeys,
    *,
    actor: str,
    batch_id: int | None = None,
    order_id: str | None = None,
) -> tuple[ExportResult, Iterator[tuple[str, int]]]:
    """Records the export now and returns it with its CSV as ``(text, codes in it)`` chunks,
    decrypted lazily CHUNK_CODES at a time (memory stays flat). Raises as
    :func:`export_codes` (PAYLOAD_CORRUPT while iterating)."""
    object_type, object_id, ids = _code_ids(db, batch_id, order_id)
    export_id = "exp_" + secrets.token_hex(8)
    now_ms = int(time.time() * 1000)
    with db.write() as session:
        session.add(Export(export_id=export_id, actor=actor, object_type=object_type,
                           object_id=object_id, codes=len(ids), created_at_ms=now_ms))
        audit.append(session, actor=actor, action="code.export", object_type=object_type,
                     object_id=object_id, details={"export_id": export_id, "codes": len(ids)},
                     at_ms=now_ms)
    header = (f"# cardsvc export {export_id} of {object_type} {object_id} by {actor} at "
              f"{iso(now_ms)}: {len(ids)} codes\n" + ",".join(COLUMNS) + "\n")

    def chunks() -> Iterator[tuple[str, int]]:
        yield header, 0
        cache = DataKeyCache()
        for chunk in _chunks(ids, CHUNK_CODES):
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            for code_id, sku, batch, code, pin in _open(db, keyring, cache, chunk):
                writer.writerow((export_id, code_id, sku, batch, code, pin or ""))
            yield text.getvalue(), len(chunk)

    return ExportResult(export_id, object_type, object_id, len(ids)), chunks()


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _open(
    db: Database, keyring: crypto.MasterKeys, cache: DataKeyCache, ids: Sequence[int]
) -> Iterator[tuple[int, str, int, str, str | None]]:
    with db.read() as session:
        rows = session.execute(
            select(CodePayload.code_id, CodePayload.batch_id, CodePayload.sealed, Batch.sku,
                   Batch.master_key_id, Batch.data_key_wrapped)
            .join(Batch, Batch.batch_id == CodePayload.batch_id)
            .where(CodePayload.code_id.in_(list(ids))).order_by(CodePayload.code_id)
        ).all()
    for code_id, batch_id, sealed, sku, master_key_id, wrapped in rows:
        data_key = cache.get_or_unwrap(batch_id, keyring, master_key_id, wrapped)
        code, pin = open_code(data_key, code_id, sealed)
        yield code_id, sku, batch_id, code, pin
