"""The login pages. Each route reads its form, makes one call of ``cardsvc.access.Logins`` (in
a worker thread: argon2 takes ~140 ms) and renders or redirects.

* ``/auth/login``: login name, password and, when enrolled, a TOTP code or a recovery code in
  the same field. A new session every time (no session fixation): its token goes into the
  ``session`` cookie; a staff user not yet enrolled lands on the enrolment page. Every refusal
  is one sentence (LOGIN_FAILED tells nothing of which part was wrong); locks say how long.
* ``/auth/logout``: ends the session and deletes the cookie.
* ``/auth/enrol``: the QR code and secret of a new TOTP secret (re-enrolling needs a current
  code first), then its confirmation, which replaces the session (a new token) and shows the
  ten recovery codes once.
* ``/auth/invitation/{token}``: an invited user sets its password.
* ``/auth/account``: change the password (a new session), list and end one's sessions, make new
  recovery codes, set or remove one's alert address (alert mail goes there, in the page's
  language).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import segno
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsvc.access import TotpEnrolment, own_email, set_own_email
from cardsvc.errors import CardsvcError, ErrorCode
from web.forms import FormResult, TextField, read_form
from web.i18n import active, gettext
from web.pages.common import error_text, redirect, safe_next
from web.render import render_page, renderer_of
from web.security.csrf import SESSION_COOKIE
from web.sessions import (
    LOGIN_PATH,
    Visitor,
    client_ip,
    login_redirect,
    person_page,
    runtime_of,
    session_token,
    user_agent,
    visitor_of,
)

LOGIN_FIELDS = (TextField("login", max_chars=256), TextField("password", max_chars=1024),
                TextField("code", max_chars=64, required=False),
                TextField("next", max_chars=512, required=False))
CODE_FIELDS = (TextField("code", max_chars=64),
               TextField("secret", max_chars=64, required=False),
               TextField("uri", max_chars=512, required=False))
PASSWORD_FIELDS = (TextField("password", max_chars=1024), TextField("confirm", max_chars=1024))
CHANGE_FIELDS = (TextField("current", max_chars=1024), *PASSWORD_FIELDS)
SESSION_FIELDS = (TextField("session_id", max_chars=64),)
EMAIL_FIELDS = (TextField("email", max_chars=254, required=False),)
TOTP_PATTERN = re.compile(r"\d{6}")
ROLE_HOMES = {"owner": "/console", "operator": "/console", "finance": "/console",
              "support": "/console", "terminal": "/console/terminal", "agent": "/portal"}


def home_of(role: str) -> str:
    """Where a user of ``role`` starts after logging in."""
    return ROLE_HOMES.get(role, "/")


def _with_session(request: Request, response: Response, token: str) -> Response:
    cookies = renderer_of(request).cookies
    response.headers.append("set-cookie", cookies.header(request.scope, SESSION_COOKIE, token))
    return response


def _qr(uri: str) -> Markup:
    """The provisioning URI as an inline SVG QR code (paths only: no text, no style)."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, border=2, svgclass="qr",
                                                 title=gettext("QR code for your authenticator"))
    return Markup(svg)


async def login_page(request: Request) -> Response:
    """The login form (already logged in with a full session: go home)."""
    visitor = await visitor_of(request)
    target = safe_next(request.query_params.get("next"), "")
    if visitor is not None and visitor.info.stage == "full":
        return redirect(request, target or home_of(visitor.role))
    return await render_page(request, "auth/login.html", {"form": None, "next": target,
                                                          "problem": None})


async def login(request: Request) -> Response:
    """Logs in: the new session's cookie and a redirect (enrolment, ``next`` or home)."""
    form = await read_form(request, LOGIN_FIELDS)
    target = safe_next(form.value("next"), "")
    if not form.ok:
        return await _login_again(request, form, target, None, 422)
    code = form.value("code").replace(" ", "")
    totp, recovery = (code, None) if TOTP_PATTERN.fullmatch(code) else (None, code or None)
    runtime = runtime_of(request)
    try:
        result = await asyncio.to_thread(
            runtime.logins.login, form.value("login"), form.values.get("password", ""),
            ip=client_ip(request), totp_code=totp, recovery_code=recovery,
            user_agent=user_agent(request))
    except CardsvcError as error:
        if error.code not in (ErrorCode.LOGIN_FAILED, ErrorCode.LOGIN_LOCKED,
                              ErrorCode.RATE_LIMITED):
            raise
        status = 401 if error.code == ErrorCode.LOGIN_FAILED else 429
        headers = {}
        if "retry_after_s" in error.details:
            headers["retry-after"] = str(error.details["retry_after_s"])
        return await _login_again(request, form, target, error, status, headers)
    role = str(result.session.user["role"])
    path = "/auth/enrol" if result.session.stage == "enrol" else target or home_of(role)
    return _with_session(request, redirect(request, path), result.token)


async def _login_again(request: Request, form: FormResult, target: str,
                       error: CardsvcError | None, status: int,
                       headers: dict[str, str] | None = None) -> Response:
    problem = None if error is None else {"code": error.code.value, "text": error_text(error),
                                          "retry_after_s": error.details.get("retry_after_s")}
    return await render_page(request, "auth/login.html",
                             {"form": form, "next": target, "problem": problem},
                             status=status, headers=headers)


async def logout(request: Request) -> Response:
    """Ends the session (if any) and deletes its cookie."""
    token = session_token(request)
    if token:
        await asyncio.to_thread(runtime_of(request).logins.logout, token)
    response = redirect(request, LOGIN_PATH, flash=gettext("You are logged out."), level="info")
    cookies = renderer_of(request).cookies
    response.headers.append("set-cookie", cookies.delete_header(request.scope, SESSION_COOKIE))
    return response


# ----- TOTP enrolment -----


def _enrolment_context(enrolment: TotpEnrolment | None, *, secret: str = "", uri: str = "",
                       problem: str | None = None) -> dict[str, Any]:
    if enrolment is not None:
        secret, uri = enrolment.secret_base32, enrolment.provisioning_uri
    return {"secret": secret, "uri": uri, "qr": _qr(uri) if uri else None, "problem": problem,
            "grouped": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))}


async def enrol_page(request: Request) -> Response:
    """A new secret to scan (or, for a user already enrolled, the form asking a current code
    before a new phone can be set up)."""
    visitor = await visitor_of(request)
    if visitor is None:
        return login_redirect(request)
    if visitor.info.user["totp_enrolled"] and visitor.info.stage == "full":
        return await render_page(request, "auth/enrol_start.html", {"problem": None})
    return await _begin(request, visitor, None)


async def enrol_start(request: Request) -> Response:
    """Re-enrolment: a current code from the old phone, then a new secret."""
    visitor = await visitor_of(request)
    if visitor is None:
        return login_redirect(request)
    form = await read_form(request, CODE_FIELDS[:1])
    return await _begin(request, visitor, form.value("code") or None)


async def _begin(request: Request, visitor: Visitor, code: str | None) -> Response:
    runtime = runtime_of(request)
    try:
        enrolment = await asyncio.to_thread(runtime.logins.begin_enrolment, visitor.token,
                                            totp_code=code, user_agent=user_agent(request))
    except CardsvcError as error:
        if error.code != ErrorCode.TOTP_INVALID:
            raise
        return await render_page(request, "auth/enrol_start.html",
                                 {"problem": error_text(error)}, status=400)
    return await render_page(request, "auth/enrol.html", _enrolment_context(enrolment))


async def enrol_confirm(request: Request) -> Response:
    """Confirms the new secret with a first code: a new session, and the recovery codes shown
    once (this response only)."""
    visitor = await visitor_of(request)
    if visitor is None:
        return login_redirect(request)
    form = await read_form(request, CODE_FIELDS)
    runtime = runtime_of(request)
    try:
        result = await asyncio.to_thread(
            runtime.logins.complete_enrolment, visitor.token, form.value("code"),
            ip=client_ip(request), user_agent=user_agent(request))
    except CardsvcError as error:
        if error.code != ErrorCode.TOTP_INVALID:
            raise
        context = _enrolment_context(None, secret=form.value("secret"), uri=form.value("uri"),
                                     problem=error_text(error))
        return await render_page(request, "auth/enrol.html", context, status=400)
    home = home_of(str(result.login.session.user["role"]))
    page = await render_page(request, "auth/recovery_codes.html",
                             {"codes": result.recovery_codes, "home": home, "enrolled": True})
    return _with_session(request, page, result.login.token)


# ----- invitations -----


async def invitation_page(request: Request) -> Response:
    return await render_page(request, "auth/invitation.html", {"form": None, "problem": None})


async def accept_invitation(request: Request) -> Response:
    """Sets the invited user's password; then to the login page."""
    form = await read_form(request, PASSWORD_FIELDS)
    problem = None
    if form.ok and form.value("password") != form.value("confirm"):
        form.errors["confirm"] = gettext("The two passwords differ.")
    if form.ok:
        runtime = runtime_of(request)
        try:
            await asyncio.to_thread(runtime.logins.accept_invitation,
                                    request.path_params["token"], form.values["password"])
        except CardsvcError as error:
            if error.code == ErrorCode.PASSWORD_REJECTED:
                form.errors["password"] = error_text(error)
            elif error.code == ErrorCode.INVITATION_INVALID:
                problem = error_text(error)
            else:
                raise
        else:
            return redirect(request, LOGIN_PATH,
                            flash=gettext("Your password is set. Log in now."))
    status = 404 if problem is not None else 422
    return await render_page(request, "auth/invitation.html", {"form": form, "problem": problem},
                             status=status)


# ----- one's own account -----


@person_page
async def account(request: Request, me: Visitor) -> Response:
    """Profile, password form, live sessions (this one marked), recovery codes."""
    runtime = runtime_of(request)
    sessions = await asyncio.to_thread(runtime.logins.list_sessions, me.principal, me.user_id)
    email = await asyncio.to_thread(own_email, runtime.db, me.user_id)
    return await render_page(request, "auth/account.html", {
        "me": me.info.user, "sessions": sessions, "current": me.info.session_id,
        "form": None, "home": home_of(me.role), "email": email})


@person_page
async def set_email(request: Request, me: Visitor) -> Response:
    """One's alert address (empty: none), in the page's language."""
    form = await read_form(request, EMAIL_FIELDS)
    if not form.ok:
        return redirect(request, "/auth/account", flash=gettext("Check this value."),
                        level="error")
    try:
        await asyncio.to_thread(set_own_email, runtime_of(request).db, me.principal,
                                form.value("email") or None, locale=active().locale)
    except CardsvcError as error:
        if error.code != ErrorCode.INVALID_ARGUMENT:
            raise
        return redirect(request, "/auth/account", flash=error_text(error), level="error")
    return redirect(request, "/auth/account", flash=gettext("Your alert address is saved."))


@person_page
async def change_password(request: Request, me: Visitor) -> Response:
    """A new password: every session ends, this browser gets a new one."""
    form = await read_form(request, CHANGE_FIELDS)
    if form.ok and form.value("password") != form.value("confirm"):
        form.errors["confirm"] = gettext("The two passwords differ.")
    if form.ok:
        runtime = runtime_of(request)
        try:
            result = await asyncio.to_thread(
                runtime.logins.change_password, me.token, form.values["current"],
                form.values["password"], ip=client_ip(request), user_agent=user_agent(request))
        except CardsvcError as error:
            if error.code == ErrorCode.PASSWORD_REJECTED:
                form.errors["password"] = error_text(error)
            elif error.code in (ErrorCode.LOGIN_FAILED, ErrorCode.LOGIN_LOCKED,
                                ErrorCode.RATE_LIMITED):
                form.errors["current"] = error_text(error)
            else:
                raise
        else:
            response = redirect(request, "/auth/account",
                                flash=gettext("Your password is changed. Other sessions "
                                              "ended."))
            return _with_session(request, response, result.token)
    runtime = runtime_of(request)
    sessions = await asyncio.to_thread(runtime.logins.list_sessions, me.principal, me.user_id)
    return await render_page(request, "auth/account.html", {
        "me": me.info.user, "sessions": sessions, "current": me.info.session_id,
        "form": form, "home": home_of(me.role),
        "email": await asyncio.to_thread(own_email, runtime.db, me.user_id)}, status=422)


@person_page
async def revoke_session(request: Request, me: Visitor) -> Response:
    form = await read_form(request, SESSION_FIELDS)
    await asyncio.to_thread(runtime_of(request).logins.revoke_session, me.principal,
                            form.value("session_id"))
    return redirect(request, "/auth/account", flash=gettext("The session has ended."))


@person_page
async def revoke_others(request: Request, me: Visitor) -> Response:
    ended = await asyncio.to_thread(runtime_of(request).logins.revoke_all, me.principal,
                                    me.user_id, keep_session_id=me.info.session_id)
    return redirect(request, "/auth/account",
                    flash=gettext("%(count)d other sessions ended.") % {"count": ended})


@person_page
async def new_recovery_codes(request: Request, me: Visitor) -> Response:
    form = await read_form(request, CODE_FIELDS[:1])
    try:
        codes = await asyncio.to_thread(runtime_of(request).logins.regenerate_recovery_codes,
                                        me.token, form.value("code"),
                                        user_agent=user_agent(request))
    except CardsvcError as error:
        if error.code != ErrorCode.TOTP_INVALID:
            raise
        return redirect(request, "/auth/account", flash=error_text(error), level="error")
    return await render_page(request, "auth/recovery_codes.html",
                             {"codes": codes, "home": "/auth/account", "enrolled": False})


ROUTES = [
    Route("/auth/login", login_page, methods=["GET"], name="auth_login_page"),
    Route("/auth/login", login, methods=["POST"], name="auth_login"),
    Route("/auth/logout", logout, methods=["POST"], name="auth_logout"),
    Route("/auth/enrol", enrol_page, methods=["GET"], name="auth_enrol"),
    Route("/auth/enrol/start", enrol_start, methods=["POST"], name="auth_enrol_start"),
    Route("/auth/enrol/confirm", enrol_confirm, methods=["POST"], name="auth_enrol_confirm"),
    Route("/auth/invitation/{token}", invitation_page, methods=["GET"],
          name="auth_invitation"),
    Route("/auth/invitation/{token}", accept_invitation, methods=["POST"],
          name="auth_invitation_accept"),
    Route("/auth/account", account, methods=["GET"], name="auth_account"),
    Route("/auth/account/password", change_password, methods=["POST"], name="auth_password"),
    Route("/auth/account/email", set_email, methods=["POST"], name="auth_email"),
    Route("/auth/account/sessions/revoke", revoke_session, methods=["POST"],
          name="auth_revoke_session"),
    Route("/auth/account/sessions/revoke-others", revoke_others, methods=["POST"],
          name="auth_revoke_others"),
    Route("/auth/account/recovery-codes", new_recovery_codes, methods=["POST"],
          name="auth_recovery_codes"),
]
