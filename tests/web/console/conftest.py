"""Fixtures of the console, portal and login pages' tests: the whole service (API and web
pages over one runtime) in process, a small shop with its people, and a "browser" client that
fills CSRF tokens and logs people in with their TOTP codes.

* ``service``: ``create_app`` with its lifespan running, composed with its web pages
  (``server.app.Composed``), on a fast argon2 and a manual login clock (``service.clock``:
  TOTP steps move only when a test moves them, so replay tests never sleep).
* ``shop``: an owner (TOTP set up by ``cardsvc users create-owner``'s use case), staff users of
  each role (invited, password set, TOTP enrolled), a terminal user, agents A1 and A2 (A2 under
  nobody) with one user each, SKU VIP with 20 codes priced at 10.00 and both agents funded.
* ``visit(person)``: a :class:`Browser` logged in as that person; ``Browser()`` anonymous.

Browser tests (Playwright) start the same service under uvicorn with :func:`serve_service`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cardsvc.access import (
    ApprovalPolicy,
    Argon2Params,
    Logins,
    Principal,
    create_owner,
    invite_user,
    principal_of_user,
    totp_code,
)
from cardsvc.access.tables import User
from cardsvc.access.users import totp_step
from cardsvc.agents import create_agent_user
from cardsvc.catalog import BatchMeta, CodeInput
from cardsvc.runtime import Runtime
from server.app import Composed, create_app
from server.settings import Settings
from tests.web.conftest import ORIGIN, SERVER_START_TIMEOUT_S, Served, _free_port

FAST = Argon2Params(time_cost=1, memory_kib=8, parallelism=1)
PASSWORD = "correct staple battery horse"
CODES = [f"CONSOLE-{i:04d}-WXYZ" for i in range(20)]
PASSES = [f"PASS-{i:04d}-KLMN" for i in range(5)]
"""Codes of SKU PASS: single use, redeemable without a sale (a cinema pass sold at the door)."""
UA = "Mozilla/5.0 (cardsvc tests)"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """Wall time in ms for logins, moved by tests (starts at the real time)."""

    def __init__(self) -> None:
        self.now_ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class Person:
    """A user of the shop: login, password, TOTP secret (None: not enrolled)."""

    login: str
    role: str
    user_id: str
    secret: str | None
    agent_id: str | None = None
    last_step: int = 0

    def principal(self, runtime: Runtime) -> Principal:
        with runtime.db.read() as session:
            row = session.get(User, self.user_id)
            assert row is not None
            return principal_of_user(row)


@dataclass
class Service:
    app: Any
    asgi: Composed
    runtime: Runtime
    clock: Clock
    people: dict[str, Person] = field(default_factory=dict)

    def code_for(self, person: Person) -> str:
        """A TOTP code of ``person`` not used yet: the current step's, or (after a login in
        this step) the next one, moving the clock on when needed."""
        assert person.secret is not None
        step = totp_step(self.clock())
        if step <= person.last_step:
            self.clock.advance((person.last_step + 1 - step) * 30_000)
            step = totp_step(self.clock())
        person.last_step = step
        return totp_code(person.secret, step)


def service_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", argon2=FAST, approvals=ApprovalPolicy())


def _manual_clock(runtime: Runtime) -> Clock:
    clock = Clock()
    old = runtime.logins
    runtime.logins = Logins(runtime.db, runtime.keyring, passwords=old.passwords,
                            settings=old.settings, policy=old.policy, clock_ms=clock)
    return clock


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    app = create_app(service_settings(tmp_path))
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        yield Service(app, Composed(app, app.state.web), runtime, _manual_clock(runtime))


def _enrol(service: Service, person: Person) -> None:
    """Logs the person in (an enrolment session) and confirms a new TOTP secret."""
    logins = service.runtime.logins
    first = logins.login(person.login, PASSWORD, ip="10.0.0.1", user_agent=UA)
    enrolment = logins.begin_enrolment(first.token, user_agent=UA)
    person.secret = enrolment.secret_base32
    logins.complete_enrolment(first.token, service.code_for(person), ip="10.0.0.1",
                              user_agent=UA)


def add_staff(service: Service, login: str, role: str, *, enrol: bool = True) -> Person:
    runtime = service.runtime
    owner = service.people["owner"].principal(runtime)
    invitation = invite_user(runtime.db, owner, login=login, display_name=login.title(),
                             role=role)
    runtime.logins.accept_invitation(invitation.token, PASSWORD)
    person = Person(login, role, invitation.user["user_id"], None)
    if enrol and role != "terminal":
        _enrol(service, person)
    service.people[login] = person
    return person


def add_agent_user(service: Service, login: str, agent_id: str) -> Person:
    runtime = service.runtime
    owner = service.people["owner"].principal(runtime)
    invitation = create_agent_user(runtime.db, owner, agent_id=agent_id, login=login,
                                   display_name=f"{agent_id} user")
    runtime.logins.accept_invitation(invitation.token, PASSWORD)
    person = Person(login, "agent", invitation.user["user_id"], None, agent_id)
    service.people[login] = person
    return person


def make_shop(service: Service) -> Service:
    runtime = service.runtime
    created = create_owner(runtime.db, runtime.keyring, runtime.logins.passwords,
                           login="owner", password=PASSWORD, display_name="Olivia Owner",
                           now_ms=service.clock())
    service.people["owner"] = Person("owner", "owner", created.user["user_id"],
                                     created.totp.secret_base32)
    for login, role in (("fiona", "finance"), ("frank", "finance"), ("oscar", "operator"),
                        ("sue", "support")):
        add_staff(service, login, role)
    add_staff(service, "till", "terminal")
    actor = "user:" + created.user["user_id"]
    runtime.catalog.create_sku("VIP", "VIP month", actor=actor, cost_minor=500,
                               low_stock_threshold=5)
    runtime.batches.import_codes(
        BatchMeta(sku="VIP", supplier="Acme Cards", unit_cost_minor=500, currency="CNY"),
        [CodeInput(code, f"{i:06d}") for i, code in enumerate(CODES)], actor=actor)
    runtime.catalog.create_sku("PASS", "Cinema pass", actor=actor, redeem_requires_sale=False)
    runtime.batches.import_codes(BatchMeta(sku="PASS"), [CodeInput(code) for code in PASSES],
                                 actor=actor)
    runtime.price_lists.set_price(sku="VIP", price_minor=1000, currency="CNY",
                                  grade="standard", agent_id=None, visible=True, actor=actor,
                                  actor_agent_id=None)
    for agent_id in ("A1", "A2"):
        runtime.agent_updates.create(agent_id, f"Agent {agent_id}", {}, actor=actor,
                                     actor_agent_id=None)
        runtime.money.deposit(agent_id, 100_000, "CNY", f"seed-{agent_id}", actor=actor)
        add_agent_user(service, f"{agent_id.lower()}user", agent_id)
    return service


@pytest.fixture
def shop(service: Service) -> Service:
    return make_shop(service)


class Browser:
    """An httpx client of the service with a cookie jar, sending ``Origin`` like a browser and
    the CSRF token of the last form it saw (or of the page it fetches first)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        transport = httpx.ASGITransport(app=service.asgi, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url=ORIGIN,
                                      follow_redirects=False,
                                      headers={"user-agent": UA, "origin": ORIGIN})
        self.token: str | None = None

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(path, **kwargs)
        found = _TOKEN.search(response.text)
        if found is not None:
            self.token = found.group(1)
        return response

    async def post(self, path: str, data: dict[str, Any] | None = None, *,
                   form_page: str | None = None, token: bool = True,
                   files: Any = None) -> httpx.Response:
        """Posts a form: first GETs ``form_page`` (or reuses the last token) for the token."""
        if form_page is not None or self.token is None:
            await self.get(form_page or "/auth/login")
        body = dict(data or {})
        if token and self.token is not None:
            body = {"csrf_token": self.token, **body}
        if files is not None:
            return await self.http.post(path, data=body, files=files)
        return await self.http.post(path, data=body)

    async def login(self, person: Person, *, code: str | None = None) -> httpx.Response:
        if code is None and person.secret is not None:
            code = self.service.code_for(person)
        response = await self.post("/auth/login", {"login": person.login, "password": PASSWORD,
                                                   "code": code or ""},
                                   form_page="/auth/login")
        assert response.status_code == 303, response.text[:500]
        self.token = None
        return response

    async def close(self) -> None:
        await self.http.aclose()


@pytest.fixture
async def visit(shop: Service) -> AsyncIterator[Any]:
    """``await visit("owner")``: a logged-in browser of that person (closed after the test)."""
    made: list[Browser] = []

    async def open_browser(login: str | None = None) -> Browser:
        browser = Browser(shop)
        made.append(browser)
        if login is not None:
            await browser.login(shop.people[login])
        return browser

    yield open_browser
    for browser in made:
        await browser.close()


def error_of(html: str) -> str | None:
    found = re.search(r'data-error-code="([A-Z_]+)"', html)
    return found.group(1) if found else None


# ----- the service under uvicorn, for Playwright -----------------------------------------------


def serve_service(tmp_path: Path) -> tuple[Served, Service]:
    """The whole service (lifespan on) under uvicorn on a free loopback port, with the shop."""
    app = create_app(service_settings(tmp_path))
    asgi = Composed(app, app.state.web)
    port = _free_port()
    config = uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"service-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S * 2
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    runtime: Runtime = app.state.runtime
    service = Service(app, asgi, runtime, _manual_clock(runtime))
    return Served(f"http://127.0.0.1:{port}", server, thread), make_shop(service)


@pytest.fixture(scope="module")
def served_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Service]]:
    served, service = serve_service(tmp_path_factory.mktemp("service"))
    try:
        yield served.base_url, service
    finally:
        served.stop()
