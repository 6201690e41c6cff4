"""Console users: people who log in to the staff console or an agent's portal (machines keep
API keys, ``apikeys.py``). Sessions, logins and lockouts are ``sessions.py``; docs/users.md
explains the design.

A user has an id, a **login name** (normalised: NFKC, casefolded, 3 to 64 characters), a display
name, a **role** and a **status** (``invited`` until a password is set, ``active``,
``disabled``; a lock is a time, ``locked_until_ms``, not a status). Roles and what they may do
(:data:`SCOPES_OF_USER_ROLE`, in the one scope vocabulary ``apikeys.SCOPES``):

========= ====================================================================================
owner     every scope, ``export`` and ``users`` included (``admin`` implies all but export)
operator  catalog, stock, orders, holds, trace, masked views, verify, redeem
finance   ledger, withdrawals, reconciliation, masked views, audit
support   trace, freeze, resend, masked views, verify
terminal  verify, redeem (the console's terminal page only; TOTP optional)
agent     orders, holds, its own sub-agents (bound to one agent; see agents.credentials)
========= ====================================================================================

Secrets at rest:

* **Passwords**: argon2id (:class:`Passwords`) with explicit parameters sized for this 2-core
  machine (:data:`ARGON2_PARAMS`: t=3, m=64 MiB, p=1, about 140 ms per hash; docs/users.md has
  the measurements); a hash made with other parameters is replaced at the next good login. The
  policy (:func:`check_password`): 12 to 256 characters after NFKC, not the login name, not a
  common password; no composition rules.
* **TOTP secrets** (RFC 6238: SHA-1, 6 digits, 30 s): 160 random bits, sealed with AES-256-GCM
  under a data key of the user's own, which the master key wraps (the same envelope as codes:
  ``cardsvc.crypto``); the associated data binds the sealed secret to its user id. Staff roles
  must enrol; agent users may. A code is accepted for the current step and one step either way,
  and never for a step at or before the last one accepted (replay).
* **Recovery codes**: ten per enrolment, 80 random bits each, stored as SHA-256, one use each.
* **Invitations**: 128 random bits, stored as SHA-256, expiring, one use.

Every change is written to the audit log last in its transaction; details never hold a
password, a TOTP secret or code, a recovery code or a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import argon2
import pyotp
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access.apikeys import SCOPES, Principal
from cardsvc.access.tables import (
    LOGIN_LEN_MAX,
    RecoveryCode,
    User,
    UserInvitation,
    UserSession,
)
from cardsvc.checks import check_email, check_name
from cardsvc.crypto import MasterKeyring, new_data_key, wrap_data_key
from cardsvc.crypto.envelope import NONCE_LEN, unwrap_data_key
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error

# ----- roles and scopes ----------------------------------------------------------------------

STAFF_ROLES = ("owner", "operator", "finance", "support")
TERMINAL_ROLE = "terminal"
"""A person at a redemption counter: verifies and redeems codes on the console's terminal page
and nothing else (no TOTP required, the idle timeout of agents' users: a till stays open all
day)."""
USER_ROLES = (*STAFF_ROLES, TERMINAL_ROLE, "agent")
USER_STATUSES = ("invited", "active", "disabled")
SCOPES_OF_USER_ROLE: dict[str, tuple[str, ...]] = {
    "owner": ("admin", "export", "users", "catalog", "stock", "orders", "holds", "ledger",
              "withdrawals", "reconciliation", "trace", "freeze", "resend", "masked_views",
              "audit"),
    "operator": ("catalog", "stock", "orders", "holds", "trace", "masked_views", "verify",
                 "redeem"),
    "finance": ("ledger", "withdrawals", "reconciliation", "masked_views", "audit"),
    "support": ("trace", "freeze", "resend", "masked_views", "verify"),
    "terminal": ("verify", "redeem"),
    "agent": ("orders", "holds", "sub_agents"),
}
"""The scopes each user role holds: the one table (every name is in ``apikeys.SCOPES``)."""
if not all(scope in SCOPES for scopes in SCOPES_OF_USER_ROLE.values() for scope in scopes):
    raise AssertionError("SCOPES_OF_USER_ROLE names a scope outside apikeys.SCOPES")

USER_ACTOR_PREFIX = "user:"
"""A user's actor name in the audit log (and its Principal's ``key_id``) is ``user:<user_id>``."""

# ----- bounds ----------------------------------------------------------------------------------

LOGIN_LEN_MIN = 3
PASSWORD_LEN_MIN = 12
PASSWORD_LEN_MAX = 256
"""Characters after NFKC: long passphrases fit, and one login cannot make argon2 hash a
megabyte (argon2 prehashes long inputs, but the bound keeps memory and logs small)."""
TOKEN_TEXT_LEN_MAX = 128
"""Tokens handed out are 22 (invitation) or 43 (session) characters; longer input is refused
before hashing."""
INVITATION_TTL_MS = 72 * 3_600_000
"""Three days to accept an invitation: long enough for a weekend, short enough that a leaked
mail is soon useless."""
INVITATION_TTL_MS_MAX = 30 * 86_400_000
RECOVERY_CODES_PER_USER = 10
TOTP_STEP_MS = 30_000
TOTP_DIGITS = 6
TOTP_DRIFT_STEPS = 1
"""A code of the step before or after the current one is accepted (clock drift, typing time)."""
TOTP_SECRET_BYTES = 20
"""160 bits, RFC 4226's recommended length for HMAC-SHA-1."""
TOTP_ISSUER = "cardsvc"
TOTP_AAD_PREFIX = b"cardsvc:totp-secret:v1:"
RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
RECOVERY_CODE_CHARS = 16
"""16 characters of a 32-letter alphabet: 80 random bits, shown as ``xxxx-xxxx-xxxx-xxxx``."""

COMMON_PASSWORDS = frozenset(
    {
        "123456789012", "1234567890123", "12345678901234", "123456789123", "1234567891011",
        "111111111111", "000000000000", "123123123123", "121212121212", "qwertyuiopas",
        "qwerty123456", "qwertyuiop12", "qwertyuiop123", "1q2w3e4r5t6y", "1qaz2wsx3edc",
        "zaq12wsxcde3", "asdfghjkl123", "password1234", "password12345", "password123456",
        "passwordpassword", "passw0rd1234", "p@ssw0rd1234", "p@ssword1234", "iloveyou1234",
        "iloveyouiloveyou", "letmein12345", "welcome12345", "welcome123456", "admin1234567",
        "administrator", "administrator1", "changeme1234", "changemenow1", "trustno1trustno1",
        "football1234", "baseball1234", "superman1234", "abcdefghijkl", "abcdefgh1234",
        "abc123abc123", "aaaaaaaaaaaa", "monkey123456", "dragon123456", "sunshine1234",
        "princess1234", "computer1234", "internet1234", "starwars1234", "whatever1234",
        "correcthorsebatterystaple", "correct horse battery staple", "qwertyqwerty",
        "asdfasdfasdf", "zxcvbnmzxcvbnm", "1234qwerasdf", "q1w2e3r4t5y6", "woaini1314520",
        "5201314520131", "woaiwojia1234", "88888888888888", "666666666666", "147258369147",
        "cardsvccardsvc", "cardsvc12345", "cardsvc123456",
    }
)
"""A small built-in list of common passwords of 12 characters or more (shorter ones are refused
by length anyway), compared after NFKC and casefolding. Not a breach corpus: a deployment that
wants one should check it in front of :func:`check_password`."""


# ----- login names and passwords --------------------------------------------------------------


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def normalise_login(text: object) -> str:
    """The stored form of a login name: NFKC, casefolded, trimmed; 3 to 64 characters, each a
    letter, a digit or one of ``. _ - @ +``, starting with a letter or digit. Pure. Raises
    INVALID_ARGUMENT (details ``field: login``), LIMIT_EXCEEDED above 64 characters."""
    if not isinstance(text, str) or len(text) > 4 * LOGIN_LEN_MAX:
        raise invalid("login", "login must be text of at most 64 characters")
    name = _fold(text)
    if len(name) > LOGIN_LEN_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"login may be at most {LOGIN_LEN_MAX} long",
                         {"field": "login", "max": LOGIN_LEN_MAX})
    if (len(name) < LOGIN_LEN_MIN or not name[0].isalnum()
            or not all(ch.isalnum() or ch in "._-@+" for ch in name)):
        raise invalid("login", "login must be 3 to 64 letters, digits or . _ - @ +")
    return name


def login_key(text: object) -> str | None:
    """:func:`normalise_login`, or None for text that could not be any user's login (a login
    attempt then fails like an unknown login). Pure; never raises."""
    try:
        return normalise_login(text)
    except CardsvcError:
        return None


def _prepared(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def check_password(password: object, login: str) -> None:
    """Raises PASSWORD_REJECTED (details ``reason``: ``too_short``, ``too_long``, ``login_name``,
    ``common``) unless ``password`` may be set for the user ``login``. Lengths count characters
    after NFKC; no composition rules (NIST SP 800-63B). The message never repeats the password."""
    if not isinstance(password, str):
        raise make_error(ErrorCode.PASSWORD_REJECTED, "the password must be text",
                         {"field": "password", "reason": "too_short", "min": PASSWORD_LEN_MIN})
    prepared = _prepared(password)
    if len(prepared) < PASSWORD_LEN_MIN:
        raise _rejected("too_short", f"a password needs at least {PASSWORD_LEN_MIN} characters",
                        min=PASSWORD_LEN_MIN)
    if len(prepared) > PASSWORD_LEN_MAX:
        raise _rejected("too_long", f"a password may be at most {PASSWORD_LEN_MAX} characters",
                        max=PASSWORD_LEN_MAX)
    folded = prepared.casefold().strip()
    if hmac.compare_digest(folded.encode(), _fold(login).encode()):
        raise _rejected("login_name", "the password must not be the login name")
    if folded in COMMON_PASSWORDS or len(set(folded)) == 1:
        raise _rejected("common", "this password is too common; choose another")


def _rejected(reason: str, message: str, **details: Any) -> CardsvcError:
    return make_error(ErrorCode.PASSWORD_REJECTED, message,
                      {"field": "password", "reason": reason, **details})


@dataclass(frozen=True)
class Argon2Params:
    """argon2id parameters: ``time_cost`` passes over ``memory_kib`` KiB with ``parallelism``
    lanes, a ``hash_len``-byte tag and a ``salt_len``-byte random salt."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 1
    hash_len: int = 32
    salt_len: int = 16


ARGON2_PARAMS = Argon2Params()
"""RFC 9106's second recommended option (t=3, 64 MiB) with one lane instead of four: this
machine has two cores, and a login must leave one for redemption. Measured on it: 140 ms to
hash, 143 ms to verify (docs/users.md)."""
HASHES_AT_ONCE_MAX = 1
"""argon2 runs at most this many at a time per process (each takes 64 MiB and a core), so a
flood of logins queues instead of starving the rest of the service."""
HASH_WAIT_S = 10.0


class Passwords:
    """Hashes and verifies passwords with argon2id. Thread-safe; at most ``hashes_at_once_max``
    hashes run at once, a caller waiting longer than ``wait_s`` gets RATE_LIMITED."""

    def __init__(self, params: Argon2Params = ARGON2_PARAMS, *,
                 hashes_at_once_max: int = HASHES_AT_ONCE_MAX,
                 wait_s: float = HASH_WAIT_S) -> None:
        self.params = params
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost, memory_cost=params.memory_kib,
            parallelism=params.parallelism, hash_len=params.hash_len,
            salt_len=params.salt_len, encoding="utf-8", type=argon2.Type.ID)
        self._slots = threading.BoundedSemaphore(hashes_at_once_max)
        self._wait_s = wait_s
        self._dummy: str | None = None

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait_s):
            raise make_error(ErrorCode.RATE_LIMITED, "too many logins at once; retry later",
                             {"limit": "password_hashing", "max": 1, "retry_after_s": 1})
        try:
            yield
        finally:
            self._slots.release()

    def hash(self, password: str) -> str:
        """The PHC string of ``password`` (NFKC-normalised first). Precondition: it passed
        :func:`check_password`."""
        with self._slot():
            return self._hasher.hash(_prepared(password))

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches the hash ``stored``. With ``stored`` None (no such user,
        or no password yet) a dummy hash made with the same parameters is verified instead and
        the answer is False, so the time taken does not tell which logins exist. Over-long input
        is compared truncated and is never a match."""
        target = stored if stored is not None else self._dummy_hash()
        text = _prepared(password[: 4 * PASSWORD_LEN_MAX])
        with self._slot():
            ok: bool
            try:
                ok = self._hasher.verify(target, text)
            except (VerificationError, InvalidHashError):
                ok = False
        return ok and stored is not None and len(text) <= PASSWORD_LEN_MAX

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than these."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self.hash(secrets.token_urlsafe(16))
        return self._dummy


# ----- TOTP and recovery codes ---------------------------------------------------------------


@dataclass(frozen=True)
class TotpEnrolment:
    """What an authenticator app needs: the secret (base32) and the ``otpauth://`` URI that a QR
    code carries. Shown once to the user; left out of ``repr``."""

    secret_base32: str = field(repr=False)
    provisioning_uri: str = field(repr=False)


def totp_step(now_ms: int) -> int:
    """The RFC 6238 time step (30 s) of a Unix time in milliseconds."""
    return now_ms // TOTP_STEP_MS


def totp_code(secret_base32: str, step: int) -> str:
    """The code of ``step`` for a secret (tests and authenticator apps compute the same)."""
    return pyotp.TOTP(secret_base32, digits=TOTP_DIGITS).generate_otp(step)


def match_totp(secret: bytes, code: object, now_ms: int, last_step: int | None) -> int | None:
    """The time step whose code ``code`` is, among the current step and TOTP_DRIFT_STEPS either
    way, and later than ``last_step``; None when there is none (wrong, malformed or a replay).
    Every candidate is compared in constant time. Pure."""
    if not isinstance(code, str):
        return None
    code = code.strip().replace(" ", "")
    well_formed = len(code) == TOTP_DIGITS and code.isascii() and code.isdigit()
    totp = pyotp.TOTP(base64.b32encode(secret).decode("ascii"), digits=TOTP_DIGITS)
    current = totp_step(now_ms)
    matched: int | None = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        expected = totp.generate_otp(step)
        same = hmac.compare_digest(expected.encode(), code.encode() if well_formed else b"x")
        if same and (last_step is None or step > last_step) and matched is None:
            matched = step
    return matched


def _totp_aad(user_id: str) -> bytes:
    return TOTP_AAD_PREFIX + user_id.encode("utf-8")


def _user_data_key(row: User, keyring: MasterKeyring, *, create: bool) -> bytes:
    """The user's TOTP data key: unwrapped from the row, or (``create``) a new one wrapped
    under the current master key and stored on the row. Raises PAYLOAD_CORRUPT when the
    wrapped key does not open."""
    if row.totp_key_wrapped is not None and row.totp_master_key_id is not None:
        return unwrap_data_key(keyring, row.totp_master_key_id, bytes(row.totp_key_wrapped))
    if not create:
        raise make_error(ErrorCode.PAYLOAD_CORRUPT, "the user has no TOTP data key",
                         {"user_id": row.user_id, "reason": "no_data_key"})
    data_key = new_data_key()
    row.totp_key_wrapped = wrap_data_key(keyring.current, data_key)
    row.totp_master_key_id = keyring.current.key_id
    return data_key


def _seal_secret(data_key: bytes, user_id: str, secret: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    return nonce + AESGCM(data_key).encrypt(nonce, secret, _totp_aad(user_id))


def _open_secret(data_key: bytes, user_id: str, sealed: bytes) -> bytes:
    try:
        return AESGCM(data_key).decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:],
                                        _totp_aad(user_id))
    except (InvalidTag, ValueError):
        raise make_error(ErrorCode.PAYLOAD_CORRUPT, "a sealed TOTP secret failed to open",
                         {"user_id": user_id, "reason": "authentication_failed"}) from None


def totp_secret(row: User, keyring: MasterKeyring, *, pending: bool = False) -> bytes | None:
    """The user's confirmed (or, with ``pending``, unconfirmed) TOTP secret, opened; None when
    there is none. Raises PAYLOAD_CORRUPT when it does not open."""
    sealed = row.totp_pending_sealed if pending else row.totp_sealed
    if sealed is None:
        return None
    return _open_secret(_user_data_key(row, keyring, create=False), row.user_id, bytes(sealed))


def begin_totp(session: Session, keyring: MasterKeyring, row: User, *, now_ms: int,
               issuer: str = TOTP_ISSUER) -> TotpEnrolment:
    """Starts (or restarts) TOTP enrolment: a new secret sealed as the user's *pending* one; a
    confirmed secret stays in force until :func:`confirm_totp`. Effects: the row, an audit
    entry ``user.totp_begin``."""
    secret = secrets.token_bytes(TOTP_SECRET_BYTES)
    data_key = _user_data_key(row, keyring, create=True)
    row.totp_pending_sealed = _seal_secret(data_key, row.user_id, secret)
    row.updated_at_ms = now_ms
    secret_base32 = base64.b32encode(secret).decode("ascii")
    uri = pyotp.TOTP(secret_base32, digits=TOTP_DIGITS).provisioning_uri(
        name=row.login, issuer_name=issuer)
    audit.append(session, actor=user_actor(row.user_id), action="user.totp_begin",
                 object_type="user", object_id=row.user_id, details={}, at_ms=now_ms)
    return TotpEnrolment(secret_base32=secret_base32, provisioning_uri=uri)


def confirm_totp(session: Session, keyring: MasterKeyring, row: User, code: object, *,
                 now_ms: int) -> list[str]:
    """Confirms the pending TOTP secret with a first code: it becomes the user's secret, the
    code's step the last one used, and ten new recovery codes replace any old ones; returns
    them (shown once). Effects: the row, recovery codes, an audit entry ``user.totp_enrol``.
    Raises TOTP_INVALID when nothing is pending or the code does not match."""
    pending = totp_secret(row, keyring, pending=True)
    step = None if pending is None else match_totp(pending, code, now_ms, None)
    if pending is None or step is None:
        raise make_error(ErrorCode.TOTP_INVALID, "that code does not match; try the next one",
                         {"field": "totp_code"})
    return _activate_totp(session, row, last_step=step, now_ms=now_ms)


def _activate_totp(session: Session, row: User, *, last_step: int | None,
                   now_ms: int) -> list[str]:
    """The pending secret becomes the user's; new recovery codes; audited."""
    row.totp_sealed = row.totp_pending_sealed
    row.totp_pending_sealed = None
    row.totp_confirmed_at_ms = now_ms
    row.totp_last_step = last_step
    row.updated_at_ms = now_ms
    codes = new_recovery_codes(session, row.user_id, now_ms=now_ms, audited=False)
    audit.append(session, actor=user_actor(row.user_id), action="user.totp_enrol",
                 object_type="user", object_id=row.user_id,
                 details={"recovery_codes": len(codes)}, at_ms=now_ms)
    return codes


def consume_totp_step(session: Session, user_id: str, step: int) -> bool:
    """Records ``step`` as the user's last TOTP step unless it or a later one already is; False
    then (a replay that raced its original). One conditional UPDATE, so two logins with the same
    code cannot both win."""
    result = session.execute(
        update(User)
        .where(User.user_id == user_id,
               (User.totp_last_step.is_(None)) | (User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0) == 1)


def _recovery_digest(normal: str) -> bytes:
    return hashlib.sha256(b"cardsvc:recovery-code:v1:" + normal.encode("ascii")).digest()


def normalise_recovery_code(text: object) -> str | None:
    """The 16 letters of a recovery code as typed (any case, with or without ``-`` and
    spaces), or None when it cannot be one. Pure."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    normal = text.replace("-", "").replace(" ", "").strip().lower()
    if len(normal) != RECOVERY_CODE_CHARS or not all(ch in RECOVERY_ALPHABET for ch in normal):
        return None
    return normal


def new_recovery_codes(session: Session, user_id: str, *, now_ms: int,
                       audited: bool = True) -> list[str]:
    """Ten new recovery codes for the user, replacing every old one; returned once, stored as
    SHA-256. Effects: the rows and (``audited``) an audit entry ``user.recovery_codes``."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(RECOVERY_CODES_PER_USER):
        normal = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_CHARS))
        session.add(RecoveryCode(code_sha256=_recovery_digest(normal), user_id=user_id,
                                 created_at_ms=now_ms, used_at_ms=None))
        codes.append("-".join(normal[i:i + 4] for i in range(0, RECOVERY_CODE_CHARS, 4)))
    session.flush()
    if audited:
        audit.append(session, actor=user_actor(user_id), action="user.recovery_codes",
                     object_type="user", object_id=user_id,
                     details={"recovery_codes": len(codes)}, at_ms=now_ms)
    return codes


def consume_recovery_code(session: Session, user_id: str, code: object, *,
                          now_ms: int) -> int | None:
    """Uses one of the user's recovery codes: the number left unused afterwards, or None when
    ``code`` is not an unused code of this user. One conditional UPDATE (one use, even when two
    logins race). Effects: the row and an audit entry ``user.recovery_code_use``."""
    normal = normalise_recovery_code(code)
    if normal is None:
        return None
    result = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.code_sha256 == _recovery_digest(normal),
               RecoveryCode.user_id == user_id, RecoveryCode.used_at_ms.is_(None))
        .values(used_at_ms=now_ms)
        .execution_options(synchronize_session=False))
    if getattr(result, "rowcount", 0) != 1:
        return None
    left = int(session.scalar(
        select(func.count()).select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at_ms.is_(None))) or 0)
    audit.append(session, actor=user_actor(user_id), action="user.recovery_code_use",
                 object_type="user", object_id=user_id, details={"left": left}, at_ms=now_ms)
    return left


def rewrap_totp_keys(session: Session, keyring: MasterKeyring) -> int:
    """Re-wraps every user's TOTP data key that another master key wraps under the current one;
    returns how many. For a master-key rotation (``cardsvc.catalog.key_rotation`` should call
    it beside the batches, in its own transaction). Raises PAYLOAD_CORRUPT for a key that does
    not open."""
    rows = session.scalars(
        select(User).where(User.totp_key_wrapped.is_not(None),
                           User.totp_master_key_id != keyring.current.key_id)).all()
    for row in rows:
        data_key = _user_data_key(row, keyring, create=False)
        row.totp_key_wrapped = wrap_data_key(keyring.current, data_key)
        row.totp_master_key_id = keyring.current.key_id
    return len(rows)


# ----- users: reading ----------------------------------------------------------------------


def user_actor(user_id: str) -> str:
    return USER_ACTOR_PREFIX + user_id


def is_staff(role: str) -> bool:
    return role in STAFF_ROLES


def totp_required(row: User) -> bool:
    """Whether the user may do nothing but enrol until TOTP is confirmed: every staff role."""
    return is_staff(row.role)


def principal_of_user(row: User, *, enrolled_stage: bool = True) -> Principal:
    """The user as a caller: the scopes of its role (none while ``enrolled_stage`` is False:
    a staff user who must still confirm TOTP may only do that)."""
    scopes = frozenset(SCOPES_OF_USER_ROLE[row.role]) if enrolled_stage else frozenset()
    return Principal(key_id=user_actor(row.user_id), role=row.role, agent_id=row.agent_id,
                     scopes=scopes, skus=None, limits={}, name=row.display_name,
                     user_id=row.user_id)


def user_dict(row: User) -> dict[str, Any]:
    """A user's public facts: never a hash, a secret or lockout counters."""
    return {
        "user_id": row.user_id,
        "login": row.login,
        "display_name": row.display_name,
        "role": row.role,
        "agent_id": row.agent_id,
        "status": row.status,
        "totp_enrolled": row.totp_confirmed_at_ms is not None,
        "locked_until_ms": row.locked_until_ms,
        "created_at_ms": row.created_at_ms,
        "created_by": row.created_by,
    }


def require_user(session: Session, user_id: str, *, for_update: bool = False) -> User:
    """The user row. Raises USER_NOT_FOUND."""
    statement = select(User).where(User.user_id == user_id)
    if for_update:
        statement = statement.with_for_update()
    row = session.scalar(statement)
    if row is None:
        raise make_error(ErrorCode.USER_NOT_FOUND, "no such user", {"user_id": user_id})
    return row


def user_by_login(session: Session, login: str) -> User | None:
    """The user whose normalised login is ``login``, if any."""
    return session.scalar(select(User).where(User.login == login))


def get_user(db: Database, user_id: str) -> dict[str, Any]:
    """:func:`user_dict` of a user. Raises USER_NOT_FOUND."""
    with db.read() as session:
        return user_dict(require_user(session, user_id))


def actor_names(db: Database, actors: Sequence[str]) -> dict[str, str]:
    """The display names of the users among ``actors`` (audit-log actor names such as
    ``user:<id>``); other actors (keys, ``cli``) are left out. One query; at most 1,000."""
    ids = {actor[len(USER_ACTOR_PREFIX):] for actor in list(actors)[:1000]
           if actor.startswith(USER_ACTOR_PREFIX)}
    if not ids:
        return {}
    with db.read() as session:
        rows = session.execute(select(User.user_id, User.display_name)
                               .where(User.user_id.in_(ids))).all()
    return {user_actor(user_id): name for user_id, name in rows}


def list_users(db: Database, *, agent_id: str | None = None,
               staff: bool | None = None) -> list[dict[str, Any]]:
    """Every user (of one agent, or only staff / only agent users), oldest first."""
    with db.read() as session:
        statement = select(User).order_by(User.created_at_ms, User.user_id)
        if agent_id is not None:
            statement = statement.where(User.agent_id == agent_id)
        if staff is True:
            statement = statement.where(User.role.in_(STAFF_ROLES))
        elif staff is False:
            statement = statement.where(User.role == "agent")
        return [user_dict(row) for row in session.scalars(statement)]


# ----- users: creating ---------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    """A new invitation: the user it is for and its token, shown once (the web layer mails a
    link with it); ``token`` is left out of ``repr``."""

    user: dict[str, Any]
    token: str = field(repr=False)
    expires_at_ms: int = 0


@dataclass(frozen=True)
class OwnerCreated:
    """The first owner: the user, its TOTP enrolment (already confirmed) and its recovery
    codes, each shown once."""

    user: dict[str, Any]
    totp: TotpEnrolment
    recovery_codes: list[str] = field(repr=False)


def check_user_request(role: str, agent_id: str | None) -> None:
    """Raises INVALID_ARGUMENT (details ``field``) for an unknown role, an agent user without an
    agent, or an agent id on a staff role."""
    if role not in USER_ROLES:
        raise invalid("role", "role must be owner, operator, finance, support, terminal or "
                              "agent")
    if role == "agent" and not agent_id:
        raise invalid("agent_id", "an agent's user needs agent_id")
    if role != "agent" and agent_id:
        raise invalid("agent_id", "only agent users belong to an agent")


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _insert_user(session: Session, *, login: str, display_name: str, role: str,
                 agent_id: str | None, status: str, created_by: str, now_ms: int,
                 password_hash: str | None = None) -> User:
    """Inserts a user row. Raises USER_EXISTS when the login is taken (also when a concurrent
    transaction took it first)."""
    if user_by_login(session, login) is not None:
        raise make_error(ErrorCode.USER_EXISTS, "that login is taken",
                         {"field": "login", "reason": "login_taken"})
    row = User(user_id=secrets.token_hex(8), login=login, display_name=display_name, role=role,
               agent_id=agent_id, status=status, password_hash=password_hash,
               password_changed_at_ms=now_ms if password_hash else None,
               failed_logins=0, lockouts=0, created_at_ms=now_ms, updated_at_ms=now_ms,
               created_by=created_by)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise make_error(ErrorCode.USER_EXISTS, "that login is taken",
                         {"field": "login", "reason": "login_taken"}) from None
    return row


def _new_invitation(session: Session, user_id: str, *, created_by: str, now_ms: int,
                    ttl_ms: int) -> tuple[str, int]:
    """A new invitation for the user, ending every earlier unused one; (token, expiry)."""
    if not 0 < ttl_ms <= INVITATION_TTL_MS_MAX:
        raise invalid("ttl_ms", f"an invitation lasts 1 ms to {INVITATION_TTL_MS_MAX} ms")
    session.execute(update(UserInvitation)
                    .where(UserInvitation.user_id == user_id, UserInvitation.used_at_ms.is_(None))
                    .values(used_at_ms=now_ms).execution_options(synchronize_session=False))
    token = secrets.token_urlsafe(16)
    session.add(UserInvitation(token_sha256=_sha256(token), user_id=user_id,
                               created_at_ms=now_ms, expires_at_ms=now_ms + ttl_ms,
                               used_at_ms=None, created_by=created_by))
    return token, now_ms + ttl_ms


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def issue_invitation(session: Session, *, login: str, display_name: str, role: str,
                     agent_id: str | None, created_by: str, now_ms: int,
                     ttl_ms: int = INVITATION_TTL_MS) -> Invitation:
    """Creates an ``invited`` user and its invitation in the caller's transaction. The caller
    has authorised the request; ``agent_id``, when given, names an agent (agents.credentials
    checks it). Effects: the user and invitation rows, an audit entry ``user.create``. Raises
    INVALID_ARGUMENT / LIMIT_EXCEEDED (login, display name, role, ttl), USER_EXISTS."""
    name = normalise_login(login)
    check_name(display_name, "display_name")
    check_user_request(role, agent_id)
    row = _insert_user(session, login=name, display_name=display_name, role=role,
                       agent_id=agent_id, status="invited", created_by=created_by,
                       now_ms=now_ms)
    token, expires_at_ms = _new_invitation(session, row.user_id, created_by=created_by,
                                           now_ms=now_ms, ttl_ms=ttl_ms)
    session.flush()
    audit.append(session, actor=created_by, action="user.create", object_type="user",
                 object_id=row.user_id,
                 details={"login": name, "role": role, "agent_id": agent_id, "invited": True},
                 at_ms=now_ms)
    return Invitation(user=user_dict(row), token=token, expires_at_ms=expires_at_ms)


def invite_user(db: Database, actor: Principal, *, login: str, display_name: str, role: str,
                ttl_ms: int = INVITATION_TTL_MS, now_ms: int | None = None) -> Invitation:
    """An owner invites a staff user (an agent's users: ``cardsvc.agents.create_agent_user``).
    Raises FORBIDDEN without the ``users`` scope, INVALID_ARGUMENT for the agent role, then as
    :func:`issue_invitation`."""
    actor.require("users")
    if role == "agent":
        raise invalid("role", "an agent's users are created through the agent "
                              "(cardsvc.agents.create_agent_user)")
    with db.write() as session:
        return issue_invitation(session, login=login, display_name=display_name, role=role,
                                agent_id=None, created_by=actor.actor, now_ms=_now_ms(now_ms),
                                ttl_ms=ttl_ms)


def reissue_invitation(db: Database, actor: Principal, user_id: str, *,
                       ttl_ms: int = INVITATION_TTL_MS,
                       now_ms: int | None = None) -> Invitation:
    """A new invitation for a user (the old one ends): for an ``invited`` user whose
    invitation expired, or to reset an ``active`` user's password (the password is cleared,
    the user becomes ``invited`` and every session ends; TOTP stays, so a reset never skips the
    second factor). Effects: the rows, an audit entry ``user.invitation_issue``. Raises FORBIDDEN
    without ``users``, USER_NOT_FOUND, INVALID_ARGUMENT for a disabled user."""
    actor.require("users")
    at_ms = _now_ms(now_ms)
    with db.write() as session:
        row = require_user(session, user_id, for_update=True)
        if row.status == "disabled":
            raise invalid("user_id", "enable the user before inviting them again")
        reset = row.status == "active"
        ended = revoke_user_sessions(session, user_id, reason="password_reset", at_ms=at_ms)
        row.status, row.password_hash, row.updated_at_ms = "invited", None, at_ms
        token, expires_at_ms = _new_invitation(session, user_id, created_by=actor.actor,
                                               now_ms=at_ms, ttl_ms=ttl_ms)
        session.flush()
        audit.append(session, actor=actor.actor, action="user.invitation_issue",
                     object_type="user", object_id=user_id,
                     details={"password_reset": reset, "sessions_revoked": ended}, at_ms=at_ms)
        return Invitation(user=user_dict(row), token=token, expires_at_ms=expires_at_ms)


def _invitation_invalid() -> CardsvcError:
    return make_error(ErrorCode.INVITATION_INVALID,
                      "this invitation is not valid (unknown, used or expired)")


def accept_invitation(db: Database, passwords: Passwords, token: str, password: str, *,
                      now_ms: int | None = None) -> dict[str, Any]:
    """Sets the invited user's password with an invitation's token, once: the user becomes
    ``active`` and logs in next (a staff user then enrols TOTP before anything else). A password
    the policy refuses leaves the invitation usable. Effects: the rows, an audit entry
    ``user.invitation_accept``. Raises INVITATION_INVALID (unknown, used, expired, or the user
    is no longer invited: one answer for all), then PASSWORD_REJECTED."""
    at_ms = _now_ms(now_ms)
    if not isinstance(token, str) or not token.isascii() or len(token) > TOKEN_TEXT_LEN_MAX:
        raise _invitation_invalid()
    digest = _sha256(token)
    with db.read() as session:
        invitation = session.get(UserInvitation, digest)
        user = None if invitation is None else session.get(User, invitation.user_id)
        if (invitation is None or user is None or invitation.used_at_ms is not None
                or invitation.expires_at_ms <= at_ms or user.status != "invited"):
            raise _invitation_invalid()
        login = user.login
    check_password(password, login)
    hashed = passwords.hash(password)  # outside the write transaction: it takes ~140 ms
    with db.write() as session:
        used = session.execute(
            update(UserInvitation)
            .where(UserInvitation.token_sha256 == digest, UserInvitation.used_at_ms.is_(None),
                   UserInvitation.expires_at_ms > at_ms)
            .values(used_at_ms=at_ms).execution_options(synchronize_session=False))
        row = session.get(User, invitation.user_id)
        if getattr(used, "rowcount", 0) != 1 or row is None or row.status != "invited":
            raise _invitation_invalid()
        row.password_hash, row.password_changed_at_ms = hashed, at_ms
        row.status, row.updated_at_ms = "active", at_ms
        row.failed_logins, row.locked_until_ms, row.lockouts = 0, None, 0
        audit.append(session, actor=user_actor(row.user_id), action="user.invitation_accept",
                     object_type="user", object_id=row.user_id, details={}, at_ms=at_ms)
        return user_dict(row)


def create_owner(db: Database, keyring: MasterKeyring, passwords: Passwords, *, login: str,
                 password: str, display_name: str, actor: str = "cli",
                 now_ms: int | None = None, issuer: str = TOTP_ISSUER) -> OwnerCreated:
    """The first owner, from the host (``cardsvc users create-owner``): active, with its
    password and a TOTP secret already confirmed (whoever runs the command on the data directory
    is trusted to hand it over; the owner's first login needs a code) and ten recovery codes.
    Effects: the rows, audit entries ``user.create`` and ``user.totp_enrol``. Raises
    INVALID_ARGUMENT / LIMIT_EXCEEDED, PASSWORD_REJECTED, USER_EXISTS (``reason``:
    ``owner_exists`` when any owner exists, ``login_taken``)."""
    name = normalise_login(login)
    check_name(display_name, "display_name")
    check_password(password, name)
    hashed = passwords.hash(password)
    at_ms = _now_ms(now_ms)
    with db.write() as session:
        if session.scalar(select(User.user_id).where(User.role == "owner").limit(1)):
            raise make_error(ErrorCode.USER_EXISTS, "an owner exists already; owners invite "
                             "the others", {"reason": "owner_exists"})
        row = _insert_user(session, login=name, display_name=display_name, role="owner",
                           agent_id=None, status="active", created_by=actor, now_ms=at_ms,
                           password_hash=hashed)
        session.flush()
        audit.append(session, actor=actor, action="user.create", object_type="user",
                     object_id=row.user_id,
                     details={"login": name, "role": "owner", "agent_id": None,
                              "invited": False}, at_ms=at_ms)
        enrolment = begin_totp(session, keyring, row, now_ms=at_ms, issuer=issuer)
        codes = _activate_totp(session, row, last_step=None, now_ms=at_ms)
        return OwnerCreated(user=user_dict(row), totp=enrolment, recovery_codes=codes)


# ----- users: changing ---------------------------------------------------------------------


def revoke_user_sessions(session: Session, user_id: str, *, reason: str, at_ms: int,
                         keep_session_id: str | None = None) -> int:
    """Ends every live session of the user (but ``keep_session_id``); returns how many. The
    caller audits the change that caused it."""
    statement = (update(UserSession)
                 .where(UserSession.user_id == user_id, UserSession.revoked_at_ms.is_(None),
                        UserSession.expires_at_ms > at_ms)
                 .values(revoked_at_ms=at_ms, revoked_reason=reason)
                 .execution_options(synchronize_session=False))
    if keep_session_id is not None:
        statement = statement.where(UserSession.session_id != keep_session_id)
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)


def _active_owners(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)
                              .where(User.role == "owner", User.status == "active")) or 0)


def set_user_role(db: Database, actor: Principal, user_id: str, role: str, *,
                  now_ms: int | None = None) -> dict[str, Any]:
    """Changes a staff or terminal user's role (agent users keep theirs). Every session of the
    user ends, so the new scopes apply from its next login (a new token). Effects: the row, an
    audit entry ``user.role_change``. Raises FORBIDDEN without ``users``, USER_NOT_FOUND,
    INVALID_ARGUMENT (not a staff or terminal role, or an agent user), LAST_OWNER (demoting the
    last active owner)."""
    actor.require("users")
    if role not in (*STAFF_ROLES, TERMINAL_ROLE):
        raise invalid("role", "role must be owner, operator, finance, support or terminal")
    at_ms = _now_ms(now_ms)
    with db.write() as session:
        row = require_user(session, user_id, for_update=True)
        if row.role == "agent":
            raise invalid("role", "an agent's user keeps the agent role")
        if row.role == role:
            return user_dict(row)
        if row.role == "owner" and row.status == "active" and _active_owners(session) <= 1:
            raise make_error(ErrorCode.LAST_OWNER, "the last owner cannot be demoted",
                             {"user_id": user_id})
        previous, row.role, row.updated_at_ms = row.role, role, at_ms
        ended = revoke_user_sessions(session, user_id, reason="role_change", at_ms=at_ms)
        audit.append(session, actor=actor.actor, action="user.role_change", object_type="user",
                     object_id=user_id,
                     details={"from": previous, "to": role, "sessions_revoked": ended},
                     at_ms=at_ms)
        return user_dict(row)


def set_user_status(session: Session, actor: str, row: User, *, disabled: bool,
                    at_ms: int) -> dict[str, Any]:
    """Disables (every session ends) or re-enables a user in the caller's transaction; the
    caller has authorised it. Re-enabling makes the user ``active`` again, or ``invited`` when
    no password is set. Effects: the row, an audit entry ``user.disable`` / ``user.enable``.
    Raises LAST_OWNER (disabling the last active owner)."""
    if disabled == (row.status == "disabled"):
        return user_dict(row)
    ended = 0
    if disabled:
        if row.role == "owner" and row.status == "active" and _active_owners(session) <= 1:
            raise make_error(ErrorCode.LAST_OWNER, "the last owner cannot be disabled",
                             {"user_id": row.user_id})
        row.status = "disabled"
        ended = revoke_user_sessions(session, row.user_id, reason="disabled", at_ms=at_ms)
    else:
        row.status = "active" if row.password_hash is not None else "invited"
    row.updated_at_ms = at_ms
    audit.append(session, actor=actor, action="user.disable" if disabled else "user.enable",
                 object_type="user", object_id=row.user_id,
                 details={"sessions_revoked": ended}, at_ms=at_ms)
    return user_dict(row)


def disable_user(db: Database, actor: Principal, user_id: str, *, disabled: bool = True,
                 now_ms: int | None = None) -> dict[str, Any]:
    """:func:`set_user_status` for a caller with the ``users`` scope (FORBIDDEN otherwise);
    USER_NOT_FOUND, LAST_OWNER."""
    actor.require("users")
    at_ms = _now_ms(now_ms)
    with db.write() as session:
        row = require_user(session, user_id, for_update=True)
        return set_user_status(session, actor.actor, row, disabled=disabled, at_ms=at_ms)


def unlock_user(db: Database, actor: Principal, user_id: str, *,
                now_ms: int | None = None) -> dict[str, Any]:
    """Lifts an account lock and forgets its failures (the per-IP throttles stay). Effects: the
    row, an audit entry ``user.unlock``. Raises FORBIDDEN without ``users``, USER_NOT_FOUND."""
    actor.require("users")
    at_ms = _now_ms(now_ms)
    with db.write() as session:
        row = require_user(session, user_id, for_update=True)
        row.failed_logins, row.failed_window_start_ms = 0, None
        row.locked_until_ms, row.lockouts, row.updated_at_ms = None, 0, at_ms
        audit.append(session, actor=actor.actor, action="user.unlock", object_type="user",
                     object_id=user_id, details={}, at_ms=at_ms)
        return user_dict(row)


def reset_totp(db: Database, actor: Principal, user_id: str, *,
               now_ms: int | None = None) -> dict[str, Any]:
    """Forgets a user's TOTP secret and recovery codes (a lost phone) and ends its sessions: a
    staff user's next login can only enrol again. Effects: the rows, an audit entry
    ``user.totp_reset``. Raises FORBIDDEN without ``users``, USER_NOT_FOUND."""
    actor.require("users")
    at_ms = _now_ms(now_ms)
    with db.write() as session:
        row = require_user(session, user_id, for_update=True)
        row.totp_sealed = row.totp_pending_sealed = None
        row.totp_confirmed_at_ms = row.totp_last_step = None
        row.updated_at_ms = at_ms
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        ended = revoke_user_sessions(session, user_id, reason="totp_reset", at_ms=at_ms)
        audit.append(session, actor=actor.actor, action="user.totp_reset", object_type="user",
                     object_id=user_id, details={"sessions_revoked": ended}, at_ms=at_ms)
        return user_dict(row)


MAIL_LOCALES = ("zh_CN", "en")
"""The languages of a user's alert mail (the web layer's catalogs)."""


def set_own_email(db: Database, actor: Principal, email: str | None, *, locale: str = "zh_CN",
                  now_ms: int | None = None) -> dict[str, Any]:
    """The caller's own alert address (``email`` None or empty: no alert mail) and its
    language. Effects: the row, an audit entry ``user.email`` (the address masked). Raises
    FORBIDDEN for a caller that is not a user, INVALID_ARGUMENT (email, locale),
    USER_NOT_FOUND."""
    if actor.user_id is None:
        raise make_error(ErrorCode.FORBIDDEN, "only a user has an alert address", {})
    address = check_email(email) if email else None
    if locale not in MAIL_LOCALES:
        raise invalid("locale", f"locale is one of {', '.join(MAIL_LOCALES)}")
    at_ms = _now_ms(now_ms)
    with db.write() as session:
        row = require_user(session, actor.user_id, for_update=True)
        row.email, row.email_locale, row.updated_at_ms = address, locale, at_ms
        audit.append(session, actor=actor.actor, action="user.email", object_type="user",
                     object_id=row.user_id, details={"set": address is not None,
                                                     "domain": (address or "@").split("@")[1]},
                     at_ms=at_ms)
        return {"email": address, "locale": locale}


def own_email(db: Database, user_id: str) -> str | None:
    """The user's alert address (its own account page shows it)."""
    with db.read() as session:
        return session.scalar(select(User.email).where(User.user_id == user_id))


def owners(db: Database) -> Sequence[str]:
    """The user ids of every owner (for the CLI's checks)."""
    with db.read() as session:
        return list(session.scalars(select(User.user_id).where(User.role == "owner")))
