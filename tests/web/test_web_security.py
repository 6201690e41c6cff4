"""Goal: every response carries the security headers, cookies are ``__Host-`` (or the documented
``dev-`` fallback), and no unsafe request reaches a route without passing the origin and token
checks. Method: the app in-process through Starlette's httpx.AsyncClient on ``https://testserver``;
refusals are asserted by status and the error page's ``data-error-code``/``data-error-reason``,
never by text."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from tests.web.conftest import (
    ORIGIN,
    SAME_ORIGIN,
    TEST_SECRET,
    error_code,
    form_token,
    new_client,
)
from web import WebSettings, create_web
from web.security.cookies import CookiePolicy
from web.security.csrf import MULTIPART_PREFIX_BYTES_MAX
from web.security.headers import CONTENT_SECURITY_POLICY
from web.security.signing import Signer, b64encode

pytestmark = pytest.mark.anyio


async def test_every_response_has_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/", "/does-not-exist", "/static/css/site.css"):
        headers = (await client.get(path)).headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert "camera=(self)" in headers["permissions-policy"]
        assert headers["strict-transport-security"].startswith("max-age=")


def test_csp_forbids_inline_script_and_framing() -> None:
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no nonce
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"


async def test_html_is_never_cached_but_static_is(client: httpx.AsyncClient) -> None:
    assert (await client.get("/")).headers["cache-control"] == "no-store"
    assert (await client.get("/nope")).headers["cache-control"] == "no-store"


async def test_no_hsts_on_plain_http(web_app: Starlette) -> None:
    async with new_client(web_app, "http://testserver") as plain:
        assert "strict-transport-security" not in (await plain.get("/")).headers


async def test_csrf_cookie_is_host_prefixed_secure_httponly_strict(
        client: httpx.AsyncClient) -> None:
    cookie = (await client.get("/")).headers["set-cookie"]
    assert cookie.startswith("__Host-csrf=")
    assert "; Path=/" in cookie and "; Secure" in cookie and "; HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Domain" not in cookie


async def test_pages_without_forms_set_no_csrf_cookie(client: httpx.AsyncClient) -> None:
    assert "set-cookie" not in (await client.get("/demo/kit")).headers


def test_dev_cookies_only_when_enabled_and_only_on_plain_http() -> None:
    http_scope = {"type": "http", "scheme": "http", "headers": []}
    https_scope = {"type": "http", "scheme": "https", "headers": []}
    strict = CookiePolicy()
    dev = CookiePolicy(dev_plain_http=True)
    assert strict.name(http_scope, "csrf") == "__Host-csrf"
    assert "Secure" in strict.header(http_scope, "csrf", "x")
    assert dev.name(http_scope, "csrf") == "dev-csrf"
    assert "Secure" not in dev.header(http_scope, "csrf", "x")
    assert dev.name(https_scope, "csrf") == "__Host-csrf"
    assert CookiePolicy(tls_terminated=True, dev_plain_http=True).name(
        http_scope, "csrf") == "__Host-csrf"


async def test_post_with_token_succeeds(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", data={"csrf_token": token, "message": "hello"},
                           headers=SAME_ORIGIN)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_post_without_token_is_refused(client: httpx.AsyncClient) -> None:
    await form_token(client)
    response = await client.post("/demo/echo", data={"message": "hello"}, headers=SAME_ORIGIN)
    assert response.status_code == 403
    assert error_code(response.text) == ("FORBIDDEN", "csrf_token_missing")
    assert response.headers["content-type"].startswith("text/html")


async def test_post_without_the_cookie_is_refused(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    client.cookies.clear()
    response = await client.post("/demo/echo", data={"csrf_token": token, "message": "x"},
                           headers=SAME_ORIGIN)
    assert error_code(response.text) == ("FORBIDDEN", "csrf_cookie_missing")


@pytest.mark.parametrize("token", ["", "garbage", "a.b", "AAAAAAAAAAAAAAAAAAAAAA.AAAA", "x" * 500])
async def test_post_with_a_forged_token_is_refused(client: httpx.AsyncClient, token: str) -> None:
    await form_token(client)
    response = await client.post("/demo/echo", data={"csrf_token": token, "message": "x"},
                           headers=SAME_ORIGIN)
    assert response.status_code == 403
    assert error_code(response.text)[1] in ("csrf_token_invalid", "csrf_token_missing")


async def test_a_token_of_another_browser_is_refused(web_app: Starlette) -> None:
    async with new_client(web_app) as alice, new_client(web_app) as eve:
        stolen = await form_token(eve)
        await form_token(alice)
        response = await alice.post("/demo/echo", data={"csrf_token": stolen, "message": "x"},
                              headers=SAME_ORIGIN)
        assert error_code(response.text) == ("FORBIDDEN", "csrf_token_invalid")


async def test_tokens_are_bound_to_the_login_session(client: httpx.AsyncClient) -> None:
    client.cookies.set("__Host-session", "session-one")
    token = await form_token(client)
    client.cookies.set("__Host-session", "session-two")
    response = await client.post("/demo/echo", data={"csrf_token": token, "message": "x"},
                           headers=SAME_ORIGIN)
    assert error_code(response.text) == ("FORBIDDEN", "csrf_token_invalid")


async def test_each_render_gives_a_different_token_and_each_verifies(
        client: httpx.AsyncClient) -> None:
    first, second = await form_token(client), await form_token(client)
    assert first != second
    for token in (first, second):
        response = await client.post("/demo/echo", data={"csrf_token": token, "message": "x"},
                               headers=SAME_ORIGIN)
        assert response.status_code == 303


@pytest.mark.parametrize(("headers", "reason"), [
    ({"origin": "https://evil.example"}, "origin_mismatch"),
    ({"origin": "null"}, "origin_mismatch"),
    ({"origin": "http://testserver"}, "origin_mismatch"),  # downgraded scheme
    ({"referer": "https://evil.example/page"}, "referer_mismatch"),
    ({}, "origin_missing"),
    ({"origin": ORIGIN, "sec-fetch-site": "cross-site"}, "cross_site"),
])
async def test_foreign_or_unknown_origins_are_refused(
        client: httpx.AsyncClient, headers: dict[str, str], reason: str) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", data={"csrf_token": token, "message": "x"},
                           headers=headers)
    assert response.status_code == 403
    assert error_code(response.text) == ("FORBIDDEN", reason)


async def test_same_origin_referer_is_enough_without_origin(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", data={"csrf_token": token, "message": "x"},
                           headers={"referer": ORIGIN + "/"})
    assert response.status_code == 303


async def test_trusted_origins_may_post() -> None:
    settings = WebSettings(secret_key=TEST_SECRET, trusted_origins=("https://shop.example",))
    async with new_client(create_web(settings)) as shop:
        token = await form_token(shop)
        response = await shop.post("/demo/echo", data={"csrf_token": token, "message": "x"},
                             headers={"origin": "https://shop.example"})
        assert response.status_code == 303


async def test_token_in_header_is_accepted(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", data={"message": "x"},
                           headers={**SAME_ORIGIN, "x-csrf-token": token})
    assert response.status_code == 303


async def test_unsafe_methods_other_than_post_are_checked_too(client: httpx.AsyncClient) -> None:
    await form_token(client)
    for method in ("PUT", "PATCH", "DELETE"):
        response = await client.request(method, "/demo/echo", headers=SAME_ORIGIN)
        assert error_code(response.text) == ("FORBIDDEN", "csrf_token_missing"), method


async def test_multipart_token_first_is_accepted_and_the_body_still_reaches_the_route(
        client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", headers=SAME_ORIGIN,
                           files={"csrf_token": (None, token), "message": (None, "multi")})
    assert response.status_code == 303
    flashed = (await client.get("/")).text
    assert "multi" in flashed


async def test_multipart_token_not_first_is_refused(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", headers=SAME_ORIGIN,
                           files={"message": (None, "x" * (MULTIPART_PREFIX_BYTES_MAX + 10)),
                                  "csrf_token": (None, token)})
    assert error_code(response.text) == ("FORBIDDEN", "csrf_token_missing")


async def test_an_oversized_form_is_refused_before_the_route(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", headers=SAME_ORIGIN,
                           data={"csrf_token": token, "message": "x" * (70 * 1024)})
    assert response.status_code == 400
    assert error_code(response.text) == ("LIMIT_EXCEEDED", "form_too_large")


async def test_an_oversized_body_is_refused(client: httpx.AsyncClient) -> None:
    token = await form_token(client)
    response = await client.post("/demo/echo", headers={**SAME_ORIGIN, "x-csrf-token": token},
                           content=b"x" * (2 << 20))
    assert response.status_code == 400
    assert error_code(response.text) == ("LIMIT_EXCEEDED", "body_too_large")


def test_signer_rejects_other_purposes_tampering_and_age() -> None:
    signer = Signer([TEST_SECRET])
    token = signer.sign("flash", b"payload", now_s=1000)
    assert signer.unsign("flash", token, max_age_s=60, now_s=1030) == b"payload"
    assert signer.unsign("csrf", token, max_age_s=60, now_s=1030) is None
    assert signer.unsign("flash", token, max_age_s=60, now_s=1100) is None
    body, issued, mac = token.split(".")
    assert signer.unsign("flash", f"{b64encode(b'other')}.{issued}.{mac}", max_age_s=60,
                         now_s=1030) is None
    assert signer.unsign("flash", f"{body}.{int(issued) + 1}.{mac}", max_age_s=60,
                         now_s=1030) is None


def test_signer_verifies_with_previous_keys_after_rotation() -> None:
    old = Signer([TEST_SECRET])
    rotated = Signer([b"n" * 32, TEST_SECRET])
    token = old.sign("flash", b"x", now_s=5)
    assert rotated.unsign("flash", token, max_age_s=10, now_s=6) == b"x"
    assert Signer([b"n" * 32]).unsign("flash", token, max_age_s=10, now_s=6) is None
