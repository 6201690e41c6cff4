"""Goal: prove that envelope encryption keeps codes secret and bound to their rows: a sealed
payload opens only under its own data key and its own code id, any altered byte is detected, data
keys open only under the master key that wrapped them, and the master key is created once,
privately, and found where the operator put it.

Method: round trips with and without PINs; negative cases that move, alter, truncate or re-key
payloads and wrapped keys, each checked for PAYLOAD_CORRUPT and for messages free of code text;
master-key loading from a temporary data directory and from each environment variable (including
eight threads racing to create the key file); the data-key cache's hits and evictions; and the
cost of sealing (one AESGCM object per data key, a million codes in seconds).
"""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from cardsvc.crypto import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    MASTER_KEY_FILE_ENV,
    MasterKey,
    new_data_key,
    seal_code,
    wrap_data_key,
)
from cardsvc.crypto.envelope import DataKeyCache, aead_for, unwrap_data_key
from cardsvc.crypto.opening import open_code
from cardsvc.errors import CardsvcError, ErrorCode

CODE = "ABCD-EFGH-IJKL-MNOP"
PIN = "123456"


@pytest.fixture(autouse=True)
def _no_master_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv(MASTER_KEY_FILE_ENV, raising=False)


def _assert_corrupt(error: CardsvcError) -> None:
    assert error.code is ErrorCode.PAYLOAD_CORRUPT
    assert CODE not in error.message
    assert CODE not in repr(error.details)
    assert PIN not in error.message


@pytest.mark.parametrize(
    ("code", "pin"),
    [(CODE, PIN), (CODE, None), (CODE, ""), ("卡密-ÄÖÜ-é", "密码"), ("X", None)],
)
def test_sealed_code_opens_to_the_same_code_and_pin(code: str, pin: str | None) -> None:
    data_key = new_data_key()
    sealed = seal_code(data_key, 42, code, pin)
    if len(code.encode()) >= 8:  # a short text may occur in random ciphertext by chance
        assert code.encode() not in sealed
    assert open_code(data_key, 42, sealed) == (code, pin)


def test_sealing_twice_gives_different_payloads() -> None:
    data_key = new_data_key()
    assert seal_code(data_key, 1, CODE, PIN) != seal_code(data_key, 1, CODE, PIN)


def test_payload_moved_to_another_code_id_fails_to_open() -> None:
    data_key = new_data_key()
    sealed = seal_code(data_key, 7, CODE, PIN)
    with pytest.raises(CardsvcError) as caught:
        open_code(data_key, 8, sealed)
    _assert_corrupt(caught.value)
    assert caught.value.details == {"code_id": 8}


def test_payload_opened_with_another_data_key_fails() -> None:
    sealed = seal_code(new_data_key(), 7, CODE, PIN)
    with pytest.raises(CardsvcError) as caught:
        open_code(new_data_key(), 7, sealed)
    _assert_corrupt(caught.value)


def test_any_flipped_byte_fails_to_open() -> None:
    data_key = new_data_key()
    sealed = seal_code(data_key, 7, CODE, PIN)
    for index in range(len(sealed)):  # nonce, ciphertext and tag alike
        altered = bytearray(sealed)
        altered[index] ^= 0x01
        with pytest.raises(CardsvcError) as caught:
            open_code(data_key, 7, bytes(altered))
        _assert_corrupt(caught.value)


@pytest.mark.parametrize("length", [0, 1, 12, 27, 28])
def test_truncated_payload_fails_to_open(length: int) -> None:
    data_key = new_data_key()
    sealed = seal_code(data_key, 7, CODE, PIN)
    with pytest.raises(CardsvcError) as caught:
        open_code(data_key, 7, sealed[:length])
    _assert_corrupt(caught.value)


@pytest.mark.parametrize("code_id", [-1, 1 << 63])
def test_code_ids_outside_bigint_are_rejected(code_id: int) -> None:
    with pytest.raises(CardsvcError) as caught:
        seal_code(new_data_key(), code_id, CODE, PIN)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_data_key_round_trips_through_its_master_key() -> None:
    master = MasterKey.from_bytes(os.urandom(32))
    data_key = new_data_key()
    wrapped = wrap_data_key(master, data_key)
    assert data_key not in wrapped
    assert unwrap_data_key(master, master.key_id, wrapped) == data_key


def test_several_master_keys_coexist_by_key_id() -> None:
    old, new = MasterKey.from_bytes(os.urandom(32)), MasterKey.from_bytes(os.urandom(32))
    keys = {old.key_id: old, new.key_id: new}
    data_old, data_new = new_data_key(), new_data_key()
    assert unwrap_data_key(keys, old.key_id, wrap_data_key(old, data_old)) == data_old
    assert unwrap_data_key(keys, new.key_id, wrap_data_key(new, data_new)) == data_new


def test_wrong_master_key_fails_to_unwrap() -> None:
    right, wrong = MasterKey.from_bytes(os.urandom(32)), MasterKey.from_bytes(os.urandom(32))
    wrapped = wrap_data_key(right, new_data_key())
    with pytest.raises(CardsvcError) as not_loaded:
        unwrap_data_key(wrong, right.key_id, wrapped)
    assert not_loaded.value.code is ErrorCode.PAYLOAD_CORRUPT
    assert not_loaded.value.details["reason"] == "master_key_not_loaded"
    # Even under a matching id (a mapping filed wrongly), the wrong key does not open it.
    with pytest.raises(CardsvcError) as wrong_key:
        unwrap_data_key({right.key_id: wrong}, right.key_id, wrapped)
    assert wrong_key.value.code is ErrorCode.PAYLOAD_CORRUPT


def test_altered_wrapped_data_key_fails_to_unwrap() -> None:
    master = MasterKey.from_bytes(os.urandom(32))
    wrapped = bytearray(wrap_data_key(master, new_data_key()))
    wrapped[20] ^= 0x80
    with pytest.raises(CardsvcError) as caught:
        unwrap_data_key(master, master.key_id, bytes(wrapped))
    assert caught.value.code is ErrorCode.PAYLOAD_CORRUPT


def test_master_key_id_is_short_stable_and_the_key_stays_out_of_repr() -> None:
    key = bytes(range(32))
    master = MasterKey.from_bytes(key)
    assert master == MasterKey.from_bytes(key)
    assert len(master.key_id) == 8
    assert int(master.key_id, 16) >= 0
    assert master.key_id != MasterKey.from_bytes(bytes(32)).key_id
    assert key.hex() not in repr(master)
    assert repr(key) not in repr(master)


def test_master_key_file_is_created_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    first = MasterKey.load(tmp_path)
    path = tmp_path / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == first.key
    assert MasterKey.load(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [MASTER_KEY_FILE]


def test_threads_racing_to_create_the_master_key_all_get_the_same_key(tmp_path: Path) -> None:
    threads_n = 8
    start = threading.Barrier(threads_n)
    keys: list[MasterKey] = []

    def load() -> None:
        start.wait()
        keys.append(MasterKey.load(tmp_path))

    threads = [threading.Thread(target=load) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == threads_n
    assert {key.key_id for key in keys} == {MasterKey.load(tmp_path).key_id}
    assert sorted(p.name for p in tmp_path.iterdir()) == [MASTER_KEY_FILE]


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_master_key_from_the_environment_variable(
    encoding: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = os.urandom(32)
    text = key.hex() if encoding == "hex" else base64.b64encode(key).decode()
    monkeypatch.setenv(MASTER_KEY_ENV, f" {text}\n")
    assert MasterKey.load(tmp_path).key == key
    assert not (tmp_path / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize("form", ["raw", "base64"])
def test_master_key_from_a_named_file(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = os.urandom(32)
    path = tmp_path / "secret" / "kek"
    path.parent.mkdir()
    path.write_bytes(key if form == "raw" else base64.b64encode(key) + b"\n")
    monkeypatch.setenv(MASTER_KEY_FILE_ENV, str(path))
    assert MasterKey.load(tmp_path).key == key
    assert not (tmp_path / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize(
    "settings",
    [
        {MASTER_KEY_ENV: "00" * 31},
        {MASTER_KEY_ENV: "not a key"},
        {MASTER_KEY_FILE_ENV: "/nonexistent/master.key"},
        {MASTER_KEY_ENV: "00" * 32, MASTER_KEY_FILE_ENV: "/nonexistent/master.key"},
    ],
)
def test_bad_master_key_settings_are_rejected(
    settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CardsvcError) as caught:
        MasterKey.load(tmp_path)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_data_key_cache_unwraps_each_batch_once_and_evicts_the_least_recent() -> None:
    master = MasterKey.from_bytes(os.urandom(32))
    keys = {batch: new_data_key() for batch in (1, 2, 3)}
    wrapped = {batch: wrap_data_key(master, key) for batch, key in keys.items()}
    cache = DataKeyCache(max_entries=2)
    assert cache.get_or_unwrap(1, master, master.key_id, wrapped[1]) == keys[1]
    assert cache.get_or_unwrap(2, master, master.key_id, wrapped[2]) == keys[2]
    # A hit never unwraps: garbage in place of the wrapped key is not even looked at.
    assert cache.get_or_unwrap(1, master, master.key_id, b"garbage") == keys[1]
    assert cache.get_or_unwrap(3, master, master.key_id, wrapped[3]) == keys[3]
    assert len(cache) == 2
    with pytest.raises(CardsvcError) as evicted:  # batch 2 was the least recently used
        cache.get_or_unwrap(2, master, master.key_id, b"garbage")
    assert evicted.value.code is ErrorCode.PAYLOAD_CORRUPT


def test_sealing_reuses_one_aesgcm_object_per_data_key() -> None:
    data_key = new_data_key()
    misses_before = aead_for.cache_info().misses
    for code_id in range(1_000):
        seal_code(data_key, code_id, CODE, PIN)
    assert aead_for.cache_info().misses - misses_before == 1


def test_sealing_a_million_codes_takes_seconds() -> None:
    data_key = new_data_key()
    sample = 200_000
    started = time.perf_counter()
    for code_id in range(sample):
        seal_code(data_key, code_id, CODE, PIN)
    per_million_s = (time.perf_counter() - started) * (1_000_000 / sample)
    # About 2.5 s on the development machine; the bound leaves room for a loaded CI runner.
    assert per_million_s < 10.0
