"""Goal: prove the rules of console users (cardsvc.access.users): login names are normalised and
bounded; the password policy refuses what it says and nothing else; passwords are argon2id with
the configured parameters and are rehashed at login when those change; TOTP secrets are sealed
at rest and bound to their user; TOTP accepts one step of drift either way, never two, and never
a replay; recovery codes work once; invitations work once and expire; staff must enrol TOTP
before anything else; roles map to scopes through one table; role changes and disabling end
sessions, and the last owner stays.

Method: call the domain functions on SQLite and PostgreSQL (``database`` fixture) with a fast
argon2, a fixed keyring and a manual clock; inspect the rows directly where the claim is about
what is stored; the secret watch (conftest) checks logs, errors and the audit log for leaks.
"""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select, update

from cardsvc.access import (
    ARGON2_PARAMS,
    SCOPES,
    SCOPES_OF_USER_ROLE,
    Argon2Params,
    Logins,
    Passwords,
    Principal,
    accept_invitation,
    check_password,
    create_owner,
    disable_user,
    invite_user,
    issue_invitation,
    normalise_login,
    own_email,
    principal_of_user,
    reissue_invitation,
    reset_totp,
    set_own_email,
    set_user_role,
)
from cardsvc.access.tables import RecoveryCode, User, UserInvitation
from cardsvc.access.users import (
    consume_totp_step,
    match_totp,
    totp_secret,
    totp_step,
    user_by_login,
)
from cardsvc.crypto import MasterKeyring
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from tests.access.conftest import (
    OWNER_PASSWORD,
    STAFF_PASSWORD,
    Clock,
    SecretWatch,
    audit_actions,
    code_now,
)


def raises(code: ErrorCode, call: object, *args: object, **kwargs: object) -> CardsvcError:
    with pytest.raises(CardsvcError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value


def owner_principal(database: Database, login: str = "owner"):  # type: ignore[no-untyped-def]
    with database.read() as session:
        row = session.scalar(select(User).where(User.login == login))
        assert row is not None
        return principal_of_user(row)


# ----- names and passwords ---------------------------------------------------------------


def test_login_names_are_normalised_with_nfkc_and_casefold_and_bounded() -> None:
    assert normalise_login("  Alice.Smith ") == "alice.smith"
    assert normalise_login("\uff21\uff2c\uff29\uff23\uff25") == "alice"  # fullwidth letters (NFKC)
    assert normalise_login("Straße") == "strasse"  # casefold, not lower
    for bad in ("ab", "-alice", "al ice", "alice\x00", "", 42):
        assert raises(ErrorCode.INVALID_ARGUMENT, normalise_login, bad).details["field"] == \
            "login"
    raises(ErrorCode.LIMIT_EXCEEDED, normalise_login, "a" * 65)


@pytest.mark.parametrize(("password", "reason"), [
    ("short pass", "too_short"),
    ("x" * 257, "too_long"),
    ("Alice.Smith.1", "login_name"),
    ("PASSWORD1234", "common"),
    ("correct horse battery staple", "common"),
    ("zzzzzzzzzzzzzz", "common"),
])
def test_password_policy_refuses_short_long_own_login_and_common(password: str,
                                                                 reason: str) -> None:
    error = raises(ErrorCode.PASSWORD_REJECTED, check_password, password, "alice.smith.1")
    assert error.details["reason"] == reason
    assert password not in error.message and password not in str(error.details)


def test_password_policy_has_no_composition_rules() -> None:
    check_password("all lower case words here", "alice")
    check_password("密码是一句很长的中文句子吧", "alice")  # 13 characters, no digits or capitals
    check_password("x" * 11 + "y", "alice")


def test_default_argon2_parameters_are_the_documented_ones() -> None:
    assert Argon2Params(time_cost=3, memory_kib=65536, parallelism=1,
                                         hash_len=32, salt_len=16) == ARGON2_PARAMS
    stored = Passwords(Argon2Params(time_cost=1, memory_kib=64, parallelism=1)).hash("x" * 12)
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")


def test_passwords_verify_nfkc_equivalents_and_refuse_others(passwords: Passwords) -> None:
    stored = passwords.hash("ﬁne passphrase here")  # the ﬁ ligature
    assert passwords.verify(stored, "fine passphrase here")
    assert not passwords.verify(stored, "fine passphrase herE")
    assert not passwords.verify(None, "anything at all")  # the dummy hash is never a match
    assert not passwords.verify("not a hash", "anything at all")


def test_login_rehashes_a_password_hashed_with_old_parameters(
        database: Database, keyring: MasterKeyring, clock: Clock, watch: SecretWatch) -> None:
    old = Passwords(Argon2Params(time_cost=1, memory_kib=8, parallelism=1))
    created = create_owner(database, keyring, old, login="owner", password=OWNER_PASSWORD,
                           display_name="O", now_ms=clock())
    watch.secret(OWNER_PASSWORD, created.totp.secret_base32)
    new = Passwords(Argon2Params(time_cost=2, memory_kib=16, parallelism=1))
    logins = Logins(database, keyring, passwords=new, clock_ms=clock)
    result = logins.login("owner", OWNER_PASSWORD, ip="10.0.0.1",
                          totp_code=code_now(created.totp.secret_base32, clock))
    watch.secret(result.token)
    with database.read() as session:
        stored = session.scalar(select(User.password_hash).where(User.login == "owner"))
    assert stored is not None and stored.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    assert not new.needs_rehash(stored)
    assert "login.success" in audit_actions(database)


# ----- TOTP --------------------------------------------------------------------------------


def test_totp_secret_is_sealed_at_rest_and_bound_to_its_user(
        database: Database, keyring: MasterKeyring, passwords: Passwords, clock: Clock,
        watch: SecretWatch) -> None:
    created = create_owner(database, keyring, passwords, login="owner",
                           password=OWNER_PASSWORD, display_name="O", now_ms=clock())
    watch.secret(OWNER_PASSWORD, created.totp.secret_base32)
    raw = base64.b32decode(created.totp.secret_base32)
    invitation = invite_user(database, owner_principal(database), login="ops",
                             display_name="Ops", role="operator", now_ms=clock())
    watch.secret(invitation.token)
    with database.read() as session:
        row = session.scalar(select(User).where(User.login == "owner"))
        assert row is not None and row.totp_sealed is not None
        for value in (row.totp_sealed, row.totp_key_wrapped):
            assert raw not in bytes(value or b"")
        assert created.totp.secret_base32.encode() not in bytes(row.totp_sealed)
        assert totp_secret(row, keyring) == raw
        sealed, wrapped, key_id = row.totp_sealed, row.totp_key_wrapped, row.totp_master_key_id
    with database.write() as session:  # move the sealed secret onto another user's row
        session.execute(update(User).where(User.login == "ops").values(
            totp_sealed=sealed, totp_key_wrapped=wrapped, totp_master_key_id=key_id))
    with database.read() as session:
        other = session.scalar(select(User).where(User.login == "ops"))
        assert other is not None
        raises(ErrorCode.PAYLOAD_CORRUPT, totp_secret, other, keyring)


def test_totp_accepts_one_step_of_drift_each_way_but_not_two() -> None:
    secret = bytes(range(20))
    secret_base32 = base64.b32encode(secret).decode()
    now = 1_700_000_000_000
    step = totp_step(now)
    for offset in (-1, 0, 1):
        code = code_now(secret_base32, Clock(now), offset)
        assert match_totp(secret, code, now, None) == step + offset
    for offset in (-2, 2):
        code = code_now(secret_base32, Clock(now), offset)
        if code not in {code_now(secret_base32, Clock(now), o) for o in (-1, 0, 1)}:
            assert match_totp(secret, code, now, None) is None
    assert match_totp(secret, "12345", now, None) is None
    assert match_totp(secret, "abcdef", now, None) is None
    assert match_totp(secret, None, now, None) is None


def test_totp_code_is_refused_when_replayed_even_inside_its_window(
        logins: Logins, owner: object, clock: Clock, watch: SecretWatch) -> None:
    secret = owner.totp.secret_base32  # type: ignore[attr-defined]
    code = code_now(secret, clock)
    first = logins.login("owner", OWNER_PASSWORD, ip="10.0.0.1", totp_code=code)
    watch.secret(first.token)
    clock.advance(5_000)
    watch.error(raises(ErrorCode.LOGIN_FAILED, logins.login, "owner", OWNER_PASSWORD,
                       ip="10.0.0.1", totp_code=code))
    # An earlier step's code is a replay too once a later step was used.
    clock.advance(30_000)
    later = logins.login("owner", OWNER_PASSWORD, ip="10.0.0.1",
                         totp_code=code_now(secret, clock))
    watch.secret(later.token)
    raises(ErrorCode.LOGIN_FAILED, logins.login, "owner", OWNER_PASSWORD, ip="10.0.0.1",
           totp_code=code_now(secret, clock, -1))


def test_recovery_codes_are_hashed_and_work_once(
        database: Database, logins: Logins, owner: object, watch: SecretWatch) -> None:
    codes: list[str] = owner.recovery_codes  # type: ignore[attr-defined]
    assert len(codes) == 10 and len(set(codes)) == 10
    with database.read() as session:
        stored = [bytes(d) for d in session.scalars(select(RecoveryCode.code_sha256))]
    assert len(stored) == 10
    assert all(code.encode() not in b"".join(stored) for code in codes)
    first = logins.login("owner", OWNER_PASSWORD, ip="10.0.0.1",
                         recovery_code=codes[0].upper().replace("-", " "))
    watch.secret(first.token)
    assert first.session.mfa
    watch.error(raises(ErrorCode.LOGIN_FAILED, logins.login, "owner", OWNER_PASSWORD,
                       ip="10.0.0.1", recovery_code=codes[0]))
    actions = audit_actions(database)
    assert actions.count("user.recovery_code_use") == 1


# ----- invitations and enrolment -----------------------------------------------------------


def test_invitation_is_single_use_and_a_refused_password_leaves_it_usable(
        database: Database, logins: Logins, owner: object, clock: Clock,
        watch: SecretWatch) -> None:
    invitation = invite_user(database, owner_principal(database), login="Ops.One",
                             display_name="Ops", role="operator", now_ms=clock())
    watch.secret(invitation.token, STAFF_PASSWORD)
    assert invitation.user["status"] == "invited"
    assert invitation.token not in repr(invitation)
    with database.read() as session:
        stored = [bytes(t) for t in session.scalars(select(UserInvitation.token_sha256))]
    assert invitation.token.encode() not in b"".join(stored)
    raises(ErrorCode.PASSWORD_REJECTED, logins.accept_invitation, invitation.token, "short")
    user = logins.accept_invitation(invitation.token, STAFF_PASSWORD)
    assert user["status"] == "active" and user["login"] == "ops.one"
    watch.error(raises(ErrorCode.INVITATION_INVALID, logins.accept_invitation,
                       invitation.token, STAFF_PASSWORD + "x"))
    raises(ErrorCode.INVITATION_INVALID, logins.accept_invitation, "no-such-token", "x" * 20)
    raises(ErrorCode.INVITATION_INVALID, logins.accept_invitation, "é" * 300, "x" * 20)
    assert "user.invitation_accept" in audit_actions(database)


def test_invitation_expires_and_a_new_one_ends_the_old(
        database: Database, passwords: Passwords, owner: object, clock: Clock,
        watch: SecretWatch) -> None:
    actor = owner_principal(database)
    first = invite_user(database, actor, login="ops", display_name="Ops", role="operator",
                        ttl_ms=60_000, now_ms=clock())
    watch.secret(first.token)
    clock.advance(60_000)
    raises(ErrorCode.INVITATION_INVALID, accept_invitation, database, passwords, first.token,
           STAFF_PASSWORD, now_ms=clock())
    second = reissue_invitation(database, actor, first.user["user_id"], now_ms=clock())
    third = reissue_invitation(database, actor, first.user["user_id"], now_ms=clock())
    watch.secret(second.token, third.token)
    raises(ErrorCode.INVITATION_INVALID, accept_invitation, database, passwords, second.token,
           STAFF_PASSWORD, now_ms=clock())
    accept_invitation(database, passwords, third.token, STAFF_PASSWORD, now_ms=clock())


def test_staff_user_can_only_enrol_until_totp_is_confirmed(
        database: Database, logins: Logins, owner: object, clock: Clock,
        watch: SecretWatch) -> None:
    invitation = invite_user(database, owner_principal(database), login="fin",
                             display_name="Finance", role="finance", now_ms=clock())
    watch.secret(invitation.token, STAFF_PASSWORD)
    logins.accept_invitation(invitation.token, STAFF_PASSWORD)
    enrol = logins.login("fin", STAFF_PASSWORD, ip="10.0.0.2")
    watch.secret(enrol.token)
    assert enrol.session.stage == "enrol" and not enrol.session.principal.scopes
    watch.error(raises(ErrorCode.ENROLMENT_REQUIRED, logins.authenticate, enrol.token))
    started = logins.begin_enrolment(enrol.token)
    watch.secret(started.secret_base32)
    assert started.provisioning_uri.startswith("otpauth://totp/cardsvc:fin?")
    watch.error(raises(ErrorCode.TOTP_INVALID, logins.complete_enrolment, enrol.token,
                       "000000" if code_now(started.secret_base32, clock) != "000000"
                       else "111111", ip="10.0.0.2"))
    done = logins.complete_enrolment(enrol.token, code_now(started.secret_base32, clock),
                                     ip="10.0.0.2")
    watch.secret(done.login.token, *done.recovery_codes)
    assert done.login.token != enrol.token and len(done.recovery_codes) == 10
    raises(ErrorCode.UNAUTHENTICATED, logins.authenticate, enrol.token)
    info = logins.authenticate(done.login.token)
    assert info.stage == "full" and info.mfa
    assert info.principal.scopes == frozenset(SCOPES_OF_USER_ROLE["finance"])
    # From now on a password alone is not enough.
    raises(ErrorCode.LOGIN_FAILED, logins.login, "fin", STAFF_PASSWORD, ip="10.0.0.2")
    assert {"user.totp_begin", "user.totp_enrol"} <= set(audit_actions(database))


# ----- roles, scopes, changes --------------------------------------------------------------


def test_each_role_maps_to_scopes_of_the_one_vocabulary() -> None:
    for role, scopes in SCOPES_OF_USER_ROLE.items():
        assert set(scopes) <= set(SCOPES), role
    assert {"export", "users", "admin"} <= set(SCOPES_OF_USER_ROLE["owner"])
    assert set(SCOPES_OF_USER_ROLE["operator"]) >= {"catalog", "stock", "orders"}
    assert set(SCOPES_OF_USER_ROLE["finance"]) >= {"ledger", "withdrawals", "reconciliation"}
    assert set(SCOPES_OF_USER_ROLE["support"]) >= {"trace", "freeze", "resend", "masked_views"}
    assert set(SCOPES_OF_USER_ROLE["agent"]) == {"orders", "holds", "sub_agents"}
    for role in ("operator", "finance", "support", "agent"):
        assert not {"admin", "export", "users"} & set(SCOPES_OF_USER_ROLE[role]), role


def test_principals_of_users_authorise_like_keys(database: Database, owner: object) -> None:
    principal = owner_principal(database)
    assert principal.key_id == f"user:{principal.user_id}" == principal.actor
    principal.require("export")
    principal.require("withdrawals")
    with database.read() as session:
        row = session.scalar(select(User).where(User.login == "owner"))
        assert row is not None
        row.role = "support"
        support = principal_of_user(row)
        session.rollback()
    support.require("freeze")
    assert raises(ErrorCode.FORBIDDEN, support.require, "ledger").details["scope"] == "ledger"


def test_role_change_and_disable_end_sessions_and_the_last_owner_stays(
        database: Database, logins: Logins, owner: object, clock: Clock,
        watch: SecretWatch) -> None:
    actor = owner_principal(database)
    owner_id = actor.user_id
    assert owner_id is not None
    raises(ErrorCode.LAST_OWNER, set_user_role, database, actor, owner_id, "support")
    raises(ErrorCode.LAST_OWNER, disable_user, database, actor, owner_id)
    invitation = invite_user(database, actor, login="ops", display_name="Ops",
                             role="operator", now_ms=clock())
    watch.secret(invitation.token, STAFF_PASSWORD)
    logins.accept_invitation(invitation.token, STAFF_PASSWORD)
    session = logins.login("ops", STAFF_PASSWORD, ip="10.0.0.3")
    watch.secret(session.token)
    user_id = invitation.user["user_id"]
    changed = set_user_role(database, actor, user_id, "support", now_ms=clock())
    assert changed["role"] == "support"
    raises(ErrorCode.UNAUTHENTICATED, logins.authenticate, session.token, allow_enrolment=True)
    again = logins.login("ops", STAFF_PASSWORD, ip="10.0.0.3")
    watch.secret(again.token)
    disable_user(database, actor, user_id, now_ms=clock())
    raises(ErrorCode.UNAUTHENTICATED, logins.authenticate, again.token, allow_enrolment=True)
    watch.error(raises(ErrorCode.LOGIN_FAILED, logins.login, "ops", STAFF_PASSWORD,
                       ip="10.0.0.3"))
    assert disable_user(database, actor, user_id, disabled=False)["status"] == "active"
    raises(ErrorCode.FORBIDDEN, set_user_role, database, again.session.principal, owner_id,
           "support")
    actions = audit_actions(database)
    assert {"user.role_change", "user.disable", "user.enable"} <= set(actions)


def test_only_one_first_owner_and_logins_are_unique(
        database: Database, keyring: MasterKeyring, passwords: Passwords, owner: object,
        clock: Clock, watch: SecretWatch) -> None:
    error = raises(ErrorCode.USER_EXISTS, create_owner, database, keyring, passwords,
                   login="second", password=OWNER_PASSWORD, display_name="S")
    assert error.details["reason"] == "owner_exists"
    error = raises(ErrorCode.USER_EXISTS, invite_user, database, owner_principal(database),
                   login="OWNER", display_name="dup", role="support")
    assert error.details["reason"] == "login_taken"


def test_totp_reset_makes_the_next_login_enrol_again(
        database: Database, logins: Logins, owner: object, clock: Clock,
        watch: SecretWatch) -> None:
    actor = owner_principal(database)
    assert actor.user_id is not None
    # A second owner, so the reset one is not needed to manage users meanwhile.
    live = logins.login("owner", OWNER_PASSWORD, ip="10.0.0.1",
                        totp_code=code_now(owner.totp.secret_base32, clock))  # type: ignore[attr-defined]
    watch.secret(live.token)
    reset_totp(database, actor, actor.user_id, now_ms=clock())
    raises(ErrorCode.UNAUTHENTICATED, logins.authenticate, live.token)
    with database.read() as session:
        assert not list(session.scalars(select(RecoveryCode)))
    enrol = logins.login("owner", OWNER_PASSWORD, ip="10.0.0.1")
    watch.secret(enrol.token)
    assert enrol.session.stage == "enrol"


def test_a_totp_step_is_consumed_once_even_by_racing_logins(
        database: Database, owner: object) -> None:
    user_id = owner.user["user_id"]  # type: ignore[attr-defined]
    with database.write() as session:
        assert consume_totp_step(session, user_id, 100)
        assert not consume_totp_step(session, user_id, 100)
        assert not consume_totp_step(session, user_id, 99)
        assert consume_totp_step(session, user_id, 101)


def test_a_user_sets_and_removes_its_own_alert_address(database: Database) -> None:
    with database.write() as session:
        issue_invitation(session, login="mia", display_name="Mia", role="finance",
                         agent_id=None, created_by="test", now_ms=1)
    with database.read() as session:
        row = user_by_login(session, "mia")
        assert row is not None
        mia = principal_of_user(row)
    assert set_own_email(database, mia, " Mia@Example.COM ", locale="en")["email"] == (
        "mia@example.com")
    assert own_email(database, mia.user_id or "") == "mia@example.com"
    with pytest.raises(CardsvcError) as bad:
        set_own_email(database, mia, "mia@", locale="en")
    assert bad.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(CardsvcError) as key:
        set_own_email(database, Principal("k1", "admin", None, frozenset({"admin"}), None, {}),
                      "a@example.com")
    assert key.value.code == ErrorCode.FORBIDDEN
    set_own_email(database, mia, None)
    assert own_email(database, mia.user_id or "") is None
