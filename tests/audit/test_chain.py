"""Goal: prove that the audit log is a tamper-evident chain: appends link up and verify, every kind
of tampering (an edited detail, a deleted entry, reordered entries, an edited hash, a cut tail, an
entry slipped in after the head) is detected naming the first broken seq, and concurrent writers
never fork the chain.

Method: on SQLite and on PostgreSQL (``database`` fixture), append entries through
``Database.write()``, tamper with rows directly in SQL the way an attacker with database access
would, and check ``verify``'s verdict; append from 8 threads at once and check that seqs are
contiguous and the chain verifies; check the bounds and JSON-safety checks of ``append`` and
``query``.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from cardsvc.audit import chain as audit
from cardsvc.audit.tables import AuditEntry, AuditHead
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.masking import mask_code

T0_MS = 1_700_000_000_000


def _append(database: Database, count: int, *, first_ms: int = T0_MS) -> None:
    with database.write() as session:
        for i in range(count):
            audit.append(
                session,
                actor="admin-key",
                action="code.deliver" if i % 2 else "sku.create",
                object_type="order" if i % 2 else "sku",
                object_id=f"object-{i}",
                details={"index": i, "code": mask_code(f"ABCD-EFGH-{i:04d}"), "ratio": i / 3},
                at_ms=first_ms + i,
            )


def _verify(database: Database, page_size: int = audit.VERIFY_PAGE_SIZE) -> audit.ChainCheck:
    with database.read() as session:
        return audit.verify(session, page_size=page_size)


def _tamper(database: Database, statement: Any) -> None:
    with database.write() as session:
        session.execute(statement)


def test_empty_log_verifies(database: Database) -> None:
    assert _verify(database) == audit.ChainCheck(ok=True, entries_checked=0)


def test_appended_entries_link_up_and_verify(database: Database) -> None:
    _append(database, 12)
    check = _verify(database)
    assert check.ok, check
    assert check.entries_checked == 12
    with database.read() as session:
        entries = audit.query(session, limit=100)
    assert [entry.seq for entry in entries] == list(range(1, 13))
    assert entries[0].prev_hash == audit.GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash


def test_entry_hash_is_sha256_of_prev_hash_and_canonical_json(database: Database) -> None:
    with database.write() as session:
        entry = audit.append(
            session,
            actor="a",
            action="b",
            object_type="c",
            object_id="d",
            details={"z": 1, "a": [1.5, "é"]},
            at_ms=5,
        )
    canonical = (
        '{"action":"b","actor":"a","at_ms":5,"details":{"a":[1.5,"é"],"z":1},'
        '"object_id":"d","object_type":"c","seq":1}'
    )
    assert entry.entry_hash == hashlib.sha256(bytes(32) + canonical.encode()).digest()


def test_verify_pages_through_the_chain(database: Database) -> None:
    _append(database, 10)
    assert _verify(database, page_size=3) == audit.ChainCheck(ok=True, entries_checked=10)
    _tamper(database, update(AuditEntry).where(AuditEntry.seq == 7).values(actor="mallory"))
    check = _verify(database, page_size=3)
    assert (check.ok, check.first_broken_seq, check.entries_checked) == (False, 7, 6)


def test_edited_detail_is_detected_at_its_entry(database: Database) -> None:
    _append(database, 6)
    _tamper(
        database,
        update(AuditEntry).where(AuditEntry.seq == 4).values(details={"index": 99}),
    )
    check = _verify(database)
    assert (check.ok, check.first_broken_seq) == (False, 4)
    assert check.reason is not None and "entry_hash" in check.reason


def test_deleted_entry_is_detected_as_missing(database: Database) -> None:
    _append(database, 6)
    _tamper(database, delete(AuditEntry).where(AuditEntry.seq == 3))
    check = _verify(database)
    assert (check.ok, check.first_broken_seq, check.entries_checked) == (False, 3, 2)


def test_deleted_tail_is_detected_against_the_head(database: Database) -> None:
    _append(database, 6)
    _tamper(database, delete(AuditEntry).where(AuditEntry.seq >= 5))
    check = _verify(database)
    assert (check.ok, check.first_broken_seq) == (False, 5)


def test_reordered_entries_are_detected_at_the_first_moved_one(database: Database) -> None:
    _append(database, 6)
    with database.write() as session:  # swap entries 3 and 4 (seq is the primary key)
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(seq=-3))
        session.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(seq=3))
        session.execute(update(AuditEntry).where(AuditEntry.seq == -3).values(seq=4))
    check = _verify(database)
    assert (check.ok, check.first_broken_seq) == (False, 3)


@pytest.mark.parametrize("column", ["entry_hash", "prev_hash"])
def test_edited_hash_is_detected_at_its_entry(database: Database, column: str) -> None:
    _append(database, 6)
    _tamper(database, update(AuditEntry).where(AuditEntry.seq == 2).values({column: bytes(32)}))
    check = _verify(database)
    assert (check.ok, check.first_broken_seq) == (False, 2)


def test_rewritten_last_entry_is_detected_against_the_head(database: Database) -> None:
    # An attacker who recomputes the last entry's hash consistently still leaves the head behind.
    _append(database, 3)
    with database.write() as session:
        last = session.get_one(AuditEntry, 3)
        fields = {"actor": "mallory", "action": last.action}
        fields |= {"object_type": last.object_type, "object_id": last.object_id}
        forged = audit.chain_hash(last.prev_hash, 3, last.at_ms, fields, last.details)
        last.actor, last.entry_hash = "mallory", forged
    check = _verify(database)
    assert (check.ok, check.first_broken_seq) == (False, 3)


def test_entry_slipped_in_after_the_head_is_detected(database: Database) -> None:
    _append(database, 3)
    with database.write() as session:
        head_hash = session.get_one(AuditHead, 1).entry_hash
        fields = {"actor": "x", "action": "y", "object_type": "z", "object_id": "w"}
        forged = audit.chain_hash(head_hash, 4, T0_MS, fields, {})
        session.add(
            AuditEntry(
                seq=4, at_ms=T0_MS, details={}, prev_hash=head_hash, entry_hash=forged, **fields
            )
        )
    check = _verify(database)
    assert (check.ok, check.first_broken_seq) == (False, 4)


def test_rolled_back_append_leaves_no_trace(database: Database) -> None:
    _append(database, 2)
    with pytest.raises(ZeroDivisionError), database.write() as session:
        audit.append(
            session, actor="a", action="b", object_type="c", object_id="d", details={}, at_ms=1
        )
        _ = 1 / 0
    _append(database, 1)
    assert _verify(database) == audit.ChainCheck(ok=True, entries_checked=3)


def test_stored_details_are_a_copy_taken_at_append(database: Database) -> None:
    details: dict[str, Any] = {"items": [1, 2]}
    with database.write() as session:
        audit.append(
            session, actor="a", action="b", object_type="c", object_id="d", details=details
        )
        details["items"].append(3)
    assert _verify(database).ok
    with database.read() as session:
        assert audit.query(session)[0].details == {"items": [1, 2]}


def test_concurrent_appends_never_fork_the_chain(database: Database) -> None:
    threads_n, appends_per_thread = 8, 15
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def appender(thread_index: int) -> None:
        try:
            start.wait()
            for i in range(appends_per_thread):
                with database.write() as session:
                    audit.append(
                        session,
                        actor=f"thread-{thread_index}",
                        action="test.append",
                        object_type="test",
                        object_id=str(i),
                        details={"i": i},
                    )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = threads_n * appends_per_thread
    assert _verify(database) == audit.ChainCheck(ok=True, entries_checked=total)
    with database.read() as session:
        seqs = list(session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))
    assert seqs == list(range(1, total + 1))


@pytest.mark.parametrize(
    "details",
    [
        {"set": {1, 2}},
        {"bytes": b"raw"},
        {"tuple": (1, 2)},
        {"nan": float("nan")},
        {"inf": float("inf")},
        {1: "int key"},
        {"object": object()},
        {"surrogate": "\ud800"},
        "not a dict",
    ],
)
def test_details_that_are_not_json_safe_are_rejected(database: Database, details: Any) -> None:
    with pytest.raises(CardsvcError) as caught, database.write() as session:
        audit.append(
            session, actor="a", action="b", object_type="c", object_id="d", details=details
        )
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert _verify(database) == audit.ChainCheck(ok=True, entries_checked=0)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"actor": ""}, ErrorCode.INVALID_ARGUMENT),
        ({"object_id": "a\x00b"}, ErrorCode.INVALID_ARGUMENT),
        ({"at_ms": -1}, ErrorCode.INVALID_ARGUMENT),
        ({"actor": "a" * 65}, ErrorCode.LIMIT_EXCEEDED),
        ({"object_type": "t" * 33}, ErrorCode.LIMIT_EXCEEDED),
        ({"details": {"blob": "x" * audit.DETAILS_BYTES_MAX}}, ErrorCode.LIMIT_EXCEEDED),
    ],
)
def test_out_of_bounds_fields_are_rejected(
    database: Database, overrides: dict[str, Any], code: ErrorCode
) -> None:
    fields: dict[str, Any] = {
        "actor": "a",
        "action": "b",
        "object_type": "c",
        "object_id": "d",
        "details": {},
    }
    with pytest.raises(CardsvcError) as caught, database.write() as session:
        audit.append(session, **(fields | overrides))
    assert caught.value.code is code


def test_query_filters_and_pages(database: Database) -> None:
    _append(database, 10)
    with database.read() as session:
        delivered = audit.query(session, action="code.deliver")
        assert [e.seq for e in delivered] == [2, 4, 6, 8, 10]
        assert [e.seq for e in audit.query(session, object_type="sku", object_id="object-4")] == [5]
        window = audit.query(session, since_ms=T0_MS + 2, until_ms=T0_MS + 5)
        assert [e.seq for e in window] == [3, 4, 5]
        first_page = audit.query(session, limit=4)
        second_page = audit.query(session, limit=4, after_seq=first_page[-1].seq)
        assert [e.seq for e in first_page + second_page] == list(range(1, 9))
        assert audit.query(session, actor="nobody") == []


@pytest.mark.parametrize(
    ("limit", "code"),
    [(0, ErrorCode.INVALID_ARGUMENT), (audit.QUERY_LIMIT_MAX + 1, ErrorCode.LIMIT_EXCEEDED)],
)
def test_query_limit_is_bounded(database: Database, limit: int, code: ErrorCode) -> None:
    with pytest.raises(CardsvcError) as caught, database.read() as session:
        audit.query(session, limit=limit)
    assert caught.value.code is code
