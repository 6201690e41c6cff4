"""Goal: prove who may create an agent's users (cardsvc.agents.create_agent_user): a platform
owner for any agent; an agent's user for its own agent and its direct sub-agents only, never a
grandchild, a sibling, its parent or an unknown agent (all one FORBIDDEN); never an agent's API
key. An agent's user logs in without TOTP (optional for agents) into a full session that idles
out after 8 hours, and may enrol TOTP, after which a code is required. The whole lifecycle of
users and sessions is in the audit chain, which verifies.

Method: an agent tree A > B > C and a sibling D on SQLite and PostgreSQL; a fast argon2 and a
manual clock; the secret watch (conftest).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from cardsvc import agents, audit
from cardsvc.access import (
    Logins,
    OwnerCreated,
    Principal,
    disable_user,
    invite_user,
    principal_of_user,
    reissue_invitation,
    reset_totp,
    set_user_role,
    unlock_user,
)
from cardsvc.access.tables import User
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from tests.access.conftest import (
    OWNER_PASSWORD,
    STAFF_PASSWORD,
    T0_MS,
    Clock,
    SecretWatch,
    audit_actions,
    code_now,
)

IP = "192.0.2.44"
HOUR = 3_600_000


@pytest.fixture
def tree(database: Database) -> None:
    for agent_id, parent in (("A", None), ("B", "A"), ("C", "B"), ("D", None)):
        agents.create_agent(database, agent_id, f"agent {agent_id}", parent_id=parent,
                            actor="admin-key", now_ms=T0_MS)


def owner_of(database: Database) -> Principal:
    with database.read() as session:
        row = session.scalar(select(User).where(User.role == "owner"))
        assert row is not None
        return principal_of_user(row)


def agent_user(database: Database, logins: Logins, watch: SecretWatch, actor: Principal,
               agent_id: str, login: str) -> Any:
    invitation = agents.create_agent_user(database, actor, agent_id=agent_id, login=login,
                                          display_name=login)
    watch.secret(invitation.token, STAFF_PASSWORD)
    logins.accept_invitation(invitation.token, STAFF_PASSWORD)
    result = logins.login(login, STAFF_PASSWORD, ip=IP)
    watch.secret(result.token)
    return result


def refused(call: Any, *args: Any, **kwargs: Any) -> ErrorCode:
    with pytest.raises(CardsvcError) as caught:
        call(*args, **kwargs)
    return caught.value.code


@pytest.mark.usefixtures("tree")
def test_an_agent_creates_users_for_itself_and_its_direct_sub_agents_only(
        database: Database, logins: Logins, owner: OwnerCreated, watch: SecretWatch) -> None:
    b_user = agent_user(database, logins, watch, owner_of(database), "B", "b.boss")
    actor = b_user.session.principal
    assert actor.role == "agent" and actor.agent_id == "B" and "sub_agents" in actor.scopes
    for agent_id, login in (("B", "b.second"), ("C", "c.first")):
        invitation = agents.create_agent_user(database, actor, agent_id=agent_id, login=login,
                                              display_name=login)
        watch.secret(invitation.token)
        assert invitation.user["agent_id"] == agent_id and invitation.user["role"] == "agent"
    for agent_id in ("A", "D", "NO-SUCH-AGENT"):  # parent, elsewhere, unknown: all alike
        assert refused(agents.create_agent_user, database, actor, agent_id=agent_id,
                       login=f"x.{agent_id.lower()}", display_name="x") == ErrorCode.FORBIDDEN
    c_user = agent_user(database, logins, watch, owner_of(database), "C", "c.boss")
    assert refused(agents.create_agent_user, database, c_user.session.principal,
                   agent_id="B", login="up.one", display_name="x") == ErrorCode.FORBIDDEN
    _, key_text = agents.create_key(database, role="agent", agent_id="A")
    watch.secret(key_text)
    key = agents.create_key(database, role="agent", agent_id="B")[0].principal()
    assert refused(agents.create_agent_user, database, key, agent_id="B", login="by.key",
                   display_name="x") == ErrorCode.FORBIDDEN
    assert refused(agents.create_agent_user, database, owner_of(database),
                   agent_id="NO-SUCH-AGENT", login="nobody", display_name="x") == \
        ErrorCode.AGENT_NOT_FOUND


@pytest.mark.usefixtures("tree")
def test_an_agents_user_needs_no_totp_idles_out_after_8_hours_and_may_enrol(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    result = agent_user(database, logins, watch, owner_of(database), "A", "a.clerk")
    assert result.session.stage == "full" and not result.session.mfa
    clock.advance(7 * HOUR)
    logins.authenticate(result.token)
    clock.advance(8 * HOUR)
    assert refused(logins.authenticate, result.token) == ErrorCode.UNAUTHENTICATED
    again = logins.login("a.clerk", STAFF_PASSWORD, ip=IP)
    watch.secret(again.token)
    started = logins.begin_enrolment(again.token)
    watch.secret(started.secret_base32)
    done = logins.complete_enrolment(again.token, code_now(started.secret_base32, clock), ip=IP)
    watch.secret(done.login.token, *done.recovery_codes)
    clock.advance(30_000)
    assert refused(logins.login, "a.clerk", STAFF_PASSWORD, ip=IP) == ErrorCode.LOGIN_FAILED
    last = logins.login("a.clerk", STAFF_PASSWORD, ip=IP,
                        totp_code=code_now(started.secret_base32, clock))
    watch.secret(last.token)
    assert last.session.mfa


@pytest.mark.usefixtures("tree")
def test_every_user_and_session_action_is_in_the_verified_audit_chain(
        database: Database, logins: Logins, owner: OwnerCreated, clock: Clock,
        watch: SecretWatch) -> None:
    # A lifecycle touching every audited action.
    for _ in range(5):
        refused(logins.login, "owner", "wrong password attempt", ip="203.0.113.9")
    session = logins.login("owner", OWNER_PASSWORD, ip=IP,
                           totp_code=code_now(owner.totp.secret_base32, clock))
    watch.secret(session.token)
    actor = session.session.principal
    invitation = invite_user(database, actor, login="ops", display_name="Ops", role="operator")
    watch.secret(invitation.token)
    logins.accept_invitation(invitation.token, STAFF_PASSWORD)
    ops_id = invitation.user["user_id"]
    set_user_role(database, actor, ops_id, "support")
    unlock_user(database, actor, ops_id)
    disable_user(database, actor, ops_id)
    disable_user(database, actor, ops_id, disabled=False)
    reset = reissue_invitation(database, actor, ops_id)
    watch.secret(reset.token)
    logins.accept_invitation(reset.token, STAFF_PASSWORD)
    enrol = logins.login("ops", STAFF_PASSWORD, ip=IP)
    watch.secret(enrol.token)
    started = logins.begin_enrolment(enrol.token)
    watch.secret(started.secret_base32)
    done = logins.complete_enrolment(enrol.token, code_now(started.secret_base32, clock), ip=IP)
    watch.secret(done.login.token, *done.recovery_codes)
    clock.advance(30_000)
    codes = logins.regenerate_recovery_codes(done.login.token,
                                             code_now(started.secret_base32, clock))
    watch.secret(*codes)
    recovered = logins.login("ops", STAFF_PASSWORD, ip=IP, recovery_code=codes[0])
    watch.secret(recovered.token)
    new_password = "a third long passphrase"
    watch.secret(new_password)
    changed = logins.change_password(recovered.token, STAFF_PASSWORD, new_password, ip=IP)
    watch.secret(changed.token)
    reset_totp(database, actor, ops_id)
    logins.revoke_all(actor, ops_id)
    logins.logout(session.token)
    agents.create_agent_user(database, actor, agent_id="A", login="a.user", display_name="A")
    expected = {
        "user.create", "user.totp_enrol", "user.totp_begin", "login.failure", "login.lockout",
        "login.success", "user.invitation_accept", "user.role_change", "user.unlock",
        "user.disable", "user.enable", "user.invitation_issue", "user.recovery_codes",
        "user.recovery_code_use", "user.password_change", "user.totp_reset",
        "session.revoke_all", "session.revoke",
    }
    assert expected <= set(audit_actions(database))
    with database.read() as session_:
        check = audit.verify(session_)
    assert check.ok, check
