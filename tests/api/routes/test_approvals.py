"""Over HTTP: maker-checker on the API, and admin keys limited to the finer scopes.

Goal: with the deployment's default policy, a payout, a refund, an export and a batch void are
refused without an approval (APPROVAL_REQUIRED, nothing changes), run once with one that a
second person (a staff user, through the domain as the console does) approved, and never twice;
an admin key limited to ``withdrawals`` pays out but cannot touch the catalog, and a ``catalog``
key the reverse. Method: the real app over ASGITransport (SQLite); the checker is a finance
user made through ``cardsvc.access``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cardsvc.access import (
    ApprovalPolicy,
    Argon2Params,
    Principal,
    accept_invitation,
    create_owner,
    invite_user,
    principal_of_user,
)
from cardsvc.access.tables import User
from server.settings import Settings
from tests.fixtures.http import Api
from tests.fixtures.shop import stock_shop

pytestmark = pytest.mark.anyio
FAST = Argon2Params(time_cost=1, memory_kib=8, parallelism=1)
PASSWORD = "a long enough passphrase"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", approvals=ApprovalPolicy(), argon2=FAST)


def checker(api: Api) -> Principal:
    """A finance user (a second person) of a shop whose owner the test makes first."""
    runtime = api.runtime
    owner = create_owner(runtime.db, runtime.keyring, runtime.logins.passwords, login="owner",
                         password=PASSWORD, display_name="Owner")
    with runtime.db.read() as session:
        owner_row = session.get(User, owner.user["user_id"])
        assert owner_row is not None
    invitation = invite_user(runtime.db, principal_of_user(owner_row), login="fin",
                             display_name="Fin", role="finance")
    accept_invitation(runtime.db, runtime.logins.passwords, invitation.token, PASSWORD)
    with runtime.db.read() as session:
        row = session.get(User, invitation.user["user_id"])
        assert row is not None
        return principal_of_user(row)


async def test_a_payout_needs_an_approval_and_runs_once(catalog: Api) -> None:
    api = catalog
    fin = checker(api)
    made = await api.call("POST", "/v1/withdrawals", api.keys["agent"], json={
        "amount_minor": 500, "currency": "CNY", "reference": "w-1"})
    withdrawal_id = made.json()["withdrawal_id"]
    await api.admin("POST", f"/v1/withdrawals/{withdrawal_id}/approve", {}, 200)
    refused = await api.call("POST", f"/v1/withdrawals/{withdrawal_id}/paid", api.keys["admin"],
                             json={})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "APPROVAL_REQUIRED")
    request = {"action": "withdrawal_payout", "object_type": "withdrawal",
               "object_id": withdrawal_id, "reason": "weekly payout"}
    asked = await api.admin("POST", "/v1/approvals", request, 201)
    assert (await api.admin("POST", "/v1/approvals", request, 200))["approval_id"] == \
        asked["approval_id"]
    early = await api.call("POST", f"/v1/withdrawals/{withdrawal_id}/paid", api.keys["admin"],
                           json={"approval_id": asked["approval_id"]})
    assert early.json()["error"]["code"] == "APPROVAL_NOT_PENDING"
    api.runtime.approvals.approve(fin, asked["approval_id"])
    paid = await api.admin("POST", f"/v1/withdrawals/{withdrawal_id}/paid",
                           {"approval_id": asked["approval_id"]}, 200)
    assert paid["status"] == "paid"
    shown = await api.admin("GET", f"/v1/approvals/{asked['approval_id']}", None, 200)
    assert shown["status"] == "executed"
    listed = await api.admin("GET", "/v1/approvals?status=executed", None, 200)
    assert [item["approval_id"] for item in listed["items"]] == [asked["approval_id"]]


async def test_refund_export_and_batch_void_are_refused_without_approval(catalog: Api) -> None:
    api = catalog
    fin = checker(api)
    order = await api.call("POST", "/v1/orders", api.keys["agent"], json={
        "sku": "VIP", "quantity": 1, "client_order_id": "o-1"})
    order_id = order.json()["order_id"]
    refused = await api.call("POST", f"/v1/orders/{order_id}/refund", api.keys["admin"],
                             json={"reason": "customer"})
    assert refused.json()["error"]["code"] == "APPROVAL_REQUIRED"
    state = await api.call("GET", f"/v1/orders/{order_id}", api.keys["agent"])
    assert state.json()["status"] == "fulfilled"
    void = await api.call("POST", "/v1/codes/void", api.keys["admin"], json={"batch_id": 1})
    assert void.json()["error"]["code"] == "APPROVAL_REQUIRED"
    stock = await api.admin("GET", "/v1/skus/VIP/stock", None, 200)
    assert stock["void"] == 0
    asked = await api.admin("POST", "/v1/approvals", {
        "action": "refund", "object_type": "order", "object_id": order_id,
        "reason": "customer"}, 201)
    api.runtime.approvals.approve(fin, asked["approval_id"])
    done = await api.admin("POST", f"/v1/orders/{order_id}/refund",
                           {"reason": "customer", "approval_id": asked["approval_id"]}, 200)
    assert done["status"] == "refunded"
    # The finance user cannot check an export: only owners hold the export scope.
    export_key = api.key("admin", scopes=["admin", "export"])
    export = await api.call("POST", "/v1/exports", export_key, json={"batch_id": 1})
    assert export.json()["error"]["code"] == "APPROVAL_REQUIRED"


async def test_a_retail_refund_needs_an_approval_and_runs_once(catalog: Api) -> None:
    api = catalog
    fin = checker(api)
    runtime = api.runtime
    stock_shop(runtime)
    runtime.challenges.enabled = False
    started = await api.http.post("/v1/shop/checkouts", json={
        "sku": "GAME100", "quantity": 1, "email": "buyer@example.com", "channel_id": "sandbox"})
    order_id = started.json()["order"]["order_id"]
    attempt = (await runtime.checkout.admin_order(order_id)).attempt_id
    await runtime.checkout.simulate_sandbox(attempt, scenario="paid")
    refused = await api.call("POST", f"/v1/retail-orders/{order_id}/refund", api.keys["admin"],
                             json={"reason": "customer"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "APPROVAL_REQUIRED")
    assert (await runtime.checkout.admin_order(order_id)).status == "delivered"
    agents_kind = await api.call("POST", "/v1/approvals", api.keys["admin"], json={
        "action": "refund", "object_type": "order", "object_id": order_id, "reason": "x"})
    runtime.approvals.approve(fin, agents_kind.json()["approval_id"])
    mismatched = await api.call("POST", f"/v1/retail-orders/{order_id}/refund",
                                api.keys["admin"], json={
                                    "reason": "customer",
                                    "approval_id": agents_kind.json()["approval_id"]})
    assert mismatched.json()["error"]["code"].startswith("APPROVAL_")
    assert (await runtime.checkout.admin_order(order_id)).status == "delivered"
    asked = await api.admin("POST", "/v1/approvals", {
        "action": "refund", "object_type": "retail_order", "object_id": order_id,
        "reason": "customer"}, 201)
    runtime.approvals.approve(fin, asked["approval_id"])
    done = await api.admin("POST", f"/v1/retail-orders/{order_id}/refund",
                           {"reason": "customer", "approval_id": asked["approval_id"]}, 200)
    assert done["status"] == "refunded"
    shown = await api.admin("GET", f"/v1/approvals/{asked['approval_id']}", None, 200)
    assert shown["status"] == "executed"
    report = await api.admin("GET", "/v1/reconciliation", None, 200)
    assert report["ok"], report["differences"]


async def test_admin_keys_limited_to_finer_scopes_reach_only_their_work(catalog: Api) -> None:
    api = catalog
    finance = api.key("admin", scopes=["withdrawals", "ledger"])
    stock_keeper = api.key("admin", scopes=["catalog"])
    balance = await api.call("GET", "/v1/agents/A1/balance", finance)
    assert balance.status_code == 200
    skus = await api.call("GET", "/v1/skus", finance)
    assert (skus.status_code, skus.json()["error"]["code"]) == (403, "FORBIDDEN")
    assert (await api.call("GET", "/v1/skus", stock_keeper)).status_code == 200
    money = await api.call("GET", "/v1/agents/A1/balance", stock_keeper)
    assert money.status_code == 403
    keys = await api.call("GET", "/v1/keys", finance)
    assert keys.status_code == 403
