"""Goal: the checkout's proof of work buys exactly one checkout: a solved challenge passes once,
its replay, a forged or garbled payload, one for another key, and an expired one are refused
with CHALLENGE_FAILED; with the challenge off everything passes (benchmarks only).

Method: challenges issued by :class:`Challenges` and solved with the ``altcha`` library's own
solver, exactly what the page's script computes."""

from __future__ import annotations

import base64
import json

import pytest
from altcha import v1 as altcha_v1

from cardsvc.access import Challenges
from cardsvc.errors import CardsvcError, ErrorCode


def solve(challenge: dict[str, object]) -> str:
    solution = altcha_v1.solve_challenge(str(challenge["challenge"]), str(challenge["salt"]),
                                         "SHA-256", int(str(challenge["maxnumber"])), 0)
    assert solution is not None
    payload = {"algorithm": "SHA-256", "challenge": challenge["challenge"],
               "number": solution.number, "salt": challenge["salt"],
               "signature": challenge["signature"]}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def reason(challenges: Challenges, payload: str | None) -> str:
    with pytest.raises(CardsvcError) as refused:
        challenges.verify(payload)
    assert refused.value.code == ErrorCode.CHALLENGE_FAILED
    return str(refused.value.details["reason"])


def test_a_solved_challenge_passes_once() -> None:
    challenges = Challenges(max_number=2_000)
    payload = solve(challenges.issue())
    challenges.verify(payload)
    assert reason(challenges, payload) == "replayed"


def test_forged_garbled_foreign_and_missing_payloads_are_refused() -> None:
    challenges = Challenges(max_number=2_000)
    other = Challenges(max_number=2_000)
    assert reason(challenges, solve(other.issue())) == "invalid"
    issued = challenges.issue()
    fields = json.loads(base64.b64decode(solve(issued)))
    fields["number"] += 1
    assert reason(challenges, base64.b64encode(json.dumps(fields).encode()).decode()) == \
        "invalid"
    assert reason(challenges, "not base64 at all!") == "invalid"
    assert reason(challenges, None) == "missing"
    assert reason(challenges, "x" * 5000) == "invalid"


def test_an_expired_challenge_is_refused() -> None:
    now = [1_000_000.0]
    challenges = Challenges(max_number=2_000, ttl_s=60, clock_s=lambda: now[0])
    payload = solve(challenges.issue())
    assert reason(challenges, payload) == "invalid"  # issued for 1970: long expired


def test_off_accepts_anything() -> None:
    Challenges(enabled=False).verify(None)
