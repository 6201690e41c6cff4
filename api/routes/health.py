"""Health probes: ``GET /healthz`` (the process answers) and ``GET /readyz`` (the store is
recovered and its journal is writable, with the durability guarantee in force).

``/readyz`` answers 503 ``JOURNAL_UNAVAILABLE`` while the journal writer is failing: requests
that change state would then wait for durability and time out, so a load balancer should send
them elsewhere. The body of either answer carries the store's status, so an operator sees which
guarantee holds (docs/durability.md) and why the journal is failing.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from api.deps import RuntimeDep
from api.errors import ErrorEnvelope
from cardsvc.errors import ErrorCode, make_error

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Guarantee(BaseModel):
    """What an acknowledged effect is worth with the configured journal sink."""

    sink: str
    level: Literal["no_loss", "bounded_loss", "unprotected"]
    description: str
    settings: dict[str, str]


class Recovery(BaseModel):
    """What recovery found and did at start-up."""

    snapshot_seq: int
    snapshots_rejected: list[dict[str, Any]]
    journal_chunks: int
    records_replayed: int
    last_seq: int
    torn_tail: dict[str, Any] | None
    seconds: float
    codes: int


class Durability(BaseModel):
    """The store's status (``cardsvc.store.Store.status``). Fields the store adds later pass
    through unchanged."""

    model_config = ConfigDict(extra="allow")

    sink: str
    guarantee: Guarantee
    appended: int
    durable: int
    next_seq: int
    last_snapshot_seq: int
    journal_writable: bool
    last_error: str | None
    recovery: Recovery


class Ready(BaseModel):
    status: Literal["ready"]
    durability: Durability


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, Any]:
    """Liveness: the process is up and answering. Never touches the store."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": ErrorEnvelope, "description": "JOURNAL_UNAVAILABLE"}},
)
async def readyz(runtime: RuntimeDep) -> dict[str, Any]:
    """Readiness: recovered (the store is open only after recovery) and the journal writable.
    Raises JOURNAL_UNAVAILABLE (503) while the journal writer's last attempt failed."""
    status = runtime.store.status()
    if not status["journal_writable"]:
        raise make_error(
            ErrorCode.JOURNAL_UNAVAILABLE,
            "the journal is failing; changes cannot be made durable until it recovers",
            {"durability": status},
        )
    return {"status": "ready", "durability": status}
