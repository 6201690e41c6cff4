"""The agent tree: admins create and manage any agent; an agent key creates its own direct
sub-agents and suspends or reactivates them (their prices: ``PUT /v1/prices``).

Each route is one call of ``cardsvc.agents`` (``AgentUpdates``, ``AgentDirectory``), which holds
who may do what: creating an agent opens its ledger accounts in the same transaction; grade,
credit limit, daily quota, pool, pool policy and moves in the tree are admins' alone.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field

from api.deps import CallerDep, RuntimeDep, acting_agent
from api.models import CURRENCY_RE, MONEY_MINOR_MAX, Id, Strict

router = APIRouter(tags=["agents"])

AgentPath = Annotated[str, Path(min_length=1, max_length=64)]
POLICIES = "^(own_then_shared|own_only|shared_only)$"


class AgentCreate(Strict):
    agent_id: Id
    name: str = Field(min_length=1, max_length=200)
    parent_id: Id | None = None
    grade: Id | None = None
    currency: str | None = Field(default=None, pattern=CURRENCY_RE)
    credit_limit_minor: int | None = Field(default=None, ge=0, le=MONEY_MINOR_MAX)
    daily_order_quota: int | None = Field(default=None, ge=0, le=10**9)
    pool_policy: str | None = Field(default=None, pattern=POLICIES)


class AgentChange(Strict):
    status: str | None = Field(default=None, pattern="^(active|suspended)$")
    grade: Id | None = None
    credit_limit_minor: int | None = Field(default=None, ge=0, le=MONEY_MINOR_MAX)
    daily_order_quota: int | None = Field(default=None, ge=0, le=10**9)
    pool_policy: str | None = Field(default=None, pattern=POLICIES)
    pool: Id | None = Field(default=None, description="the agent's channel pool (by name)")
    parent_id: Id | None = Field(default=None, description="move under this agent")
    to_top: bool = Field(default=False, description="move directly under the platform")


class AgentOut(BaseModel):
    agent_id: str
    name: str
    parent_id: str | None
    status: str
    grade: str
    currency: str
    credit_limit_minor: int
    daily_order_quota: int | None
    pool_id: int | None
    pool_policy: str
    created_at_ms: int


@router.post("/agents", response_model=AgentOut, status_code=status.HTTP_201_CREATED)
def create_agent(body: AgentCreate, caller: CallerDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Admins create any agent; an agent key creates a direct sub-agent of its own (which
    inherits its grade and currency, without credit). Errors: AGENT_EXISTS, AGENT_NOT_FOUND,
    GRADE_NOT_FOUND, CURRENCY_MISMATCH, AGENT_SUSPENDED, FORBIDDEN."""
    fields = body.model_dump(exclude={"agent_id", "name"}, exclude_none=True)
    return runtime.agent_updates.create(body.agent_id, body.name, fields, actor=caller.key_id,
                                         actor_agent_id=acting_agent(caller))


@router.get("/agents", response_model=list[AgentOut])
def list_agents(caller: CallerDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Admins: every agent; an agent: its direct sub-agents."""
    return runtime.agent_directory.list_for(acting_agent(caller))


@router.get("/agents/{agent_id}", response_model=AgentOut)
def get_agent(agent_id: AgentPath, caller: CallerDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Admins, the agent itself or its parent. Errors: AGENT_NOT_FOUND, FORBIDDEN."""
    return runtime.agent_directory.get_for(agent_id, acting_agent(caller))


@router.patch("/agents/{agent_id}", response_model=AgentOut)
def change_agent(agent_id: AgentPath, body: AgentChange, caller: CallerDep,
                 runtime: RuntimeDep) -> dict[str, Any]:
    """Changes an agent: admins anything; a parent only ``status`` of its direct sub-agents.
    Errors: AGENT_NOT_FOUND, AGENT_CYCLE (a move under its own subtree), PRICE_BELOW_PARENT (a
    grade or move that would invert prices), GRADE_NOT_FOUND, POOL_NOT_FOUND, FORBIDDEN."""
    return runtime.agent_updates.change(agent_id, body.model_dump(exclude_unset=True),
                                         actor=caller.key_id,
                                         actor_agent_id=acting_agent(caller))
