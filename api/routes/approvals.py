"""Maker-checker over HTTP: ask for a guarded action (a withdrawal payout, a refund, an export
of codes, a batch void), follow the request, cancel it, read the queue.

The checker is a person: approving and rejecting happen in the staff console (a staff user
other than the maker), never with an API key. Once approved, the maker (or the checker) runs the
action with its ``approval_id`` on the action's own endpoint, once. Each route is one call of
``cardsvc.access.Approvals``, which holds who may do what.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, Field

from api.deps import CallerDep, RuntimeDep
from api.models import Strict
from cardsvc.access import APPROVAL_ACTIONS, ApprovalInfo
from cardsvc.paging import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from cardsvc.times import iso

router = APIRouter(tags=["approvals"])

ApprovalPath = Annotated[str, Path(min_length=1, max_length=64)]


class ApprovalRequest(Strict):
    action: str = Field(description=" | ".join(APPROVAL_ACTIONS))
    object_type: str = Field(description="withdrawal, order or batch (what the action names)")
    object_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=200)


class ApprovalOut(BaseModel):
    approval_id: str
    action: str
    object_type: str
    object_id: str
    reason: str
    status: str = Field(description="pending, approved, executed, rejected, cancelled or "
                                    "expired")
    requested_by: str
    requested_at: str | None
    expires_at: str | None
    decided_by: str | None
    decided_at: str | None
    decision_note: str | None
    executed_by: str | None
    executed_at: str | None


class ApprovalPage(BaseModel):
    items: list[ApprovalOut]
    next: str | None = Field(description="the cursor of the next page; null on the last")


def approval_json(info: ApprovalInfo) -> dict[str, Any]:
    return {"approval_id": info.approval_id, "action": info.action,
            "object_type": info.object_type, "object_id": info.object_id,
            "reason": info.reason, "status": info.status, "requested_by": info.requested_by,
            "requested_at": iso(info.requested_at_ms), "expires_at": iso(info.expires_at_ms),
            "decided_by": info.decided_by, "decided_at": iso(info.decided_at_ms),
            "decision_note": info.decision_note, "executed_by": info.executed_by,
            "executed_at": iso(info.executed_at_ms)}


@router.post("/approvals", response_model=ApprovalOut, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": ApprovalOut,
                              "description": "an open request for the same object already"}})
def request_approval(body: ApprovalRequest, caller: CallerDep, runtime: RuntimeDep,
                     response: Response) -> dict[str, Any]:
    """Asks a second person to approve ``action`` on one object (201; an open request for the
    same action and object is returned with 200). Errors: FORBIDDEN (the action's scope),
    INVALID_ARGUMENT."""
    info, created = runtime.approvals.request(caller, body.action, body.object_type,
                                              body.object_id, body.reason)
    if not created:
        response.status_code = status.HTTP_200_OK
    return approval_json(info)


@router.get("/approvals", response_model=ApprovalPage)
def list_approvals(caller: CallerDep, runtime: RuntimeDep,
                   status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
                   action: Annotated[str | None, Query(max_length=32)] = None,
                   cursor: Annotated[str | None, Query(max_length=512)] = None,
                   limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
                   ) -> dict[str, Any]:
    """Requests of the actions whose scope the caller holds, newest first."""
    page = runtime.approvals.list(caller, status=status_, action=action, cursor=cursor,
                                  limit=limit)
    return {"items": [approval_json(info) for info in page.items], "next": page.next}


@router.get("/approvals/{approval_id}", response_model=ApprovalOut)
def get_approval(approval_id: ApprovalPath, caller: CallerDep,
                 runtime: RuntimeDep) -> dict[str, Any]:
    """Errors: APPROVAL_NOT_FOUND."""
    return approval_json(runtime.approvals.get(caller, approval_id))


@router.post("/approvals/{approval_id}/cancel", response_model=ApprovalOut)
def cancel_approval(approval_id: ApprovalPath, caller: CallerDep,
                    runtime: RuntimeDep) -> dict[str, Any]:
    """The maker withdraws its open request. Errors: APPROVAL_NOT_FOUND, APPROVAL_NOT_PENDING."""
    return approval_json(runtime.approvals.cancel(caller, approval_id))
