"""Goal: prove the sessions of console users (cardsvc.access.sessions): a login makes a new
session whose token is stored only as SHA-256 (a new token at every login: no fixation); every
way a login can be wrong gives the same LOGIN_FAILED, and an unknown login costs an argon2
verification too; sessions end when idle (30 min staff, 8 h agents), at their absolute expiry
(12 h) however busy, when revoked, logged out, or the password changes; last-seen is written at
most once a minute; the user agent binding and CSRF token hold.

Method: a ``Logins`` on SQLite and PostgreSQL with a fast argon2 and a manual clock (never a
sleep); rows are read directly for what is stored; argon2 calls are counted by wrapping the
hasher; the secret watch (conftest) checks logs, errors and the audit log.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select

from cardsvc.access import (
    Logins,
    OwnerCreated,
    Passwords,
    SessionSettings,
    disable_user,
    invite_user,
    principal_of_user,
)
from cardsvc.access.tables import User, UserSession
from cardsvc.crypto import MasterKeyring
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from tests.access.conftest import (
    OWNER_PASSWORD,
    STAFF_PASSWORD,
    Clock,
    SecretWatch,
    audit_entries,
    code_now,
)

IP = "192.0.2.10"
MINUTE = 60_000
HOUR = 60 * MINUTE


def failed(call: Any, *args: Any, **kwargs: Any) -> CardsvcError:
    with pytest.raises(CardsvcError) as caught:
        call(*args, **kwargs)
    return caught.value


def owner_login(logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch,
                ip: str = IP, **kwargs: Any) -> Any:
    result = logins.login("owner", OWNER_PASSWORD, ip=ip,
                          totp_code=code_now(owner.totp.secret_base32, clock), **kwargs)
    watch.secret(result.token, result.session.csrf_token)
    return result


def staff_user(database: Database, logins: Logins, clock: Clock, watch: SecretWatch,
               login: str = "support", role: str = "support") -> dict[str, Any]:
    with database.read() as session:
        row = session.scalar(select(User).where(User.role == "owner"))
        assert row is not None
        actor = principal_of_user(row)
    invitation = invite_user(database, actor, login=login, display_name=login, role=role,
                             now_ms=clock())
    watch.secret(invitation.token, STAFF_PASSWORD)
    return logins.accept_invitation(invitation.token, STAFF_PASSWORD)


def test_login_makes_a_session_whose_token_is_stored_only_hashed(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    result = owner_login(logins, owner, clock, watch, user_agent="Firefox/140")
    assert result.token not in repr(result) and result.session.csrf_token not in repr(result)
    assert len(result.token) == 43  # 256 bits, URL-safe base64
    with database.read() as session:
        rows = list(session.execute(select(UserSession.__table__)))
    assert len(rows) == 1
    stored = repr(tuple(rows[0]))
    assert result.token not in stored and result.session.csrf_token not in stored
    assert rows[0].token_sha256 == hashlib.sha256(result.token.encode()).digest()
    info = logins.authenticate(result.token, user_agent="Firefox/140")
    assert info.session_id == result.session.session_id and info.stage == "full" and info.mfa
    assert info.principal.user_id == owner.user["user_id"]
    assert info.check_csrf(result.session.csrf_token) and not info.check_csrf("x" * 64)
    success = audit_entries(database, "login.success")
    assert success[-1]["details"]["ip"] == IP and success[-1]["details"]["method"] == "totp"


def test_every_login_makes_a_new_token(logins: Logins, owner: OwnerCreated, clock: Clock,
                                       watch: SecretWatch) -> None:
    first = owner_login(logins, owner, clock, watch)
    clock.advance(30_000)
    second = owner_login(logins, owner, clock, watch)
    assert first.token != second.token
    assert first.session.session_id != second.session.session_id
    assert first.session.csrf_token != second.session.csrf_token


def test_every_wrong_login_gets_the_same_answer(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    staff = staff_user(database, logins, clock, watch, login="invited.only", role="support")
    disable_user(database, principal_of_user(_row(database, "owner")), staff["user_id"])
    invitation = invite_user(database, principal_of_user(_row(database, "owner")),
                             login="never.accepted", display_name="n", role="support")
    watch.secret(invitation.token)
    code = code_now(owner.totp.secret_base32, clock)
    wrong_code = "000000" if code != "000000" else "111111"
    attempts = [
        ("nobody.here", OWNER_PASSWORD, code),
        ("owner", "the wrong password!!", code),
        ("owner", OWNER_PASSWORD, wrong_code),
        ("owner", OWNER_PASSWORD, None),
        ("invited.only", STAFF_PASSWORD, None),  # disabled
        ("never.accepted", STAFF_PASSWORD, None),  # no password yet
        ("x", OWNER_PASSWORD, code),  # cannot be a login at all
    ]
    bodies = set()
    for index, (login, password, totp) in enumerate(attempts):
        error = watch.error(failed(logins.login, login, password, ip=f"198.51.100.{index}",
                                   totp_code=totp))
        assert error.code == ErrorCode.LOGIN_FAILED
        bodies.add(repr(error.to_dict()))
    assert len(bodies) == 1
    reasons = [e["details"]["reason"] for e in audit_entries(database, "login.failure")]
    assert reasons == ["unknown_login", "bad_password", "bad_totp", "bad_totp",
                       "user_disabled", "bad_password", "unknown_login"]


def _row(database: Database, login: str) -> User:
    with database.read() as session:
        row = session.scalar(select(User).where(User.login == login))
        assert row is not None
        return row


class CountingPasswords(Passwords):
    def __init__(self, base: Passwords) -> None:
        super().__init__(base.params)
        self.verified: list[bool] = []

    def verify(self, stored: str | None, password: str) -> bool:
        self.verified.append(stored is None)
        return super().verify(stored, password)


def test_unknown_logins_cost_an_argon2_verification_too(
        database: Database, keyring: MasterKeyring, passwords: Passwords,
        owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    counting = CountingPasswords(passwords)
    logins = Logins(database, keyring, passwords=counting, clock_ms=clock)
    failed(logins.login, "nobody.here", OWNER_PASSWORD, ip=IP)
    failed(logins.login, "owner", "not the password!", ip=IP)
    assert counting.verified == [True, False]  # the dummy hash, then the real one


def test_staff_sessions_end_after_30_idle_minutes_and_agent_sessions_after_8_hours(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    result = owner_login(logins, owner, clock, watch)
    clock.advance(29 * MINUTE)
    logins.authenticate(result.token)  # activity keeps it alive
    clock.advance(29 * MINUTE)
    logins.authenticate(result.token)
    clock.advance(30 * MINUTE)
    error = failed(logins.authenticate, result.token)
    assert error.code == ErrorCode.UNAUTHENTICATED and error.details == {"reason": "idle"}
    assert SessionSettings().idle_agent_ms == 8 * HOUR


def test_sessions_end_at_the_absolute_expiry_however_busy(
        logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    result = owner_login(logins, owner, clock, watch)
    for _ in range(12 * 60 // 20 - 1):
        clock.advance(20 * MINUTE)
        logins.authenticate(result.token)
    clock.advance(20 * MINUTE)
    assert failed(logins.authenticate, result.token).details == {"reason": "expired"}


def test_last_seen_is_written_at_most_once_a_minute(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    result = owner_login(logins, owner, clock, watch)
    start = clock()

    def last_seen() -> int:
        with database.read() as session:
            return int(session.scalar(select(UserSession.last_seen_at_ms)) or 0)

    for _ in range(5):
        clock.advance(10_000)
        logins.authenticate(result.token)
    assert last_seen() == start
    clock.advance(10_000)
    logins.authenticate(result.token)
    assert last_seen() == start + 60_000


def test_logout_revoke_and_revoke_all(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    sessions = []
    for _ in range(3):
        sessions.append(owner_login(logins, owner, clock, watch))
        clock.advance(30_000)
    actor = sessions[0].session.principal
    listed = logins.list_sessions(actor, owner.user["user_id"])
    assert [s["session_id"] for s in listed] == [s.session.session_id for s in sessions[::-1]]
    assert all("token" not in key for s in listed for key in s)
    assert logins.logout(sessions[0].token) and not logins.logout(sessions[0].token)
    assert failed(logins.authenticate, sessions[0].token).details == {"reason": "revoked"}
    assert logins.revoke_session(actor, sessions[1].session.session_id)
    assert logins.revoke_all(actor, owner.user["user_id"]) == 1
    assert failed(logins.authenticate, sessions[2].token).code == ErrorCode.UNAUTHENTICATED
    assert failed(logins.authenticate, "not a token").code == ErrorCode.UNAUTHENTICATED
    actions = [e["details"].get("reason") for e in audit_entries(database, "session.revoke")]
    assert actions == ["logout", "revoked"]
    assert audit_entries(database, "session.revoke_all")[0]["details"] == {
        "sessions_revoked": 1}


def test_a_user_cannot_see_or_end_another_users_sessions(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    owner_session = owner_login(logins, owner, clock, watch)
    staff_user(database, logins, clock, watch, login="helper", role="support")
    enrol = logins.login("helper", STAFF_PASSWORD, ip=IP)
    watch.secret(enrol.token)
    helper = enrol.session.principal
    assert failed(logins.list_sessions, helper, owner.user["user_id"]).code == \
        ErrorCode.FORBIDDEN
    assert failed(logins.revoke_session, helper, owner_session.session.session_id).code == \
        ErrorCode.FORBIDDEN
    assert failed(logins.revoke_all, helper, owner.user["user_id"]).code == ErrorCode.FORBIDDEN
    # The owner (scope users) may.
    assert logins.revoke_all(owner_session.session.principal, enrol.session.user["user_id"]) \
        == 1


def test_password_change_ends_every_session_and_issues_a_new_token(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    first = owner_login(logins, owner, clock, watch)
    clock.advance(30_000)
    second = owner_login(logins, owner, clock, watch)
    new_password = "a brand new passphrase 3"
    watch.secret(new_password)
    wrong = watch.error(failed(logins.change_password, second.token, "not the old one!",
                               new_password, ip=IP))
    assert wrong.code == ErrorCode.LOGIN_FAILED
    rejected = failed(logins.change_password, second.token, OWNER_PASSWORD, "short", ip=IP)
    assert rejected.code == ErrorCode.PASSWORD_REJECTED
    changed = logins.change_password(second.token, OWNER_PASSWORD, new_password, ip=IP)
    watch.secret(changed.token)
    for old in (first, second):
        assert failed(logins.authenticate, old.token).code == ErrorCode.UNAUTHENTICATED
    assert logins.authenticate(changed.token).mfa
    clock.advance(30_000)
    assert failed(logins.login, "owner", OWNER_PASSWORD, ip=IP,
                  totp_code=code_now(owner.totp.secret_base32, clock)).code == \
        ErrorCode.LOGIN_FAILED
    assert audit_entries(database, "user.password_change")[0]["details"] == {
        "sessions_revoked": 2}


def test_a_session_bound_to_a_user_agent_refuses_another(
        logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    result = owner_login(logins, owner, clock, watch, user_agent="Firefox/140")
    assert failed(logins.authenticate, result.token, user_agent="curl/8").details == {
        "reason": "user_agent"}
    assert failed(logins.authenticate, result.token).details == {"reason": "user_agent"}
    logins.authenticate(result.token, user_agent="Firefox/140")


def test_the_oldest_session_ends_beyond_the_per_user_bound(
        database: Database, keyring: MasterKeyring, passwords: Passwords,
        owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    logins = Logins(database, keyring, passwords=passwords, clock_ms=clock,
                    settings=SessionSettings(sessions_per_user_max=2))
    made = []
    for _ in range(3):
        made.append(owner_login(logins, owner, clock, watch))
        clock.advance(30_000)
    assert failed(logins.authenticate, made[0].token).details == {"reason": "revoked"}
    for result in made[1:]:
        logins.authenticate(result.token)


def test_purge_removes_long_ended_sessions_only(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    old = owner_login(logins, owner, clock, watch)
    logins.logout(old.token)
    clock.advance(31 * 24 * HOUR)
    live = owner_login(logins, owner, clock, watch)
    assert logins.purge() >= 1
    with database.read() as session:
        ids = set(session.scalars(select(UserSession.session_id)))
    assert ids == {live.session.session_id}


def test_the_secret_watch_itself_catches_a_leak() -> None:
    watch = SecretWatch()
    watch.secret("s3cret-token-value")
    watch.texts.append(("log x", "session S3CRET-TOKEN-VALUE ended"))
    assert watch.leaks() == ["log x shows a secret ending alue"]


def test_re_enrolling_needs_a_current_code(
        logins: Logins, owner: OwnerCreated, clock: Clock, watch: SecretWatch) -> None:
    result = owner_login(logins, owner, clock, watch)
    assert failed(logins.begin_enrolment, result.token).code == ErrorCode.TOTP_INVALID
    clock.advance(30_000)
    started = logins.begin_enrolment(result.token,
                                     totp_code=code_now(owner.totp.secret_base32, clock))
    watch.secret(started.secret_base32)
    done = logins.complete_enrolment(result.token, code_now(started.secret_base32, clock),
                                     ip=IP)
    watch.secret(done.login.token, *done.recovery_codes)
    assert failed(logins.authenticate, result.token).code == ErrorCode.UNAUTHENTICATED
    assert logins.authenticate(done.login.token).mfa
