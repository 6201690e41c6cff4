"""Logging in and out, TOTP enrolment, invitations and one's own account (password, sessions,
recovery codes): the pages in front of the console and the portal (``/auth/...``)."""

from web.pages.auth.pages import ROUTES, home_of

__all__ = ["ROUTES", "home_of"]
