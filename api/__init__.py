"""The JSON API of cardsvc (FastAPI routers), composed into the app by ``server/``.

It imports the domain's package faces only and holds no business rules (STYLE.md, Layout):
routers (``api.routes``) translate a request into one domain call through dependencies
(``api.deps``) and the result back into JSON (``api.models`` and each router's response
models); every error becomes the envelope of ``api.errors``, whose table is the only place HTTP
statuses are chosen.
"""
