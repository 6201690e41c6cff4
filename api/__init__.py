"""The HTTP layer of cardsvc (FastAPI): ``create_app(settings)`` in ``api.app``.

It imports public ``cardsvc`` modules only and holds no business rules (STYLE.md, Layout):
routers (``api.routes``) call the domain through dependencies (``api.deps``), and every error
becomes the envelope of ``api.errors``, whose table is the only place HTTP statuses are chosen.
``cardsvc serve`` (``api.cli``) runs it on uvicorn. This module imports nothing, so listing the
command line's commands stays cheap.
"""
