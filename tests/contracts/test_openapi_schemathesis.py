"""The OpenAPI contract: every operation answers as ``/openapi.json`` says it does.

Goal: for generated requests, valid and invalid alike, no operation answers 5xx, every status is
documented (each operation declares ``default`` as the error envelope), every body matches the
schema documented for its status, and every response has a documented content type; and the
success answers random requests cannot reach (an order delivered, a hold confirmed, a code
redeemed and rolled back, a retry of each) match their schemas too.

Method: schemathesis builds one test per operation from the app's own schema (examples,
coverage and fuzzing phases, positive and negative data) and sends the cases in-process through
its ASGI transport to one running app (SQLite and the file journal in a temporary directory, no
network). Schemathesis runs the app's lifespan itself, as an ASGI server would: its client
starts the lifespan once per app on its own event loop, where every request then runs (the
store can be opened only once, so the test must not enter the lifespan a second time as
``tests/api/conftest.py`` does), and the module fixture ends it, closing the store. Hypothesis
settings are explicit and derandomized, with a bounded number of examples, so a run is
repeatable and stays within its time budget; the repository's hypothesis profile does not
apply. A scripted story then builds each success case by hand and validates its answer with the
same checks. Requests carry an admin key, or an agent key for orders and holds (admins cannot
buy). Risk limits are off, so that generated bad codes do not lock the key out of verify and
redeem after 30 failures and leave the rest of the run testing only the lockout. An operation
with a known bug is a strict xfail (``KNOWN_BUGS``), so its fix shows as an XPASS failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cardsvc.access.risk import RiskLimits
from cardsvc.agents.credentials import create_key
from cardsvc.runtime import Runtime
from server.app import create_app
from server.settings import Settings

EXAMPLES_PER_OPERATION_MAX = 50
"""Fuzzed cases per operation (the examples and coverage phases add their own fixed ones): the
whole module takes about 15 s on a 2-core machine at this bound."""
SEED = 20_240_601
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
AGENT_PATHS = ("/v1/orders", "/v1/holds")
"""Operations under these paths need an agent's key; everything else runs with an admin's."""

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"mode": "all", "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
})
# The schema is the app's own; building it touches no data directory (only the lifespan does).
SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(data_dir=Path("unused"))).openapi(), config=CONFIG
)


@dataclass(frozen=True)
class Running:
    """The app under test, with its lifespan entered, and a key for each kind of caller."""

    app: Any
    admin_key: str
    agent_key: str

    def headers_for(self, path: str) -> dict[str, str]:
        key = self.agent_key if path.startswith(AGENT_PATHS) else self.admin_key
        return {"authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, status: int, **parts: Any) -> Any:
        """Sends a hand-made case (``body``, ``path_parameters``, ``query``), validates the
        answer with :data:`CHECKS`, asserts its status and returns its JSON body."""
        case = SCHEMA[path][method].Case(**parts)
        response = case.call_and_validate(app=self.app, headers=self.headers_for(path),
                                          checks=CHECKS)
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("contract") / "data",
                              risk=RiskLimits(enabled=False)))
    try:
        # Entering the client starts the lifespan, which stays up until shutdown_lifespans.
        with asgi.get_client(cast(Any, app)) as client:
            services = cast(Runtime, app.state.runtime)
            _, admin_key = create_key(services.db, role="admin", name="contract admin")
            auth = {"authorization": f"Bearer {admin_key}"}
            created = client.post("/v1/agents", json={"agent_id": "A1", "name": "A1"},
                                  headers=auth)
            assert created.status_code == 201, created.text
            _, agent_key = create_key(services.db, role="agent", agent_id="A1")
            seed_catalog(client, auth)
        yield Running(app=app, admin_key=admin_key, agent_key=agent_key)
    finally:
        asgi.shutdown_lifespans()


def seed_catalog(client: Any, auth: dict[str, str]) -> None:
    """A small catalog, so that some generated requests can name a SKU that exists."""
    for body in ({"sku": "VIP", "name": "VIP month"},
                 {"sku": "GIFT", "name": "Gift", "uses_per_code": 3,
                  "redeem_requires_sale": False}):
        assert client.post("/v1/skus", json=body, headers=auth).status_code == 201
    for sku in ("VIP", "GIFT"):
        response = client.post("/v1/batches", json={"sku": sku, "generate": {"count": 20}},
                               headers=auth)
        assert response.status_code == 201, response.text
        response = client.put("/v1/prices", json={"sku": sku, "grade": "standard",
                                                  "price_minor": 100, "currency": "CNY"},
                              headers=auth)
        assert response.status_code == 200, response.text
    response = client.post("/v1/agents/A1/deposits", headers=auth, json={
        "amount_minor": 10**12, "currency": "CNY", "reference": "contract-seed"})
    assert response.status_code == 201, response.text


KNOWN_BUGS: dict[str, str] = {}
"""Operations with a bug the fuzzer finds, by operation label: their tests are strict xfails
(remove an entry once its bug is fixed, or the test fails as XPASS)."""


@pytest.fixture
def known_bug(request: pytest.FixtureRequest) -> None:
    """Marks the running operation's test as a strict xfail when it is in KNOWN_BUGS."""
    label = request.node.name.partition("[")[2].removesuffix("]")
    if label in KNOWN_BUGS:
        request.applymarker(pytest.mark.xfail(strict=True, raises=FailureGroup,
                                              reason=KNOWN_BUGS[label]))


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION_MAX,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_operation_answers_as_its_openapi_schema_documents(
    case: schemathesis.Case[Any], running: Running, known_bug: None
) -> None:
    case.call_and_validate(app=running.app, headers=running.headers_for(case.path),
                           checks=CHECKS)


def new_sku(running: Running, count: int) -> str:
    """A SKU of its own for a story, with ``count`` generated codes."""
    sku = f"story-{uuid.uuid4().hex[:12]}"
    running.call("POST", "/v1/skus", 201, body={"sku": sku, "name": "story"})
    running.call("POST", "/v1/batches", 201, body={"sku": sku, "generate": {"count": count}})
    running.call("PUT", "/v1/prices", 200, body={"sku": sku, "grade": "standard",
                                                 "price_minor": 100, "currency": "CNY"})
    return sku


def test_sale_answers_match_their_documented_schemas(running: Running) -> None:
    sku = new_sku(running, 10)
    batch = running.call("POST", "/v1/batches", 201, body={"sku": sku, "generate": {"count": 1}})
    running.call("GET", "/v1/batches/{batch_id}", 200,
                 path_parameters={"batch_id": batch["batch_id"]})
    running.call("GET", "/v1/skus/{sku}", 200, path_parameters={"sku": sku})
    order = running.call("POST", "/v1/orders", 201,
                         body={"sku": sku, "quantity": 2, "client_order_id": "story-1"})
    running.call("GET", "/v1/orders/{order_id}", 200,
                 path_parameters={"order_id": order["order_id"]})
    running.call("GET", "/v1/orders", 200, query={"client_order_id": "story-1"})
    hold = running.call("POST", "/v1/holds", 201,
                        body={"sku": sku, "quantity": 2, "ttl_seconds": 60})
    held = {"hold_id": hold["hold_id"]}
    running.call("GET", "/v1/holds/{hold_id}", 200, path_parameters=held)
    running.call("POST", "/v1/holds/{hold_id}/confirm", 201, path_parameters=held,
                 body={"client_order_id": "story-2"})
    released = running.call("POST", "/v1/holds", 201,
                            body={"sku": sku, "quantity": 1, "ttl_seconds": 60})
    running.call("DELETE", "/v1/holds/{hold_id}", 200,
                 path_parameters={"hold_id": released["hold_id"]})
    refused = running.call("POST", "/v1/orders", 409,
                           body={"sku": sku, "quantity": 100, "client_order_id": "story-3"})
    assert refused["error"]["code"] == "OUT_OF_STOCK"
    stock = running.call("GET", "/v1/skus/{sku}/stock", 200, path_parameters={"sku": sku})
    assert (stock["allocated"], stock["available"]) == (4, 7)


def test_redemption_answers_match_their_documented_schemas(running: Running) -> None:
    sku = new_sku(running, 5)
    order = running.call("POST", "/v1/orders", 201,
                         body={"sku": sku, "quantity": 3, "client_order_id": "redeem-story"})
    first, second, third = (item["code"] for item in order["codes"])
    running.call("POST", "/v1/verify", 200, body={"code": first})
    redeemed = running.call("POST", "/v1/redeem", 200, body={"code": first, "request_id": "r1"})
    again = running.call("POST", "/v1/redeem", 200, body={"code": first, "request_id": "r1"})
    assert again == redeemed
    twice = running.call("POST", "/v1/redeem", 409, body={"code": first, "request_id": "r2"})
    assert twice["error"]["code"] == "ALREADY_REDEEMED"
    running.call("POST", "/v1/redemptions/{redemption_id}/rollback", 200,
                 path_parameters={"redemption_id": redeemed["redemption_id"]},
                 body={"reason": "story"})
    batch = running.call("POST", "/v1/redeem/batch", 200, body={"items": [
        {"code": second, "request_id": "b1"}, {"code": "NO-SUCH-CODE-1234", "request_id": "b2"}]})
    assert (batch["redeemed"], batch["failed"]) == (1, 1)
    for action in ("freeze", "unfreeze", "void"):
        running.call("POST", f"/v1/codes/{action}", 200, body={"code": third})
    unknown = running.call("POST", "/v1/verify", 404, body={"code": "NO-SUCH-CODE-1234"})
    assert unknown["error"]["code"] == "CODE_NOT_FOUND"


def test_admin_answers_match_their_documented_schemas(running: Running) -> None:
    running.call("POST", "/v1/agents", 201, body={"agent_id": "story-agent", "name": "story"})
    running.call("GET", "/v1/agents", 200)
    running.call("GET", "/v1/agents/{agent_id}", 200, path_parameters={"agent_id": "A1"})
    key = running.call("POST", "/v1/keys", 201, body={"role": "terminal", "name": "story"})
    running.call("GET", "/v1/keys", 200, query={"include_revoked": True})
    running.call("DELETE", "/v1/keys/{key_id}", 200, path_parameters={"key_id": key["key_id"]})
    running.call("POST", "/v1/pools", 201, body={"pool": f"pool-{uuid.uuid4().hex[:8]}"})
    running.call("GET", "/v1/skus", 200)
    running.call("GET", "/readyz", 200)
    running.call("GET", "/healthz", 200)


def test_retried_order_answer_matches_its_documented_schema(running: Running) -> None:
    sku = new_sku(running, 2)
    body = {"sku": sku, "quantity": 1, "client_order_id": "retried"}
    first = running.call("POST", "/v1/orders", 201, body=body)
    assert running.call("POST", "/v1/orders", 200, body=body) == first


def test_retried_hold_confirm_answer_matches_its_documented_schema(running: Running) -> None:
    sku = new_sku(running, 2)
    hold = running.call("POST", "/v1/holds", 201,
                        body={"sku": sku, "quantity": 1, "ttl_seconds": 60})
    held = {"hold_id": hold["hold_id"]}
    body = {"client_order_id": "confirm-retried"}
    first = running.call("POST", "/v1/holds/{hold_id}/confirm", 201, path_parameters=held,
                         body=body)
    again = running.call("POST", "/v1/holds/{hold_id}/confirm", 200, path_parameters=held,
                         body=body)
    assert again == first
