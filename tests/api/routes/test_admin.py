"""Admins and authentication over HTTP: keys, roles and scopes, the catalog, batches, stock,
freezing, and the brute-force guard.

Goal: only the right key does each thing; bad input of every kind gets a clear 4xx and changes
nothing; imported codes never come back in plaintext from an admin endpoint; repeated failed
attempts lock the caller out and are audited. Method: httpx over ASGITransport against the real
app; state is checked through the API (stock) and the audit log.
"""

from __future__ import annotations

import pytest

from cardsvc import audit
from cardsvc.access.risk import RiskLimits
from tests.fixtures.http import CODES, Api

pytestmark = pytest.mark.anyio


async def test_requests_without_a_valid_key_are_unauthenticated(api: Api) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic abc"},
                    {"authorization": f"Bearer {api.keys['admin']}x"}):
        response = await api.http.get("/v1/skus", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(("role", "method", "path"), [
    ("terminal", "POST", "/v1/skus"),
    ("terminal", "POST", "/v1/orders"),
    ("agent", "POST", "/v1/verify"),
    ("agent", "POST", "/v1/batches"),
    ("agent", "POST", "/v1/keys"),
    ("terminal", "GET", "/v1/skus/VIP/stock"),
])
async def test_roles_only_reach_their_endpoints(catalog: Api, role: str, method: str,
                                                path: str) -> None:
    response = await catalog.call(method, path, catalog.keys[role], json={})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_a_new_key_shows_when_it_was_created(api: Api) -> None:
    created = await api.admin("POST", "/v1/keys", {"role": "terminal", "name": "t"}, 201)
    assert isinstance(created["created_at_ms"], int) and created["created_at_ms"] > 0
    [listed] = [k for k in await api.admin("GET", "/v1/keys")
                if k["key_id"] == created["key_id"]]
    assert listed["created_at_ms"] == created["created_at_ms"]
    assert created["revoked_at_ms"] is None


@pytest.mark.parametrize("raw", ['{"role": "terminal", "limits": {"burst_s": NaN}}',
                                 '{"role": "terminal", "limits": {"lockout_s": Infinity}}'])
async def test_non_finite_limits_are_refused(api: Api, raw: str) -> None:
    before = len(await api.admin("GET", "/v1/keys"))
    response = await api.http.post("/v1/keys", content=raw, headers={
        **api.auth(api.keys["admin"]), "content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert len(await api.admin("GET", "/v1/keys")) == before


async def test_revoked_key_stops_working_at_once(api: Api) -> None:
    created = await api.admin("POST", "/v1/keys", {"role": "terminal", "name": "t"}, 201)
    key = created["key"]
    assert (await api.call("POST", "/v1/verify", key, json={"code": "X-1"})).status_code == 404
    await api.admin("DELETE", f"/v1/keys/{created['key_id']}", None, 200)
    assert (await api.call("POST", "/v1/verify", key, json={"code": "X-1"})).status_code == 401
    listed = await api.admin("GET", "/v1/keys")
    assert created["key_id"] not in {k["key_id"] for k in listed}
    assert all("key" not in k for k in listed)


@pytest.mark.parametrize(("body", "code"), [
    ({"role": "root"}, "INVALID_ARGUMENT"),
    ({"role": "agent"}, "INVALID_ARGUMENT"),
    ({"role": "agent", "agent_id": "NOBODY"}, "AGENT_NOT_FOUND"),
    ({"role": "terminal", "scopes": ["admin"]}, "INVALID_ARGUMENT"),
    ({"role": "admin", "skus": ["VIP"]}, "INVALID_ARGUMENT"),
    ({"role": "terminal", "limits": {"no_such_limit": 1}}, "INVALID_ARGUMENT"),
    ({"role": "terminal", "skus": []}, "INVALID_ARGUMENT"),
    ({"role": "terminal", "skus": ["NO-SUCH-SKU"]}, "SKU_NOT_FOUND"),
    ({"role": "terminal", "limits": {"verify_per_s_per_key": 1e308}}, "LIMIT_EXCEEDED"),
    ({"role": "terminal", "limits": {"lockout_s": 10**12}}, "LIMIT_EXCEEDED"),
    ({"role": "terminal", "limits": {"failures_max_per_key": 2.5}}, "INVALID_ARGUMENT"),
])
async def test_bad_key_requests_are_refused(api: Api, body: object, code: str) -> None:
    before = len(await api.admin("GET", "/v1/keys"))
    response = await api.call("POST", "/v1/keys", api.keys["admin"], json=body)
    assert response.status_code in (400, 404)
    assert response.json()["error"]["code"] == code
    assert len(await api.admin("GET", "/v1/keys")) == before


async def test_batch_import_lists_duplicates_masked(catalog: Api) -> None:
    body = {"sku": "VIP", "codes": [{"code": CODES[0], "pin": "1"}, {"code": "FRESH-CODE-0001"},
                                    {"code": "FRESH-CODE-0001"}]}
    result = await catalog.admin("POST", "/v1/batches", body, 201)
    assert result["imported"] == 1
    assert [d["index"] for d in result["duplicates"]] == [0, 2]
    assert result["duplicates"][0]["code"].endswith(CODES[0][-4:])
    assert CODES[0] not in str(result)
    batch = await catalog.admin("GET", f"/v1/batches/{result['batch_id']}")
    assert (batch["imported"], batch["duplicates"], batch["status"]) == (1, 2, "ready")


@pytest.mark.parametrize("body", [
    {"sku": "VIP"},
    {"sku": "VIP", "codes": []},
    {"sku": "VIP", "codes": [{"code": "A" * 300}]},
    {"sku": "VIP", "codes": [{"code": 12345}]},
    {"sku": "VIP", "generate": {"count": 0}},
    {"sku": "VIP", "codes": [{"code": "OK-CODE-1"}], "generate": {"count": 1}},
    {"sku": "VIP", "codes": [{"code": "OK-CODE-1"}], "valid_until": -1},
])
async def test_bad_batches_are_refused_and_import_nothing(catalog: Api, body: object) -> None:
    before = await catalog.admin("GET", "/v1/skus/VIP/stock")
    response = await catalog.call("POST", "/v1/batches", catalog.keys["admin"], json=body)
    assert response.status_code in (400, 422), response.text
    assert await catalog.admin("GET", "/v1/skus/VIP/stock") == before


async def test_invalid_code_in_a_batch_imports_nothing(catalog: Api) -> None:
    before = await catalog.admin("GET", "/v1/skus/VIP/stock")
    body = {"sku": "VIP", "codes": [{"code": "GOOD-CODE-0001"}, {"code": "bad\u0001code"}]}
    response = await catalog.call("POST", "/v1/batches", catalog.keys["admin"], json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_CODE"
    assert await catalog.admin("GET", "/v1/skus/VIP/stock") == before


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"{not json", 422, "VALIDATION_ERROR"),
    (b"[]", 422, "VALIDATION_ERROR"),
    (b"null", 422, "VALIDATION_ERROR"),
    # Not UTF-8: the body cannot even be decoded (FastAPI answers 400 before validation).
    (b'{"sku": "\xff\xfe"}', 400, "INVALID_ARGUMENT"),
])
async def test_malformed_bodies_are_refused_and_create_nothing(
    catalog: Api, raw: bytes, status: int, code: str
) -> None:
    response = await catalog.http.post("/v1/skus", content=raw, headers={
        **catalog.auth(catalog.keys["admin"]), "content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert len(await catalog.admin("GET", "/v1/skus")) == 2


async def test_ten_megabyte_code_is_refused_before_parsing(catalog: Api) -> None:
    body = b'{"code": "' + b"A" * (10 << 20) + b'", "request_id": "x"}'
    response = await catalog.http.post("/v1/redeem", content=body, headers={
        **catalog.auth(catalog.keys["terminal"]), "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "LIMIT_EXCEEDED"


async def test_sku_and_pool_lifecycle_with_stock_by_pool(catalog: Api) -> None:
    again = await catalog.call("POST", "/v1/skus", catalog.keys["admin"],
                               json={"sku": "VIP", "name": "again"})
    assert again.json()["error"]["code"] == "SKU_EXISTS"
    await catalog.admin("POST", "/v1/pools", {"pool": "channel-a"}, 201)
    await catalog.admin("POST", "/v1/batches", {"sku": "VIP", "pool": "channel-a",
                                                 "generate": {"count": 4}}, 201)
    stock = await catalog.admin("GET", "/v1/skus/VIP/stock")
    assert stock["by_pool"]["channel-a"]["available"] == 4
    assert stock["by_pool"]["shared"]["available"] == len(CODES)
    assert stock["available"] == len(CODES) + 4
    missing = await catalog.call("POST", "/v1/batches", catalog.keys["admin"],
                                 json={"sku": "VIP", "pool": "nope", "generate": {"count": 1}})
    assert missing.json()["error"]["code"] == "POOL_NOT_FOUND"


async def test_freeze_blocks_sale_and_unfreeze_restores(catalog: Api) -> None:
    api = catalog
    frozen = await api.admin("POST", "/v1/codes/freeze", {"code": CODES[0]}, 200)
    assert frozen == {"changed": 1, "unchanged": 0}
    stock = await api.admin("GET", "/v1/skus/VIP/stock")
    assert (stock["frozen"], stock["available"]) == (1, len(CODES) - 1)
    await api.admin("POST", "/v1/codes/unfreeze", {"code": CODES[0]}, 200)
    assert (await api.admin("GET", "/v1/skus/VIP/stock"))["available"] == len(CODES)
    two = await api.call("POST", "/v1/codes/void", api.keys["admin"],
                         json={"code": CODES[0], "batch_id": 1})
    assert two.status_code == 400
    with api.runtime.db.read() as session:
        actions = [e.action for e in audit.query(session, object_type="code")]
    assert actions == ["code.freeze", "code.unfreeze"]


async def test_void_a_whole_batch(catalog: Api) -> None:
    result = await catalog.admin("POST", "/v1/codes/void", {"batch_id": 1}, 200)
    assert result["changed"] == len(CODES)
    stock = await catalog.admin("GET", "/v1/skus/VIP/stock")
    assert (stock["void"], stock["available"]) == (len(CODES), 0)


async def test_failed_lookups_lock_the_key_out_and_are_audited(catalog: Api) -> None:
    api = catalog
    api.runtime.risk.limits = RiskLimits(failures_max_per_key=5, failures_max_per_ip=1000)
    key = api.key("terminal", name="guesser")
    statuses = []
    for i in range(8):
        response = await api.call("POST", "/v1/verify", key, json={"code": f"GUESS-{i:06d}"})
        statuses.append(response.status_code)
    assert statuses == [404] * 5 + [429] * 3
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["details"]["limit"] == "failed_attempts"
    other = await api.call("POST", "/v1/verify", api.keys["terminal"], json={"code": "X-00001"})
    assert other.status_code == 404  # another key is not locked out
    with api.runtime.db.read() as session:
        entries = audit.query(session, action="risk.lockout")
    assert len(entries) == 1


async def test_per_key_rate_limit_refuses_with_retry_after(catalog: Api) -> None:
    api = catalog
    slow = api.key("terminal", limits={"verify_per_s_per_key": 1, "burst_s": 3})
    statuses = [(await api.call("POST", "/v1/verify", slow, json={"code": "RATE-0001"}))
                for _ in range(5)]
    assert [r.status_code for r in statuses][:3] == [404, 404, 404]
    assert statuses[-1].status_code == 429
    assert statuses[-1].json()["error"]["details"]["limit"] == "verify_per_s_per_key"


# ----- who may grant export; PIN lockouts ----------------------------------------------------


async def test_only_a_holder_of_export_may_grant_it_and_the_grant_is_audited(api: Api) -> None:
    minted = await api.call("POST", "/v1/keys", api.keys["admin"],
                            json={"role": "admin", "scopes": ["admin", "export"]})
    assert minted.status_code == 403
    assert minted.json()["error"]["code"] == "FORBIDDEN"
    assert minted.json()["error"]["details"]["scope"] == "export"
    holder = api.key("admin", scopes=["admin", "export"], name="security officer")
    granted = await api.call("POST", "/v1/keys", holder,
                             json={"role": "admin", "scopes": ["admin", "export"]})
    assert granted.status_code == 201
    entries = (await api.admin("GET", "/v1/audit?action=key.create"))["entries"]
    last = entries[-1]["details"]
    assert last["scopes"] == ["admin", "export"] and last["granted_by"] == holder.split("_")[1]
    plain = await api.call("POST", "/v1/keys", api.keys["admin"], json={"role": "terminal"})
    assert plain.status_code == 201


async def test_wrong_pins_lock_a_code_for_everyone_and_admins_unlock_it(catalog: Api) -> None:
    api = catalog
    sold = (await api.call("POST", "/v1/orders", api.keys["agent"], json={
        "sku": "VIP", "quantity": 1, "client_order_id": "pin-1"})).json()["codes"][0]
    tills = [api.key("terminal", name=f"till {i}") for i in range(3)]
    answers = []
    for attempt in range(12):  # rotating keys do not reset the count
        response = await api.call("POST", "/v1/verify", tills[attempt % 3],
                                  json={"code": sold["code"], "pin": f"{attempt:06d}x"})
        answers.append(response.json()["error"]["code"])
    assert answers[:9] == ["PIN_MISMATCH"] * 9 and answers[9:] == ["CODE_LOCKED"] * 3
    right = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                           json={"code": sold["code"], "pin": sold["pin"], "request_id": "r"})
    assert right.status_code == 429 and right.json()["error"]["code"] == "CODE_LOCKED"
    assert int(right.headers["retry-after"]) == right.json()["error"]["details"]["retry_after_s"]
    locked = await api.admin("GET", "/v1/codes/locked", expect=200)
    [item] = locked["items"]
    assert sold["code"] not in str(locked)
    audited = (await api.admin("GET", "/v1/audit?action=code.locked"))["entries"]
    assert [entry["object_id"] for entry in audited] == [str(item["code_id"])]
    denied = await api.call("POST", "/v1/codes/unlock", api.keys["terminal"],
                            json={"code_ids": [item["code_id"]]})
    assert denied.status_code == 403
    await api.admin("POST", "/v1/codes/unlock", {"code_ids": [item["code_id"]]}, 200)
    ok = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                        json={"code": sold["code"], "pin": sold["pin"], "request_id": "r"})
    assert ok.status_code == 200
async def test_admins_list_lockouts_a_page_at_a_time_and_lift_them(catalog: Api) -> None:
    api = catalog
    api.runtime.risk.limits = RiskLimits(failures_max_per_key=1)
    keys = [api.key("terminal", name=f"guesser {i}") for i in range(3)]
    for key in keys:
        assert (await api.call("POST", "/v1/verify", key, json={"code": "GUESS-0001"})
                ).status_code == 404
        assert (await api.call("POST", "/v1/verify", key, json={"code": "GUESS-0002"})
                ).status_code == 429
    first = await api.admin("GET", "/v1/lockouts?limit=2", expect=200)
    assert len(first["items"]) == 2 and first["next"]
    second = await api.admin("GET", f"/v1/lockouts?limit=2&cursor={first['next']}", expect=200)
    assert len(second["items"]) == 1 and second["next"] is None
    subjects = [item["subject"] for item in first["items"] + second["items"]]
    assert sorted(subjects) == sorted(f"key:{key.split('_')[1]}" for key in keys)
    forged = await api.call("GET", "/v1/lockouts?cursor=bm90LWEtY3Vyc29y", api.keys["admin"])
    assert forged.status_code == 400
    assert forged.json()["error"]["details"]["field"] == "cursor"
    assert (await api.call("GET", "/v1/lockouts", api.keys["terminal"])).status_code == 403
    assert (await api.call("DELETE", f"/v1/lockouts/{subjects[0]}", api.keys["terminal"])
            ).status_code == 403
    lifted = await api.admin("DELETE", f"/v1/lockouts/{subjects[0]}", expect=200)
    assert lifted["subject"] == subjects[0] and lifted["failures"] == 1
    freed = next(key for key in keys if subjects[0].endswith(key.split("_")[1]))
    assert (await api.call("POST", "/v1/verify", freed, json={"code": "GUESS-0003"})
            ).status_code == 404
    again = await api.call("DELETE", f"/v1/lockouts/{subjects[1]}x", api.keys["admin"])
    assert again.json()["error"]["code"] == "LOCKOUT_NOT_FOUND"
    bad = await api.call("DELETE", "/v1/lockouts/nonsense", api.keys["admin"])
    assert bad.json()["error"]["code"] == "INVALID_ARGUMENT"
    with api.runtime.db.read() as session:
        unlocks = audit.query(session, action="risk.unlock")
    assert [(e.object_id, e.actor) for e in unlocks] == [
        (subjects[0], api.keys["admin"].split("_")[1])]


async def test_batches_are_listed_newest_first_by_sku_and_status(catalog: Api) -> None:
    api = catalog
    await api.admin("POST", "/v1/batches", {"sku": "VIP", "generate": {"count": 2}}, 201)
    everything = await api.admin("GET", "/v1/batches", expect=200)
    assert [(b["batch_id"], b["sku"]) for b in everything["items"]] == [
        (3, "VIP"), (2, "GIFT"), (1, "VIP")]
    assert not any(code in str(everything) for code in CODES)
    vip = await api.admin("GET", "/v1/batches?sku=VIP&limit=1", expect=200)
    more = await api.admin("GET", f"/v1/batches?sku=VIP&limit=1&cursor={vip['next']}",
                           expect=200)
    assert [b["batch_id"] for b in vip["items"] + more["items"]] == [3, 1]
    assert more["next"] is None
    assert (await api.admin("GET", "/v1/batches?status=failed", expect=200))["items"] == []
    for query in ("status=lost", "cursor=WzEsImEiXQ", "limit=0"):
        bad = await api.call("GET", f"/v1/batches?{query}", api.keys["admin"])
        assert bad.status_code in (400, 422), query
    assert (await api.call("GET", "/v1/batches", api.keys["agent"])).status_code == 403


async def test_pools_are_listed_newest_first_with_shared_last(api: Api) -> None:
    for name, agent in (("p-one", None), ("p-two", "A2"), ("p-three", "A1")):
        body = {"pool": name} if agent is None else {"pool": name, "agent_id": agent}
        await api.admin("POST", "/v1/pools", body, 201)
    names = []
    cursor = None
    while True:
        page = await api.admin("GET", "/v1/pools?limit=2" + (f"&cursor={cursor}" if cursor
                                                             else ""), expect=200)
        names += [p["pool"] for p in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert names == ["p-three", "p-two", "p-one", "shared"]
    of_a1 = await api.admin("GET", "/v1/pools?agent_id=A1", expect=200)
    assert [p["pool"] for p in of_a1["items"]] == ["p-three"]  # an agent has one channel pool
    assert (await api.call("GET", "/v1/pools", api.keys["terminal"])).status_code == 403


async def test_a_state_change_that_changes_nothing_writes_nothing(catalog: Api) -> None:
    api = catalog
    first = await api.admin("POST", "/v1/codes/freeze", {"code": CODES[0]}, 200)
    assert first == {"changed": 1, "unchanged": 0}
    await api.admin("POST", "/v1/codes/void", {"code": CODES[1]}, 200)
    appended = api.runtime.engine.appended()
    with api.runtime.db.read() as session:
        before = len(audit.query(session, limit=1000))
    again = await api.admin("POST", "/v1/codes/freeze", {"code": CODES[0]}, 200)
    assert again == {"changed": 0, "unchanged": 1}
    void = await api.admin("POST", "/v1/codes/unfreeze", {"code": CODES[1]}, 200)
    assert void == {"changed": 0, "unchanged": 1}
    batch = await api.admin("POST", "/v1/codes/void", {"batch_id": 1}, 200)
    assert batch["changed"] == len(CODES) - 1  # the code voided already is not counted again
    with api.runtime.db.read() as session:
        after = audit.query(session, limit=1000)
    assert [e.action for e in after[before:]] == ["code.void"]  # only the change that changed
    assert api.runtime.engine.appended() > appended  # the batch void was journaled
    story = await api.admin("POST", "/v1/codes/trace", {"code": CODES[0]}, 200)
    assert [e["action"] for e in story["audit"]].count("code.freeze") == 1
