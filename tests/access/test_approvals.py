"""Maker-checker approvals (cardsvc.access.approvals) on SQLite and PostgreSQL.

Goal: a guarded action runs only after a second staff member approved it, at most once, before
its approval expires, and only for the object it names; the maker can never be its own checker,
whatever it tries; a waiver exists only on a shop where nobody else could check, and lapses when
someone could. Method: real users (owner, finance staff) made through the users module, the
gate called inside a write transaction as the guarded use cases call it, a manual clock.
"""

from __future__ import annotations

import pytest

from cardsvc.access import (
    ApprovalPolicy,
    Approvals,
    Passwords,
    Principal,
    accept_invitation,
    invite_user,
    principal_of_user,
)
from cardsvc.access.tables import User
from cardsvc.crypto import MasterKeyring
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode
from tests.access.conftest import STAFF_PASSWORD, Clock, audit_actions, make_owner


def _staff(database: Database, passwords: Passwords, owner: Principal, login: str,
           role: str) -> Principal:
    invitation = invite_user(database, owner, login=login, display_name=login, role=role)
    accept_invitation(database, passwords, invitation.token, STAFF_PASSWORD)
    with database.read() as session:
        row = session.get(User, invitation.user["user_id"])
        assert row is not None
        return principal_of_user(row)


@pytest.fixture
def people(database: Database, keyring: MasterKeyring, passwords: Passwords,
           clock: Clock) -> dict[str, Principal]:
    created = make_owner(database, keyring, passwords, clock)
    with database.read() as session:
        row = session.get(User, created.user["user_id"])
        assert row is not None
        owner = principal_of_user(row)
    return {"owner": owner,
            "alice": _staff(database, passwords, owner, "alice", "finance"),
            "bob": _staff(database, passwords, owner, "bob", "finance"),
            "sam": _staff(database, passwords, owner, "sam", "support")}


@pytest.fixture
def approvals(database: Database, clock: Clock) -> Approvals:
    return Approvals(database, clock)


def _run(database: Database, approvals: Approvals, actor: Principal,
         approval_id: str | None, object_id: str = "w1") -> None:
    with database.write() as session:
        approvals.authorize(session, action="withdrawal_payout", object_type="withdrawal",
                            object_id=object_id, actor=actor.actor, approval_id=approval_id)


def _code(call: object) -> ErrorCode:
    assert callable(call)
    with pytest.raises(CardsvcError) as caught:
        call()
    return caught.value.code


def test_a_payout_runs_once_after_a_second_person_approves(
        database: Database, approvals: Approvals, people: dict[str, Principal]) -> None:
    alice, bob = people["alice"], people["bob"]
    assert _code(lambda: _run(database, approvals, alice, None)) == ErrorCode.APPROVAL_REQUIRED
    info, created = approvals.request(alice, "withdrawal_payout", "withdrawal", "w1", "paid out")
    assert created and info.status == "pending"
    again, created = approvals.request(alice, "withdrawal_payout", "withdrawal", "w1", "again")
    assert not created and again.approval_id == info.approval_id
    assert _code(lambda: _run(database, approvals, alice, info.approval_id)) == \
        ErrorCode.APPROVAL_NOT_PENDING
    approvals.approve(bob, info.approval_id)
    _run(database, approvals, alice, info.approval_id)
    assert approvals.get(alice, info.approval_id).status == "executed"
    assert _code(lambda: _run(database, approvals, alice, info.approval_id)) == \
        ErrorCode.APPROVAL_NOT_PENDING
    assert audit_actions(database)[-3:] == ["approval.request", "approval.approve",
                                            "approval.execute"]


def test_the_maker_cannot_check_its_own_request_in_any_way(
        database: Database, approvals: Approvals, people: dict[str, Principal]) -> None:
    alice, sam = people["alice"], people["sam"]
    info, _ = approvals.request(alice, "withdrawal_payout", "withdrawal", "w1", "pay")
    assert _code(lambda: approvals.approve(alice, info.approval_id)) == ErrorCode.APPROVAL_SELF
    assert _code(lambda: approvals.reject(alice, info.approval_id)) == ErrorCode.APPROVAL_SELF
    # The same person asking twice is still one maker; a role without the scope cannot check.
    approvals.request(alice, "withdrawal_payout", "withdrawal", "w1", "pay")
    assert _code(lambda: approvals.approve(alice, info.approval_id)) == ErrorCode.APPROVAL_SELF
    assert _code(lambda: approvals.approve(sam, info.approval_id)) == ErrorCode.FORBIDDEN
    # An API key is a machine, not a second person.
    key = Principal(key_id="k1", role="admin", agent_id=None, scopes=frozenset({"admin"}),
                    skus=None, limits={})
    assert _code(lambda: approvals.approve(key, info.approval_id)) == ErrorCode.FORBIDDEN
    assert approvals.get(alice, info.approval_id).status == "pending"


def test_an_approval_runs_only_its_own_object_by_its_parties_before_expiry(
        database: Database, approvals: Approvals, people: dict[str, Principal],
        clock: Clock) -> None:
    alice, bob, owner = people["alice"], people["bob"], people["owner"]
    info, _ = approvals.request(alice, "withdrawal_payout", "withdrawal", "w1", "pay")
    approvals.approve(bob, info.approval_id)
    assert _code(lambda: _run(database, approvals, alice, info.approval_id, "w2")) == \
        ErrorCode.APPROVAL_MISMATCH
    assert _code(lambda: _run(database, approvals, owner, info.approval_id)) == \
        ErrorCode.APPROVAL_SELF
    clock.advance(approvals.policy.ttl_ms)
    assert _code(lambda: _run(database, approvals, alice, info.approval_id)) == \
        ErrorCode.APPROVAL_EXPIRED
    assert approvals.expire_due() == 1
    assert approvals.get(alice, info.approval_id).status == "expired"


def test_rejected_and_cancelled_requests_never_run(
        database: Database, approvals: Approvals, people: dict[str, Principal]) -> None:
    alice, bob = people["alice"], people["bob"]
    rejected, _ = approvals.request(alice, "withdrawal_payout", "withdrawal", "w1", "pay")
    approvals.reject(bob, rejected.approval_id, "not yet")
    assert _code(lambda: _run(database, approvals, alice, rejected.approval_id)) == \
        ErrorCode.APPROVAL_NOT_PENDING
    cancelled, created = approvals.request(alice, "withdrawal_payout", "withdrawal", "w1",
                                           "pay")
    assert created
    assert _code(lambda: approvals.cancel(bob, cancelled.approval_id)) == \
        ErrorCode.APPROVAL_NOT_FOUND
    approvals.cancel(alice, cancelled.approval_id)
    assert _code(lambda: approvals.approve(bob, cancelled.approval_id)) == \
        ErrorCode.APPROVAL_NOT_PENDING


def test_a_waiver_needs_a_one_person_shop_and_lapses_when_a_checker_arrives(
        database: Database, keyring: MasterKeyring, passwords: Passwords, clock: Clock,
        approvals: Approvals) -> None:
    created = make_owner(database, keyring, passwords, clock)
    with database.read() as session:
        row = session.get(User, created.user["user_id"])
        assert row is not None
        owner = principal_of_user(row)
    approvals.set_waiver(owner, "code_export", True)
    approvals.set_waiver(owner, "withdrawal_payout", True)
    _run(database, approvals, owner, None)
    with database.write() as session:
        assert approvals.authorize(session, action="code_export", object_type="batch",
                                   object_id="1", actor=owner.actor, approval_id=None) is None
    assert "approval.waived" in audit_actions(database)
    second = _staff(database, passwords, owner, "finance1", "finance")
    assert _code(lambda: approvals.set_waiver(second, "withdrawal_payout", False)) == \
        ErrorCode.FORBIDDEN
    # The owner and a finance user can check payouts now: the waiver no longer applies...
    assert _code(lambda: _run(database, approvals, owner, None)) == ErrorCode.APPROVAL_REQUIRED
    assert _code(lambda: approvals.set_waiver(owner, "withdrawal_payout", True)) == \
        ErrorCode.APPROVAL_WAIVER_REFUSED
    # ...while exports, which only owners can check, stay waived.
    settings = {item.action: item for item in approvals.settings(owner)}
    assert settings["code_export"].waiver_in_force
    assert not settings["withdrawal_payout"].waiver_in_force


def test_the_policy_decides_which_actions_are_guarded(database: Database, clock: Clock,
                                                       people: dict[str, Principal]) -> None:
    relaxed = Approvals(database, clock, ApprovalPolicy.from_text("refund,batch_void"))
    with database.write() as session:
        assert relaxed.authorize(session, action="withdrawal_payout", object_type="withdrawal",
                                 object_id="w1", actor=people["alice"].actor,
                                 approval_id=None) is None
    assert _code(lambda: ApprovalPolicy.from_text("payouts")) == ErrorCode.INVALID_ARGUMENT
    assert ApprovalPolicy.from_text("none").actions == frozenset()


def test_the_list_shows_only_actions_the_caller_may_check(
        database: Database, approvals: Approvals, people: dict[str, Principal],
        clock: Clock) -> None:
    alice, sam, owner = people["alice"], people["sam"], people["owner"]
    for number in range(3):
        approvals.request(alice, "withdrawal_payout", "withdrawal", f"w{number}", "pay")
        clock.advance(1)
    approvals.request(owner, "code_export", "batch", "7", "audit copy")
    first = approvals.list(alice, limit=2)
    assert len(first.items) == 2 and first.next is not None
    rest = approvals.list(alice, limit=2, cursor=first.next)
    assert [i.object_id for i in first.items + rest.items] == ["w2", "w1", "w0"]
    assert approvals.list(sam).items == []
    assert approvals.list(owner, status="pending").items[0].action == "code_export"
