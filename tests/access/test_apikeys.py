"""Goal: API keys as the domain sees them, without HTTP: a key's text is shown once and only the
hash of its secret is stored; a valid key authenticates from the cache after one SQL read,
anything else is UNAUTHENTICATED with one error whatever was wrong; a revocation through the
authenticator is immediate; made-up key ids never evict valid keys from the cache; the shape of
a key request is checked before anything is written.

Method: ``issue_key``/``KeyAuthenticator``/``list_keys`` over the ``database`` fixture (SQLite
and PostgreSQL); the cache bounds are shrunk with monkeypatch so eviction is reached in a few
calls.
"""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from cardsvc.access import apikeys
from cardsvc.access.apikeys import KeyAuthenticator, issue_key, list_keys, parse_key, revoke_key
from cardsvc.access.tables import ApiKey
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode


def new_key(database: Database, role: str = "terminal", **kwargs: object) -> str:
    with database.write() as session:
        _, text = issue_key(session, role=role, **kwargs)  # type: ignore[arg-type]
    return text


def refused(call: object) -> ErrorCode:
    with pytest.raises(CardsvcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_only_the_hash_of_the_secret_is_stored(database: Database) -> None:
    text = new_key(database, name="till")
    key_id, secret = parse_key(text) or ("", "")
    with database.read() as session:
        row = session.scalars(select(ApiKey)).one()
    assert row.key_id == key_id
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).digest()
    assert secret not in repr(list_keys(database))


@pytest.mark.parametrize("text", ["", "cs_short_x", "xx_0123456789abcdef_secret",
                                  "cs_0123456789abcdef_", "cs_" + "a" * 200, "cs_ünïcode_x"])
def test_malformed_key_texts_do_not_parse(text: str) -> None:
    assert parse_key(text) is None


def test_a_valid_key_is_read_once_then_served_from_the_cache(database: Database) -> None:
    text = new_key(database)
    keys = KeyAuthenticator(database)
    assert keys.authenticate_cached(text) is None  # not read yet: the caller must read SQL
    principal = keys.authenticate(text)
    assert keys.authenticate_cached(text) == principal
    key_id, _ = parse_key(text) or ("", "")
    wrong_secret = f"cs_{key_id}_{'x' * 43}"
    for bad in (wrong_secret, "cs_0123456789abcdef_nope", "nonsense"):
        assert refused(lambda bad=bad: keys.authenticate(bad)) == ErrorCode.UNAUTHENTICATED


def test_a_revocation_through_the_authenticator_is_immediate(database: Database) -> None:
    text = new_key(database)
    keys = KeyAuthenticator(database)
    principal = keys.authenticate(text)
    keys.revoke(principal.key_id, actor="test")
    assert keys.authenticate_cached(text) is None  # forgotten: the next call reads SQL
    assert refused(lambda: keys.authenticate(text)) == ErrorCode.UNAUTHENTICATED
    assert revoke_key(database, principal.key_id, actor="test") is False  # idempotent
    assert refused(lambda: revoke_key(database, "f" * 16, actor="test")) == (
        ErrorCode.KEY_NOT_FOUND)


def test_made_up_key_ids_never_evict_a_valid_key(database: Database,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apikeys, "CACHE_ENTRIES_MAX", 2)
    monkeypatch.setattr(apikeys, "UNKNOWN_ENTRIES_MAX", 2, raising=False)
    text = new_key(database)
    keys = KeyAuthenticator(database)
    principal = keys.authenticate(text)
    for i in range(20):
        made_up = f"cs_{i:016x}_guess"
        assert refused(lambda made_up=made_up: keys.authenticate(made_up)) == (
            ErrorCode.UNAUTHENTICATED)
    assert keys.authenticate_cached(text) == principal  # still cached: no SQL read needed


def test_a_new_key_carries_its_creation_time_and_lists_the_same(database: Database) -> None:
    with database.write() as session:
        info, _ = issue_key(session, role="admin", name="ops", created_by="test",
                            now_ms=1_700_000_000_123)
    assert (info.created_at_ms, info.created_by, info.revoked_at_ms) == (
        1_700_000_000_123, "test", None)
    assert list_keys(database) == [info]
    assert info.principal().is_admin and "secret" not in str(info.to_dict())


@pytest.mark.parametrize(("role", "skus", "code"), [
    ("terminal", [], ErrorCode.INVALID_ARGUMENT),
    ("agent", ["VIP"], ErrorCode.INVALID_ARGUMENT),
    ("terminal", [f"S{i}" for i in range(apikeys.SKUS_PER_KEY_MAX + 1)],
     ErrorCode.LIMIT_EXCEEDED),
])
def test_key_requests_limited_to_skus_are_checked(role: str, skus: list[str],
                                                  code: ErrorCode) -> None:
    agent_id = "A" if role == "agent" else None
    assert refused(lambda: apikeys.check_key_request(role, agent_id, None, skus)) == code
