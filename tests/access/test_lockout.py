"""Goal: prove login throttling and lockout (cardsvc.access.sessions, docs/users.md): five
failures for one login from one IP lock that pair for 15 minutes, doubling with each lock up to
the cap, and the lock lifts on time; an IP failing 30 times over any logins is refused before
anything is hashed; an attacker hammering an account from one IP never locks its owner out from
another IP; an attack from many IPs locks the account for untrusted IPs, but never for an IP the
owner logged in from with TOTP, and the lock survives a restart; locked and unknown logins
answer alike, so locks do not reveal which logins exist; every failure and lock is audited.

Method: a ``Logins`` on SQLite and PostgreSQL with a fast argon2 and a manual clock; the
attacker and the owner are just different ``ip`` arguments; time moves by ``clock.advance``.
"""

from __future__ import annotations

from typing import Any

import pytest

from cardsvc.access import LockoutPolicy, Logins, OwnerCreated, Passwords
from cardsvc.crypto import MasterKeyring
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from tests.access.conftest import (
    OWNER_PASSWORD,
    Clock,
    SecretWatch,
    audit_actions,
    audit_entries,
    code_now,
)

ATTACKER = "203.0.113.66"
OWNER_IP = "192.0.2.10"
MINUTE = 60_000
WRONG = "wrong password guess!"


def attempt(logins: Logins, login: str = "owner", password: str = WRONG,
            ip: str = ATTACKER, **kwargs: Any) -> CardsvcError:
    with pytest.raises(CardsvcError) as caught:
        logins.login(login, password, ip=ip, **kwargs)
    return caught.value


def owner_in(logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch,
             ip: str = OWNER_IP) -> None:
    result = logins.login("owner", OWNER_PASSWORD, ip=ip,
                          totp_code=code_now(owner.totp.secret_base32, clock))
    watch.secret(result.token)
    clock.advance(30_000)  # the next login uses the next TOTP step


def test_five_failures_lock_the_login_from_that_ip_doubling_up_to_the_cap(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    for _ in range(5):
        assert attempt(logins).code == ErrorCode.LOGIN_FAILED
    locked = watch.error(attempt(logins))
    assert locked.code == ErrorCode.LOGIN_LOCKED
    assert locked.details == {"retry_after_s": 15 * 60}
    # Locked means not even the right password is looked at from there.
    assert attempt(logins, password=OWNER_PASSWORD,
                   totp_code=code_now(owner.totp.secret_base32, clock)).code == \
        ErrorCode.LOGIN_LOCKED
    clock.advance(15 * MINUTE)
    durations = []
    for _ in range(6):
        for _ in range(5):
            assert attempt(logins).code == ErrorCode.LOGIN_FAILED
        error = attempt(logins)
        assert error.code == ErrorCode.LOGIN_LOCKED
        durations.append(error.details["retry_after_s"])
        clock.advance(error.details["retry_after_s"] * 1000)
    assert durations == [30 * 60, 60 * 60, 120 * 60, 240 * 60, 240 * 60, 240 * 60]
    locks = audit_entries(database, "login.lockout")
    assert locks and {lock["details"]["scope"] for lock in locks} >= {"login_ip"}


def test_an_ip_failing_over_many_logins_is_refused_before_hashing(
        logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    for index in range(30):
        assert attempt(logins, login=f"user{index}").code == ErrorCode.LOGIN_FAILED
    refused = watch.error(attempt(logins, login="someone.else"))
    assert refused.code == ErrorCode.RATE_LIMITED
    assert refused.details["limit"] == "login_failures_per_ip"
    owner_in(logins, owner, clock, watch)  # other IPs are untouched
    clock.advance(15 * MINUTE)
    assert attempt(logins, login="someone.else").code == ErrorCode.LOGIN_FAILED


def test_an_attacker_hammering_from_one_ip_never_locks_the_owner_out_from_another(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    for _ in range(12):  # three hours of trying whenever the lock lifts
        while attempt(logins).code == ErrorCode.LOGIN_FAILED:
            pass
        owner_in(logins, owner, clock, watch)  # a first login from this IP, with TOTP
        clock.advance(15 * MINUTE)
    assert audit_actions(database).count("login.success") == 12


def test_an_attack_from_many_ips_locks_the_account_but_not_for_the_owners_usual_ip(
        database: Database, keyring: MasterKeyring, passwords: Passwords,
        logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    owner_in(logins, owner, clock, watch)  # makes OWNER_IP a trusted source
    for index in range(20):
        assert attempt(logins, ip=f"203.0.113.{index // 4}").code == ErrorCode.LOGIN_FAILED
    assert attempt(logins, ip="203.0.113.200").code == ErrorCode.LOGIN_LOCKED
    # The owner travelling (a new IP) is locked out too, even with the right password and
    # code: the lock does not look at credentials, or it would still answer guesses.
    new_place = attempt(logins, password=OWNER_PASSWORD, ip="198.51.100.7",
                        totp_code=code_now(owner.totp.secret_base32, clock))
    assert new_place.code == ErrorCode.LOGIN_LOCKED
    # From the IP it logged in from with TOTP, the owner gets in.
    owner_in(logins, owner, clock, watch)
    # The lock is in SQL: a restarted process (new Logins, empty memory) still has it.
    restarted = Logins(database, keyring, passwords=passwords, clock_ms=clock)
    assert attempt(restarted, ip="203.0.113.201").code == ErrorCode.LOGIN_LOCKED
    owner_in(restarted, owner, clock, watch)
    clock.advance(15 * MINUTE)
    owner_in(restarted, owner, clock, watch, ip="198.51.100.7")
    scopes = {lock["details"]["scope"] for lock in audit_entries(database, "login.lockout")}
    assert "account" in scopes


def test_a_trusted_ip_needs_a_login_with_totp_not_just_any_attempt(
        logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    # Right password, wrong code from an IP: not a trusted source afterwards.
    assert attempt(logins, password=OWNER_PASSWORD, ip=OWNER_IP,
                   totp_code="123456" if code_now(owner.totp.secret_base32, clock) != "123456"
                   else "654321").code == ErrorCode.LOGIN_FAILED
    for index in range(20):
        attempt(logins, ip=f"203.0.113.{index // 4}")
    assert attempt(logins, password=OWNER_PASSWORD, ip=OWNER_IP,
                   totp_code=code_now(owner.totp.secret_base32, clock)).code == \
        ErrorCode.LOGIN_LOCKED


def test_unknown_logins_lock_exactly_like_real_ones(
        logins: Logins, owner: OwnerCreated, watch: SecretWatch) -> None:
    answers: dict[str, list[str]] = {}
    for login in ("owner", "nobody.at.all"):
        seen = []
        for index in range(22):
            error = attempt(logins, login=login, ip=f"203.0.113.{index // 4}")
            seen.append(f"{error.code}:{sorted(error.details.items())}")
        answers[login] = seen
    assert answers["owner"] == answers["nobody.at.all"]
    assert answers["owner"][-1] == "LOGIN_LOCKED:[('retry_after_s', 900)]"


def test_a_successful_login_clears_the_failures_of_its_pair(
        logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    for _ in range(4):
        attempt(logins, ip=OWNER_IP)
    owner_in(logins, owner, clock, watch)
    for _ in range(4):
        assert attempt(logins, ip=OWNER_IP).code == ErrorCode.LOGIN_FAILED
    assert attempt(logins, ip=OWNER_IP).code == ErrorCode.LOGIN_FAILED


def test_policy_values_are_validated() -> None:
    with pytest.raises(CardsvcError) as caught:
        LockoutPolicy(lock_ms=0)
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(CardsvcError):
        LockoutPolicy(login_ip_failures_max=-1)
