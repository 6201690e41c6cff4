"""The gate every API request passes: who is calling (its API key), what a failed attempt costs,
and the admins' view of the brute-force lockouts this causes.

:meth:`AccessGate.authenticate` is the one place a key is checked. A valid key gives its
principal and nothing else is consulted, so a valid key is never refused for what other callers
at its address did; anything else is a request without a valid key and is judged by its client
address (``RiskGuard.refuse_unauthenticated``: a token bucket and the failure lockout), each
lockout it starts written to the audit log. Admins list the lockouts in force (key and address
subjects, a page at a time) and lift one, audited (``risk.unlock``).

``client address`` is whatever the HTTP layer computed, once, from the TCP peer (and from
``X-Forwarded-For`` only when the peer is a proxy the operator trusts: docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from cardsvc import audit
from cardsvc.access.apikeys import KeyAuthenticator, Principal
from cardsvc.access.risk import LOCKOUT_CURSOR, SUBJECT_LEN_MAX, Lockout, RiskGuard
from cardsvc.db import Database
from cardsvc.errors import CardsvcError, ErrorCode, invalid, make_error
from cardsvc.paging import Page, check_page_size, decode_cursor, page_of

BEARER = "bearer "
ANONYMOUS_ACTOR = "anonymous"
"""The audit actor of what requests without a valid key cause (their lockouts)."""


def bearer_key(authorization: str) -> str | None:
    """The key text of an ``Authorization: Bearer <key>`` header, None for any other. Pure."""
    if authorization[: len(BEARER)].lower() != BEARER:
        return None
    return authorization[len(BEARER):].strip()


def audit_lockouts(db: Database, lockouts: Sequence[Lockout], *, actor: str, ip: str,
                   at_ms: int) -> None:
    """Writes each lockout that just started to the audit log (``risk.lockout``), one entry and
    transaction each; nothing when there is none."""
    for lockout in lockouts:
        audit.record(db, actor=actor, action="risk.lockout", object_type="subject",
                     object_id=lockout.subject, at_ms=at_ms,
                     details={"failures": lockout.failures, "lockout_s": lockout.lockout_s,
                              "until_ms": lockout.until_ms, "ip": ip})


class AccessGate:
    """Authentication of API requests with the risk guard's per-address budget, and the
    lockouts' administration. Times from ``clock`` (Unix ms)."""

    def __init__(self, keys: KeyAuthenticator, risk: RiskGuard, db: Database,
                 clock: Callable[[], int]) -> None:
        self.keys = keys
        self.risk = risk
        self.db = db
        self.clock = clock

    async def authenticate(self, authorization: str, ip: str) -> Principal:
        """The principal of the key in ``authorization`` (the header's value) for a request
        from ``ip``. Runs on the event loop; a key not in the cache is read from SQL in a worker
        thread. Raises UNAUTHENTICATED (no valid key: counted against ``ip``), RATE_LIMITED
        (``ip`` is locked out or over its bucket for requests without a valid key; a valid key
        is never refused here), DATABASE_UNAVAILABLE."""
        try:
            text = bearer_key(authorization)
            if text is None:
                raise make_error(ErrorCode.UNAUTHENTICATED,
                                 "a valid API key is required (Authorization: Bearer <key>)")
            cached = self.keys.authenticate_cached(text)
            if cached is not None:
                return cached
            return await asyncio.to_thread(self.keys.authenticate, text)
        except CardsvcError as error:
            if error.code != ErrorCode.UNAUTHENTICATED:
                raise
            started = self.risk.refuse_unauthenticated(ip, self.risk.limits)
            if started:
                await asyncio.to_thread(audit_lockouts, self.db, started, actor=ANONYMOUS_ACTOR,
                                        ip=ip, at_ms=self.clock())
            raise

    def lockouts(self, *, cursor: str | None = None, limit: int | None = None) -> Page[Lockout]:
        """The brute-force lockouts in force (``key:<key_id>`` and ``ip:<address>``), newest
        first, a page at a time (``cardsvc.paging``). Raises INVALID_ARGUMENT (a cursor this
        list did not give out), LIMIT_EXCEEDED (``limit`` over PAGE_SIZE_MAX)."""
        size = check_page_size(limit)
        after = decode_cursor(cursor, LOCKOUT_CURSOR)
        rows = self.risk.lockouts(after=None if after is None else (int(after[0]), str(after[1])),
                                  limit=size + 1)
        return page_of(rows, size, key=lambda lockout: (lockout.locked_at_ms, lockout.subject))

    def lift(self, subject: str, *, actor: str) -> Lockout:
        """Ends ``subject``'s lockout now (its failures are forgotten), audited as
        ``risk.unlock``. Raises INVALID_ARGUMENT (not a ``key:`` or ``ip:`` subject),
        LOCKOUT_NOT_FOUND (not locked out now; nothing changes)."""
        if not subject.startswith(("key:", "ip:")) or len(subject) > SUBJECT_LEN_MAX:
            raise invalid("subject", "a lockout's subject is key:<key_id> or ip:<address>")
        lifted = self.risk.lift(subject)
        if lifted is None:
            raise make_error(ErrorCode.LOCKOUT_NOT_FOUND, "this subject is not locked out",
                             {"subject": subject})
        audit.record(self.db, actor=actor, action="risk.unlock", object_type="subject",
                     object_id=subject, at_ms=self.clock(),
                     details={"failures": lifted.failures, "until_ms": lifted.until_ms})
        return lifted
