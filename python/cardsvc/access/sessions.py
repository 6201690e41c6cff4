"""Console logins: sessions, login throttling and lockout, TOTP enrolment from a session, and
password changes. :class:`Logins` is the one object the web layer calls; docs/users.md explains
the design and its trade-offs.

**Sessions.** A login makes a new session whose token (256 random bits, URL-safe base64) is
returned once and kept only as SHA-256; the row keeps who, from which IP, the user agent's
SHA-256 (optional binding), when it was created and last seen, its idle timeout (30 min for
staff, 8 h for agents' users) and absolute expiry (12 h). :meth:`Logins.authenticate` checks
them and the user's status, and writes ``last_seen_at_ms`` at most once a minute per session.
The CSRF secret of a session is derived from its token (HMAC), so it is never stored. Every
login, enrolment and password change makes a new token (no session fixation); disabling a user,
changing its role, resetting its password or TOTP ends every session it has.

**Throttling and lockout.** Failures (an unknown login, a wrong password, a wrong or missing
TOTP code: all the one answer ``LOGIN_FAILED``) are counted three ways:

* per client IP, over all logins (memory): at ``ip_failures_max`` the IP gets RATE_LIMITED
  before anything is hashed;
* per (login, IP) (memory): at ``login_ip_failures_max`` that pair gets LOGIN_LOCKED, for
  ``lock_ms`` doubling with each lock up to ``lock_ms_max``. This is what stops an attacker;
* per account, over all IPs (SQL, so it survives restarts; memory for logins that do not
  exist, so they behave alike): a softer limit, ``login_failures_max``. A locked account
  refuses logins with LOGIN_LOCKED *without checking the password* (otherwise the lock would
  still answer guesses), except from a **trusted source**: an IP this user logged in from with
  every factor it has (password and TOTP, when enrolled) within ``trusted_source_ms``. So an
  attacker hammering an account cannot lock its owner out of the places they work from.

The same counters and answers apply to unknown logins, so neither the error nor the lock tells
which logins exist; argon2 runs against a dummy hash for them, so timing does not either.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access.apikeys import Principal
from cardsvc.access.tables import IP_LEN_MAX, User, UserInvitation, UserSession
from cardsvc.access.users import (
    TOKEN_TEXT_LEN_MAX,
    TOTP_ISSUER,
    Passwords,
    TotpEnrolment,
    accept_invitation,
    begin_totp,
    check_password,
    confirm_totp,
    consume_recovery_code,
    consume_totp_step,
    is_staff,
    login_key,
    match_totp,
    new_recovery_codes,
    principal_of_user,
    require_user,
    revoke_user_sessions,
    totp_required,
    totp_secret,
    user_actor,
    user_by_login,
    user_dict,
)
from cardsvc.crypto import MasterKeyring
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error

log = logging.getLogger("cardsvc.access.sessions")

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
TRACKED_MAX = 100_000
"""Failure windows kept in memory (IPs, login/IP pairs, unknown logins; ~150 bytes each, so at
most ~15 MB); the oldest unlocked half is dropped when the bound is reached."""
USER_AGENT_LEN_MAX = 512
STAGES = ("full", "enrol")


@dataclass(frozen=True)
class LockoutPolicy:
    """When failed logins lock what (module docstring). Times in milliseconds; a maximum of 0
    turns that counter off."""

    window_ms: int = 15 * MINUTE_MS
    login_ip_failures_max: int = 5
    login_failures_max: int = 20
    ip_failures_max: int = 30
    lock_ms: int = 15 * MINUTE_MS
    lock_ms_max: int = 4 * HOUR_MS
    lockouts_forget_ms: int = DAY_MS
    """A day without a lock starts the doubling again from ``lock_ms``."""
    trusted_source_ms: int = 30 * DAY_MS

    def __post_init__(self) -> None:
        _check_non_negative(self, "lockout")
        if self.window_ms <= 0 or self.lock_ms <= 0 or self.lock_ms_max < self.lock_ms:
            raise invalid("lockout.window_ms", "window_ms and lock_ms must be positive and "
                          "lock_ms_max at least lock_ms")


@dataclass(frozen=True)
class SessionSettings:
    """How long sessions last (milliseconds) and how many a user may hold."""

    idle_staff_ms: int = 30 * MINUTE_MS
    idle_agent_ms: int = 8 * HOUR_MS
    absolute_ms: int = 12 * HOUR_MS
    enrolment_ms: int = 15 * MINUTE_MS
    """An enrolment-only session (a staff user who must confirm TOTP) lasts this long at most."""
    touch_interval_ms: int = MINUTE_MS
    """``last_seen_at_ms`` is written at most this often per session (bounded writes); idle
    expiry is therefore up to this much late."""
    sessions_per_user_max: int = 10
    """A new login beyond this ends the user's oldest session."""
    bind_user_agent: bool = True
    ended_sessions_kept_ms: int = 30 * DAY_MS
    """Ended sessions are kept this long (they are the trusted sources), then purged."""
    issuer: str = TOTP_ISSUER

    def __post_init__(self) -> None:
        _check_non_negative(self, "sessions")
        for name in ("idle_staff_ms", "idle_agent_ms", "absolute_ms", "enrolment_ms",
                     "sessions_per_user_max"):
            if getattr(self, name) <= 0:
                raise invalid(f"sessions.{name}", f"{name} must be positive")


def _check_non_negative(settings: Any, prefix: str) -> None:
    for item in fields(settings):
        value = getattr(settings, item.name)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if value < 0:
            raise invalid(f"{prefix}.{item.name}", f"{item.name} must not be negative")


# ----- the in-memory part of the guard -------------------------------------------------------


@dataclass
class _Window:
    """Failures in the current window and the lock they led to (all times in ms)."""

    count: int = 0
    start_ms: int = 0
    locked_until_ms: int = 0
    lockouts: int = 0


def _register_failure(window: _Window, now_ms: int, maximum: int,
                      policy: LockoutPolicy) -> int | None:
    """Counts one failure; returns the lock duration it starts, if it starts one. Pure apart
    from ``window``. The n-th consecutive lock lasts ``lock_ms * 2**(n-1)``, capped."""
    if window.lockouts and window.locked_until_ms + policy.lockouts_forget_ms <= now_ms:
        window.lockouts = 0
    if window.count == 0 or now_ms - window.start_ms >= policy.window_ms:
        window.count, window.start_ms = 0, now_ms
    window.count += 1
    if maximum <= 0 or window.count < maximum:
        return None
    duration = min(policy.lock_ms << min(window.lockouts, 32), policy.lock_ms_max)
    window.locked_until_ms = now_ms + duration
    window.lockouts += 1
    window.count, window.start_ms = 0, now_ms
    return duration


class LoginGuard:
    """The failure windows kept in memory: per IP, per (login, IP) and per unknown login.
    Thread-safe, bounded (TRACKED_MAX)."""

    def __init__(self, policy: LockoutPolicy) -> None:
        self.policy = policy
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def retry_after_ms(self, subject: str, now_ms: int) -> int:
        """How long ``subject`` (``ip:..``, ``pair:..``, ``login:..``) stays locked; 0: free."""
        with self._lock:
            window = self._windows.get(subject)
            return 0 if window is None else max(0, window.locked_until_ms - now_ms)

    def fail(self, subject: str, maximum: int, now_ms: int) -> int | None:
        """Counts a failure against ``subject``; the lock duration it starts, if any."""
        with self._lock:
            window = self._windows.get(subject)
            if window is None:
                self._bound(now_ms)
                window = self._windows[subject] = _Window()
            return _register_failure(window, now_ms, maximum, self.policy)

    def forget(self, subject: str) -> None:
        with self._lock:
            self._windows.pop(subject, None)

    def _bound(self, now_ms: int) -> None:
        if len(self._windows) < TRACKED_MAX:
            return
        for name in list(self._windows)[: TRACKED_MAX // 2]:
            if self._windows[name].locked_until_ms <= now_ms:
                del self._windows[name]


# ----- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    """An authenticated session: who (``user``, ``principal``), at which ``stage`` (``full``,
    or ``enrol``: TOTP enrolment only, with no scopes), and the session's CSRF token for the web
    layer's forms (derived from the session token; left out of ``repr``)."""

    session_id: str
    user: dict[str, Any]
    principal: Principal
    stage: str
    mfa: bool
    created_at_ms: int
    expires_at_ms: int
    idle_expires_at_ms: int
    csrf_token: str = field(repr=False)

    def check_csrf(self, presented: object) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant time)."""
        return isinstance(presented, str) and presented.isascii() and hmac.compare_digest(
            presented.encode("ascii"), self.csrf_token.encode("ascii"))


@dataclass(frozen=True)
class LoginResult:
    """A new session: its token (set it as the session cookie; shown once, left out of
    ``repr``) and what :meth:`Logins.authenticate` would say of it."""

    token: str = field(repr=False)
    session: SessionInfo


@dataclass(frozen=True)
class EnrolmentResult:
    """A confirmed TOTP enrolment: the new session (the old one ended) and the recovery codes,
    shown once."""

    login: LoginResult
    recovery_codes: list[str] = field(repr=False)


@dataclass(frozen=True)
class _Candidate:
    """What a login attempt read about its user, outside any write transaction."""

    user_id: str
    status: str
    password_hash: str | None
    locked_until_ms: int
    trusted: bool
    totp_secret: bytes | None = field(repr=False)
    totp_last_step: int | None
    staff: bool


class _Refused(Exception):
    """A login that passed the checks but lost a race in its write transaction (a TOTP step or
    recovery code used meanwhile, the password changed): rolled back, then counted as failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


def _csrf_token(token: str) -> str:
    return hmac.new(token.encode("ascii"), b"cardsvc:csrf:v1", hashlib.sha256).hexdigest()


def csrf_binding(token: str) -> bytes:
    """The CSRF secret of the session whose token is ``token`` (what ``SessionInfo.csrf_token``
    holds), as bytes for the web layer's form tokens: a token issued under one session never
    verifies under another, and a new login voids every form issued before it. Pure; any text
    is accepted (a forged cookie yields a binding no real session has)."""
    text = token if token.isascii() else token.encode("utf-8", "replace").hex()
    return _csrf_token(text[:TOKEN_TEXT_LEN_MAX]).encode("ascii")


def _login_failed() -> CardsvcError:
    return make_error(ErrorCode.LOGIN_FAILED,
                      "the login, password or authentication code is not right")


def _locked(retry_after_ms: int) -> CardsvcError:
    return make_error(ErrorCode.LOGIN_LOCKED,
                      "too many failed logins; wait, or log in from a place you used before",
                      {"retry_after_s": max(1, math.ceil(retry_after_ms / 1000))})


def _session_ended(reason: str | None = None) -> CardsvcError:
    return make_error(ErrorCode.UNAUTHENTICATED, "the session has ended; log in again",
                      {} if reason is None else {"reason": reason})


def _user_agent_sha256(user_agent: str | None) -> bytes | None:
    return None if user_agent is None else _sha256(user_agent[:USER_AGENT_LEN_MAX])


def _subject_login(name: str | None, raw: object) -> str:
    """The memory key of a login attempt's name: the normalised login, or a digest of text that
    cannot be a login (so it is counted too, without being kept)."""
    if name is not None:
        return name
    text = raw if isinstance(raw, str) else repr(type(raw))
    return "?" + hashlib.sha256(text[:256].encode("utf-8", "replace")).hexdigest()[:16]


class Logins:
    """Logins and sessions over one database (one per process: it holds the in-memory
    throttles). ``clock_ms`` (wall time, ms) is injectable for tests."""

    def __init__(self, db: Database, keyring: MasterKeyring, *,
                 passwords: Passwords | None = None,
                 settings: SessionSettings | None = None,
                 policy: LockoutPolicy | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.passwords = passwords if passwords is not None else Passwords()
        self.settings = settings if settings is not None else SessionSettings()
        self.policy = policy if policy is not None else LockoutPolicy()
        self.guard = LoginGuard(self.policy)
        self._clock_ms = clock_ms if clock_ms is not None else (lambda: int(time.time() * 1000))

    def now_ms(self) -> int:
        return self._clock_ms()

    # ----- logging in -----

    def login(self, login: str, password: str, *, ip: str, totp_code: str | None = None,
              recovery_code: str | None = None, user_agent: str | None = None) -> LoginResult:
        """Logs a user in with its login name, password and (when enrolled) a TOTP code or one
        of its recovery codes; returns a new session. A staff user not yet enrolled gets an
        ``enrol`` session (TOTP enrolment only).

        Errors, in order: RATE_LIMITED (``limit: login_failures_per_ip``, the IP failed too
        often), LOGIN_LOCKED (this login from this IP, or the account from an untrusted IP;
        ``retry_after_s``), LOGIN_FAILED (anything wrong: unknown login, wrong password, wrong,
        replayed or missing code, a disabled or invited user), RATE_LIMITED (``limit:
        password_hashing``, too many logins at once). Effects: the session row, counters, and an
        audit entry ``login.success`` or ``login.failure`` (plus ``login.lockout`` when a lock
        starts, ``user.recovery_code_use``); never the password or a code."""
        now = self._clock_ms()
        ip = str(ip)[:IP_LEN_MAX] or "unknown"
        name = login_key(login)
        subject = _subject_login(name, login)
        self._check_throttles(subject, ip, now)
        candidate = self._read_candidate(name, ip, now)
        wait = (self.guard.retry_after_ms(f"login:{subject}", now) if candidate is None
                else 0 if candidate.trusted else max(0, candidate.locked_until_ms - now))
        if wait > 0:
            raise _locked(wait)
        text = password if isinstance(password, str) else ""
        good = self.passwords.verify(candidate.password_hash if candidate else None, text)
        if candidate is None or not good or candidate.status != "active":
            reason = ("unknown_login" if candidate is None else "bad_password" if not good
                      else f"user_{candidate.status}")
            raise self._failed(candidate, subject, ip, reason, now)
        step, method = None, "password"
        if candidate.totp_secret is not None:
            if recovery_code:
                method = "recovery_code"
            else:
                step = match_totp(candidate.totp_secret, totp_code, now,
                                  candidate.totp_last_step)
                if step is None:
                    raise self._failed(candidate, subject, ip, "bad_totp", now)
                method = "totp"
        rehash = self.passwords.hash(text) if self.passwords.needs_rehash(
            candidate.password_hash or "") else None
        try:
            result = self._open_login(candidate, text_hash=candidate.password_hash or "",
                                      rehash=rehash, step=step, method=method,
                                      recovery_code=recovery_code, ip=ip,
                                      user_agent=user_agent, now=now)
        except _Refused as refused:
            raise self._failed(candidate, subject, ip, refused.reason, now) from None
        self.guard.forget(f"pair:{subject}|{ip}")
        return result

    def _check_throttles(self, subject: str, ip: str, now: int) -> None:
        wait = self.guard.retry_after_ms(f"ip:{ip}", now)
        if wait > 0:
            raise make_error(ErrorCode.RATE_LIMITED, "too many failed logins from this address",
                             {"limit": "login_failures_per_ip",
                              "max": self.policy.ip_failures_max,
                              "retry_after_s": max(1, math.ceil(wait / 1000))})
        wait = self.guard.retry_after_ms(f"pair:{subject}|{ip}", now)
        if wait > 0:
            raise _locked(wait)

    def _read_candidate(self, name: str | None, ip: str, now: int) -> _Candidate | None:
        if name is None:
            return None
        with self.db.read() as session:
            row = user_by_login(session, name)
            if row is None:
                return None
            enrolled = row.totp_confirmed_at_ms is not None
            trusted = self._trusted(session, row.user_id, ip, enrolled, now)
            secret = totp_secret(row, self.keyring) if enrolled else None
            return _Candidate(user_id=row.user_id, status=row.status,
                              password_hash=row.password_hash,
                              locked_until_ms=row.locked_until_ms or 0, trusted=trusted,
                              totp_secret=secret, totp_last_step=row.totp_last_step,
                              staff=is_staff(row.role))

    def _trusted(self, session: Session, user_id: str, ip: str, enrolled: bool,
                 now: int) -> bool:
        """Whether ``ip`` is a trusted source of the user: a full login with every factor the
        user has (TOTP when enrolled) came from it within ``trusted_source_ms``."""
        statement = (select(UserSession.session_id)
                     .where(UserSession.user_id == user_id, UserSession.ip == ip,
                            UserSession.stage == "full",
                            UserSession.created_at_ms >= now - self.policy.trusted_source_ms)
                     .limit(1))
        if enrolled:
            statement = statement.where(UserSession.mfa.is_(True))
        return session.scalar(statement) is not None

    def _open_login(self, candidate: _Candidate, *, text_hash: str, rehash: str | None,
                    step: int | None, method: str, recovery_code: str | None, ip: str,
                    user_agent: str | None, now: int) -> LoginResult:
        """The write transaction of a successful login: the checks that can race re-done, the
        counters reset, the session made, audited. Raises _Refused."""
        with self.db.write() as session:
            row = require_user(session, candidate.user_id, for_update=True)
            if row.status != "active" or row.password_hash != text_hash:
                raise _Refused("changed_meanwhile")
            if step is not None and not consume_totp_step(session, row.user_id, step):
                raise _Refused("totp_replay")
            if method == "recovery_code":
                left = consume_recovery_code(session, row.user_id, recovery_code, now_ms=now)
                if left is None:
                    raise _Refused("bad_recovery_code")
            if rehash is not None:
                row.password_hash, row.password_changed_at_ms = rehash, now
            if (row.locked_until_ms or 0) <= now:
                # A login through an account lock (from a trusted source) leaves the lock for
                # everybody else: the attack it answers may still be going on.
                row.failed_logins, row.failed_window_start_ms = 0, None
                row.locked_until_ms, row.lockouts = None, 0
            enrolled = row.totp_confirmed_at_ms is not None
            stage = "enrol" if totp_required(row) and not enrolled else "full"
            result = self._new_session(session, row, stage=stage, mfa=method != "password",
                                       ip=ip, user_agent=user_agent, now=now)
            audit.append(session, actor=user_actor(row.user_id), action="login.success",
                         object_type="user", object_id=row.user_id,
                         details={"ip": ip, "method": method, "stage": stage,
                                  "session_id": result.session.session_id,
                                  "rehashed": rehash is not None}, at_ms=now)
            return result

    def _failed(self, candidate: _Candidate | None, subject: str, ip: str, reason: str,
                now: int) -> CardsvcError:
        """Counts a failed login everywhere, audits it (and any lock it starts) and returns
        the uniform LOGIN_FAILED to raise."""
        policy = self.policy
        locks: list[dict[str, Any]] = []
        for kind, key, maximum in (("ip", f"ip:{ip}", policy.ip_failures_max),
                                   ("login_ip", f"pair:{subject}|{ip}",
                                    policy.login_ip_failures_max)):
            started = self.guard.fail(key, maximum, now)
            if started is not None:
                locks.append({"scope": kind, "lock_ms": started})
        if candidate is None:
            started = self.guard.fail(f"login:{subject}", policy.login_failures_max, now)
            if started is not None:
                locks.append({"scope": "account", "lock_ms": started})
        with self.db.write() as session:
            if candidate is not None:
                locks.extend(self._count_account_failure(session, candidate.user_id, now))
            if candidate is None:
                # The attempted name is not written down: people type passwords into the
                # login field. A digest still lets an auditor see repeated attempts.
                actor, object_type = "login", "login"
                object_id = "sha256:" + hashlib.sha256(subject.encode()).hexdigest()[:16]
            else:
                actor, object_type = user_actor(candidate.user_id), "user"
                object_id = candidate.user_id
            audit.append(session, actor=actor, action="login.failure", object_type=object_type,
                         object_id=object_id, details={"ip": ip, "reason": reason}, at_ms=now)
            for lock in locks:
                audit.append(session, actor=actor, action="login.lockout",
                             object_type=object_type, object_id=object_id,
                             details={"ip": ip, **lock, "until_ms": now + lock["lock_ms"]},
                             at_ms=now)
        for lock in locks:
            log.info("login lock (%s, %d ms) for %s from %s", lock["scope"], lock["lock_ms"],
                     object_id, ip)
        return _login_failed()

    def _count_account_failure(self, session: Session, user_id: str,
                               now: int) -> list[dict[str, Any]]:
        row = require_user(session, user_id, for_update=True)
        window = _Window(count=row.failed_logins or 0, start_ms=row.failed_window_start_ms or 0,
                         locked_until_ms=row.locked_until_ms or 0, lockouts=row.lockouts or 0)
        started = _register_failure(window, now, self.policy.login_failures_max, self.policy)
        row.failed_logins, row.failed_window_start_ms = window.count, window.start_ms
        row.locked_until_ms = window.locked_until_ms or None
        row.lockouts = window.lockouts
        return [] if started is None else [{"scope": "account", "lock_ms": started}]

    # ----- sessions -----

    def _new_session(self, session: Session, row: User, *, stage: str, mfa: bool, ip: str,
                     user_agent: str | None, now: int) -> LoginResult:
        """Inserts a new session for ``row`` (ending its oldest beyond the per-user bound)."""
        settings = self.settings
        token = secrets.token_urlsafe(32)
        if stage == "enrol":
            idle = expires = settings.enrolment_ms
        else:
            idle = settings.idle_staff_ms if is_staff(row.role) else settings.idle_agent_ms
            expires = settings.absolute_ms
        record = UserSession(
            session_id=secrets.token_hex(8), token_sha256=_sha256(token), user_id=row.user_id,
            stage=stage, mfa=mfa, ip=ip,
            user_agent_sha256=_user_agent_sha256(user_agent) if settings.bind_user_agent
            else None,
            created_at_ms=now, last_seen_at_ms=now, idle_timeout_ms=idle,
            expires_at_ms=now + expires, revoked_at_ms=None, revoked_reason=None)
        session.add(record)
        session.flush()
        live = session.scalars(
            select(UserSession.session_id)
            .where(UserSession.user_id == row.user_id, UserSession.revoked_at_ms.is_(None),
                   UserSession.expires_at_ms > now)
            .order_by(UserSession.created_at_ms.desc(), UserSession.session_id.desc())
            .offset(settings.sessions_per_user_max)).all()
        if live:
            session.execute(update(UserSession).where(UserSession.session_id.in_(live))
                            .values(revoked_at_ms=now, revoked_reason="too_many")
                            .execution_options(synchronize_session=False))
        return LoginResult(token=token, session=self._info(record, row, token))

    def _info(self, record: UserSession, row: User, token: str) -> SessionInfo:
        return SessionInfo(
            session_id=record.session_id, user=user_dict(row),
            principal=principal_of_user(row, enrolled_stage=record.stage == "full"),
            stage=record.stage, mfa=record.mfa, created_at_ms=record.created_at_ms,
            expires_at_ms=record.expires_at_ms,
            idle_expires_at_ms=min(record.expires_at_ms,
                                   record.last_seen_at_ms + record.idle_timeout_ms),
            csrf_token=_csrf_token(token))

    def authenticate(self, token: str, *, user_agent: str | None = None,
                     allow_enrolment: bool = False) -> SessionInfo:
        """The session a token belongs to, when it is live: not revoked, not past its absolute
        expiry or idle timeout, its user active, and (when bound) the same user agent. Touches
        ``last_seen_at_ms`` at most once per ``touch_interval_ms``. Raises UNAUTHENTICATED
        (details ``reason`` for a known session: ``revoked``, ``expired``, ``idle``,
        ``user_inactive``, ``user_agent``), ENROLMENT_REQUIRED for an ``enrol`` session unless
        ``allow_enrolment``."""
        now = self._clock_ms()
        if not isinstance(token, str) or not token.isascii() or not (
                0 < len(token) <= TOKEN_TEXT_LEN_MAX):
            raise _session_ended()
        with self.db.read() as session:
            record = session.scalar(select(UserSession)
                                    .where(UserSession.token_sha256 == _sha256(token)))
            row = None if record is None else session.get(User, record.user_id)
            if record is None or row is None:
                raise _session_ended()
            self._check_live(record, row, user_agent, now)
            info = self._info(record, row, token)
        if record.stage == "enrol" and not allow_enrolment:
            raise make_error(ErrorCode.ENROLMENT_REQUIRED,
                             "set up your authenticator app before anything else")
        if now - record.last_seen_at_ms >= self.settings.touch_interval_ms:
            with self.db.write() as session:
                session.execute(update(UserSession)
                                .where(UserSession.session_id == record.session_id,
                                       UserSession.last_seen_at_ms < now)
                                .values(last_seen_at_ms=now)
                                .execution_options(synchronize_session=False))
        return info

    def _check_live(self, record: UserSession, row: User, user_agent: str | None,
                    now: int) -> None:
        if record.revoked_at_ms is not None:
            raise _session_ended("revoked")
        if now >= record.expires_at_ms:
            raise _session_ended("expired")
        if now - record.last_seen_at_ms >= record.idle_timeout_ms:
            raise _session_ended("idle")
        if row.status != "active":
            raise _session_ended("user_inactive")
        if record.user_agent_sha256 is not None and not hmac.compare_digest(
                bytes(record.user_agent_sha256), _user_agent_sha256(user_agent) or b""):
            raise _session_ended("user_agent")

    def logout(self, token: str) -> bool:
        """Ends the session of ``token``; False when it was not live (idempotent). Effects: the
        row, an audit entry ``session.revoke`` (reason ``logout``)."""
        if not isinstance(token, str) or len(token) > TOKEN_TEXT_LEN_MAX:
            return False
        now = self._clock_ms()
        with self.db.write() as session:
            record = session.scalar(select(UserSession)
                                    .where(UserSession.token_sha256 == _sha256(token)))
            if record is None or record.revoked_at_ms is not None:
                return False
            record.revoked_at_ms, record.revoked_reason = now, "logout"
            audit.append(session, actor=user_actor(record.user_id), action="session.revoke",
                         object_type="session", object_id=record.session_id,
                         details={"user_id": record.user_id, "reason": "logout"}, at_ms=now)
            return True

    def _require_self_or_admin(self, actor: Principal, user_id: str) -> None:
        if actor.user_id != user_id:
            actor.require("users")

    def revoke_session(self, actor: Principal, session_id: str) -> bool:
        """Ends one session of a user (the user itself, or a caller with ``users``); False when
        it had ended already. Effects: the row, an audit entry ``session.revoke``. Raises
        FORBIDDEN, USER_NOT_FOUND (no such session: it names no user the caller may see)."""
        now = self._clock_ms()
        with self.db.write() as session:
            record = session.get(UserSession, session_id)
            if record is None:
                raise make_error(ErrorCode.USER_NOT_FOUND, "no such session",
                                 {"session_id": session_id})
            self._require_self_or_admin(actor, record.user_id)
            if record.revoked_at_ms is not None or record.expires_at_ms <= now:
                return False
            record.revoked_at_ms, record.revoked_reason = now, "revoked"
            audit.append(session, actor=actor.actor, action="session.revoke",
                         object_type="session", object_id=session_id,
                         details={"user_id": record.user_id, "reason": "revoked"}, at_ms=now)
            return True

    def revoke_all(self, actor: Principal, user_id: str, *,
                   keep_session_id: str | None = None) -> int:
        """Ends every live session of a user (but ``keep_session_id``: "log out my other
        sessions"); returns how many. Effects: the rows, an audit entry ``session.revoke_all``.
        Raises FORBIDDEN, USER_NOT_FOUND."""
        self._require_self_or_admin(actor, user_id)
        now = self._clock_ms()
        with self.db.write() as session:
            require_user(session, user_id)
            ended = revoke_user_sessions(session, user_id, reason="revoked", at_ms=now,
                                         keep_session_id=keep_session_id)
            audit.append(session, actor=actor.actor, action="session.revoke_all",
                         object_type="user", object_id=user_id,
                         details={"sessions_revoked": ended}, at_ms=now)
            return ended

    def list_sessions(self, actor: Principal, user_id: str) -> list[dict[str, Any]]:
        """A user's live sessions, newest first (never a token or its hash). Raises FORBIDDEN
        (not the user itself and no ``users`` scope)."""
        self._require_self_or_admin(actor, user_id)
        now = self._clock_ms()
        with self.db.read() as session:
            records = session.scalars(
                select(UserSession)
                .where(UserSession.user_id == user_id, UserSession.revoked_at_ms.is_(None),
                       UserSession.expires_at_ms > now)
                .order_by(UserSession.created_at_ms.desc())).all()
            return [{"session_id": r.session_id, "stage": r.stage, "mfa": r.mfa, "ip": r.ip,
                     "created_at_ms": r.created_at_ms, "last_seen_at_ms": r.last_seen_at_ms,
                     "expires_at_ms": r.expires_at_ms}
                    for r in records if now - r.last_seen_at_ms < r.idle_timeout_ms]

    # ----- enrolment, passwords, invitations -----

    def begin_enrolment(self, token: str, *, totp_code: str | None = None,
                        user_agent: str | None = None) -> TotpEnrolment:
        """Starts TOTP enrolment for the session's user: a new secret, returned once with its
        provisioning URI. A user who already has TOTP (re-enrolling: a new phone) must give a
        current code, so a stolen session cannot swap the second factor. Raises as
        :meth:`authenticate`, TOTP_INVALID."""
        info = self.authenticate(token, user_agent=user_agent, allow_enrolment=True)
        now = self._clock_ms()
        with self.db.write() as session:
            row = require_user(session, info.user["user_id"], for_update=True)
            current = totp_secret(row, self.keyring)
            if current is not None:
                step = match_totp(current, totp_code, now, row.totp_last_step)
                if step is None or not consume_totp_step(session, row.user_id, step):
                    raise make_error(ErrorCode.TOTP_INVALID, "give a current code from your "
                                     "authenticator app first", {"field": "totp_code"})
            return begin_totp(session, self.keyring, row, now_ms=now,
                              issuer=self.settings.issuer)

    def complete_enrolment(self, token: str, code: str, *, ip: str,
                           user_agent: str | None = None) -> EnrolmentResult:
        """Confirms the pending TOTP secret with a first code. Every session of the user ends
        and a new full session (a new token) replaces this one; ten recovery codes are returned
        once. Raises as :meth:`authenticate`, TOTP_INVALID (the session stays)."""
        info = self.authenticate(token, user_agent=user_agent, allow_enrolment=True)
        now = self._clock_ms()
        user_id = info.user["user_id"]
        with self.db.write() as session:
            row = require_user(session, user_id, for_update=True)
            codes = confirm_totp(session, self.keyring, row, code, now_ms=now)
            revoke_user_sessions(session, user_id, reason="privilege_change", at_ms=now)
            result = self._new_session(session, row, stage="full", mfa=True,
                                       ip=str(ip)[:IP_LEN_MAX], user_agent=user_agent, now=now)
        return EnrolmentResult(login=result, recovery_codes=codes)

    def regenerate_recovery_codes(self, token: str, totp_code: str, *,
                                  user_agent: str | None = None) -> list[str]:
        """Ten new recovery codes (the old ones stop working), for a full session that gives a
        fresh TOTP code. Raises as :meth:`authenticate`, TOTP_INVALID."""
        info = self.authenticate(token, user_agent=user_agent)
        now = self._clock_ms()
        with self.db.write() as session:
            row = require_user(session, info.user["user_id"], for_update=True)
            secret = totp_secret(row, self.keyring)
            step = None if secret is None else match_totp(secret, totp_code, now,
                                                          row.totp_last_step)
            if step is None or not consume_totp_step(session, row.user_id, step):
                raise make_error(ErrorCode.TOTP_INVALID, "that code does not match",
                                 {"field": "totp_code"})
            return new_recovery_codes(session, row.user_id, now_ms=now)

    def change_password(self, token: str, current_password: str, new_password: str, *,
                        ip: str, user_agent: str | None = None) -> LoginResult:
        """Changes the session user's password: every session ends and a new one (a new
        token, same stage and factors) replaces this one. A wrong current password counts as a
        failed login. Raises as :meth:`authenticate`, LOGIN_FAILED, PASSWORD_REJECTED."""
        info = self.authenticate(token, user_agent=user_agent)
        now = self._clock_ms()
        ip = str(ip)[:IP_LEN_MAX] or "unknown"
        user_id, login = info.user["user_id"], info.user["login"]
        self._check_throttles(login, ip, now)
        with self.db.read() as session:
            stored = require_user(session, user_id).password_hash
        if not self.passwords.verify(stored, current_password):
            candidate = _Candidate(user_id=user_id, status="active", password_hash=stored,
                                   locked_until_ms=0, trusted=True, totp_secret=None,
                                   totp_last_step=None, staff=is_staff(info.user["role"]))
            raise self._failed(candidate, login, ip, "bad_password", now)
        check_password(new_password, login)
        hashed = self.passwords.hash(new_password)
        with self.db.write() as session:
            row = require_user(session, user_id, for_update=True)
            if row.password_hash != stored:
                raise _login_failed()
            row.password_hash, row.password_changed_at_ms, row.updated_at_ms = hashed, now, now
            ended = revoke_user_sessions(session, user_id, reason="password_change", at_ms=now)
            result = self._new_session(session, row, stage=info.stage, mfa=info.mfa, ip=ip,
                                       user_agent=user_agent, now=now)
            audit.append(session, actor=user_actor(user_id), action="user.password_change",
                         object_type="user", object_id=user_id,
                         details={"sessions_revoked": ended}, at_ms=now)
            return result

    def accept_invitation(self, token: str, password: str) -> dict[str, Any]:
        """``cardsvc.access.users.accept_invitation`` with this object's hasher and clock."""
        return accept_invitation(self.db, self.passwords, token, password,
                                 now_ms=self._clock_ms())

    def purge(self) -> int:
        """Deletes sessions that ended more than ``ended_sessions_kept_ms`` ago and invitations
        used or expired as long ago; returns how many rows. For a timer (hourly is plenty)."""
        cutoff = self._clock_ms() - self.settings.ended_sessions_kept_ms
        with self.db.write() as session:
            sessions = session.execute(
                delete(UserSession).where(or_(UserSession.expires_at_ms < cutoff,
                                              UserSession.revoked_at_ms < cutoff))
                .execution_options(synchronize_session=False))
            invitations = session.execute(
                delete(UserInvitation).where(or_(UserInvitation.expires_at_ms < cutoff,
                                                 UserInvitation.used_at_ms < cutoff))
                .execution_options(synchronize_session=False))
            return int(getattr(sessions, "rowcount", 0) or 0) + int(
                getattr(invitations, "rowcount", 0) or 0)

