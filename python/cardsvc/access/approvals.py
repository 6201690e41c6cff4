"""Maker-checker: guarded actions need a second person's approval before they run.

A withdrawal payout, a refund, an export of plaintext codes and a batch void move money or
codes out of the platform's hands for good, so one person cannot do them alone. The mechanism:

1. the **maker** (a user, or an API key acting for a person) *requests* the action on one object
   (:meth:`Approvals.request`): a ``pending`` approval, expiring after ``ttl_ms``;
2. a **checker** — a staff *user* other than the maker, holding the action's scope — approves or
   rejects it (:meth:`Approvals.approve`, :meth:`Approvals.reject`);
3. the use case that does the action (``money``, ``sales``, ``delivery``, ``catalog``) calls
   :meth:`Approvals.authorize` in its own transaction before its effect: it checks that an
   approved approval for exactly this action and object exists, is not expired, and that the
   executor is its maker or checker, then marks it ``executed`` with one conditional UPDATE. So
   an approval runs at most once, and a use case reached without one refuses with
   APPROVAL_REQUIRED, whoever calls it (the API and the console alike).

Which actions need approval is the deployment's policy (:class:`ApprovalPolicy`, every guarded
action by default). On a shop where nobody else could check an action (fewer than two active
staff users hold its scope), the owner may **waive** it (:meth:`Approvals.set_waiver`); the
waiver is audited, every execution under it is audited (``approval.waived``), and it lapses by
itself the moment a second possible checker exists, so a waiver set on a one-person shop cannot
outlive it.

Everything here is written to the audit log, last in its transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access.apikeys import Principal
from cardsvc.access.tables import APPROVAL_OPEN_STATUSES, Approval, ApprovalSetting, User
from cardsvc.access.users import SCOPES_OF_USER_ROLE, STAFF_ROLES
from cardsvc.checks import check_text
from cardsvc.db import Database
from cardsvc.db.base import NAME_LEN_MAX
from cardsvc.errors import ErrorCode, invalid, make_error
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class GuardedAction:
    """An action that maker-checker guards: the scope maker and checker both need, and the kinds
    of object it acts on."""

    scope: str
    object_types: tuple[str, ...]


ACTIONS: dict[str, GuardedAction] = {
    "withdrawal_payout": GuardedAction("withdrawals", ("withdrawal",)),
    "refund": GuardedAction("ledger", ("order", "retail_order")),
    "code_export": GuardedAction("export", ("batch", "order")),
    "batch_void": GuardedAction("stock", ("batch",)),
}
"""Every guarded action. ``code_export`` needs the ``export`` scope, which only owners hold:
its checker is a second owner (or the owner waives it on a one-owner shop)."""
STATUSES = ("pending", "approved", "executed", "rejected", "cancelled", "expired")
APPROVAL_TTL_MS = 24 * HOUR_MS
"""A day to find a checker and run the action: long enough for a colleague on another shift,
short enough that an approval does not lie around to be used much later."""
APPROVAL_TTL_MS_MAX = 30 * 24 * HOUR_MS
OBJECT_ID_LEN_MAX = 128
EXPIRED_PER_ROUND_MAX = 10_000


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which guarded actions need a checker (every one by default) and how long an approval
    lasts. Raises INVALID_ARGUMENT for an unknown action or a ttl out of range."""

    actions: frozenset[str] = frozenset(ACTIONS)
    ttl_ms: int = APPROVAL_TTL_MS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.actions) - set(ACTIONS))
        if unknown:
            raise invalid("approvals.actions", f"unknown guarded actions: {', '.join(unknown)}")
        if not 0 < self.ttl_ms <= APPROVAL_TTL_MS_MAX:
            raise invalid("approvals.ttl_ms", "an approval lasts 1 ms to 30 days")

    @classmethod
    def from_text(cls, text: str | None, *, ttl_ms: int = APPROVAL_TTL_MS) -> ApprovalPolicy:
        """A policy from a comma-separated list of actions (``CARDSVC_APPROVAL_ACTIONS``):
        None or ``all`` for every action, ``none`` (or empty) for none."""
        if text is None or text.strip() == "all":
            return cls(ttl_ms=ttl_ms)
        names = [part.strip() for part in text.split(",") if part.strip()]
        return cls(actions=frozenset(() if names == ["none"] else names), ttl_ms=ttl_ms)


@dataclass(frozen=True)
class ApprovalInfo:
    """An approval as the HTTP layers show it (times in Unix ms)."""

    approval_id: str
    action: str
    object_type: str
    object_id: str
    reason: str
    status: str
    requested_by: str
    requested_at_ms: int
    expires_at_ms: int
    decided_by: str | None
    decided_at_ms: int | None
    decision_note: str | None
    executed_by: str | None
    executed_at_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ActionSetting:
    """One guarded action's state on this shop: whether the policy guards it, whether the owner
    waived it, whether that waiver is in force (fewer than two possible checkers), and how many
    active staff users could check it."""

    action: str
    scope: str
    guarded: bool
    waived: bool
    waiver_in_force: bool
    checkers: int
    updated_by: str | None
    updated_at_ms: int | None


def _info(row: Approval) -> ApprovalInfo:
    return ApprovalInfo(
        approval_id=row.approval_id, action=row.action, object_type=row.object_type,
        object_id=row.object_id, reason=row.reason, status=row.status,
        requested_by=row.requested_by, requested_at_ms=row.requested_at_ms,
        expires_at_ms=row.expires_at_ms, decided_by=row.decided_by,
        decided_at_ms=row.decided_at_ms, decision_note=row.decision_note,
        executed_by=row.executed_by, executed_at_ms=row.executed_at_ms)


def guarded_action(action: str) -> GuardedAction:
    """The guarded action named ``action``. Raises INVALID_ARGUMENT (field ``action``)."""
    found = ACTIONS.get(action)
    if found is None:
        raise invalid("action", f"action must be one of {', '.join(ACTIONS)}")
    return found


def roles_with_scope(scope: str) -> tuple[str, ...]:
    """The staff roles whose users hold ``scope`` (``admin`` implies all but ``export``)."""
    return tuple(role for role in STAFF_ROLES
                 if scope in SCOPES_OF_USER_ROLE[role]
                 or ("admin" in SCOPES_OF_USER_ROLE[role] and scope != "export"))


def count_checkers(session: Session, scope: str) -> int:
    """Active staff users who hold ``scope``: the people who could check an action of it."""
    return int(session.scalar(select(func.count()).select_from(User).where(
        User.role.in_(roles_with_scope(scope)), User.status == "active")) or 0)


def _not_found(approval_id: str) -> Exception:
    return make_error(ErrorCode.APPROVAL_NOT_FOUND, "no such approval",
                      {"approval_id": approval_id})


def _not_pending(row: Approval, expected: str) -> Exception:
    return make_error(ErrorCode.APPROVAL_NOT_PENDING, f"the approval is {row.status}",
                      {"approval_id": row.approval_id, "status": row.status,
                       "expected": expected})


class Approvals:
    """Requests, decisions, waivers and the execution gate over one database. ``clock`` is
    wall time in ms (injectable for tests)."""

    def __init__(self, db: Database, clock: Callable[[], int],
                 policy: ApprovalPolicy | None = None) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy if policy is not None else ApprovalPolicy()

    # ----- the policy on this shop -----

    def _waived(self, session: Session, action: str, scope: str) -> bool:
        setting = session.get(ApprovalSetting, action)
        return bool(setting is not None and setting.waived
                    and count_checkers(session, scope) < 2)

    def required(self, session: Session, action: str) -> bool:
        """Whether ``action`` needs an approval now: guarded by the policy and not waived (a
        waiver is in force only while fewer than two active staff users hold its scope)."""
        guarded = guarded_action(action)
        if action not in self.policy.actions:
            return False
        return not self._waived(session, action, guarded.scope)

    def settings(self, principal: Principal) -> list[ActionSetting]:
        """Every guarded action's state (for the owner's settings page). Raises FORBIDDEN
        without the ``users`` scope."""
        principal.require("users")
        with self.db.read() as session:
            rows = {row.action: row for row in session.scalars(select(ApprovalSetting))}
            out = []
            for action, guarded in ACTIONS.items():
                row = rows.get(action)
                checkers = count_checkers(session, guarded.scope)
                waived = bool(row is not None and row.waived)
                out.append(ActionSetting(
                    action=action, scope=guarded.scope, guarded=action in self.policy.actions,
                    waived=waived, waiver_in_force=waived and checkers < 2, checkers=checkers,
                    updated_by=None if row is None else row.updated_by,
                    updated_at_ms=None if row is None else row.updated_at_ms))
            return out

    def set_waiver(self, principal: Principal, action: str, waived: bool) -> ActionSetting:
        """The owner waives maker-checker for ``action`` (``waived`` True) on a shop where
        nobody else could check it, or restores it. Effects: the setting row, an audit entry
        ``approval.waive`` / ``approval.unwaive``. Raises FORBIDDEN (not an owner: the ``users``
        and ``admin`` scopes), INVALID_ARGUMENT, APPROVAL_WAIVER_REFUSED (two or more people
        could check: details ``checkers``)."""
        principal.require("users")
        principal.require("admin")
        guarded = guarded_action(action)
        now_ms = self.clock()
        with self.db.write() as session:
            checkers = count_checkers(session, guarded.scope)
            if waived and checkers >= 2:
                raise make_error(ErrorCode.APPROVAL_WAIVER_REFUSED,
                                 "someone else can check this action; ask them",
                                 {"action": action, "checkers": checkers})
            row = session.get(ApprovalSetting, action)
            if row is None:
                row = ApprovalSetting(action=action, waived=waived, updated_by=principal.actor,
                                      updated_at_ms=now_ms)
                session.add(row)
            else:
                row.waived, row.updated_by, row.updated_at_ms = waived, principal.actor, now_ms
            audit.append(session, actor=principal.actor,
                         action="approval.waive" if waived else "approval.unwaive",
                         object_type="approval_setting", object_id=action,
                         details={"checkers": checkers}, at_ms=now_ms)
            return ActionSetting(action=action, scope=guarded.scope,
                                 guarded=action in self.policy.actions, waived=waived,
                                 waiver_in_force=waived and checkers < 2, checkers=checkers,
                                 updated_by=principal.actor, updated_at_ms=now_ms)

    # ----- requests and decisions -----

    def request(self, principal: Principal, action: str, object_type: str, object_id: str,
                reason: str) -> tuple[ApprovalInfo, bool]:
        """The maker asks for ``action`` on one object; returns the approval and whether this
        call created it (an open approval of the same action and object is returned as it is,
        so a double click makes one request). Effects: the row, an audit entry
        ``approval.request``. Raises FORBIDDEN (the action's scope), INVALID_ARGUMENT (action,
        object type, empty or over-long id or reason). The object's existence is checked when
        the action runs."""
        guarded = guarded_action(action)
        principal.require(guarded.scope)
        if object_type not in guarded.object_types:
            raise invalid("object_type", f"{action} acts on {' or '.join(guarded.object_types)}")
        check_text("object_id", object_id, OBJECT_ID_LEN_MAX)
        check_text("reason", reason, NAME_LEN_MAX)
        now_ms = self.clock()
        with self.db.write() as session:
            existing = self._open(session, action, object_type, object_id)
            if existing is not None:
                return _info(existing), False
            row = Approval(approval_id="apr_" + secrets.token_hex(8), action=action,
                           object_type=object_type, object_id=object_id, reason=reason,
                           status="pending", requested_by=principal.actor,
                           requested_at_ms=now_ms, expires_at_ms=now_ms + self.policy.ttl_ms)
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:  # a concurrent request for the same object won
                raced = self._open(session, action, object_type, object_id)
                if raced is None:
                    raise
                return _info(raced), False
            audit.append(session, actor=principal.actor, action="approval.request",
                         object_type="approval", object_id=row.approval_id,
                         details={"action": action, "object_type": object_type,
                                  "object_id": object_id, "reason": reason}, at_ms=now_ms)
            return _info(row), True

    @staticmethod
    def _open(session: Session, action: str, object_type: str,
              object_id: str) -> Approval | None:
        return session.scalar(select(Approval).where(
            Approval.action == action, Approval.object_type == object_type,
            Approval.object_id == object_id, Approval.status.in_(APPROVAL_OPEN_STATUSES)))

    def _decidable(self, session: Session, principal: Principal, approval_id: str,
                   now_ms: int) -> Approval:
        """The pending approval a checker may decide, locked. Raises as :meth:`approve`."""
        row = session.scalar(select(Approval).where(Approval.approval_id == approval_id)
                             .with_for_update())
        if row is None:
            raise _not_found(approval_id)
        principal.require(ACTIONS[row.action].scope)
        if not principal.is_user or principal.role not in STAFF_ROLES:
            raise make_error(ErrorCode.FORBIDDEN, "only a staff member checks an action",
                             {"reason": "checker_not_staff", "role": principal.role})
        if row.status != "pending":
            raise _not_pending(row, "pending")
        if row.expires_at_ms <= now_ms:
            raise make_error(ErrorCode.APPROVAL_EXPIRED, "the approval expired",
                             {"approval_id": approval_id})
        if principal.actor == row.requested_by:
            raise make_error(ErrorCode.APPROVAL_SELF,
                             "the person who asked for an action cannot approve it",
                             {"approval_id": approval_id, "reason": "maker"})
        return row

    def approve(self, principal: Principal, approval_id: str,
                note: str | None = None) -> ApprovalInfo:
        """A checker approves a pending request; the maker (or the checker) may then run the
        action once. Effects: the row, an audit entry ``approval.approve``. Raises
        APPROVAL_NOT_FOUND, FORBIDDEN (the action's scope; a checker that is not a staff
        user), APPROVAL_NOT_PENDING, APPROVAL_EXPIRED, APPROVAL_SELF (the maker)."""
        return self._decide(principal, approval_id, "approved", note)

    def reject(self, principal: Principal, approval_id: str,
               note: str | None = None) -> ApprovalInfo:
        """A checker refuses a pending request. Effects and errors as :meth:`approve`
        (``approval.reject``)."""
        return self._decide(principal, approval_id, "rejected", note)

    def _decide(self, principal: Principal, approval_id: str, status: str,
                note: str | None) -> ApprovalInfo:
        if note is not None:
            check_text("note", note, NAME_LEN_MAX)
        now_ms = self.clock()
        with self.db.write() as session:
            row = self._decidable(session, principal, approval_id, now_ms)
            row.status, row.decided_by, row.decided_at_ms = status, principal.actor, now_ms
            row.decision_note = note
            audit.append(session, actor=principal.actor,
                         action="approval.approve" if status == "approved" else
                         "approval.reject", object_type="approval", object_id=approval_id,
                         details={"action": row.action, "object_type": row.object_type,
                                  "object_id": row.object_id, "note": note}, at_ms=now_ms)
            return _info(row)

    def cancel(self, principal: Principal, approval_id: str) -> ApprovalInfo:
        """The maker withdraws its own open request. Effects: the row, an audit entry
        ``approval.cancel``. Raises APPROVAL_NOT_FOUND (also another maker's: nothing to learn),
        APPROVAL_NOT_PENDING."""
        now_ms = self.clock()
        with self.db.write() as session:
            row = session.scalar(select(Approval).where(Approval.approval_id == approval_id)
                                 .with_for_update())
            if row is None or row.requested_by != principal.actor:
                raise _not_found(approval_id)
            if row.status not in APPROVAL_OPEN_STATUSES:
                raise _not_pending(row, "pending")
            row.status, row.decided_at_ms = "cancelled", now_ms
            audit.append(session, actor=principal.actor, action="approval.cancel",
                         object_type="approval", object_id=approval_id,
                         details={"action": row.action, "object_id": row.object_id},
                         at_ms=now_ms)
            return _info(row)

    # ----- the gate of the guarded use cases -----

    def authorize(self, session: Session, *, action: str, object_type: str, object_id: str,
                  actor: str, approval_id: str | None) -> ApprovalInfo | None:
        """Called by a guarded use case in its own transaction, before its effect: returns
        None when the action needs no approval now (not guarded, or waived: then audited as
        ``approval.waived``), else the approval it consumed (now ``executed``, audited as
        ``approval.execute``). Raises APPROVAL_REQUIRED (no ``approval_id``),
        APPROVAL_NOT_FOUND, APPROVAL_MISMATCH (another action or object), APPROVAL_EXPIRED,
        APPROVAL_NOT_PENDING (not approved yet, or executed already), APPROVAL_SELF
        (``reason`` ``not_party``: the executor is neither maker nor checker). Refusals
        change nothing (the caller's transaction rolls back)."""
        guarded = guarded_action(action)
        now_ms = self.clock()
        if action not in self.policy.actions:
            return None
        if self._waived(session, action, guarded.scope):
            audit.append(session, actor=actor, action="approval.waived",
                         object_type=object_type, object_id=object_id,
                         details={"action": action}, at_ms=now_ms)
            return None
        row = self._usable(session, action=action, object_type=object_type,
                           object_id=object_id, actor=actor, approval_id=approval_id,
                           now_ms=now_ms, lock=True)
        done = session.execute(
            update(Approval).where(Approval.approval_id == row.approval_id,
                                   Approval.status == "approved")
            .values(status="executed", executed_by=actor, executed_at_ms=now_ms)
            .execution_options(synchronize_session=False))
        if getattr(done, "rowcount", 0) != 1:
            session.refresh(row)
            raise _not_pending(row, "approved")
        session.refresh(row)
        audit.append(session, actor=actor, action="approval.execute", object_type="approval",
                     object_id=row.approval_id,
                     details={"action": action, "object_type": object_type,
                              "object_id": object_id, "requested_by": row.requested_by,
                              "approved_by": row.decided_by}, at_ms=now_ms)
        return _info(row)

    def check(self, *, action: str, object_type: str, object_id: str, actor: str,
              approval_id: str | None) -> None:
        """:meth:`authorize` without consuming anything: for a use case that must know before a
        first, irreversible step outside SQL (voiding codes in the core) that its SQL step will
        be allowed. Raises as :meth:`authorize`."""
        guarded_action(action)
        with self.db.read() as session:
            if not self.required(session, action):
                return
            self._usable(session, action=action, object_type=object_type, object_id=object_id,
                         actor=actor, approval_id=approval_id, now_ms=self.clock(), lock=False)

    def _usable(self, session: Session, *, action: str, object_type: str, object_id: str,
                actor: str, approval_id: str | None, now_ms: int, lock: bool) -> Approval:
        if approval_id is None:
            raise make_error(ErrorCode.APPROVAL_REQUIRED,
                             "this needs a second person's approval first",
                             {"action": action, "object_type": object_type,
                              "object_id": object_id})
        statement = select(Approval).where(Approval.approval_id == approval_id)
        row = session.scalar(statement.with_for_update() if lock else statement)
        if row is None:
            raise _not_found(approval_id)
        if (row.action, row.object_type, row.object_id) != (action, object_type, object_id):
            raise make_error(ErrorCode.APPROVAL_MISMATCH,
                             "the approval is for another action or object",
                             {"approval_id": approval_id, "action": row.action,
                              "object_type": row.object_type, "object_id": row.object_id})
        if row.status == "approved" and row.expires_at_ms <= now_ms:
            raise make_error(ErrorCode.APPROVAL_EXPIRED, "the approval expired",
                             {"approval_id": approval_id})
        if row.status != "approved":
            raise _not_pending(row, "approved")
        if actor not in (row.requested_by, row.decided_by):
            raise make_error(ErrorCode.APPROVAL_SELF,
                             "only the maker or the checker runs an approved action",
                             {"approval_id": approval_id, "reason": "not_party"})
        return row

    # ----- reading -----

    def get(self, principal: Principal, approval_id: str) -> ApprovalInfo:
        """One approval. Raises APPROVAL_NOT_FOUND (also one of an action whose scope the
        caller lacks: nothing to learn)."""
        with self.db.read() as session:
            row = session.get(Approval, approval_id)
            if row is None or not _may_see(principal, row.action):
                raise _not_found(approval_id)
            return _info(row)

    def list(self, principal: Principal, *, status: str | None = None,
             action: str | None = None, object_type: str | None = None,
             object_id: str | None = None, cursor: str | None = None,
             limit: int | None = None) -> Page[ApprovalInfo]:
        """Approvals of the actions whose scope the caller holds, newest first, a page at a
        time (``cardsvc.paging``), filtered by status, action and object. Raises
        INVALID_ARGUMENT (status, action, cursor), LIMIT_EXCEEDED (limit)."""
        size = check_page_size(limit)
        if status is not None and status not in STATUSES:
            raise invalid("status", f"status must be one of {', '.join(STATUSES)}")
        actions = [name for name in ACTIONS if _may_see(principal, name)]
        if action is not None:
            guarded_action(action)
            actions = [name for name in actions if name == action]
        after = decode_cursor(cursor, (int, str))
        statement = select(Approval).where(Approval.action.in_(actions))
        if status is not None:
            statement = statement.where(Approval.status == status)
        if object_type is not None:
            statement = statement.where(Approval.object_type == object_type)
        if object_id is not None:
            statement = statement.where(Approval.object_id == object_id)
        if after is not None:
            statement = statement.where(
                tuple_(Approval.requested_at_ms, Approval.approval_id) < tuple_(*after))
        statement = statement.order_by(Approval.requested_at_ms.desc(),
                                       Approval.approval_id.desc()).limit(size + 1)
        with self.db.read() as session:
            rows = [_info(row) for row in session.scalars(statement)]
        return page_of(rows, size, key=lambda info: (info.requested_at_ms, info.approval_id))

    def expire_due(self) -> int:
        """Marks open approvals past their expiry ``expired`` (for the timer); returns how many
        (at most EXPIRED_PER_ROUND_MAX per call)."""
        now_ms = self.clock()
        with self.db.write() as session:
            ids = list(session.scalars(
                select(Approval.approval_id).where(Approval.status.in_(APPROVAL_OPEN_STATUSES),
                                                   Approval.expires_at_ms <= now_ms)
                .limit(EXPIRED_PER_ROUND_MAX)))
            if ids:
                session.execute(update(Approval).where(Approval.approval_id.in_(ids))
                                .values(status="expired")
                                .execution_options(synchronize_session=False))
            return len(ids)


def _may_see(principal: Principal, action: str) -> bool:
    scope = ACTIONS[action].scope
    return scope in principal.scopes or (principal.is_admin and scope != "export")
