"""Over HTTP: catalog fields and their audited edits, batch facts and the downloadable
report, exports (scope, watermark, audit), a code's whole story, the audit log and its check.

Goal: every catalog change and every export leaves an audit entry naming who did what; only an
``export`` key gets plaintext and every exported row carries the export id; the report and the
story never contain a full code; a tampered audit chain is reported with its first broken entry.
Method: httpx over ASGITransport against the real app (SQLite); the audit table is tampered
with directly for the chain check.
"""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import update

from cardsvc.audit.tables import AuditEntry
from tests.fixtures.http import CODES, PINS, Api, export_rows

pytestmark = pytest.mark.anyio


async def test_sku_fields_are_kept_and_edits_are_audited_with_before_and_after(api: Api) -> None:
    body = {"sku": "NETFLIX-1M", "name": "Netflix 1 month", "kind": "direct_recharge",
            "currency": "USD", "face_value_minor": 1599, "cost_minor": 1200,
            "retail_price_minor": 1499, "purchase_limit_per_buyer": 2,
            "low_stock_threshold": 10}
    created = await api.admin("POST", "/v1/skus", body, 201)
    assert {k: created[k] for k in body} == body
    assert created["on_sale"] is True
    changed = await api.admin("PATCH", "/v1/skus/NETFLIX-1M",
                              {"retail_price_minor": 1399, "on_sale": False}, 200)
    assert (changed["retail_price_minor"], changed["on_sale"]) == (1399, False)
    page = await api.admin("GET", "/v1/audit?action=sku.update")
    [entry] = page["entries"]
    assert entry["details"] == {"before": {"retail_price_minor": 1499, "on_sale": True},
                                "after": {"retail_price_minor": 1399, "on_sale": False}}
    assert entry["actor"]


@pytest.mark.parametrize("body", [{"kind": "bitcoin"}, {"currency": "usd"},
                                  {"cost_minor": -1}, {"uses_per_code": 3}, {"sku": "X"},
                                  {"on_sale": None}, {"name": None}])
async def test_bad_sku_edits_change_nothing(catalog: Api, body: dict[str, object]) -> None:
    before = await catalog.admin("GET", "/v1/skus/VIP")
    response = await catalog.call("PATCH", "/v1/skus/VIP", catalog.keys["admin"], json=body)
    assert response.status_code in (400, 422)
    assert await catalog.admin("GET", "/v1/skus/VIP") == before


async def test_low_stock_flag_follows_the_threshold(catalog: Api) -> None:
    assert (await catalog.admin("GET", "/v1/skus/VIP/stock"))["low_stock"] is False
    await catalog.admin("PATCH", "/v1/skus/VIP", {"low_stock_threshold": len(CODES)}, 200)
    assert (await catalog.admin("GET", "/v1/skus/VIP/stock"))["low_stock"] is True


async def test_batch_facts_and_report_of_duplicates_masked(catalog: Api) -> None:
    body = {"sku": "VIP", "supplier": "Acme Cards", "unit_cost_minor": 900, "currency": "CNY",
            "purchase_date": "2026-11-01",
            "codes": [{"code": "NEW-CODE-0001"}, {"code": CODES[3]}, {"code": "NEW-CODE-0001"}]}
    created = await catalog.admin("POST", "/v1/batches", body, 201)
    batch = await catalog.admin("GET", f"/v1/batches/{created['batch_id']}")
    assert (batch["supplier"], batch["unit_cost_minor"], batch["purchase_date"]) == (
        "Acme Cards", 900, "2026-11-01")
    assert (batch["imported"], batch["duplicates"], batch["processed"]) == (1, 2, 3)
    report = await catalog.call("GET", f"/v1/batches/{created['batch_id']}/report",
                                catalog.keys["admin"])
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert [(r["line"], r["reason"]) for r in rows] == [("1", "duplicate"), ("2", "duplicate")]
    assert rows[0]["code"].endswith(CODES[3][-4:])
    assert CODES[3] not in report.text and "NEW-CODE-0001" not in report.text


async def test_generated_codes_follow_the_format_and_pass_their_check(api: Api) -> None:
    await api.admin("POST", "/v1/skus", {"sku": "GEN", "name": "generated",
                                         "redeem_requires_sale": False}, 201)
    body = {"sku": "GEN", "generate": {"count": 50, "prefix": "GV", "pin_length": 6}}
    created = await api.admin("POST", "/v1/batches", body, 201)
    assert created["imported"] == 50
    exporter = api.key("admin", scopes=["admin", "export"])
    response = await api.call("POST", "/v1/exports", exporter,
                              json={"batch_id": created["batch_id"]})
    rows = export_rows(response.text)
    assert len(rows) == 50
    assert all(r["code"].startswith("GV") and len(r["pin"]) == 6 for r in rows)
    assert len({r["code"] for r in rows}) == 50
    ok = await api.call("POST", "/v1/verify", api.keys["terminal"],
                        json={"code": rows[0]["code"].lower(), "pin": rows[0]["pin"]})
    assert ok.status_code == 200


async def test_export_needs_the_export_scope_and_is_watermarked_and_audited(
    catalog: Api,
) -> None:
    api = catalog
    denied = await api.call("POST", "/v1/exports", api.keys["admin"], json={"batch_id": 1})
    assert denied.status_code == 403
    exporter = api.key("admin", scopes=["admin", "export"], name="finance")
    response = await api.call("POST", "/v1/exports", exporter, json={"batch_id": 1})
    assert response.status_code == 200
    export_id = response.headers["x-export-id"]
    first = response.text.split("\n", 1)[0]
    assert export_id in first
    rows = export_rows(response.text)
    assert {r["export_id"] for r in rows} == {export_id}
    assert sorted((r["code"], r["pin"]) for r in rows) == sorted(zip(CODES, PINS, strict=True))
    page = await api.admin("GET", "/v1/audit?action=code.export")
    [entry] = page["entries"]
    assert entry["details"] == {"export_id": export_id, "codes": len(CODES)}
    assert entry["object_id"] == "1"


async def test_trace_tells_a_codes_whole_story_without_revealing_it(catalog: Api) -> None:
    api = catalog
    order = await api.call("POST", "/v1/orders", api.keys["agent"],
                           json={"sku": "VIP", "quantity": 1, "client_order_id": "t-1"})
    sold = order.json()["codes"][0]
    redeemed = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                              json={"code": sold["code"], "pin": sold["pin"], "request_id": "r"})
    rid = redeemed.json()["redemption_id"]
    await api.call("POST", f"/v1/redemptions/{rid}/rollback", api.keys["terminal"],
                   json={"reason": "refund"})
    await api.admin("POST", "/v1/codes/freeze", {"code": sold["code"]}, 200)
    story = await api.admin("POST", "/v1/codes/trace", {"code": sold["code"]}, 200)
    assert sold["code"] not in str(story) and sold["pin"] not in str(story)
    assert story["state"] == "frozen"
    assert story["batch"]["batch_id"] == 1
    assert story["order"]["agent_id"] == "A1"
    assert story["redemptions"][0]["rollback_reason"] == "refund"
    events = [event["event"] for event in story["timeline"]]
    for expected in ("batch.import", "ordered", "delivered", "redeemed", "rolled_back",
                     "code.freeze"):
        assert expected in events, expected
    assert events.index("ordered") < events.index("redeemed") < events.index("rolled_back")


async def test_audit_verify_names_the_first_tampered_entry(catalog: Api) -> None:
    api = catalog
    intact = await api.admin("GET", "/v1/audit/verify")
    assert intact["ok"] is True and intact["entries_checked"] > 3
    with api.runtime.db.write() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3)
                        .values(actor="someone-else"))
    broken = await api.admin("GET", "/v1/audit/verify")
    assert (broken["ok"], broken["first_broken_seq"]) == (False, 3)


async def test_audit_pages_with_after_seq(catalog: Api) -> None:
    first = await catalog.admin("GET", "/v1/audit?limit=2")
    assert len(first["entries"]) == 2
    second = await catalog.admin("GET", f"/v1/audit?limit=2&after_seq={first['next_after_seq']}")
    assert second["entries"][0]["seq"] == first["entries"][-1]["seq"] + 1


async def test_mistyped_generated_code_is_refused_without_a_lookup(api: Api) -> None:
    await api.admin("POST", "/v1/skus", {"sku": "GEN", "name": "generated",
                                         "redeem_requires_sale": False}, 201)
    exporter = api.key("admin", scopes=["admin", "export"])
    created = await api.admin("POST", "/v1/batches",
                              {"sku": "GEN", "generate": {"count": 3, "prefix": "GZ"}}, 201)
    response = await api.call("POST", "/v1/exports", exporter,
                              json={"batch_id": created["batch_id"]})
    code = export_rows(response.text)[0]["code"]
    last = code[-1]
    typo = code[:-1] + ("2" if last != "2" else "3")  # one wrong character
    swapped = code[:3] + code[4] + code[3] + code[5:] if code[3] != code[4] else typo
    for mistyped in (typo, swapped):
        bad = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                             json={"code": mistyped, "request_id": f"r-{mistyped}"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "INVALID_CODE"
        assert bad.json()["error"]["details"]["reason"] in ("check_character", "format")
    good = await api.call("POST", "/v1/redeem", api.keys["terminal"],
                          json={"code": code.replace("-", " "), "request_id": "ok"})
    assert good.status_code == 200


async def test_reserved_prefixes_protect_generated_formats(api: Api) -> None:
    await api.admin("POST", "/v1/skus", {"sku": "GEN", "name": "g"}, 201)
    await api.admin("POST", "/v1/batches",
                    {"sku": "GEN", "generate": {"count": 2, "prefix": "GQ"}}, 201)
    imported = await api.call("POST", "/v1/batches", api.keys["admin"],
                              json={"sku": "GEN", "codes": [{"code": "gq-1234-5678"}]})
    assert imported.status_code == 400
    assert imported.json()["error"]["details"]["reason"] == "reserved_prefix"
    other_format = await api.call("POST", "/v1/batches", api.keys["admin"], json={
        "sku": "GEN", "generate": {"count": 2, "prefix": "GQ", "length": 20}})
    assert other_format.status_code == 400
    assert other_format.json()["error"]["details"]["field"] == "prefix"
