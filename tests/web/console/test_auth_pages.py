"""The login pages in process: logging in with a password and TOTP, lockouts, replay, session
fixation, CSRF, logout, invitations, enrolment and one's own sessions.

Goal: every way in is through ``cardsvc.access.Logins`` with the one uniform refusal, the cookie
is a new ``__Host-`` session each time, and no form works without the token of the session that
rendered it. Method: the whole service over ASGITransport (``Browser`` keeps cookies and sends
``Origin``), assertions on status, ``data-error-code`` and the audit log, never on text.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cardsvc.access import invite_user, totp_code
from cardsvc.access.users import totp_step
from cardsvc.audit.tables import AuditEntry
from tests.web.console.conftest import PASSWORD, Browser, Service, add_staff, error_of

pytestmark = pytest.mark.anyio


def actions(service: Service) -> list[str]:
    with service.runtime.db.read() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


async def test_owner_logs_in_with_totp_and_lands_on_the_console(shop: Service) -> None:
    browser = Browser(shop)
    answer = await browser.login(shop.people["owner"])
    assert answer.headers["location"] == "/console"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("__Host-session=")
    for part in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert part in cookie
    account = await browser.get("/auth/account")
    assert account.status_code == 200
    assert "login.success" in actions(shop)


async def test_wrong_password_missing_code_and_replayed_code_are_one_refusal(
        shop: Service) -> None:
    owner = shop.people["owner"]
    browser = Browser(shop)
    wrong = await browser.post("/auth/login", {"login": "owner", "password": "not it at all!",
                                               "code": shop.code_for(owner)},
                               form_page="/auth/login")
    assert (wrong.status_code, error_of(wrong.text)) == (401, "LOGIN_FAILED")
    missing = await browser.post("/auth/login", {"login": "owner", "password": PASSWORD},
                                 form_page="/auth/login")
    assert error_of(missing.text) == "LOGIN_FAILED"
    code = shop.code_for(owner)
    first = await browser.post("/auth/login", {"login": "owner", "password": PASSWORD,
                                               "code": code}, form_page="/auth/login")
    assert first.status_code == 303
    again = Browser(shop)
    replay = await again.post("/auth/login", {"login": "owner", "password": PASSWORD,
                                              "code": code}, form_page="/auth/login")
    assert (replay.status_code, error_of(replay.text)) == (401, "LOGIN_FAILED")
    with shop.runtime.db.read() as session:
        reasons = [entry.details.get("reason") for entry in session.scalars(
            select(AuditEntry).where(AuditEntry.action == "login.failure"))]
    # The replayed step is at or before the last accepted one: refused before any write.
    assert reasons == ["bad_password", "bad_totp", "bad_totp"]


async def test_five_failures_lock_the_login_from_that_address(shop: Service) -> None:
    browser = Browser(shop)
    for _ in range(5):
        failed = await browser.post("/auth/login", {"login": "sue", "password": "wrong wrong "
                                                    "wrong", "code": "000000"},
                                    form_page="/auth/login")
        assert failed.status_code == 401
    locked = await browser.post("/auth/login", {"login": "sue", "password": PASSWORD,
                                                "code": shop.code_for(shop.people["sue"])},
                                form_page="/auth/login")
    assert (locked.status_code, error_of(locked.text)) == (429, "LOGIN_LOCKED")
    assert int(locked.headers["retry-after"]) > 0
    assert "login.lockout" in actions(shop)


async def test_a_planted_session_cookie_is_never_adopted(shop: Service) -> None:
    browser = Browser(shop)
    browser.http.cookies.set("__Host-session", "attacker-chosen-value", domain="testserver")
    page = await browser.get("/console")
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login")
    answer = await browser.login(shop.people["owner"])
    issued = answer.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert issued != "attacker-chosen-value" and len(issued) >= 43
    thief = Browser(shop)
    thief.http.cookies.set("__Host-session", "attacker-chosen-value", domain="testserver")
    assert (await thief.get("/console")).status_code == 303


async def test_forms_are_refused_without_the_sessions_token(shop: Service) -> None:
    browser = Browser(shop)
    await browser.login(shop.people["owner"])
    page = await browser.get("/auth/account")
    assert page.status_code == 200
    none = await browser.post("/auth/account/sessions/revoke-others", token=False)
    assert (none.status_code, error_of(none.text)) == (403, "FORBIDDEN")
    assert 'data-error-reason="csrf_token_missing"' in none.text
    # A token rendered before this login (bound to no session) does not verify after it.
    stale = Browser(shop)
    await stale.get("/auth/login")
    old_token = stale.token
    await stale.login(shop.people["fiona"])
    refused = await stale.http.post("/auth/account/sessions/revoke-others",
                                    data={"csrf_token": old_token})
    assert 'data-error-reason="csrf_token_invalid"' in refused.text
    cross = await browser.http.post("/auth/account/sessions/revoke-others",
                                    data={"csrf_token": browser.token},
                                    headers={"origin": "https://evil.example"})
    assert 'data-error-reason="origin_mismatch"' in cross.text


async def test_logout_ends_the_session(shop: Service) -> None:
    browser = Browser(shop)
    await browser.login(shop.people["fiona"])
    await browser.get("/console")
    answer = await browser.post("/auth/logout", form_page="/auth/account")
    assert answer.status_code == 303
    assert "Max-Age=0" in answer.headers["set-cookie"]
    assert (await browser.get("/console")).status_code == 303


async def test_an_invited_user_sets_a_password_enrols_and_gets_recovery_codes(
        shop: Service) -> None:
    runtime = shop.runtime
    owner = shop.people["owner"].principal(runtime)
    invitation = invite_user(runtime.db, owner, login="newbie", display_name="New Bie",
                             role="operator")
    browser = Browser(shop)
    path = f"/auth/invitation/{invitation.token}"
    short = await browser.post(path, {"password": "short", "confirm": "short"}, form_page=path)
    assert short.status_code == 422
    done = await browser.post(path, {"password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 303
    reused = await browser.post(path, {"password": PASSWORD, "confirm": PASSWORD},
                                form_page=path)
    assert error_of(reused.text) == "INVITATION_INVALID"
    login = await browser.post("/auth/login", {"login": "newbie", "password": PASSWORD},
                               form_page="/auth/login")
    assert login.headers["location"] == "/auth/enrol"
    assert (await browser.get("/console")).headers["location"] == "/auth/enrol"
    enrol = await browser.get("/auth/enrol")
    assert enrol.status_code == 200 and "<svg" in enrol.text
    secret = enrol.text.split('name="secret" value="')[1].split('"')[0]
    wrong = await browser.post("/auth/enrol/confirm", {"code": "000000", "secret": secret})
    assert wrong.status_code == 400 and secret in wrong.text
    code = totp_code(secret, totp_step(shop.clock()))
    confirmed = await browser.post("/auth/enrol/confirm", {"code": code, "secret": secret})
    assert confirmed.status_code == 200
    assert confirmed.text.count("<li><code>") == 10
    assert (await browser.get("/console")).status_code == 200


async def test_own_sessions_are_listed_and_others_can_be_ended(shop: Service) -> None:
    person = shop.people["oscar"]
    laptop, phone = Browser(shop), Browser(shop)
    await laptop.login(person)
    await phone.login(person)
    page = await laptop.get("/auth/account")
    assert page.text.count('name="session_id"') >= 1
    ended = await laptop.post("/auth/account/sessions/revoke-others")
    assert ended.status_code == 303
    assert (await phone.get("/console")).status_code == 303
    assert (await laptop.get("/console")).status_code == 200


async def test_a_terminal_user_needs_no_totp_and_lands_on_the_terminal(shop: Service) -> None:
    browser = Browser(shop)
    answer = await browser.login(shop.people["till"])
    assert answer.headers["location"] == "/console/terminal"
    add_staff(shop, "late", "support", enrol=False)
    late = Browser(shop)
    first = await late.post("/auth/login", {"login": "late", "password": PASSWORD},
                            form_page="/auth/login")
    assert first.headers["location"] == "/auth/enrol"
