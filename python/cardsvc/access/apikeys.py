"""API keys: creation, authentication, listing and revocation.

A key is ``cs_<key_id>_<secret>``: ``key_id`` (16 hex characters) names the row, ``secret`` is
256 random bits in URL-safe base64. The SQL store keeps only SHA-256 of the secret, so a copy of
the database grants nothing; a fast hash is enough because the secret has full entropy (there is
no password to brute-force).

Every key has a role and scopes:

======== ================================ =============================================
role     default scopes                   may also hold
======== ================================ =============================================
admin    ``admin``                        ``export``, or only some finer platform
                                          scopes (``PLATFORM_SCOPES``)
agent    ``orders``, ``holds``            (bound to one agent: sees only its own orders)
terminal ``verify``, ``redeem``,          optionally limited to listed SKUs
         ``rollback``
======== ================================ =============================================

:class:`KeyAuthenticator` authenticates requests from an in-memory cache filled from SQL on a miss
and refreshed every ``ttl_s`` seconds, so the hot path (verify, redeem) never touches SQL, a key
created by ``cardsvc keys create`` while the server runs works at once, and a key revoked by
another process stops working within ``ttl_s``. A revocation through this process is immediate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc import audit
from cardsvc.access.tables import ApiKey
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, invalid, make_error

KEY_PREFIX = "cs"
SCOPES: dict[str, str] = {
    "admin": "everything a platform operator may do, except export (implies every other scope)",
    "export": "plaintext export of codes (never implied: granted explicitly)",
    "users": "invite, disable, unlock and change the roles of console users",
    "catalog": "SKUs, pools and price lists",
    "stock": "batches: import, generate, void",
    "orders": "place and read orders (an agent: only its own)",
    "holds": "hold, confirm and release stock",
    "sub_agents": "create and manage one's own direct sub-agents and their users",
    "ledger": "balances, statements, postings and top-ups",
    "withdrawals": "approve, reject and pay out withdrawals",
    "reconciliation": "run and read reconciliation reports",
    "trace": "trace a code through its history (masked)",
    "freeze": "freeze and unfreeze codes",
    "resend": "re-send a delivery",
    "masked_views": "read orders, codes and deliveries with codes masked",
    "audit": "read and verify the audit log",
    "verify": "verify a code at a terminal",
    "redeem": "redeem a code at a terminal",
    "rollback": "roll back a redemption at a terminal",
}
"""The one authorisation vocabulary: every scope an API key or a console user may hold. Keys
get theirs from :data:`SCOPES_OF_ROLE`, users from ``cardsvc.access.users.SCOPES_OF_USER_ROLE``;
both are checked with :meth:`Principal.require`."""
ROLES = ("admin", "agent", "terminal")
PLATFORM_SCOPES = ("users", "catalog", "stock", "orders", "holds", "ledger", "withdrawals",
                   "reconciliation", "trace", "freeze", "resend", "masked_views", "audit")
"""The finer scopes of platform work that ``admin`` implies; an admin key may be limited to
some of them (a finance script: ``ledger``, ``withdrawals``)."""
SCOPES_OF_ROLE: dict[str, tuple[str, ...]] = {
    "admin": ("admin", "export", *PLATFORM_SCOPES),
    "agent": ("orders", "holds"),
    "terminal": ("verify", "redeem", "rollback"),
}
"""Scopes each role may hold. ``export`` (plaintext export) is never a default."""
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "agent": ("orders", "holds"),
    "terminal": ("verify", "redeem", "rollback"),
}
SKUS_PER_KEY_MAX = 1_000
"""SKUs a terminal key may be limited to (a shop's whole range; the list is read per request)."""
KEY_TEXT_LEN_MAX = 128
"""A well-formed key is 63 characters; longer input is rejected before any hashing."""
CACHE_TTL_S = 10.0
CACHE_ENTRIES_MAX = 100_000
"""Valid keys remembered; about 300 bytes each, so at most ~30 MB."""
UNKNOWN_ENTRIES_MAX = 10_000
"""Unknown or revoked key ids remembered (about 100 bytes each, ~1 MB), apart from the valid
keys: a flood of made-up key ids evicts only other made-up ids, never a valid key."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, an API key or a console user: who it is and what it may do.
    Immutable and cheap to share.

    For a key, ``key_id`` is the key's id and ``user_id`` None. For a user
    (``cardsvc.access.users.principal_of_user``), ``key_id`` is ``user:<user_id>`` and
    ``role`` the user's role (``owner``, ``operator``, ``finance``, ``support``, ``agent``);
    either way ``key_id`` is the actor name written into the audit log (:attr:`actor`)."""

    key_id: str
    role: str
    agent_id: str | None
    scopes: frozenset[str]
    skus: frozenset[str] | None
    limits: dict[str, Any]
    name: str = ""
    user_id: str | None = None

    @property
    def actor(self) -> str:
        """The name this caller's actions carry in the audit log."""
        return self.key_id

    @property
    def is_user(self) -> bool:
        return self.user_id is not None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def holds(self, scope: str) -> bool:
        """Whether the caller holds ``scope`` (``admin`` holds every scope but ``export``, which
        must be granted explicitly)."""
        return scope in self.scopes or (self.is_admin and scope != "export")

    def require(self, scope: str) -> None:
        """Raises FORBIDDEN unless the key holds ``scope`` (:meth:`holds`)."""
        if self.holds(scope):
            return
        raise make_error(
            ErrorCode.FORBIDDEN,
            f"these credentials may not do this (needs scope {scope})",
            {"scope": scope, "role": self.role},
        )

    def may_use_sku(self, sku: str) -> bool:
        """Whether a terminal limited to some SKUs may act on codes of ``sku``."""
        return self.skus is None or sku in self.skus

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "role": self.role,
            "agent_id": self.agent_id,
            "scopes": sorted(self.scopes),
            "skus": None if self.skus is None else sorted(self.skus),
            "name": self.name,
        }


@dataclass(frozen=True)
class KeyInfo:
    """A key's public facts (never its secret or the secret's hash), as listed and as answered
    when it is created."""

    key_id: str
    role: str
    agent_id: str | None
    scopes: tuple[str, ...]
    skus: tuple[str, ...] | None
    name: str
    limits: dict[str, Any]
    created_at_ms: int
    created_by: str | None
    revoked_at_ms: int | None

    def principal(self) -> Principal:
        """The caller this key authenticates as."""
        return Principal(key_id=self.key_id, role=self.role, agent_id=self.agent_id,
                         scopes=frozenset(self.scopes),
                         skus=None if self.skus is None else frozenset(self.skus),
                         limits=dict(self.limits), name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "role": self.role, "agent_id": self.agent_id,
                "scopes": sorted(self.scopes),
                "skus": None if self.skus is None else sorted(self.skus), "name": self.name,
                "created_at_ms": self.created_at_ms, "created_by": self.created_by,
                "revoked_at_ms": self.revoked_at_ms}


def key_info(row: ApiKey) -> KeyInfo:
    """The row's public facts. Pure."""
    return KeyInfo(key_id=row.key_id, role=row.role, agent_id=row.agent_id,
                   scopes=tuple(row.scopes), skus=None if row.skus is None else tuple(row.skus),
                   name=row.name, limits=dict(row.limits or {}), created_at_ms=row.created_at_ms,
                   created_by=row.created_by, revoked_at_ms=row.revoked_at_ms)


HOST_PRINCIPAL = Principal(key_id="cli", role="admin", agent_id=None,
                           scopes=frozenset({"admin", "users"}), skus=None, limits={},
                           name="the host's command line")
"""Whoever runs the command line on the data directory, directly or through the running
server's control socket (which only the directory's owner can open): it already holds the
database and the master key, so it acts as an admin, audited as ``cli``. Never ``export``: a
plaintext export names its own actor and reads the database itself."""


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()




def check_key_request(
    role: str,
    agent_id: str | None,
    scopes: Sequence[str] | None,
    skus: Sequence[str] | None,
) -> tuple[str, ...]:
    """The scopes a new key gets, after checking the request's shape. Raises INVALID_ARGUMENT
    (details: ``field``) for an unknown role, a scope the role may not hold, an agent key without
    an agent, an agent id on another role, SKUs on a key that is not a terminal's or an empty
    list of SKUs (which would let the key reach nothing); LIMIT_EXCEEDED over
    SKUS_PER_KEY_MAX SKUs. Whether the SKUs exist is checked where the catalog is known
    (``cardsvc.agents.create_key``)."""
    if role not in ROLES:
        raise invalid("role", "role must be admin, agent or terminal")
    if role == "agent" and not agent_id:
        raise invalid("agent_id", "an agent key needs agent_id")
    if role != "agent" and agent_id:
        raise invalid("agent_id", "only agent keys belong to an agent")
    if skus is not None and role != "terminal":
        raise invalid("skus", "only terminal keys can be limited to SKUs")
    if skus is not None and not skus:
        raise invalid("skus", "a key limited to SKUs needs at least one (omit skus for all)")
    if skus is not None and len(set(skus)) > SKUS_PER_KEY_MAX:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"at most {SKUS_PER_KEY_MAX} SKUs per key",
                         {"field": "skus", "max": SKUS_PER_KEY_MAX})
    granted = tuple(DEFAULT_SCOPES[role]) if scopes is None else tuple(dict.fromkeys(scopes))
    allowed = SCOPES_OF_ROLE[role]
    for scope in granted:
        if scope not in allowed:
            raise invalid("scopes", f"a {role} key may hold only: {', '.join(allowed)}")
    if not granted:
        raise invalid("scopes", "a key needs at least one scope")
    return granted


def issue_key(
    session: Session,
    *,
    role: str,
    agent_id: str | None = None,
    name: str = "",
    scopes: Sequence[str] | None = None,
    skus: Sequence[str] | None = None,
    limits: dict[str, Any] | None = None,
    created_by: str | None = None,
    now_ms: int | None = None,
) -> tuple[KeyInfo, str]:
    """Creates a key in the caller's transaction and returns its facts with its text, which is
    shown once and never stored. Precondition: ``agent_id``, when given, names an agent (the agents
    package checks it: ``cardsvc.agents.create_key``).

    Effects: one ``api_keys`` row and one audit entry (``key.create``). Raises INVALID_ARGUMENT
    (see :func:`check_key_request`).
    """
    granted = check_key_request(role, agent_id, scopes, skus)
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    at_ms = int(time.time() * 1000) if now_ms is None else now_ms
    row = ApiKey(
        key_id=key_id,
        secret_sha256=_sha256(secret),
        role=role,
        agent_id=agent_id,
        name=name,
        scopes=list(granted),
        skus=None if skus is None else sorted(set(skus)),
        limits=limits,
        created_at_ms=at_ms,
        created_by=created_by,
        revoked_at_ms=None,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=created_by or "cli",
        action="key.create",
        object_type="api_key",
        object_id=key_id,
        details={"role": role, "agent_id": agent_id, "scopes": list(granted), "name": name,
                 "granted_by": created_by or "cli"},
        at_ms=at_ms,
    )
    return key_info(row), f"{KEY_PREFIX}_{key_id}_{secret}"


def principal_of(row: ApiKey) -> Principal:
    """The caller a key row authenticates as. Pure."""
    return key_info(row).principal()


def list_keys(db: Database, *, include_revoked: bool = False) -> list[KeyInfo]:
    """Every key's public facts (never a secret or its hash), oldest first."""
    with db.read() as session:
        query = select(ApiKey).order_by(ApiKey.created_at_ms, ApiKey.key_id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at_ms.is_(None))
        return [key_info(row) for row in session.scalars(query)]


def parse_key(text: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key text, else None. Pure."""
    if len(text) > KEY_TEXT_LEN_MAX or not text.isascii():
        return None
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1], parts[2]


@dataclass
class _Cached:
    secret_sha256: bytes | None  # None: no such key, or revoked
    principal: Principal | None
    fetched_at: float


class KeyAuthenticator:
    """Authenticates key texts against the SQL store through a bounded, expiring cache."""

    def __init__(self, db: Database, *, ttl_s: float = CACHE_TTL_S) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._cache: OrderedDict[str, _Cached] = OrderedDict()  # valid keys
        self._unknown: OrderedDict[str, _Cached] = OrderedDict()  # unknown or revoked ids
        self._lock = threading.Lock()

    def _cached(self, key_id: str) -> _Cached | None:
        return self._cache.get(key_id) or self._unknown.get(key_id)

    def authenticate(self, text: str) -> Principal:
        """The principal of a valid, unrevoked key. Raises UNAUTHENTICATED otherwise (the same
        error whatever was wrong, so probing learns nothing). May read SQL on a cache miss."""
        parsed = parse_key(text)
        if parsed is None:
            raise _unauthenticated()
        key_id, secret = parsed
        now = time.monotonic()
        entry = self._cached(key_id)
        if entry is None or now - entry.fetched_at > self._ttl_s:
            entry = self._fetch(key_id, now)
        if entry.secret_sha256 is None or entry.principal is None:
            raise _unauthenticated()
        if not hmac.compare_digest(entry.secret_sha256, _sha256(secret)):
            raise _unauthenticated()
        return entry.principal

    def authenticate_cached(self, text: str) -> Principal | None:
        """:meth:`authenticate` from the cache alone: the principal, or None when the key must
        be read from SQL (not cached, or cached too long ago). Never blocks on I/O; raises
        UNAUTHENTICATED for a key known to be invalid."""
        parsed = parse_key(text)
        if parsed is None:
            raise _unauthenticated()
        key_id, secret = parsed
        entry = self._cached(key_id)
        if entry is None or time.monotonic() - entry.fetched_at > self._ttl_s:
            return None
        if entry.secret_sha256 is None or entry.principal is None:
            raise _unauthenticated()
        if not hmac.compare_digest(entry.secret_sha256, _sha256(secret)):
            raise _unauthenticated()
        return entry.principal

    def _fetch(self, key_id: str, now: float) -> _Cached:
        with self._db.read() as session:
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked_at_ms is not None:
                entry = _Cached(None, None, now)
            else:
                entry = _Cached(row.secret_sha256, principal_of(row), now)
        valid = entry.principal is not None
        table, bound = (self._cache, CACHE_ENTRIES_MAX) if valid else (
            self._unknown, UNKNOWN_ENTRIES_MAX)
        with self._lock:
            (self._unknown if valid else self._cache).pop(key_id, None)
            table[key_id] = entry
            table.move_to_end(key_id)
            while len(table) > bound:
                table.popitem(last=False)
        return entry

    def revoke(self, key_id: str, *, actor: str, now_ms: int | None = None) -> None:
        """Revokes a key (idempotent: revoking a revoked key changes nothing). Effects: the row's
        ``revoked_at_ms``, an audit entry ``key.revoke``, and this process forgets the key at
        once. Raises KEY_NOT_FOUND."""
        revoke_key(self._db, key_id, actor=actor, now_ms=now_ms)
        self.forget([key_id])

    def forget(self, key_ids: Iterable[str]) -> None:
        with self._lock:
            for key_id in key_ids:
                self._cache.pop(key_id, None)
                self._unknown.pop(key_id, None)


def revoke_key(db: Database, key_id: str, *, actor: str, now_ms: int | None = None) -> bool:
    """Marks a key revoked; True if it was active. Raises KEY_NOT_FOUND."""
    at_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with db.write() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise make_error(ErrorCode.KEY_NOT_FOUND, "no such API key", {"key_id": key_id})
        if row.revoked_at_ms is not None:
            return False
        row.revoked_at_ms = at_ms
        audit.append(
            session,
            actor=actor,
            action="key.revoke",
            object_type="api_key",
            object_id=key_id,
            details={"role": row.role},
            at_ms=at_ms,
        )
    return True


def _unauthenticated() -> Exception:
    return make_error(
        ErrorCode.UNAUTHENTICATED, "a valid API key is required (Authorization: Bearer <key>)"
    )
