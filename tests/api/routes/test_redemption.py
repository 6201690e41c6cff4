"""Terminals over HTTP: verify, redeem (single and batch), rollback.

Goal: the HTTP contract (docs/api.md) for terminals, and the invariants behind it: a code is
redeemed at most as many times as it allows however many requests race for it, a retried
request returns the first result, and a rollback restores exactly one use. Method: httpx over
ASGITransport against the real app (SQLite + the file journal in a temporary directory); each
test asserts statuses and error codes, never message text.
"""

from __future__ import annotations

import asyncio

import pytest

from cardsvc import audit
from cardsvc.catalog.batches import BatchMeta, CodeInput
from cardsvc.paging import decode_cursor
from cardsvc.times import iso
from tests.fixtures.http import CODES, PINS, Api

pytestmark = pytest.mark.anyio


async def sell(api: Api, quantity: int, ref: str = "o-1") -> list[dict[str, str]]:
    response = await api.call("POST", "/v1/orders", api.keys["agent"],
                              json={"sku": "VIP", "quantity": quantity, "client_order_id": ref})
    assert response.status_code == 201, response.text
    codes: list[dict[str, str]] = response.json()["codes"]
    return codes


async def test_verify_reports_status_of_sold_and_unsold_codes(catalog: Api) -> None:
    api = catalog
    unsold = await api.call("POST", "/v1/verify", api.keys["terminal"],
                            json={"code": CODES[0], "pin": PINS[0]})
    assert unsold.status_code == 200
    assert unsold.json()["status"] == "not_sold"
    no_pin = await api.call("POST", "/v1/verify", api.keys["terminal"], json={"code": CODES[0]})
    assert no_pin.json()["error"]["code"] == "PIN_MISMATCH"
    sold = (await sell(api, 1))[0]
    response = await api.call("POST", "/v1/verify", api.keys["terminal"],
                              json={"code": sold["code"], "pin": sold["pin"]})
    assert response.status_code == 200
    assert response.json() == {**response.json(), "status": "valid", "sku": "VIP",
                               "uses_left": 1}


async def test_redeem_once_then_retry_returns_first_result(catalog: Api) -> None:
    api = catalog
    sold = (await sell(api, 1))[0]
    body = {"code": sold["code"], "pin": sold["pin"], "request_id": "r-1"}
    first = await api.call("POST", "/v1/redeem", api.keys["terminal"], json=body)
    assert first.status_code == 200, first.text
    again = await api.call("POST", "/v1/redeem", api.keys["terminal"], json=body)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["uses_left"] == 0


async def test_second_request_id_is_already_redeemed_with_when_and_where(catalog: Api) -> None:
    api = catalog
    sold = (await sell(api, 1))[0]
    await api.call("POST", "/v1/redeem", api.keys["terminal"],
                   json={"code": sold["code"], "pin": sold["pin"], "request_id": "r-1"})
    other = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                           json={"code": sold["code"], "pin": sold["pin"], "request_id": "r-2"})
    assert other.status_code == 409
    error = other.json()["error"]
    assert error["code"] == "ALREADY_REDEEMED"
    assert error["details"]["redeemed_at"].endswith("Z")
    assert error["details"]["terminal"]


async def test_request_id_reused_for_another_code_is_refused(catalog: Api) -> None:
    api = catalog
    a, b = await sell(api, 2)
    await api.call("POST", "/v1/redeem", api.keys["terminal"],
                   json={"code": a["code"], "pin": a["pin"], "request_id": "same"})
    reused = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                            json={"code": b["code"], "pin": b["pin"], "request_id": "same"})
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert reused.json()["error"]["details"]["field"] == "code"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"code": "NO-SUCH-CODE-1", "request_id": "x"}, 404, "CODE_NOT_FOUND"),
        ({"code": CODES[0], "pin": "999999", "request_id": "x"}, 409, "PIN_MISMATCH"),
        ({"code": CODES[0], "request_id": 5}, 422, "VALIDATION_ERROR"),
        ({"code": CODES[0]}, 422, "VALIDATION_ERROR"),
        ({"code": CODES[0], "request_id": "x", "extra": 1}, 422, "VALIDATION_ERROR"),
        ({"code": "x" * 300, "request_id": "x"}, 422, "VALIDATION_ERROR"),
        ({"code": "", "request_id": "x"}, 422, "VALIDATION_ERROR"),
        ({"code": CODES[0], "request_id": ""}, 422, "VALIDATION_ERROR"),
    ],
)
async def test_bad_redeem_requests_get_clear_errors_and_change_nothing(
    catalog: Api, body: dict[str, object], status: int, code: str
) -> None:
    api = catalog
    before = await api.admin("GET", "/v1/skus/VIP/stock")
    response = await api.call("POST", "/v1/redeem", api.keys["terminal"], json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await api.admin("GET", "/v1/skus/VIP/stock") == before


async def test_unsold_code_cannot_be_redeemed(catalog: Api) -> None:
    api = catalog
    response = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                              json={"code": CODES[5], "pin": PINS[5], "request_id": "u"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NOT_SOLD"


async def test_racing_redeems_of_one_code_succeed_exactly_once(catalog: Api) -> None:
    api = catalog
    sold = (await sell(api, 1))[0]

    async def attempt(i: int) -> int:
        response = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                                  json={"code": sold["code"], "pin": sold["pin"],
                                        "request_id": f"race-{i}"})
        return response.status_code

    statuses = await asyncio.gather(*(attempt(i) for i in range(32)))
    assert statuses.count(200) == 1
    assert statuses.count(409) == 31
    stock = await api.admin("GET", "/v1/skus/VIP/stock")
    assert stock["redeemed"] == 1


async def test_multi_use_code_redeems_exactly_its_uses(catalog: Api) -> None:
    api = catalog
    # Generated GIFT codes cannot be read back (by design); import a known one.
    api.runtime.batches.import_codes(BatchMeta("GIFT"), [CodeInput("GIFT-KNOWN-0001")],
                                      actor="test")
    statuses = await asyncio.gather(*(
        api.call("POST", "/v1/redeem", api.keys["terminal"],
                 json={"code": "GIFT-KNOWN-0001", "request_id": f"g-{i}"})
        for i in range(10)))
    assert [r.status_code for r in statuses].count(200) == 3


async def test_batch_redeem_gives_one_result_per_item(catalog: Api) -> None:
    api = catalog
    a, b = await sell(api, 2)
    items = [
        {"code": a["code"], "pin": a["pin"], "request_id": "b-1"},
        {"code": a["code"], "pin": a["pin"], "request_id": "b-2"},
        {"code": "NO-SUCH-CODE-9", "request_id": "b-3"},
        {"code": b["code"], "pin": "000000", "request_id": "b-4"},
        {"code": b["code"], "pin": b["pin"], "request_id": "b-5"},
    ]
    response = await api.call("POST", "/v1/redeem/batch", api.keys["terminal"],
                              json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["redeemed"] == 2
    outcome = [r["ok"] or r["error"]["code"] for r in body["results"]]
    assert outcome == [True, "ALREADY_REDEEMED", "CODE_NOT_FOUND", "PIN_MISMATCH", True]
    replay = await api.call("POST", "/v1/redeem/batch", api.keys["terminal"],
                            json={"items": items[:1]})
    first = body["results"][0]["redemption"]
    assert replay.json()["results"][0]["redemption"] == first


async def test_batch_redeem_over_1000_items_is_refused(catalog: Api) -> None:
    api = catalog
    items = [{"code": f"C{i:08d}", "request_id": f"r{i}"} for i in range(1001)]
    response = await api.call("POST", "/v1/redeem/batch", api.keys["terminal"],
                              json={"items": items})
    assert response.status_code == 422


async def test_rollback_restores_one_use_once_and_is_audited(catalog: Api) -> None:
    api = catalog
    sold = (await sell(api, 1))[0]
    redeemed = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                              json={"code": sold["code"], "pin": sold["pin"], "request_id": "r"})
    rid = redeemed.json()["redemption_id"]
    path = f"/v1/redemptions/{rid}/rollback"
    first = await api.call("POST", path, api.keys["terminal"], json={"reason": "customer"})
    assert first.status_code == 200, first.text
    assert first.json()["uses_left"] == 1
    assert first.json()["rolled_back_at"]
    again = await api.call("POST", path, api.keys["terminal"], json={"reason": "customer"})
    assert again.json() == first.json()
    verify = await api.call("POST", "/v1/verify", api.keys["terminal"],
                            json={"code": sold["code"], "pin": sold["pin"]})
    assert verify.json()["status"] == "valid"
    with api.runtime.db.read() as session:
        entries = audit.query(session, action="redemption.rollback")
    assert [e.details["redemption_id"] for e in entries] == [rid]


async def test_rollback_of_unknown_or_foreign_redemption_is_not_found(catalog: Api) -> None:
    api = catalog
    sold = (await sell(api, 1))[0]
    redeemed = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                              json={"code": sold["code"], "pin": sold["pin"], "request_id": "r"})
    rid = redeemed.json()["redemption_id"]
    other = api.key("terminal", name="till 2")
    foreign = await api.call("POST", f"/v1/redemptions/{rid}/rollback", other,
                             json={"reason": "x"})
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "REDEMPTION_NOT_FOUND"
    missing = await api.call("POST", "/v1/redemptions/999999/rollback", api.keys["terminal"],
                             json={"reason": "x"})
    assert missing.json()["error"]["code"] == "REDEMPTION_NOT_FOUND"


async def test_terminal_limited_to_skus_cannot_see_other_skus(catalog: Api) -> None:
    api = catalog
    sold = (await sell(api, 1))[0]
    gift_only = api.key("terminal", skus=["GIFT"])
    verify = await api.call("POST", "/v1/verify", gift_only, json={"code": sold["code"]})
    assert verify.status_code == 404
    redeem = await api.call("POST", "/v1/redeem", gift_only,
                            json={"code": sold["code"], "pin": sold["pin"], "request_id": "s"})
    assert redeem.status_code == 404
    assert (await api.admin("GET", "/v1/skus/VIP/stock"))["redeemed"] == 0


# ----- replays after a rollback; one not-found; opaque ids --------------------------


async def test_replay_after_rollback_is_redemption_rolled_back_over_http(catalog: Api) -> None:
    api = catalog
    first, second = await sell(api, 2, ref="rb")
    redeemed = await api.call("POST", "/v1/redeem", api.keys["terminal"], json={
        "code": first["code"], "pin": first["pin"], "request_id": "same"})
    rid = redeemed.json()["redemption_id"]
    batch = {"items": [{"code": second["code"], "pin": second["pin"], "request_id": "b-same"}]}
    batch_first = await api.call("POST", "/v1/redeem/batch", api.keys["terminal"], json=batch)
    batch_rid = batch_first.json()["results"][0]["redemption"]["redemption_id"]
    for redemption_id in (rid, batch_rid):
        rolled = await api.call("POST", f"/v1/redemptions/{redemption_id}/rollback",
                                api.keys["terminal"], json={"reason": "support"})
        assert rolled.status_code == 200
    replay = await api.call("POST", "/v1/redeem", api.keys["terminal"], json={
        "code": first["code"], "pin": first["pin"], "request_id": "same"})
    assert replay.status_code == 409
    error = replay.json()["error"]
    assert error["code"] == "REDEMPTION_ROLLED_BACK"
    assert error["details"]["redemption_id"] == rid and error["details"]["rolled_back_at_ms"]
    again = await api.call("POST", "/v1/redeem/batch", api.keys["terminal"], json=batch)
    [item] = again.json()["results"]
    assert not item["ok"] and item["error"]["code"] == "REDEMPTION_ROLLED_BACK"
    assert item["error"]["details"]["redemption_id"] == batch_rid


async def test_one_not_found_for_unknown_forged_and_another_terminals_redemptions(
    catalog: Api,
) -> None:
    api = catalog
    [sold] = await sell(api, 1, ref="nf")
    redeemed = await api.call("POST", "/v1/redeem", api.keys["terminal"], json={
        "code": sold["code"], "pin": sold["pin"], "request_id": "nf-1"})
    rid = redeemed.json()["redemption_id"]
    assert isinstance(rid, str) and rid.startswith("rdm_")
    other = api.key("terminal", name="till 2")
    bodies = set()
    for key, target in ((other, rid), (api.keys["terminal"], "999"),
                        (api.keys["terminal"], rid[:10] + ("z" if rid[10] != "z" else "y")
                         + rid[11:]),
                        (api.keys["terminal"], "rdm_" + "a" * 26)):
        refused = await api.call("POST", f"/v1/redemptions/{target}/rollback", key,
                                 json={"reason": "probe"})
        assert refused.status_code == 404
        error = refused.json()["error"]
        bodies.add((error["code"], error["message"], tuple(sorted(error["details"]))))
    assert len(bodies) == 1
async def test_redemptions_are_listed_by_terminal_and_time_a_page_at_a_time(
        catalog: Api) -> None:
    api = catalog
    engine = api.runtime.engine
    sold = await sell(api, 3)
    till2 = api.key("terminal", name="till 2")
    t0 = engine.now_ms()
    made = []
    for i, (item, key) in enumerate(zip(sold, (api.keys["terminal"], till2,
                                               api.keys["terminal"]), strict=True)):
        engine.set_clock_ms(t0 + i * 60_000)
        response = await api.call("POST", "/v1/redeem", key, json={
            "code": item["code"], "pin": item["pin"], "request_id": f"list-{i}"})
        made.append(response.json()["redemption_id"])
    await api.call("POST", f"/v1/redemptions/{made[0]}/rollback", api.keys["terminal"],
                   json={"reason": "mistake"})
    everything = await api.admin("GET", "/v1/redemptions", expect=200)
    assert [r["redemption_id"] for r in everything["items"]] == made[::-1]
    assert everything["items"][-1]["rolled_back_at"] and everything["next"] is None
    assert not any(item["code"] in str(everything) for item in sold)
    first = await api.admin("GET", "/v1/redemptions?limit=2", expect=200)
    assert decode_cursor(first["next"], (int, str))[1].startswith("rdm_")  # counts nothing
    rest = await api.admin("GET", f"/v1/redemptions?limit=2&cursor={first['next']}", expect=200)
    assert [r["redemption_id"] for r in first["items"] + rest["items"]] == made[::-1]
    till1_id = api.keys["terminal"].split("_")[1]
    by_till = await api.admin("GET", f"/v1/redemptions?terminal={till1_id}", expect=200)
    assert [r["redemption_id"] for r in by_till["items"]] == [made[2], made[0]]
    window = await api.call("GET", "/v1/redemptions", api.keys["admin"], params={
        "since": iso(t0 + 60_000), "until": iso(t0 + 120_000)})
    assert [r["redemption_id"] for r in window.json()["items"]] == [made[1]]
    own = (await api.call("GET", "/v1/redemptions", till2)).json()
    assert [r["redemption_id"] for r in own["items"]] == [made[1]]
    spying = (await api.call("GET", f"/v1/redemptions?terminal={till1_id}", till2)).json()
    assert spying == {"items": [], "next": None}
    assert (await api.call("GET", "/v1/redemptions", api.keys["agent"])).status_code == 403
    for query in ("cursor=WyJ4IiwxXQ", "cursor=WzEsLTFd", "cursor=WzEsMTg0NDY3NDQwNzM3MDk1NTE2MTZd",
                  "since=tomorrow", "limit=500"):
        bad = await api.call("GET", f"/v1/redemptions?{query}", api.keys["admin"])
        assert bad.status_code in (400, 422), query


async def test_redemptions_of_a_code_are_found_from_the_body_and_audited(catalog: Api) -> None:
    api = catalog
    sold = (await sell(api, 1))[0]
    redeemed = await api.call("POST", "/v1/redeem", api.keys["terminal"], json={
        "code": sold["code"], "pin": sold["pin"], "request_id": "s-1"})
    found = await api.admin("POST", "/v1/redemptions/search", {"code": sold["code"]}, 200)
    assert [r["redemption_id"] for r in found["items"]] == [redeemed.json()["redemption_id"]]
    unsold = await api.admin("POST", "/v1/redemptions/search", {"code": CODES[-1]}, 200)
    assert unsold == {"items": [], "next": None}
    missing = await api.call("POST", "/v1/redemptions/search", api.keys["admin"],
                             json={"code": "NO-SUCH-CODE-0001"})
    assert missing.json()["error"]["code"] == "CODE_NOT_FOUND"
    for key in (api.keys["terminal"], api.keys["agent"]):
        refused = await api.call("POST", "/v1/redemptions/search", key,
                                 json={"code": sold["code"]})
        assert refused.status_code == 403
    with api.runtime.db.read() as session:
        entries = audit.query(session, action="redemption.search")
    assert len(entries) == 2
    assert sold["code"] not in str([e.details for e in entries])
