"""Reusable FastAPI dependencies, declared once as ``Annotated`` types so routers stay thin.

``StoreDep`` is the durable store the app's lifespan opened (``api.app.create_app``). Later
issues add the authenticated caller here (``CurrentKey``) in the same style.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from cardsvc.store import Store


def get_store(request: Request) -> Store:
    """The app's store, set on ``app.state.store`` by the lifespan before the first request."""
    return cast(Store, request.app.state.store)


StoreDep = Annotated[Store, Depends(get_store)]
