"""The process that serves HTTP: the ASGI app that composes the JSON API (``api/``) and, as it
arrives, the web pages (``web/``) — ``server.app.create_app`` — with its lifespan (opening the
runtime, the recovery timer), the pure-ASGI middleware (``server.middleware``: the body bound,
the last-resort 500), the settings (``server.settings``) and ``cardsvc serve`` (``server.cli``).
It is the only package that imports both ``api`` and ``web``. This module imports nothing, so
listing the command line's commands stays cheap.
"""
