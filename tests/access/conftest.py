"""Fixtures for the console users' tests: a fast argon2 (the real parameters cost ~140 ms per
hash; one test checks them), a fixed master keyring, a manual clock (tests never sleep), a
``Logins`` over the ``database`` fixture (SQLite and PostgreSQL), and a secret watch.

The secret watch is this package's version of the suite-wide leak watch (tests/leak_watch.py,
which covers codes and PINs): every password, TOTP secret and code, recovery code, invitation
and session token a test registers must not appear in any log line, any error's message or
details, or any audit entry written during the test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest
from sqlalchemy import select

from cardsvc.access import (
    Argon2Params,
    Logins,
    OwnerCreated,
    Passwords,
    create_owner,
    totp_code,
)
from cardsvc.access.users import totp_step
from cardsvc.audit.tables import AuditEntry
from cardsvc.crypto import MasterKey, MasterKeyring
from cardsvc.db import Database
from cardsvc.errors import CardsvcError

T0_MS = 1_700_000_000_000
FAST_ARGON2 = Argon2Params(time_cost=1, memory_kib=8, parallelism=1)
OWNER_PASSWORD = "owner's long passphrase 1"
STAFF_PASSWORD = "staff member passphrase 2"


class Clock:
    """Wall time in milliseconds that moves only when a test moves it."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyring() -> MasterKeyring:
    key = MasterKey.from_bytes(bytes(range(100, 132)))
    return MasterKeyring(current=key, by_id=MappingProxyType({key.key_id: key}))


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(FAST_ARGON2)


@pytest.fixture
def logins(database: Database, keyring: MasterKeyring, passwords: Passwords,
           clock: Clock) -> Logins:
    return Logins(database, keyring, passwords=passwords, clock_ms=clock)


@dataclass
class SecretWatch:
    """Secrets registered by a test, and the texts they must never appear in."""

    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)

    def secret(self, *values: str | None) -> None:
        for value in values:
            if value:
                self.secrets.add(value)

    def error(self, error: CardsvcError) -> CardsvcError:
        self.texts.append(("error", json.dumps(error.to_dict(), sort_keys=True)))
        self.texts.append(("error repr", repr(error) + str(error)))
        return error

    def leaks(self) -> list[str]:
        found = []
        for place, text in self.texts:
            for value in self.secrets:
                if value in text or value.lower() in text.lower():
                    found.append(f"{place} shows a secret ending {value[-4:]}")
        return found


class _Handler(logging.Handler):
    def __init__(self, watch: SecretWatch) -> None:
        super().__init__(logging.DEBUG)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        self.watch.texts.append((f"log {record.name}", text))


@pytest.fixture
def watch(database: Database) -> Iterator[SecretWatch]:
    """Fails the test if a registered secret shows in a log line, an error the test passed to
    ``watch.error``, or any audit entry."""
    found = SecretWatch()
    handler = _Handler(found)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield found
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    with database.read() as session:
        for entry in session.scalars(select(AuditEntry)):
            found.texts.append((f"audit {entry.action}", json.dumps(
                [entry.actor, entry.object_id, entry.details])))
    leaks = found.leaks()
    assert not leaks, leaks


def make_owner(database: Database, keyring: MasterKeyring, passwords: Passwords,
               clock: Clock, login: str = "Owner") -> OwnerCreated:
    return create_owner(database, keyring, passwords, login=login, password=OWNER_PASSWORD,
                        display_name="The Owner", now_ms=clock())


@pytest.fixture
def owner(database: Database, keyring: MasterKeyring, passwords: Passwords,
          clock: Clock, watch: SecretWatch) -> OwnerCreated:
    created = make_owner(database, keyring, passwords, clock)
    watch.secret(OWNER_PASSWORD, created.totp.secret_base32, *created.recovery_codes)
    return created


def code_now(secret_base32: str, clock: Clock, offset_steps: int = 0) -> str:
    """The TOTP code an authenticator shows at the clock's time (plus some steps)."""
    return totp_code(secret_base32, totp_step(clock()) + offset_steps)


def audit_actions(database: Database) -> list[str]:
    with database.read() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def audit_entries(database: Database, action: str) -> list[dict[str, Any]]:
    with database.read() as session:
        return [{"actor": e.actor, "object_id": e.object_id, "details": e.details}
                for e in session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                         .order_by(AuditEntry.seq))]
