"""Goal: authentication never lets one caller's failures cost another caller anything. Requests
without a valid key are throttled per client IP (a token bucket and the failure lockout); a
request with a valid key is judged by its own key's budget only, so a flood of bogus keys from
one address (a shop behind one NAT, every client behind a reverse proxy) locks out nobody who
holds a valid key, and a key that guesses codes locks out only itself.

Method: the real app over ASGITransport (every request comes from 127.0.0.1), limits shrunk
so each edge is reached in a handful of requests; lockouts are read back through
``GET /v1/lockouts`` and the audit log.
"""

from __future__ import annotations

import pytest

from cardsvc import audit
from cardsvc.access.risk import RiskLimits
from tests.fixtures.http import Api

pytestmark = pytest.mark.anyio

BOGUS = "cs_0123456789abcdef_not-a-real-secret"


async def bogus(api: Api, path: str = "/v1/skus") -> int:
    return (await api.http.get(path, headers={"authorization": f"Bearer {BOGUS}"})).status_code


async def test_a_flood_of_bogus_keys_never_locks_out_a_valid_key(catalog: Api) -> None:
    api = catalog
    api.runtime.risk.limits = RiskLimits(failures_max_per_ip=10)
    statuses = [await bogus(api) for _ in range(15)]
    assert statuses == [401] * 10 + [429] * 5  # the IP's unauthenticated requests are locked out
    assert (await api.call("GET", "/v1/skus", api.keys["admin"])).status_code == 200
    verify = await api.call("POST", "/v1/verify", api.keys["terminal"], json={"code": "X-0001"})
    assert verify.status_code == 404  # judged by its own key, not by the address it shares
    lockouts = await api.admin("GET", "/v1/lockouts", expect=200)
    assert [item["subject"] for item in lockouts["items"]] == ["ip:127.0.0.1"]
    with api.runtime.db.read() as session:
        entries = audit.query(session, action="risk.lockout")
    assert [(e.object_id, e.actor) for e in entries] == [("ip:127.0.0.1", "anonymous")]


async def test_failed_lookups_of_one_key_do_not_lock_out_other_keys_at_its_address(
        catalog: Api) -> None:
    api = catalog
    api.runtime.risk.limits = RiskLimits(failures_max_per_key=1000, failures_max_per_ip=5)
    guesser = api.key("terminal", name="guesser")
    for i in range(8):
        response = await api.call("POST", "/v1/verify", guesser, json={"code": f"GUESS-{i:04d}"})
        assert response.status_code == 404
    other = await api.call("POST", "/v1/verify", api.keys["terminal"], json={"code": "X-0001"})
    assert other.status_code == 404


async def test_the_per_address_bucket_throttles_requests_without_a_valid_key_only(
        catalog: Api) -> None:
    api = catalog
    api.runtime.risk.limits = RiskLimits(requests_per_s_per_ip=3, burst_s=1,
                                         failures_max_per_ip=1000)
    keys = [api.key("terminal", name=f"till {i}") for i in range(5)]
    for key in keys:  # five terminals behind one address, each within its own budget
        response = await api.call("POST", "/v1/verify", key, json={"code": "X-0001"})
        assert response.status_code == 404
    statuses = [await bogus(api) for _ in range(5)]
    assert statuses[:3] == [401] * 3 and statuses[3:] == [429, 429]
    refused = await api.http.get("/v1/skus", headers={"authorization": f"Bearer {BOGUS}"})
    assert refused.json()["error"]["details"]["limit"] == "requests_per_s_per_ip"
    assert (await api.call("GET", "/v1/skus", api.keys["admin"])).status_code == 200

