"""What access keeps: API keys (never the secret itself, only its SHA-256), console users,
their invitations, recovery codes and sessions (never a password, TOTP secret or token)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.base import ID_LEN_MAX, NAME_LEN_MAX, Base


class ApiKey(Base):
    """An API key. The key handed out is ``cs_<key_id>_<secret>``; only SHA-256 of the secret is
    kept (the secret is 256 random bits, so a fast hash is enough: nothing to brute-force)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    secret_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    role: Mapped[str] = mapped_column(String(16))  # admin | agent | terminal
    agent_id: Mapped[str | None] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("agents.agent_id"), index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LEN_MAX), default="")
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # Terminal keys may be limited to these SKUs (None: every SKU).
    skus: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Per-key overrides of the risk limits (cardsvc.access.risk.RiskLimits field names).
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)


# ----- console users and their sessions (cardsvc.access.users, cardsvc.access.sessions) -------

LOGIN_LEN_MAX = 64
"""A login name, normalised (NFKC, casefolded): room for an e-mail address's local part or a
short address, far below what a person types."""
PASSWORD_HASH_LEN_MAX = 256
"""An argon2id PHC string (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``) is ~100 characters."""
IP_LEN_MAX = 64
"""An IPv6 address with a zone is at most 45 characters."""
SEALED_SECRET_LEN_MAX = 128
"""A sealed TOTP secret (12-byte nonce, 20-byte secret, 16-byte tag) or a wrapped data key."""


class User(Base):
    """A person who logs in to the console (staff) or the portal (an agent's user).

    Never holds a password or a TOTP secret in clear: ``password_hash`` is argon2id, the TOTP
    secret is sealed (AES-256-GCM) under a per-user data key that the master key wraps
    (``totp_key_wrapped``, ``totp_master_key_id``). ``login`` is the normalised login name.
    ``failed_logins``/``failed_window_start_ms``/``locked_until_ms``/``lockouts`` are the
    account's persisted lockout state (cardsvc.access.sessions)."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    login: Mapped[str] = mapped_column(String(LOGIN_LEN_MAX), unique=True)
    display_name: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    role: Mapped[str] = mapped_column(String(16))  # owner|operator|finance|support|agent
    agent_id: Mapped[str | None] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("agents.agent_id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))  # invited | active | disabled
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    """Where the user's alert mail goes (set on the account page); None: no alert mail."""
    email_locale: Mapped[str | None] = mapped_column(String(8), nullable=True)
    """The language of that mail (``zh_CN`` or ``en``: the page's when the address was set)."""
    password_hash: Mapped[str | None] = mapped_column(String(PASSWORD_HASH_LEN_MAX))
    password_changed_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    totp_key_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary(SEALED_SECRET_LEN_MAX))
    totp_master_key_id: Mapped[str | None] = mapped_column(String(16))
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary(SEALED_SECRET_LEN_MAX))
    totp_pending_sealed: Mapped[bytes | None] = mapped_column(
        LargeBinary(SEALED_SECRET_LEN_MAX)
    )
    totp_confirmed_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    # The last TOTP time step accepted: a code of that step or an earlier one is a replay.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    failed_window_start_ms: Mapped[int | None] = mapped_column(BigInteger)
    locked_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))


class UserInvitation(Base):
    """A one-time invitation to set a password: only SHA-256 of its 128-bit token is kept."""

    __tablename__ = "user_invitations"

    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("users.user_id"), index=True
    )
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    used_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(ID_LEN_MAX))


class RecoveryCode(Base):
    """A one-time recovery code (80 random bits, so SHA-256 suffices, as for API keys)."""

    __tablename__ = "user_recovery_codes"

    code_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(ID_LEN_MAX), ForeignKey("users.user_id"), index=True
    )
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    used_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class UserSession(Base):
    """A logged-in session. The token (256 random bits) is kept only as SHA-256.

    ``stage`` is ``full`` or ``enrol`` (a staff user who must still confirm TOTP may do only
    that); ``mfa`` says a second factor was given at login. Ended sessions stay for a while:
    the IPs of recent successful logins are what exempts a user from an account lock."""

    __tablename__ = "user_sessions"

    session_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), ForeignKey("users.user_id"))
    stage: Mapped[str] = mapped_column(String(16))
    mfa: Mapped[bool] = mapped_column(Boolean)
    ip: Mapped[str] = mapped_column(String(IP_LEN_MAX))
    user_agent_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_at_ms: Mapped[int] = mapped_column(BigInteger)
    idle_timeout_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


Index("ix_user_sessions_user_created", UserSession.user_id, UserSession.created_at_ms)


# ----- maker-checker approvals (cardsvc.access.approvals) -------------------------------------

APPROVAL_OPEN_STATUSES = ("pending", "approved")
"""An approval in one of these states still awaits its checker or its execution; at most one
per (action, object) at a time (a partial unique index)."""


class Approval(Base):
    """A request by one person (the maker) to do a guarded action (a withdrawal payout, a
    refund, an export of codes, a batch void), decided by another (the checker), executed at
    most once, expiring: ``pending`` -> ``approved`` -> ``executed``, or ``rejected``,
    ``cancelled`` (by the maker), ``expired``."""

    __tablename__ = "approvals"

    approval_id: Mapped[str] = mapped_column(String(ID_LEN_MAX), primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(NAME_LEN_MAX))
    status: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    requested_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    decided_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    decision_note: Mapped[str | None] = mapped_column(String(NAME_LEN_MAX))
    executed_by: Mapped[str | None] = mapped_column(String(ID_LEN_MAX))
    executed_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class ApprovalSetting(Base):
    """The owner's waiver of maker-checker for one action on a shop where no second person
    could check it (``waived``); who set it and when. No row: the deployment's policy."""

    __tablename__ = "approval_settings"

    action: Mapped[str] = mapped_column(String(32), primary_key=True)
    waived: Mapped[bool] = mapped_column(Boolean)
    updated_by: Mapped[str] = mapped_column(String(ID_LEN_MAX))
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


Index("ix_approvals_status_requested", Approval.status, Approval.requested_at_ms,
      Approval.approval_id)
Index("ux_approvals_open_object", Approval.action, Approval.object_type, Approval.object_id,
      unique=True,
      sqlite_where=Approval.status.in_(APPROVAL_OPEN_STATUSES),
      postgresql_where=Approval.status.in_(APPROVAL_OPEN_STATUSES))
