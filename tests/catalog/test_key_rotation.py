"""Goal: prove that ``cardsvc keys rotate-master`` re-wraps every batch's data key under a new
master key without re-encrypting any code, that every batch opens in every state a crash can
leave behind, that a re-run always finishes in one consistent state, and that the rotation
refuses to run beside a server or on a key it cannot manage, auditing what it did and never
revealing key material.

Method: on SQLite and PostgreSQL (``database`` fixture), write batches and sealed code payloads
directly (``wrap_data_key``, ``seal_code``; no core needed) under a data directory's master key,
then rotate with ``cardsvc.catalog.key_rotation`` or through ``cardsvc.cli.main``. Crashes are
simulated by building each intermediate state the protocol passes through: only ``master.key.next``
written (step 1), a subset of batches re-wrapped by hand (mid step 2), every batch re-wrapped with
or without the retired key's hard link (before promotion), and a corrupt data key stopping the
rotation after committed chunks. In each state the keyring must open every code, and a re-run must
leave every batch under ``master.key`` with no ``.next`` left. Payload bytes are compared before
and after; key material is searched for (hex, base64) in audit entries and CLI output.
"""

from __future__ import annotations

import base64
import io
import os
import stat
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select, update

from cardsvc import audit, crypto
from cardsvc.audit.tables import AuditEntry
from cardsvc.catalog import key_rotation as master_keys
from cardsvc.catalog.tables import Batch, CodePayload, Sku
from cardsvc.cli import main
from cardsvc.crypto import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    MASTER_KEY_FILE_ENV,
    NEXT_MASTER_KEY_FILE,
    MasterKey,
    MasterKeyring,
    load_keyring,
    new_data_key,
    seal_code,
    wrap_data_key,
)
from cardsvc.crypto.envelope import unwrap_data_key
from cardsvc.crypto.opening import open_code
from cardsvc.db import Database
from cardsvc.engine.datadir import DataDirLock
from cardsvc.errors import CardsvcError, ErrorCode

T0_MS = 1_700_000_000_000
CODES_PER_BATCH = 3

Codes = dict[int, tuple[str, str | None]]


@pytest.fixture(autouse=True)
def _no_master_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv(MASTER_KEY_FILE_ENV, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# ----- helpers -----


def _add_batches(db: Database, master: MasterKey, count: int) -> tuple[Codes, list[bytes]]:
    """``count`` batches of CODES_PER_BATCH codes under ``master``: the codes by id, and the
    batches' plaintext data keys (to search for leaks)."""
    codes: Codes = {}
    data_keys: list[bytes] = []
    with db.write() as session:
        if session.get(Sku, "VIP") is None:
            session.add(Sku(sku="VIP", name="VIP", uses_per_code=1, redeem_requires_sale=False,
                            validity_days_after_sale=None, created_at_ms=T0_MS))
    for _ in range(count):
        data_key = new_data_key()
        data_keys.append(data_key)
        with db.write() as session:
            batch = Batch(sku="VIP", pool_id=0, status="ready", source="import",
                          data_key_wrapped=wrap_data_key(master, data_key),
                          master_key_id=master.key_id, created_at_ms=T0_MS)
            session.add(batch)
            session.flush()
            for index in range(CODES_PER_BATCH):
                code_id = batch.batch_id * 1000 + index
                code = f"CODE-{batch.batch_id:04d}-{index:04d}"
                pin = None if index == 0 else f"{index:06d}"
                codes[code_id] = (code, pin)
                session.add(CodePayload(code_id=code_id, batch_id=batch.batch_id,
                                        sealed=seal_code(data_key, code_id, code, pin)))
    return codes, data_keys


def _sealed(db: Database) -> dict[int, bytes]:
    with db.read() as session:
        rows = session.execute(select(CodePayload.code_id, CodePayload.sealed)).all()
    return {row.code_id: bytes(row.sealed) for row in rows}


def _wrapped(db: Database) -> dict[int, tuple[str, bytes]]:
    with db.read() as session:
        rows = session.execute(
            select(Batch.batch_id, Batch.master_key_id, Batch.data_key_wrapped)).all()
    return {row.batch_id: (row.master_key_id, bytes(row.data_key_wrapped)) for row in rows}


def _open_all(db: Database, keys: crypto.MasterKeys) -> Codes:
    wrapped = _wrapped(db)
    with db.read() as session:
        rows = session.execute(
            select(CodePayload.code_id, CodePayload.batch_id, CodePayload.sealed)).all()
    opened: Codes = {}
    for row in rows:
        master_key_id, data_key_wrapped = wrapped[row.batch_id]
        data_key = unwrap_data_key(keys, master_key_id, data_key_wrapped)
        opened[row.code_id] = open_code(data_key, row.code_id, bytes(row.sealed))
    return opened


def _rewrap_by_hand(db: Database, keyring: MasterKeyring, batch_ids: list[int]) -> None:
    """What step 2 commits for ``batch_ids``: their data keys under the pending key."""
    new = keyring.pending
    assert new is not None
    wrapped = _wrapped(db)
    with db.write() as session:
        for batch_id in batch_ids:
            master_key_id, data_key_wrapped = wrapped[batch_id]
            data_key = unwrap_data_key(keyring, master_key_id, data_key_wrapped)
            session.execute(update(Batch).where(Batch.batch_id == batch_id).values(
                data_key_wrapped=wrap_data_key(new, data_key), master_key_id=new.key_id))


def _assert_single_consistent_state(data_dir: Path, db: Database, codes: Codes) -> MasterKey:
    """After a finished rotation: no pending key, every batch under ``master.key``, every code
    opens with the keyring and with the current key alone. Returns the current key."""
    assert not (data_dir / NEXT_MASTER_KEY_FILE).exists()
    keyring = load_keyring(data_dir, create=False)
    assert keyring.pending is None
    assert {key_id for key_id, _ in _wrapped(db).values()} == {keyring.current.key_id}
    assert _open_all(db, keyring) == codes
    assert _open_all(db, keyring.current) == codes
    return keyring.current


def _key_texts(keys: list[bytes]) -> list[str]:
    return [text for key in keys for text in (key.hex(), base64.b64encode(key).decode())]


def _audit_entries(db: Database) -> list[AuditEntry]:
    with db.read() as session:
        return audit.query(session, action=master_keys.ROTATE_ACTION, limit=1000)


# ----- the rotation -----


def test_rotation_keeps_every_code_openable_and_payloads_byte_identical(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    codes, _ = _add_batches(database, old, 4)
    sealed_before = _sealed(database)
    wrapped_before = _wrapped(database)

    result = master_keys.rotate_master_key(data_dir, database, actor="test")

    assert result.old_key_id == old.key_id
    assert result.new_key_id != old.key_id
    assert result.batches_rewrapped == 4
    assert not result.resumed
    assert _sealed(database) == sealed_before  # not re-encrypted: the same bytes
    wrapped_after = _wrapped(database)
    assert all(wrapped_after[b][1] != wrapped_before[b][1] for b in wrapped_before)
    new = _assert_single_consistent_state(data_dir, database, codes)
    assert new.key_id == result.new_key_id


def test_old_master_key_alone_no_longer_opens_rewrapped_data_keys(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    _add_batches(database, old, 2)
    result = master_keys.rotate_master_key(data_dir, database, actor="test")

    for master_key_id, wrapped in _wrapped(database).values():
        assert master_key_id == result.new_key_id
        with pytest.raises(CardsvcError) as not_loaded:
            unwrap_data_key(old, master_key_id, wrapped)
        assert not_loaded.value.details["reason"] == "master_key_not_loaded"
        # Even offered under the new key's id, the old key fails authentication.
        with pytest.raises(CardsvcError) as forged:
            unwrap_data_key({master_key_id: old}, master_key_id, wrapped)
        assert forged.value.code is ErrorCode.PAYLOAD_CORRUPT
        assert forged.value.details["reason"] == "authentication_failed"


def test_rotation_leaves_new_current_key_and_private_retired_old_key(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    _add_batches(database, old, 1)
    result = master_keys.rotate_master_key(data_dir, database, actor="test")

    assert result.retired_file == f"master.key.{old.key_id}.retired"
    retired = data_dir / result.retired_file
    assert retired.read_bytes() == old.key
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / MASTER_KEY_FILE).stat().st_mode) == 0o600
    keyring = load_keyring(data_dir)
    assert keyring.current.key_id == result.new_key_id
    assert set(keyring.by_id) == {old.key_id, result.new_key_id}
    assert MasterKey.load(data_dir) == keyring.current  # the compatible single-key loader
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(
        ["LOCK", MASTER_KEY_FILE, result.retired_file])


def test_rotation_with_no_batches_still_rotates_and_audits(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    result = master_keys.rotate_master_key(data_dir, database, actor="test")
    assert result.batches_rewrapped == 0
    assert load_keyring(data_dir).current.key_id == result.new_key_id != old.key_id
    [entry] = _audit_entries(database)
    assert entry.details["complete"] is True
    assert entry.details["batches_rewrapped"] == 0


def test_two_rotations_keep_both_retired_keys_and_every_code_openable(
    data_dir: Path, database: Database
) -> None:
    first = load_keyring(data_dir).current
    codes, _ = _add_batches(database, first, 2)
    second = master_keys.rotate_master_key(data_dir, database, actor="test")
    more, _ = _add_batches(database, load_keyring(data_dir).current, 1)
    third = master_keys.rotate_master_key(data_dir, database, actor="test")

    assert third.old_key_id == second.new_key_id
    assert third.batches_rewrapped == 3
    keyring = load_keyring(data_dir)
    assert set(keyring.by_id) == {first.key_id, second.new_key_id, third.new_key_id}
    _assert_single_consistent_state(data_dir, database, codes | more)


# ----- crashes at every step, then a re-run -----


def test_crash_after_new_key_created_keeps_every_batch_open_and_rerun_finishes(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    codes, _ = _add_batches(database, old, 3)
    keyring = master_keys.prepare_next_key(data_dir)  # step 1, then "crash"
    assert keyring.pending is not None
    assert stat.S_IMODE((data_dir / NEXT_MASTER_KEY_FILE).stat().st_mode) == 0o600

    reloaded = load_keyring(data_dir)
    assert reloaded.current == old  # new batches keep using master.key until promotion
    assert reloaded.pending == keyring.pending
    assert MasterKey.load(data_dir) == old
    assert _open_all(database, reloaded) == codes
    # A server started in this state wraps a new batch under the current (old) key.
    more, _ = _add_batches(database, reloaded.current, 1)

    result = master_keys.rotate_master_key(data_dir, database, actor="test")
    assert result.resumed
    assert result.new_key_id == keyring.pending.key_id  # the pending key, not a fresh one
    assert result.batches_rewrapped == 4
    _assert_single_consistent_state(data_dir, database, codes | more)


def test_crash_mid_rewrap_keeps_every_batch_open_and_rerun_rewraps_only_the_rest(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    codes, _ = _add_batches(database, old, 5)
    keyring = master_keys.prepare_next_key(data_dir)
    assert keyring.pending is not None
    batch_ids = sorted(_wrapped(database))
    _rewrap_by_hand(database, keyring, batch_ids[:2])  # two chunks committed, then "crash"

    reloaded = load_keyring(data_dir)
    assert {key_id for key_id, _ in _wrapped(database).values()} == {
        old.key_id, keyring.pending.key_id}
    assert _open_all(database, reloaded) == codes

    result = master_keys.rotate_master_key(data_dir, database, actor="test")
    assert result.resumed
    assert result.batches_rewrapped == 3
    _assert_single_consistent_state(data_dir, database, codes)


@pytest.mark.parametrize("linked", [False, True], ids=["before_link", "after_link"])
def test_crash_before_promotion_keeps_every_batch_open_and_rerun_finishes(
    data_dir: Path, database: Database, linked: bool
) -> None:
    old = load_keyring(data_dir).current
    codes, _ = _add_batches(database, old, 3)
    keyring = master_keys.prepare_next_key(data_dir)
    assert keyring.pending is not None
    _rewrap_by_hand(database, keyring, sorted(_wrapped(database)))
    if linked:  # the first half of step 3: master.key also named as the retired key
        os.link(data_dir / MASTER_KEY_FILE, data_dir / f"master.key.{old.key_id}.retired")

    reloaded = load_keyring(data_dir)
    assert reloaded.current == old
    assert _open_all(database, reloaded) == codes

    result = master_keys.rotate_master_key(data_dir, database, actor="test")
    assert result.resumed
    assert result.batches_rewrapped == 0
    assert result.retired_file == f"master.key.{old.key_id}.retired"
    new = _assert_single_consistent_state(data_dir, database, codes)
    assert new.key_id == keyring.pending.key_id
    assert set(load_keyring(data_dir).by_id) == {old.key_id, new.key_id}


def test_corrupt_data_key_stops_rotation_after_committed_chunks_and_rerun_finishes(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    codes, _ = _add_batches(database, old, 4)
    last = max(_wrapped(database))
    good_wrapped = _wrapped(database)[last][1]
    bad = bytearray(good_wrapped)
    bad[-1] ^= 1
    with database.write() as session:
        session.execute(update(Batch).where(Batch.batch_id == last)
                        .values(data_key_wrapped=bytes(bad)))

    with pytest.raises(CardsvcError) as caught:
        master_keys.rotate_master_key(data_dir, database, actor="test", chunk_size=1)
    assert caught.value.code is ErrorCode.PAYLOAD_CORRUPT
    assert caught.value.details["batch_id"] == last
    keyring = load_keyring(data_dir)
    assert keyring.current == old  # nothing promoted
    assert keyring.pending is not None
    under = [key_id for batch_id, (key_id, _) in sorted(_wrapped(database).items())]
    assert under == [keyring.pending.key_id] * 3 + [old.key_id]  # three chunks committed

    with database.write() as session:  # the operator repairs the batch
        session.execute(update(Batch).where(Batch.batch_id == last)
                        .values(data_key_wrapped=good_wrapped))
    assert _open_all(database, load_keyring(data_dir)) == codes
    result = master_keys.rotate_master_key(data_dir, database, actor="test")
    assert result.resumed
    assert result.batches_rewrapped == 1
    _assert_single_consistent_state(data_dir, database, codes)


# ----- refusals -----


def test_rotation_beside_a_held_lock_refuses_with_data_dir_locked_and_changes_nothing(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    _add_batches(database, old, 2)
    wrapped_before = _wrapped(database)
    server = DataDirLock(data_dir)  # what a running server holds
    try:
        with pytest.raises(CardsvcError) as caught:
            master_keys.rotate_master_key(data_dir, database, actor="test")
    finally:
        server.close()
    assert caught.value.code is ErrorCode.DATA_DIR_LOCKED
    assert caught.value.details["holder_pid"] == str(os.getpid())
    assert not (data_dir / NEXT_MASTER_KEY_FILE).exists()
    assert load_keyring(data_dir).current == old
    assert _wrapped(database) == wrapped_before
    assert _audit_entries(database) == []


@pytest.mark.parametrize("variable", [MASTER_KEY_ENV, MASTER_KEY_FILE_ENV])
def test_rotation_of_a_master_key_from_the_environment_refuses_with_invalid_argument(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    key = os.urandom(crypto.KEY_LEN)
    if variable == MASTER_KEY_ENV:
        monkeypatch.setenv(variable, key.hex())
    else:
        key_file = tmp_path / "external.key"
        key_file.write_bytes(key)
        monkeypatch.setenv(variable, str(key_file))
    database = Database.open(data_dir)
    try:
        with pytest.raises(CardsvcError) as caught:
            master_keys.rotate_master_key(data_dir, database, actor="test")
    finally:
        database.close()
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert caught.value.details == {"field": variable}
    assert key.hex() not in caught.value.message
    assert not (data_dir / NEXT_MASTER_KEY_FILE).exists()
    assert not (data_dir / MASTER_KEY_FILE).exists()


def test_rotation_of_a_data_dir_without_master_key_refuses_and_creates_none(
    data_dir: Path, database: Database
) -> None:
    with pytest.raises(CardsvcError) as caught:
        master_keys.rotate_master_key(data_dir, database, actor="test")
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert not (data_dir / MASTER_KEY_FILE).exists()
    assert not (data_dir / NEXT_MASTER_KEY_FILE).exists()


def test_pending_key_equal_to_the_current_key_is_refused(data_dir: Path) -> None:
    current = load_keyring(data_dir).current
    (data_dir / NEXT_MASTER_KEY_FILE).write_bytes(current.key)
    with pytest.raises(CardsvcError) as caught:
        master_keys.prepare_next_key(data_dir)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


@pytest.mark.parametrize("chunk_size", [0, master_keys.REWRAP_CHUNK_MAX + 1])
def test_chunk_size_outside_its_bounds_is_refused(
    data_dir: Path, database: Database, chunk_size: int
) -> None:
    load_keyring(data_dir)
    with pytest.raises(CardsvcError) as caught:
        master_keys.rotate_master_key(data_dir, database, actor="test", chunk_size=chunk_size)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert not (data_dir / NEXT_MASTER_KEY_FILE).exists()


# ----- the keyring loader -----


def test_keyring_with_only_a_pending_key_uses_it_and_creates_no_key(data_dir: Path) -> None:
    pending = MasterKey.from_bytes(os.urandom(crypto.KEY_LEN))
    (data_dir / NEXT_MASTER_KEY_FILE).write_bytes(pending.key)
    keyring = load_keyring(data_dir)
    assert keyring.current == keyring.pending == pending
    assert dict(keyring.by_id) == {pending.key_id: pending}
    assert not (data_dir / MASTER_KEY_FILE).exists()


def test_keyring_from_the_environment_holds_that_key_only(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_keyring(data_dir)  # a data-directory key exists too
    external = MasterKey.from_bytes(os.urandom(crypto.KEY_LEN))
    monkeypatch.setenv(MASTER_KEY_ENV, external.key.hex())
    keyring = load_keyring(data_dir)
    assert keyring.from_environment
    assert keyring.current == external
    assert dict(keyring.by_id) == {external.key_id: external}
    assert keyring.pending is None


def test_keyring_by_id_is_read_only(data_dir: Path) -> None:
    keyring = load_keyring(data_dir)
    with pytest.raises(TypeError):
        keyring.by_id["x"] = keyring.current  # type: ignore[index]


def test_keyring_repr_shows_no_key_material(data_dir: Path) -> None:
    load_keyring(data_dir)
    keyring = master_keys.prepare_next_key(data_dir)
    for text in _key_texts([key.key for key in keyring.by_id.values()]):
        assert text not in repr(keyring)


# ----- audit and the command line -----


def test_audit_entries_record_key_ids_and_counts_and_no_key_material(
    data_dir: Path, database: Database
) -> None:
    old = load_keyring(data_dir).current
    _, data_keys = _add_batches(database, old, 5)
    wrapped_before = [wrapped for _, wrapped in _wrapped(database).values()]
    result = master_keys.rotate_master_key(data_dir, database, actor="ops", chunk_size=2)

    entries = _audit_entries(database)
    assert [entry.details["batches_rewrapped"] for entry in entries] == [2, 2, 1]
    assert [entry.details["complete"] for entry in entries] == [False, False, True]
    for entry in entries:
        assert entry.actor == "ops"
        assert entry.object_type == "master_key"
        assert entry.object_id == result.new_key_id
        assert entry.details["old_key_id"] == old.key_id
        assert entry.details["new_key_id"] == result.new_key_id
        assert entry.details["rewrapped_from_key_ids"] == [old.key_id]
    new = load_keyring(data_dir).current
    wrapped_after = [wrapped for _, wrapped in _wrapped(database).values()]
    secrets = _key_texts([old.key, new.key, *data_keys, *wrapped_before, *wrapped_after])
    for entry in entries:
        document = audit.canonical_json(entry.details).decode()
        assert not any(secret in document for secret in secrets)
    with database.read() as session:
        assert audit.verify(session).ok


def test_cli_rotate_master_prints_ids_and_count_and_no_key_material(
    data_dir: Path, database: Database, database_url: str
) -> None:
    old = load_keyring(data_dir).current
    codes, data_keys = _add_batches(database, old, 3)
    out = io.StringIO()
    status = main(["keys", "rotate-master", "--data-dir", str(data_dir),
                   "--database-url", database_url],
                  console=Console(file=out, width=200, highlight=False))
    assert status == 0
    text = out.getvalue()
    new = _assert_single_consistent_state(data_dir, database, codes)
    assert f"{old.key_id} -> {new.key_id}" in text
    assert "3 data keys re-wrapped" in text
    assert f"master.key.{old.key_id}.retired" in text
    assert not any(secret in text for secret in _key_texts([old.key, new.key, *data_keys]))
    with database.read() as session:
        count = session.scalar(select(func.count()).select_from(AuditEntry))
    assert count == 1


def test_cli_rotate_master_beside_a_running_server_exits_1_with_data_dir_locked(
    data_dir: Path, database: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = load_keyring(data_dir).current
    server = DataDirLock(data_dir)
    try:
        status = main(["keys", "rotate-master", "--data-dir", str(data_dir),
                       "--database-url", database_url],
                      console=Console(file=io.StringIO(), highlight=False))
    finally:
        server.close()
    assert status == 1
    assert "DATA_DIR_LOCKED" in capsys.readouterr().err
    assert load_keyring(data_dir).current == old
    assert not (data_dir / NEXT_MASTER_KEY_FILE).exists()
