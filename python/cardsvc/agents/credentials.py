"""Credentials bound to agents: API keys and console users that act for an agent.

The key and user stores are ``cardsvc.access``, a floor below the agent tree; issuing a key or
inviting a user that names an agent needs the agent to exist (and, for an agent acting itself,
the tree to allow it), so the one way to create each runs here and checks it in the same
transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.access import (
    DEFAULT_SCOPES,
    INVITATION_TTL_MS,
    ApiKey,
    Invitation,
    KeyAuthenticator,
    KeyInfo,
    Principal,
    RiskLimits,
    User,
    check_key_request,
    issue_invitation,
    issue_key,
    list_keys,
)
from cardsvc.agents.tree import may_manage, require_agent
from cardsvc.catalog import skus_found
from cardsvc.db import Database
from cardsvc.errors import ErrorCode, make_error


def create_key(
    db: Database,
    *,
    role: str,
    agent_id: str | None = None,
    name: str = "",
    scopes: Sequence[str] | None = None,
    skus: Sequence[str] | None = None,
    limits: dict[str, Any] | None = None,
    created_by: str | None = None,
    now_ms: int | None = None,
    bounded: bool = False,
) -> tuple[KeyInfo, str]:
    """Creates a key and returns its facts with its text, which is shown once and never stored.
    ``bounded``: refuse with LIMIT_EXCEEDED when the agent has AGENT_KEYS_MAX live keys (an
    agent's user issuing keys).

    Effects: one ``api_keys`` row and one audit entry (``key.create``), in one transaction.
    Raises INVALID_ARGUMENT (a risk limit in ``limits`` that does not exist or is not a finite
    non-negative number, then ``cardsvc.access.check_key_request``), LIMIT_EXCEEDED (a limit
    over ``cardsvc.access.risk.LIMITS_MAX``, too many SKUs), then AGENT_NOT_FOUND when
    ``agent_id`` names no agent, SKU_NOT_FOUND when a SKU of ``skus`` does not exist.
    """
    if limits:
        RiskLimits().with_overrides(limits)
    check_key_request(role, agent_id, scopes, skus)
    at_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with db.write() as session:
        if agent_id is not None:
            require_agent(session, agent_id)
            if bounded:
                _check_room(session, agent_id, "keys")
        if skus:
            known = skus_found(session, skus)
            unknown = sorted(set(skus) - known)
            if unknown:
                raise make_error(ErrorCode.SKU_NOT_FOUND, "no such SKU", {"sku": unknown[0]})
        return issue_key(session, role=role, agent_id=agent_id, name=name, scopes=scopes,
                         skus=skus, limits=limits, created_by=created_by, now_ms=at_ms)


AGENT_KEYS_MAX = 50
"""Keys not revoked that an agent's user may have issued for one agent (its own or a direct
sub-agent's): a bound on what one login can make, not a business rule; platform callers are
not bound."""
AGENT_USERS_MAX = 50
"""Users (invited or active) an agent's user may have made for one agent, likewise."""


def _check_room(session: Session, agent_id: str, what: str) -> None:
    """LIMIT_EXCEEDED when ``agent_id`` already has AGENT_KEYS_MAX live keys (``what`` is
    ``keys``) or AGENT_USERS_MAX users who are not disabled (``users``); counted inside the
    caller's write transaction, so two requests at once cannot both pass the last place."""
    if what == "keys":
        count = session.scalar(select(func.count()).select_from(ApiKey).where(
            ApiKey.agent_id == agent_id, ApiKey.revoked_at_ms.is_(None))) or 0
        limit = AGENT_KEYS_MAX
    else:
        count = session.scalar(select(func.count()).select_from(User).where(
            User.agent_id == agent_id, User.status != "disabled")) or 0
        limit = AGENT_USERS_MAX
    if count >= limit:
        raise make_error(ErrorCode.LIMIT_EXCEEDED, f"this agent has {limit} {what} already: "
                         "revoke or disable one first", {"field": what, "max": limit})


GRANTED_ONLY_BY_HOLDERS = frozenset({"export"})
"""Scopes that only a key already holding them may put on a new key (``admin`` implies every
other scope, so without this any admin could mint itself plaintext access)."""


class Credentials:
    """The key use cases of admins: create (checked against the tree), list, revoke (the
    authenticator forgets a revoked key at once). Times from ``clock`` (Unix ms)."""

    def __init__(self, db: Database, authenticator: KeyAuthenticator,
                 clock: Callable[[], int]) -> None:
        self.db = db
        self.authenticator = authenticator
        self.clock = clock

    def create_key(self, *, role: str, agent_id: str | None, name: str,
                   scopes: Sequence[str] | None, skus: Sequence[str] | None,
                   limits: dict[str, Any] | None, actor: str,
                   granter: Principal | None = None) -> tuple[KeyInfo, str]:
        """:func:`create_key` by ``actor`` (whose credentials are ``granter``). Only a holder of
        ``export`` may grant ``export`` (plaintext of every code): an admin key without it
        cannot mint itself one (FORBIDDEN, details ``scope``). The command line, which works on
        the data directory itself, passes no granter and may grant it. The ``key.create`` entry
        names the scopes and who granted them."""
        requested = set(scopes or ())
        if granter is not None:
            for scope in sorted(requested & GRANTED_ONLY_BY_HOLDERS):
                if scope not in granter.scopes:
                    raise make_error(ErrorCode.FORBIDDEN,
                                     f"only a holder of {scope} may grant it",
                                     {"scope": scope, "role": granter.role})
        return create_key(self.db, role=role, agent_id=agent_id, name=name, scopes=scopes,
                          skus=skus, limits=limits, created_by=actor, now_ms=self.clock())

    def create_agent_key(self, principal: Principal, *, agent_id: str, name: str,
                         scopes: Sequence[str] | None = None) -> tuple[KeyInfo, str]:
        """An agent's user issues an API key for its own agent or one of its direct
        sub-agents (``may_manage``), with scopes among an agent key's defaults (``orders``,
        ``holds``). Needs the ``sub_agents`` scope. The key's text is returned once. Raises
        FORBIDDEN (no scope, an agent outside the caller's reach, known or not, or a scope an
        agent key may not hold), INVALID_ARGUMENT, LIMIT_EXCEEDED (AGENT_KEYS_MAX live keys for
        that agent already)."""
        principal.require("sub_agents")
        own = principal.agent_id
        allowed = set(DEFAULT_SCOPES["agent"])
        wanted = list(scopes) if scopes else sorted(allowed)
        if own is None or set(wanted) - allowed:
            raise make_error(ErrorCode.FORBIDDEN, "an agent's key holds only agent scopes",
                             {"scopes": sorted(set(wanted) - allowed)})
        with self.db.read() as session:
            if agent_id != own and not may_manage(session, own, agent_id):
                raise make_error(ErrorCode.FORBIDDEN, "not an agent you may manage",
                                 {"agent_id": agent_id})
        return create_key(self.db, role="agent", agent_id=agent_id, name=name, scopes=wanted,
                          created_by=principal.actor, now_ms=self.clock(), bounded=True)

    def list_keys(self, *, include_revoked: bool) -> list[KeyInfo]:
        return list_keys(self.db, include_revoked=include_revoked)

    def revoke(self, key_id: str, *, actor: str) -> None:
        """Revokes a key at once (idempotent). Raises KEY_NOT_FOUND."""
        self.authenticator.revoke(key_id, actor=actor, now_ms=self.clock())


def create_agent_user(
    db: Database,
    actor: Principal,
    *,
    agent_id: str,
    login: str,
    display_name: str,
    ttl_ms: int = INVITATION_TTL_MS,
    now_ms: int | None = None,
) -> Invitation:
    """Invites a user of agent ``agent_id`` (role ``agent``; TOTP optional) and returns the
    invitation, whose token is shown once.

    Who may: a platform caller with the ``users`` scope, for any agent; an agent's user (scope
    ``sub_agents``) for its own agent and that agent's direct sub-agents
    (``cardsvc.agents.tree.may_manage``), never a grandchild or an agent elsewhere. Agent API
    keys hold no ``sub_agents`` scope: machines do not create people.

    Effects: the user and invitation rows and an audit entry ``user.create``, in one
    transaction. Raises FORBIDDEN (also for an agent outside the caller's reach, known or not,
    so nothing can be probed), AGENT_NOT_FOUND (platform callers), LIMIT_EXCEEDED (an agent's
    user, for an agent with AGENT_USERS_MAX users who are not disabled), then as
    ``cardsvc.access.issue_invitation`` (INVALID_ARGUMENT, LIMIT_EXCEEDED, USER_EXISTS).
    """
    at_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with db.write() as session:
        if actor.is_admin or "users" in actor.scopes:
            require_agent(session, agent_id)
        else:
            actor.require("sub_agents")
            own = actor.agent_id
            if own is None or not (own == agent_id or may_manage(session, own, agent_id)):
                raise make_error(ErrorCode.FORBIDDEN,
                                 "an agent may create users only for itself and its direct "
                                 "sub-agents", {"agent_id": agent_id})
            _check_room(session, agent_id, "users")
        return issue_invitation(session, login=login, display_name=display_name, role="agent",
                                agent_id=agent_id, created_by=actor.actor, now_ms=at_ms,
                                ttl_ms=ttl_ms)
