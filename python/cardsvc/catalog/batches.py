"""Batches of codes: import (a list, or a file streamed in chunks), generation, the batch report,
and recovery of interrupted imports. (Opening codes for delivery is ``cardsvc.delivery.reveal``.)

A batch touches both stores, so it is a saga (crash-safe at every point):

1. SQL: the batch row, ``importing``, with its wrapped data key (:meth:`Batches.begin`);
2. per chunk: core ``import_codes`` into the batch's *staging pool* (core pool
   ``STAGING_POOL_BASE + batch_id``, from which nothing is sold), wait until journaled, then one
   SQL transaction with the chunk's sealed payloads, its report lines and the progress count;
3. SQL: the batch ``ready`` with its counts and an audit entry;
4. core: every code moved from the staging pool into the target pool.

Codes are therefore never sellable before their payloads are stored. A failure in steps 2-3
voids the batch's codes in the core and marks it ``failed``; recovery at start-up
(:meth:`Batches.recover`) does the same for a batch a crash left ``importing``, and finishes
step 4 for a ``ready`` batch whose staging pool still holds codes. The whole file is one batch:
all or nothing.

Duplicates (of any earlier code, or repeated within the batch) are skipped and listed in the
batch report (``batch_issues``: input line, masked code). Rows a file reader rejected are
reported there too, for a batch ``rejected`` before anything was imported.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from cardsvc import audit, crypto
from cardsvc.catalog import codegen
from cardsvc.catalog.code_index import suffix_digest, suffix_key, suffix_of
from cardsvc.catalog.codefile.values import FORMULA_STARTS
from cardsvc.catalog.skus import STAGING_POOL_MIN, Catalog
from cardsvc.catalog.tables import ERROR_MESSAGE_LEN_MAX, Batch, BatchIssue, CodePayload
from cardsvc.checks import check_code_text, check_currency, check_price
from cardsvc.crypto.envelope import unwrap_data_key
from cardsvc.csv_safe import safe_row
from cardsvc.db import Database
from cardsvc.engine import Engine, load_lookup_key, normalise_code
from cardsvc.engine.store import Store
from cardsvc.errors import CardsvcError, Corruption, ErrorCode, invalid, make_error
from cardsvc.masking import mask_code
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of

STAGING_POOL_BASE = STAGING_POOL_MIN
"""Batch ``b`` imports into core pool ``STAGING_POOL_BASE + b``, which no order draws from."""
CHUNK_CODES = 50_000
"""Codes per core call and SQL transaction: bounds memory (about 20 MB per chunk in flight) and
how long one transaction holds SQLite's write lock (about 0.3 s)."""
LIST_CODES_MAX = 100_000
"""Codes in one import given as a list (the API's JSON body allows about 10,000); files stream."""
GENERATE_COUNT_MAX = 10_000_000
"""Codes one generation makes (a core import call's bound)."""
GENERATE_RETRIES_MAX = 5
REPORT_CSV_COLUMNS = ("line", "field", "reason", "code")
"""The batch report's CSV columns (``code`` masked)."""
REPORT_LINES_MAX = 1_000_000
"""Report lines kept per batch (each about 100 bytes)."""
BATCH_STATUSES = ("importing", "ready", "failed", "rejected")
BATCH_CURSOR = (int, int)
"""The sort key of the batch list: (``created_at_ms``, ``batch_id``), newest first."""




@dataclass(frozen=True)
class CodeInput:
    """One code to import, exactly as given (its text is delivered as is). ``line`` is its place
    in the input (a file's line, or a list's index) for the report; ``valid_until`` (Unix
    seconds) overrides the batch's for this code."""

    code: str
    pin: str | None = None
    line: int | None = None
    valid_until: int | None = None


@dataclass(frozen=True)
class BatchMeta:
    """What a batch is: where its codes go and where they came from."""

    sku: str
    pool: str | None = None
    valid_from: int | None = None  # Unix seconds
    valid_until: int | None = None
    source: str = "import"  # import | upload | generate
    supplier: str | None = None
    unit_cost_minor: int | None = None
    currency: str | None = None
    purchase_date: str | None = None  # ISO date
    source_name: str | None = None
    code_format: dict[str, Any] | None = None

    def check(self, now_s: int) -> None:
        """Raises INVALID_ARGUMENT (details: ``field``) for an impossible batch."""
        if self.valid_until is not None and self.valid_until < now_s:
            raise invalid("valid_until", "valid_until is in the past")
        if (self.valid_from is not None and self.valid_until is not None
                and self.valid_from > self.valid_until):
            raise invalid("valid_from", "valid_from is after valid_until")
        if self.unit_cost_minor is not None and self.unit_cost_minor < 0:
            raise invalid("unit_cost_minor", "unit_cost_minor must not be negative")
        if self.unit_cost_minor is not None:
            check_price("unit_cost_minor", self.unit_cost_minor)
        if self.currency is not None:
            check_currency("currency", self.currency)
        if self.purchase_date is not None:
            try:
                date.fromisoformat(self.purchase_date)
            except ValueError:
                raise invalid("purchase_date", "purchase_date must be YYYY-MM-DD") from None


@dataclass(frozen=True)
class BatchInfo:
    """A batch as admins see it: where its codes went, where they came from, how far its import
    got (``status``: importing, ready, failed or rejected). No key material, no code."""

    batch_id: int
    sku: str
    pool: str
    status: str
    source: str
    submitted: int
    processed: int
    imported: int
    duplicates: int
    valid_from_ms: int | None
    valid_until_ms: int | None
    supplier: str | None
    unit_cost_minor: int | None
    currency: str | None
    purchase_date: str | None
    source_name: str | None
    error_code: str | None
    error_details: dict[str, Any] | None
    error_message: str | None
    created_at_ms: int
    created_by: str | None


@dataclass
class BatchResult:
    batch_id: int
    imported: int
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # [{"index", "code"}]
    status: str = "ready"


class Batches:
    """The import saga over the store (core) and the SQL database."""

    def __init__(self, store: Store, db: Database, keyring: crypto.MasterKeyring,
                 catalog: Catalog) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.db = db
        self.keyring = keyring
        self.catalog = catalog
        self.suffix_key = suffix_key(load_lookup_key(store.config.data_dir))
        """Keys the suffix digests stored with each payload (``catalog.code_index``)."""
        self.prefixes: dict[str, codegen.CodeFormat] = {}
        """Prefixes of generated codes with their formats (``codegen.check_typed`` reads it):
        terminals' typos in such codes are refused without a lookup."""
        with db.read() as session:
            formats = session.scalars(select(Batch.code_format).where(
                Batch.source == "generate", Batch.status.in_(("importing", "ready"))))
            for stored in formats:
                fmt = codegen.CodeFormat.from_dict(stored) if stored else None
                if fmt is not None and fmt.prefix:
                    codegen.register_prefix(self.prefixes, fmt)

    # ----- the saga -----

    def begin(self, meta: BatchMeta, *, actor: str, submitted: int = 0) -> int:
        """Step 1: the batch row (``importing``). A unit cost is in the SKU's currency: a batch
        ``currency`` must be a real ISO 4217 code equal to the SKU's (none given: the SKU's).
        Raises SKU_NOT_FOUND, POOL_NOT_FOUND, INVALID_ARGUMENT, CURRENCY_MISMATCH (details
        ``currency``, ``sku_currency``), LIMIT_EXCEEDED (a unit cost above PRICE_MINOR_MAX)."""
        sku_currency = self.catalog.get_sku(meta.sku)["currency"]
        pool_id = self.catalog.pool_id(meta.pool)
        meta.check(self.engine.now_ms() // 1000)
        if meta.currency is not None and meta.currency != sku_currency:
            raise make_error(ErrorCode.CURRENCY_MISMATCH,
                             "a batch's unit cost is in its SKU's currency",
                             {"field": "currency", "currency": meta.currency,
                              "sku_currency": sku_currency})
        if meta.unit_cost_minor is not None and meta.currency is None:
            meta = replace(meta, currency=sku_currency)
        row = Batch(
            sku=meta.sku, pool_id=pool_id, status="importing", source=meta.source,
            data_key_wrapped=crypto.wrap_data_key(self.keyring.current, crypto.new_data_key()),
            master_key_id=self.keyring.current.key_id,
            valid_from_ms=None if meta.valid_from is None else meta.valid_from * 1000,
            valid_until_ms=None if meta.valid_until is None else meta.valid_until * 1000,
            submitted=submitted, imported=0, duplicates=0, processed=0,
            created_at_ms=self.engine.now_ms(), created_by=actor, supplier=meta.supplier,
            unit_cost_minor=meta.unit_cost_minor, currency=meta.currency,
            purchase_date=meta.purchase_date, source_name=meta.source_name,
            code_format=meta.code_format,
        )
        with self.db.write() as session:
            session.add(row)
            session.flush()
            batch_id = row.batch_id
        if batch_id >= STAGING_POOL_BASE:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "batch ids exhausted",
                             {"field": "batch_id", "max": STAGING_POOL_BASE - 1, "got": batch_id})
        return batch_id

    def load(
        self, batch_id: int, chunks: Iterable[Sequence[CodeInput]], *, actor: str,
        progress: Callable[[int], None] | None = None,
    ) -> BatchResult:
        """Steps 2-4 for a batch :meth:`begin` created. On any failure the batch's codes are
        voided, the batch is ``failed``, and the error is raised (INVALID_CODE / INVALID_PIN
        with details ``index``, LIMIT_EXCEEDED, DATABASE_UNAVAILABLE, ...)."""
        batch = self._row(batch_id)
        if batch.status != "importing":
            raise invalid("batch_id", "the batch is not importing")
        data_key = unwrap_data_key(self.keyring, batch.master_key_id,
                                          batch.data_key_wrapped)
        result = BatchResult(batch_id, 0)
        processed = 0
        now_s = self.engine.now_ms() // 1000
        try:
            for chunk in chunks:
                for valid_until, group in _by_validity(chunk, batch.valid_until_ms, now_s):
                    result.imported += self._load_group(batch, data_key, group, processed,
                                                        valid_until, result)
                    processed += len(group)
                if progress is not None:
                    progress(processed)
            self._finish(batch, result, processed, actor)
        except BaseException as error:
            self.fail(batch_id, error)
            raise
        self._release(batch.sku, batch_id, batch.pool_id)
        return result

    def _release(self, sku: str, batch_id: int, pool_id: int) -> int:
        """Step 4: moves every sellable code out of the batch's staging pool (a code that
        expired meanwhile stays there, unsellable anyway). Returns how many moved."""
        staging = STAGING_POOL_BASE + batch_id
        counts = self.engine.stock(sku, staging)
        sellable = counts.get("available", 0) - counts.get("expired", 0)
        if sellable > 0:
            self.engine.move_stock(sku, sellable, staging, pool_id)
            self.store.wait_last()
        return sellable

    def _load_group(
        self, batch: Batch, data_key: bytes, group: Sequence[CodeInput], offset: int,
        valid_until: int | None, result: BatchResult,
    ) -> int:
        valid_from = None if batch.valid_from_ms is None else batch.valid_from_ms // 1000
        if batch.source != "generate" and self.prefixes:
            self._refuse_reserved(group, offset)
        for position, item in enumerate(group):
            _check_texts(item, offset + position)
        try:
            ids, duplicate_positions = self.engine.import_codes(
                batch.sku, [item.code for item in group], STAGING_POOL_BASE + batch.batch_id,
                [item.pin for item in group], valid_from, valid_until, batch.batch_id)
        except CardsvcError as error:
            if "index" in error.details:  # the position in the whole input, not the group
                line = group[int(error.details["index"])].line
                error.details["index"] = offset + int(error.details["index"])
                if line is not None:
                    error.details["line"] = line
            raise
        self.store.wait_last()
        duplicates = set(duplicate_positions)
        fresh = [item for position, item in enumerate(group) if position not in duplicates]
        batch_id = batch.batch_id
        payloads = [(code_id, batch_id, crypto.seal_code(data_key, code_id, item.code, item.pin),
                     self._digest(batch.sku, item.code))
                    for code_id, item in zip(ids, fresh, strict=True)]
        issues = []
        for position in duplicate_positions:
            item = group[position]
            line = item.line if item.line is not None else offset + position
            masked = mask_code(item.code)
            issues.append({"batch_id": batch.batch_id, "line": line, "field": "code",
                           "reason": "duplicate", "masked": masked})
            if len(result.duplicates) < REPORT_LINES_MAX:
                result.duplicates.append({"index": line, "code": masked})
        with self.db.write() as session:
            if payloads:
                _insert_payloads(session, payloads)
            if issues:
                session.execute(insert(BatchIssue), issues)
            row = session.get(Batch, batch.batch_id)
            if row is None:
                raise AssertionError(f"batch {batch.batch_id} vanished")
            row.processed += len(group)
            row.imported += len(ids)
            row.duplicates += len(issues)
        return len(ids)

    def _digest(self, sku: str, code: str) -> bytes | None:
        suffix = suffix_of(code)
        return None if suffix is None else suffix_digest(self.suffix_key, sku, suffix)

    def _refuse_reserved(self, group: Sequence[CodeInput], offset: int) -> None:
        """Raises INVALID_CODE (details: ``reason`` reserved_prefix, ``index``, ``line``) for an
        imported code that starts with a generated format's prefix: a terminal would check it
        as that format and refuse it."""
        for position, item in enumerate(group):
            try:
                body = normalise_code(item.code)
            except CardsvcError:
                continue  # the core reports it with its index
            if codegen.match_prefix(body, self.prefixes) is not None:
                raise make_error(ErrorCode.INVALID_CODE,
                                 "a code uses a prefix reserved for generated codes",
                                 {"reason": "reserved_prefix", "index": offset + position,
                                  "line": item.line})

    def _finish(self, batch: Batch, result: BatchResult, processed: int, actor: str) -> None:
        with self.db.write() as session:
            row = session.get(Batch, batch.batch_id)
            if row is None:
                raise AssertionError(f"batch {batch.batch_id} vanished")
            row.status = "ready"
            row.submitted = max(row.submitted, processed)
            audit.append(session, actor=actor, action="batch.import", object_type="batch",
                         object_id=str(batch.batch_id),
                         details={"sku": row.sku, "pool_id": row.pool_id, "source": row.source,
                                  "imported": row.imported, "duplicates": row.duplicates,
                                  "supplier": row.supplier, "source_name": row.source_name},
                         at_ms=self.engine.now_ms())

    def note(self, batch_id: int, *, submitted: int,
             problems: Sequence[dict[str, Any]]) -> None:
        """Records what a file check found before loading: the row count and the rows skipped
        (``line``, ``field``, ``reason``), which go to the batch's report."""
        with self.db.write() as session:
            _add_issues(session, batch_id, problems)
            row = session.get(Batch, batch_id)
            if row is None:
                raise AssertionError(f"batch {batch_id} vanished")
            row.submitted = submitted

    def fail(self, batch_id: int, error: BaseException | None) -> None:
        """Voids whatever the batch put in the core and marks it ``failed`` (``cancelled`` when
        ``error`` is IMPORT_CANCELLED), keeping why (the error's code, details and message; a
        line in its report). Best effort: when the journal or the database is down, recovery at
        the next start does it."""
        try:
            self.engine.void_batch(batch_id)
            self.store.wait_last()
            code, details, message = _error_record(error)
            with self.db.write() as session:
                row = session.get(Batch, batch_id)
                if row is not None and row.status == "importing":
                    cancelled = code == ErrorCode.IMPORT_CANCELLED.value
                    row.status = "cancelled" if cancelled else "failed"
                    _keep_error(session, row, code, details, message)
        except CardsvcError:
            pass

    def reject(self, batch_id: int, problems: Iterable[dict[str, Any]], *, actor: str,
               error: CardsvcError) -> None:
        """Ends a batch that a file check refused before anything was imported: ``rejected``,
        with the refusal (``error``: its code, details and message) on the batch and each
        problem (``line``, ``field``, ``reason``, ``masked``?) in its report. A refusal the
        problems do not already explain (anything but ``invalid_rows``) adds its own report
        line: ``line`` the error's line or 0, ``field``, ``reason``."""
        code, details, message = _error_record(error)
        with self.db.write() as session:
            count = _add_issues(session, batch_id, problems)
            row = session.get(Batch, batch_id)
            if row is None:
                raise AssertionError(f"batch {batch_id} vanished")
            row.status = "rejected"
            _keep_error(session, row, code, details, message,
                        report=details.get("reason") != "invalid_rows")
            audit.append(session, actor=actor, action="batch.reject", object_type="batch",
                         object_id=str(batch_id),
                         details={"problems": count, "error_code": code,
                                  "reason": details.get("reason")},
                         at_ms=self.engine.now_ms())

    # ----- conveniences over the saga -----

    def import_codes(self, meta: BatchMeta, codes: Sequence[CodeInput], *,
                     actor: str) -> BatchResult:
        """Imports a list of codes as one batch (steps 1-4). Raises as :meth:`begin` and
        :meth:`load`, LIMIT_EXCEEDED beyond LIST_CODES_MAX codes, and INVALID_CODE /
        INVALID_PIN (``reason`` formula_prefix, ``index``) for a code or PIN that starts with a
        spreadsheet formula starter (``codefile.values.FORMULA_STARTS``; files refuse the same
        rows), before anything is created."""
        if len(codes) > LIST_CODES_MAX:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "too many codes in one batch",
                             {"field": "codes", "max": LIST_CODES_MAX, "got": len(codes)})
        for index, item in enumerate(codes):
            _refuse_formula_start(item, index)
        batch_id = self.begin(meta, actor=actor, submitted=len(codes))
        numbered = [item if item.line is not None else
                    CodeInput(item.code, item.pin, index, item.valid_until)
                    for index, item in enumerate(codes)]
        return self.load(batch_id, _chunked(numbered, CHUNK_CODES), actor=actor)

    def generate(self, meta: BatchMeta, fmt: codegen.CodeFormat, count: int, *, actor: str,
                 progress: Callable[[int], None] | None = None) -> BatchResult:
        """Generates ``count`` new codes of ``fmt`` as one batch (``source`` generate, the format
        kept with the batch). Codes the core already knows are drawn again before the import,
        so the batch gets exactly ``count`` codes. Raises as :meth:`begin` and :meth:`load`,
        LIMIT_EXCEEDED beyond GENERATE_COUNT_MAX."""
        if not 1 <= count <= GENERATE_COUNT_MAX:
            raise make_error(ErrorCode.LIMIT_EXCEEDED, "count out of range",
                             {"field": "count", "max": GENERATE_COUNT_MAX, "got": count})
        meta = replace(meta, source="generate", code_format=fmt.to_dict())
        if fmt.prefix:
            # Refuses a prefix taken by another format before anything is created; registered
            # before the codes exist, so a terminal checks them from the first sale.
            codegen.register_prefix(dict(self.prefixes), fmt)
            codegen.register_prefix(self.prefixes, fmt)
        batch_id = self.begin(meta, actor=actor, submitted=count)
        chunks = (self._fresh(fmt, min(CHUNK_CODES, count - start), start)
                  for start in range(0, count, CHUNK_CODES))
        return self.load(batch_id, chunks, actor=actor, progress=progress)

    def _fresh(self, fmt: codegen.CodeFormat, count: int, offset: int) -> list[CodeInput]:
        """``count`` generated codes the core does not know. A collision needs two equal draws
        among 32^16 values at the default format, so the loop runs once in practice."""
        fresh: dict[str, str | None] = {}
        for _ in range(GENERATE_RETRIES_MAX):
            drawn = codegen.generate(fmt, count - len(fresh))
            found = self.engine.verify_many([code for code, _ in drawn]).error_codes()
            for (code, pin), error in zip(drawn, found, strict=True):
                if error == ErrorCode.CODE_NOT_FOUND and code not in fresh:
                    fresh[code] = pin
            if len(fresh) >= count:
                break
        else:
            raise make_error(ErrorCode.INTERNAL_ERROR, "could not draw distinct codes",
                             {"count": count})
        return [CodeInput(code, pin, offset + index)
                for index, (code, pin) in enumerate(fresh.items())]

    # ----- reading -----

    def _row(self, batch_id: int) -> Batch:
        with self.db.read() as session:
            row = session.get(Batch, batch_id)
            if row is None:
                raise make_error(ErrorCode.BATCH_NOT_FOUND, "no such batch",
                                 {"batch_id": batch_id})
            return row

    def get(self, batch_id: int) -> dict[str, Any]:
        """Raises BATCH_NOT_FOUND."""
        return batch_dict(self._row(batch_id), self.catalog.pool_names())

    def list_batches(self, *, sku: str | None = None, status: str | None = None,
                     cursor: str | None = None, limit: int | None = None) -> Page[BatchInfo]:
        """Batches newest first (``cardsvc.paging``), of ``sku`` and in ``status`` when given.
        Reads only. Raises INVALID_ARGUMENT (an unknown status, a foreign cursor),
        LIMIT_EXCEEDED (``limit``)."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, BATCH_CURSOR)
        if status is not None and status not in BATCH_STATUSES:
            raise invalid("status", f"status must be one of {', '.join(BATCH_STATUSES)}")
        query = select(Batch)
        if sku is not None:
            query = query.where(Batch.sku == sku)
        if status is not None:
            query = query.where(Batch.status == status)
        if after is not None:
            query = query.where(or_(Batch.created_at_ms < after[0], and_(
                Batch.created_at_ms == after[0], Batch.batch_id < after[1])))
        query = query.order_by(Batch.created_at_ms.desc(), Batch.batch_id.desc()).limit(size + 1)
        names = self.catalog.pool_names()
        with self.db.read() as session:
            rows = [batch_info(row, names) for row in session.scalars(query)]
        return page_of(rows, size, key=lambda info: (info.created_at_ms, info.batch_id))

    def report(self, batch_id: int) -> Iterator[BatchIssue]:
        """The batch's report lines in line order, the problems of one line in the order they
        were found (streamed). Raises BATCH_NOT_FOUND."""
        self._row(batch_id)
        with self.db.read() as session:
            query = (select(BatchIssue).where(BatchIssue.batch_id == batch_id)
                     .order_by(BatchIssue.line, BatchIssue.issue_id)
                     .execution_options(yield_per=10_000))
            yield from session.scalars(query)

    def report_csv(self, batch_id: int) -> Iterator[str]:
        """The batch's report as CSV text chunks (``REPORT_CSV_COLUMNS``, codes masked, every
        cell through ``cardsvc.csv_safe``), streamed. Raises BATCH_NOT_FOUND at once."""
        self._row(batch_id)
        return self._report_chunks(batch_id)

    def _report_chunks(self, batch_id: int) -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(safe_row(REPORT_CSV_COLUMNS))
        for count, issue in enumerate(self.report(batch_id), start=1):
            writer.writerow(safe_row([issue.line, issue.field, issue.reason, issue.masked]))
            if count % 10_000 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    def recover(self) -> dict[str, int]:
        """Finishes or undoes every batch a crash interrupted (module docstring). Returns how
        many batches were failed and how many finished."""
        failed = finished = 0
        with self.db.read() as session:
            pending = [(row.batch_id, row.sku, row.pool_id, row.status)
                       for row in session.scalars(
                           select(Batch).where(Batch.status.in_(("importing", "ready"))))]
        for batch_id, sku, pool_id, status in pending:
            if status == "importing":
                self.fail(batch_id, make_error(
                    ErrorCode.INTERNAL_ERROR, "the import was interrupted (the server stopped)",
                    {"reason": "interrupted"}))
                failed += 1
                continue
            if self._release(sku, batch_id, pool_id):
                finished += 1
        return {"failed": failed, "finished": finished}


def _refuse_formula_start(item: CodeInput, index: int) -> None:
    """Raises INVALID_CODE or INVALID_PIN (details ``reason`` formula_prefix, ``index``) when the
    code or PIN starts, after leading whitespace, with ``= + - @``."""
    for value, code, name in ((item.code, ErrorCode.INVALID_CODE, "code"),
                              (item.pin, ErrorCode.INVALID_PIN, "pin")):
        if value is not None and value.lstrip()[:1] in FORMULA_STARTS:
            raise make_error(code, f"codes[{index}]: the {name} starts with a spreadsheet "
                             "formula character (= + - @)",
                             {"field": name, "reason": "formula_prefix", "index": index})


def _error_record(error: BaseException | None) -> tuple[str, dict[str, Any], str]:
    """What a batch keeps of the error that ended it: code, details, message. A CardsvcError's
    details and message are safe by contract (no code or PIN); a corruption's (file names,
    offsets) and anything unexpected (its message may hold data) are replaced."""
    if isinstance(error, CardsvcError) and not isinstance(error, Corruption):
        return error.code.value, dict(error.details), error.message[:ERROR_MESSAGE_LEN_MAX]
    code = error.code.value if isinstance(error, CardsvcError) else "INTERNAL_ERROR"
    return code, {"reason": "internal_error"}, "an internal error stopped the import"


def _keep_error(session: Session, row: Batch, code: str, details: dict[str, Any],
                message: str, *, report: bool = True) -> None:
    """Stores the error on the batch row and, if ``report``, one line of the batch's report:
    the error's line (0 for the whole file), field (``file`` when it names none) and reason
    (the error code in lower case when it names none)."""
    row.error_code = code
    row.error_details = details
    row.error_message = message
    if not report:
        return
    line, field, reason = details.get("line"), details.get("field"), details.get("reason")
    session.execute(insert(BatchIssue), [{
        "batch_id": row.batch_id,
        "line": line if isinstance(line, int) and not isinstance(line, bool) else 0,
        "field": (field if isinstance(field, str) else "file")[:32],
        "reason": (reason if isinstance(reason, str) else code.lower())[:64],
        "masked": None,
    }])


def _check_texts(item: CodeInput, index: int) -> None:
    """INVALID_CODE / INVALID_PIN (details ``index``, ``line``) unless the code and PIN are
    printable ASCII (``cardsvc.checks.CODE_TEXT_ALLOWED``)."""
    try:
        check_code_text("code", item.code, index)
        if item.pin is not None:
            check_code_text("pin", item.pin, index)
    except CardsvcError as error:
        if item.line is not None:
            error.details["line"] = item.line
        raise


def _add_issues(session: Session, batch_id: int, problems: Iterable[dict[str, Any]]) -> int:
    """Adds report lines (``line``, ``field``, ``reason``, ``masked``?) to the batch's report,
    at most REPORT_LINES_MAX; returns how many problems there were."""
    rows = [{"batch_id": batch_id, "line": p["line"], "field": p["field"],
             "reason": p["reason"], "masked": p.get("masked")} for p in problems]
    if rows:
        session.execute(insert(BatchIssue), rows[:REPORT_LINES_MAX])
    return len(rows)


def _insert_payloads(session: Session,
                     rows: list[tuple[int, int, bytes, bytes | None]]) -> None:
    """One ``executemany`` of the driver: the ORM's bulk insert costs about 11 µs a row, the
    driver about 1.7 µs (a million-code import spends 10 s less here)."""
    marker = "?" if session.get_bind().dialect.name == "sqlite" else "%s"
    session.connection().exec_driver_sql(
        f"INSERT INTO {CodePayload.__tablename__} (code_id, batch_id, sealed, suffix_digest) "
        f"VALUES ({marker}, {marker}, {marker}, {marker})", rows)


def _chunked(items: Sequence[CodeInput], size: int) -> Iterator[Sequence[CodeInput]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _by_validity(
    chunk: Sequence[CodeInput], batch_until_ms: int | None, now_s: int
) -> Iterator[tuple[int | None, list[CodeInput]]]:
    """The chunk split by each code's ``valid_until`` (its own, else the batch's), in order of
    first appearance; one group in the usual case of one validity per batch. Raises
    INVALID_ARGUMENT (details: ``field``, ``line``) for a code that has already expired."""
    default = None if batch_until_ms is None else batch_until_ms // 1000
    groups: dict[int | None, list[CodeInput]] = {}
    for item in chunk:
        until = item.valid_until if item.valid_until is not None else default
        if until is not None and until < now_s:
            raise make_error(ErrorCode.INVALID_ARGUMENT, "a code's valid_until is in the past",
                             {"field": "valid_until", "line": item.line})
        groups.setdefault(until, []).append(item)
    yield from groups.items()


def batch_info(row: Batch, pool_names: dict[int, str]) -> BatchInfo:
    """The batch's facts (``pool_names``: ``Catalog.pool_names``). Pure."""
    return BatchInfo(
        batch_id=row.batch_id, sku=row.sku, pool=pool_names.get(row.pool_id, str(row.pool_id)),
        status=row.status, source=row.source, submitted=row.submitted, processed=row.processed,
        imported=row.imported, duplicates=row.duplicates, valid_from_ms=row.valid_from_ms,
        valid_until_ms=row.valid_until_ms, supplier=row.supplier,
        unit_cost_minor=row.unit_cost_minor, currency=row.currency,
        purchase_date=row.purchase_date, source_name=row.source_name,
        error_code=row.error_code, error_details=row.error_details,
        error_message=row.error_message, created_at_ms=row.created_at_ms,
        created_by=row.created_by)


def batch_dict(row: Batch, pool_names: dict[int, str]) -> dict[str, Any]:
    """:func:`batch_info` as a dict (what ``Batches.get`` and the upload job answer)."""
    return asdict(batch_info(row, pool_names))
