"""Who is logged in on this request, and the guards every console and portal page goes through.

The login session lives in the ``session`` cookie (``__Host-session``: Secure, HttpOnly,
SameSite=Strict, no Max-Age; the server's idle and absolute timeouts end it), whose value is
the session token of ``cardsvc.access.Logins``. Every page request authenticates it once
(:func:`visitor_of`, cached on the request) with the browser's user agent, so a token copied to
another browser is refused when sessions are bound to it (the default).

The guards (:func:`console_page`, :func:`portal_page`, :func:`person_page`) wrap a page
endpoint ``async def page(request, me) -> Response``:

* nobody logged in: a redirect to the login page, which comes back here afterwards;
* a staff user who must still enrol TOTP: a redirect to the enrolment page;
* the console is for platform users (staff and terminal roles), the portal for agents' users:
  anyone else gets the 403 page, whatever path they type;
* ``scope``: the page's work needs that scope of the caller (``Principal.require``: the 403
  page otherwise), the same scope the JSON API's route for that work names.

Pages then call one domain use case with ``me.principal`` (or ``me.actor`` / ``me.agent_id``);
who may do what to which object stays in the domain.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsvc.access import Principal, SessionInfo
from cardsvc.errors import CardsvcError, ErrorCode, make_error
from cardsvc.runtime import Runtime
from web.render import renderer_of
from web.security.csrf import SESSION_COOKIE

LOGIN_PATH = "/auth/login"
ENROL_PATH = "/auth/enrol"
USER_AGENT_CHARS_MAX = 512
_NOBODY = object()

Endpoint = Callable[[Request, "Visitor"], Awaitable[Response]]


@dataclass(frozen=True)
class Visitor:
    """The person logged in on this request: its session (``info``) and the token of its cookie
    (left out of ``repr``), for the few calls that take the token (enrolment, password)."""

    info: SessionInfo
    token: str

    @property
    def principal(self) -> Principal:
        return self.info.principal

    @property
    def actor(self) -> str:
        return self.info.principal.actor

    @property
    def role(self) -> str:
        return str(self.info.user["role"])

    @property
    def agent_id(self) -> str | None:
        agent = self.info.user.get("agent_id")
        return None if agent is None else str(agent)

    @property
    def user_id(self) -> str:
        return str(self.info.user["user_id"])

    @property
    def name(self) -> str:
        return str(self.info.user["display_name"])

    def __repr__(self) -> str:
        return f"Visitor(user_id={self.user_id!r}, role={self.role!r})"

    def may(self, scope: str) -> bool:
        """Whether the visitor holds ``scope`` (for showing a link or a button; the page and
        the domain check again)."""
        try:
            self.principal.require(scope)
        except CardsvcError:
            return False
        return True


def runtime_of(request: Request) -> Runtime:
    """The service's runtime (``server/`` sets it on the web app's state at start-up)."""
    return cast(Runtime, request.app.state.runtime)


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:USER_AGENT_CHARS_MAX]


def session_token(request: Request) -> str | None:
    """The session cookie's value on this request, if any."""
    return renderer_of(request).cookies.read(request.scope, SESSION_COOKIE)


async def visitor_of(request: Request) -> Visitor | None:
    """The live session of this request (None: nobody, or a session that ended). Enrolment-only
    sessions are returned too (``info.stage == "enrol"``); the guards send them to enrol."""
    cached = getattr(request.state, "visitor", None)
    if cached is not None:
        return None if cached is _NOBODY else cast(Visitor, cached)
    token = session_token(request)
    found: Visitor | None = None
    if token:
        runtime = runtime_of(request)
        try:
            info = await asyncio.to_thread(runtime.logins.authenticate, token,
                                           user_agent=user_agent(request),
                                           allow_enrolment=True)
            found = Visitor(info, token)
        except CardsvcError as error:
            if error.code != ErrorCode.UNAUTHENTICATED:
                raise
    request.state.visitor = _NOBODY if found is None else found
    return found


def login_redirect(request: Request) -> Response:
    """To the login page, coming back to this page (its path and query) afterwards."""
    here = request.url.path + ("?" + request.url.query if request.url.query else "")
    root = str(request.scope.get("root_path", ""))
    return RedirectResponse(f"{root}{LOGIN_PATH}?next={quote(here, safe='')}", status_code=303)


def _is_platform(visitor: Visitor) -> bool:
    return visitor.agent_id is None and visitor.role != "agent"


def _guard(area: str, scope: str | None) -> Callable[[Endpoint], Callable[[Request],
                                                                           Awaitable[Response]]]:
    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def page(request: Request) -> Response:
            visitor = await visitor_of(request)
            if visitor is None:
                return login_redirect(request)
            if visitor.info.stage != "full":
                root = str(request.scope.get("root_path", ""))
                return RedirectResponse(root + ENROL_PATH, status_code=303)
            if area == "console" and not _is_platform(visitor):
                raise make_error(ErrorCode.FORBIDDEN, "the console is for the platform's staff",
                                 {"reason": "not_staff"})
            if area == "portal" and visitor.agent_id is None:
                raise make_error(ErrorCode.FORBIDDEN, "the portal is for agents' users",
                                 {"reason": "not_agent"})
            if scope is not None:
                visitor.principal.require(scope)
            return await endpoint(request, visitor)

        return page

    return wrap


def console_page(scope: str | None = None) -> Callable[[Endpoint], Callable[[Request],
                                                                            Awaitable[Response]]]:
    """A staff console page needing ``scope`` (None: any platform user)."""
    return _guard("console", scope)


def portal_page(scope: str | None = None) -> Callable[[Endpoint], Callable[[Request],
                                                                           Awaitable[Response]]]:
    """An agents' portal page needing ``scope`` (None: any agent's user)."""
    return _guard("portal", scope)


def person_page(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A page for anyone logged in with a full session (the account pages)."""
    return _guard("any", None)(endpoint)


def shown_user(visitor: Visitor | None) -> dict[str, Any] | None:
    """What the header shows of the visitor (name and role), or None."""
    if visitor is None or visitor.info.stage != "full":
        return None
    return {"name": visitor.name, "role": visitor.role, "agent_id": visitor.agent_id}
