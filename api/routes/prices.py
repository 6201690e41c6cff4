"""Price lists over HTTP: the agent's catalog (what it can buy, its price, the stock it can draw
from), grades, grade prices and per-agent overrides.

Admins reach everything; an agent key reaches its own catalog and the prices of its direct
sub-agents (``cardsvc.agents.PriceLists`` holds who may set what). Money is integer minor units
with its currency (ISO 4217), never a float; every change is audited by the domain.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import Field, model_validator

from api.deps import CallerDep, CatalogDep, RuntimeDep, acting_agent, agent_of
from api.models import Currency, Id, Money, Strict
from cardsvc.errors import ErrorCode, make_error

router = APIRouter(tags=["money"])


class PriceSet(Strict):
    sku: Id
    agent_id: Id | None = None
    grade: Id | None = None
    price_minor: Money
    currency: Currency
    visible: bool = True

    @model_validator(mode="after")
    def one_owner(self) -> PriceSet:
        if (self.agent_id is None) == (self.grade is None):
            raise make_error(ErrorCode.INVALID_ARGUMENT, "give exactly one of agent_id, grade",
                             {"field": "agent_id"})
        return self


class GradeCreate(Strict):
    grade: Id
    name: str = Field(min_length=1, max_length=200)


@router.get("/catalog")
def catalog(caller: CallerDep, runtime: RuntimeDep,
            after_sku: Annotated[str | None, Query(max_length=64)] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    """The SKUs the calling agent can buy, with its price and the stock it can draw from (its
    own pool, then shared, as its policy says)."""
    return runtime.agent_directory.catalog(agent_of(caller), after_sku=after_sku, limit=limit)


@router.put("/prices")
def set_price(body: PriceSet, caller: CallerDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Sets a SKU's price for a grade (admins) or an agent (admins, or the agent's parent for
    its direct sub-agents). Never below the parent's own price. Errors: PRICE_BELOW_PARENT
    (details: ``parent_price_minor``), NOT_FOR_SALE, FORBIDDEN, SKU_NOT_FOUND,
    AGENT_NOT_FOUND, GRADE_NOT_FOUND, CURRENCY_MISMATCH."""
    return runtime.price_lists.set_price(
        sku=body.sku, price_minor=body.price_minor, currency=body.currency, grade=body.grade,
        agent_id=body.agent_id, visible=body.visible, actor=caller.key_id,
        actor_agent_id=acting_agent(caller, "catalog"))


@router.get("/prices")
def list_prices(caller: CatalogDep, runtime: RuntimeDep,
                sku: Annotated[str | None, Query(max_length=64)] = None,
                grade: Annotated[str | None, Query(max_length=64)] = None,
                agent_id: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    return {"prices": runtime.price_lists.list_prices(sku=sku, grade=grade, agent_id=agent_id)}


@router.post("/grades", status_code=status.HTTP_201_CREATED)
def create_grade(body: GradeCreate, caller: CatalogDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Errors: GRADE_EXISTS."""
    return runtime.price_lists.create_grade(body.grade, body.name, actor=caller.key_id)


@router.get("/grades")
def list_grades(caller: CatalogDep, runtime: RuntimeDep) -> dict[str, Any]:
    return {"grades": runtime.price_lists.list_grades()}
