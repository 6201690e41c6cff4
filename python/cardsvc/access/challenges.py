"""The checkout's challenge against bots: an ALTCHA proof of work (the ``altcha`` library),
issued and verified here, offline, with no third-party service.

A challenge is ``{algorithm, challenge, maxnumber, salt, signature}``: the browser (or an app)
finds the number ``n <= maxnumber`` with ``SHA-256(salt + n) == challenge`` (about maxnumber/2
hashes: a fraction of a second for one buyer, a real cost for a bot sending thousands), and
sends back the base64 JSON payload. The server checks the HMAC signature (so challenges cannot
be made up), the expiry carried in the salt, the work, and that the salt was never used before:
each solved challenge buys exactly one checkout. Used salts are remembered until they expire,
bounded in memory.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from altcha import v1 as altcha_v1

from cardsvc.errors import CardsvcError, ErrorCode, make_error

MAX_NUMBER_DEFAULT = 50_000
"""About 25,000 SHA-256 on average: well under a second in a phone's browser."""
TTL_S_DEFAULT = 600
USED_SALTS_MAX = 200_000
"""Salts remembered (about 100 bytes each: 20 MB at most); at the bound the oldest half goes,
which only re-opens challenges that are about to expire anyway."""
PAYLOAD_CHARS_MAX = 2_000


class Challenges:
    """Issues and verifies proof-of-work challenges. ``enabled`` False accepts every checkout
    without one (benchmarks and load tests only; the server's setting says so)."""

    def __init__(self, *, enabled: bool = True, max_number: int = MAX_NUMBER_DEFAULT,
                 ttl_s: int = TTL_S_DEFAULT, key: bytes | None = None,
                 clock_s: Callable[[], float] = time.time) -> None:
        self.enabled = enabled
        self.max_number = max_number
        self.ttl_s = ttl_s
        self._key = (key or secrets.token_bytes(32)).hex()
        self._clock_s = clock_s
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> dict[str, Any]:
        """A new challenge as the JSON the solver reads."""
        expires = datetime.datetime.fromtimestamp(self._clock_s() + self.ttl_s, datetime.UTC)
        challenge = altcha_v1.create_challenge(altcha_v1.ChallengeOptions(
            hmac_key=self._key, max_number=self.max_number, expires=expires))
        return {"algorithm": challenge.algorithm, "challenge": challenge.challenge,
                "maxnumber": challenge.max_number, "salt": challenge.salt,
                "signature": challenge.signature}

    def verify(self, payload: str | None) -> None:
        """Accepts a solved challenge once. Raises CHALLENGE_FAILED (details ``reason``:
        ``missing``, ``invalid``, ``replayed``)."""
        if not self.enabled:
            return
        if not payload:
            raise _failed("missing")
        if len(payload) > PAYLOAD_CHARS_MAX:
            raise _failed("invalid")
        try:
            fields = json.loads(base64.b64decode(payload, validate=True))
            salt = fields["salt"] if isinstance(fields, dict) else None
            ok = (isinstance(salt, str) and fields.get("algorithm") == "SHA-256"
                  and altcha_v1.verify_solution(payload, self._key, check_expires=True)[0])
        except (ValueError, TypeError, KeyError):
            ok, salt = False, None
        if not ok or not isinstance(salt, str):
            raise _failed("invalid")
        now = self._clock_s()
        with self._lock:
            if salt in self._used:
                raise _failed("replayed")
            if len(self._used) >= USED_SALTS_MAX:
                for old in [s for s, until in self._used.items() if until < now] or \
                        list(self._used)[:USED_SALTS_MAX // 2]:
                    del self._used[old]
            self._used[salt] = now + self.ttl_s


def _failed(reason: str) -> CardsvcError:
    return make_error(ErrorCode.CHALLENGE_FAILED, "the anti-bot challenge was not solved",
                      {"reason": reason})
