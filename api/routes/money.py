"""The wholesale business over HTTP: the agent's catalog, price lists and grades, deposits,
balances and statements, withdrawals, refunds, stock moves into agents' pools, and the
platform's reconciliation.

Admins reach everything; an agent key reaches its own catalog, balance, statement and
withdrawals, and the prices of its direct sub-agents. Money is integer minor units with its
currency (ISO 4217), never a float. Every change is audited by the domain
(``cardsvc.agents.pricing``, ``cardsvc.money.settlement``).
"""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import Field, model_validator

from api.deps import AdminDep, CallerDep, ServicesDep, agent_of
from api.models import MONEY_MINOR_MAX, Currency, Id, Money, Strict
from cardsvc import reconcile
from cardsvc.access.apikeys import Principal
from cardsvc.agents import pricing
from cardsvc.agents.tree import require_agent
from cardsvc.errors import ErrorCode, make_error
from cardsvc.money import ledger, settlement, statements, withdrawals

router = APIRouter(tags=["money"])

Amount = Annotated[int, Field(ge=1, le=MONEY_MINOR_MAX,
                              description="integer minor units, positive")]
Reference = Annotated[str, Field(min_length=1, max_length=128)]
AgentPath = Annotated[str, Path(min_length=1, max_length=64)]


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


class Deposit(Strict):
    amount_minor: Amount
    currency: Currency
    reference: Reference


class WithdrawalRequest(Strict):
    amount_minor: Amount
    currency: Currency
    reference: Reference


class Decision(Strict):
    note: str | None = Field(default=None, max_length=200)


class Refund(Strict):
    reason: str = Field(min_length=1, max_length=200)


class StockMove(Strict):
    sku: Id
    quantity: int = Field(ge=1, le=10_000_000)
    from_pool: Id = "shared"


def _txn(result: Any) -> dict[str, Any]:
    return {"txn_id": result.txn_id, "created": result.created}


def _self_or_admin(caller: Principal, agent_id: str) -> None:
    if not caller.is_admin and caller.agent_id != agent_id:
        raise make_error(ErrorCode.FORBIDDEN, "an agent sees only its own money",
                         {"agent_id": agent_id})


@router.get("/catalog")
def catalog(caller: CallerDep, services: ServicesDep,
            after_sku: Annotated[str | None, Query(max_length=64)] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    """The SKUs the calling agent can buy, with its price and the stock it can draw from (its
    own pool, then shared, as its policy says)."""
    agent_id = agent_of(caller)
    with services.db.read() as session:
        items = pricing.catalog_view(session, agent_id, after_sku=after_sku, limit=limit)
        pools = pricing.order_pools(session, agent_id)
    engine = services.engine
    for item in items:
        counts = [engine.stock(item["sku"], pool) for pool in pools]
        item["available"] = sum(c.get("available", 0) - c.get("expired", 0) for c in counts)
    return {"items": items, "next_after_sku": items[-1]["sku"] if len(items) == limit else None}


@router.put("/prices")
def set_price(body: PriceSet, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """Sets a SKU's price for a grade (admins) or an agent (admins, or the agent's parent for
    its direct sub-agents). Never below the parent's own price. Errors: PRICE_BELOW_PARENT
    (details: ``parent_price_minor``), NOT_FOR_SALE, FORBIDDEN, SKU_NOT_FOUND,
    AGENT_NOT_FOUND, GRADE_NOT_FOUND, CURRENCY_MISMATCH."""
    actor_agent = None if caller.is_admin else agent_of(caller)
    if actor_agent is not None and body.grade is not None:
        raise make_error(ErrorCode.FORBIDDEN, "only admins set grade prices", {"field": "grade"})
    with services.db.write() as session:
        return pricing.set_price(session, sku=body.sku, price_minor=body.price_minor,
                                 currency=body.currency, grade=body.grade,
                                 agent_id=body.agent_id, visible=body.visible,
                                 actor=caller.key_id, actor_agent_id=actor_agent,
                                 now_ms=services.engine.now_ms())


@router.get("/prices")
def list_prices(caller: AdminDep, services: ServicesDep,
                sku: Annotated[str | None, Query(max_length=64)] = None,
                grade: Annotated[str | None, Query(max_length=64)] = None,
                agent_id: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    with services.db.read() as session:
        return {"prices": pricing.list_prices(session, sku=sku, grade=grade, agent_id=agent_id)}


@router.post("/grades", status_code=status.HTTP_201_CREATED)
def create_grade(body: GradeCreate, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Errors: GRADE_EXISTS."""
    with services.db.write() as session:
        return pricing.create_grade(session, body.grade, body.name, actor=caller.key_id,
                                    now_ms=services.engine.now_ms())


@router.get("/grades")
def list_grades(caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    with services.db.read() as session:
        return {"grades": pricing.list_grades(session)}


@router.post("/agents/{agent_id}/deposits", status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "a retry with the same reference: the first"}})
def deposit(agent_id: AgentPath, body: Deposit, caller: AdminDep, services: ServicesDep,
            response: Response) -> dict[str, Any]:
    """Finance records money received from an agent (idempotent on ``reference``: a retry
    returns the first deposit with 200). Errors: AGENT_NOT_FOUND, CURRENCY_MISMATCH,
    IDEMPOTENCY_KEY_REUSED (details: ``field``)."""
    with services.db.write() as session:
        result = settlement.deposit(session, agent_id, body.amount_minor, body.currency,
                                    body.reference, caller.key_id, services.engine.now_ms())
        balances = ledger.agent_balances(session, agent_id)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return {**_txn(result), "agent_id": agent_id, "balances": balances}


@router.get("/agents/{agent_id}/balance")
def balance(agent_id: AgentPath, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """The agent's balances by account (``available``, ``escrow``, ``pending``,
    ``withdrawing``) and its credit limit."""
    _self_or_admin(caller, agent_id)
    with services.db.read() as session:
        agent = require_agent(session, agent_id)
        return {"agent_id": agent_id, "currency": agent.currency,
                "credit_limit_minor": agent.credit_limit_minor,
                "balances": ledger.agent_balances(session, agent_id)}


@router.get("/agents/{agent_id}/statement", response_model=None)
def statement(agent_id: AgentPath, caller: CallerDep, services: ServicesDep,
              since_ms: Annotated[int, Query(ge=0, le=(1 << 62))],
              until_ms: Annotated[int, Query(ge=0, le=(1 << 62))],
              account: Annotated[str, Query(pattern="^(available|pending|escrow|withdrawing)$")]
              = "available",
              format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
              ) -> dict[str, Any] | PlainTextResponse:
    """The statement of one of the agent's accounts for ``[since_ms, until_ms)``: opening
    balance, every posting with the balance after it, closing balance; ``format=csv`` for a
    file. Errors: ACCOUNT_NOT_FOUND, INVALID_ARGUMENT."""
    _self_or_admin(caller, agent_id)
    account_id = ledger.agent_account(agent_id, account)
    with services.db.read() as session:
        stmt = statements.statement(session, account_id, since_ms, until_ms)
        if format == "csv":
            out = io.StringIO()
            statements.write_statement_csv(stmt, out)
            return PlainTextResponse(out.getvalue(), media_type="text/csv", headers={
                "content-disposition":
                    f'attachment; filename="statement-{agent_id}-{account}.csv"'})
        entries = [{"at_ms": e.at_ms, "txn_id": e.txn_id, "kind": e.kind,
                    "reference": e.reference, "amount_minor": e.amount_minor,
                    "balance_after_minor": e.balance_after_minor} for e in stmt.entries]
    return {"account_id": account_id, "currency": stmt.currency, "since_ms": since_ms,
            "until_ms": until_ms, "opening_minor": stmt.opening_minor,
            "closing_minor": stmt.closing_minor, "entries": entries}


@router.post("/withdrawals", status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "a retry with the same reference: the first"}})
def request_withdrawal(body: WithdrawalRequest, caller: CallerDep, services: ServicesDep,
                       response: Response) -> dict[str, Any]:
    """The calling agent asks to be paid out; the amount leaves its available balance at once
    (never on credit). Idempotent on ``reference``. Errors: INSUFFICIENT_BALANCE."""
    agent_id = agent_of(caller)
    with services.db.write() as session:
        info, created = withdrawals.request_withdrawal(
            session, agent_id, body.amount_minor, body.currency, body.reference,
            caller.key_id, services.engine.now_ms())
    if not created:
        response.status_code = status.HTTP_200_OK
    return _withdrawal(info)


@router.get("/withdrawals/{withdrawal_id}")
def get_withdrawal(withdrawal_id: Annotated[str, Path(max_length=64)], caller: CallerDep,
                   services: ServicesDep) -> dict[str, Any]:
    with services.db.read() as session:
        info = withdrawals.get_withdrawal(session, withdrawal_id)
    if not caller.is_admin and caller.agent_id != info.agent_id:
        raise make_error(ErrorCode.WITHDRAWAL_NOT_FOUND, "no such withdrawal",
                         {"withdrawal_id": withdrawal_id})
    return _withdrawal(info)


@router.post("/withdrawals/{withdrawal_id}/{decision}")
def decide_withdrawal(withdrawal_id: Annotated[str, Path(max_length=64)],
                      decision: Annotated[str, Path(pattern="^(approve|reject|paid)$")],
                      body: Decision, caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """Finance approves or rejects a requested withdrawal, then marks an approved one paid.
    Errors: WITHDRAWAL_NOT_FOUND, WITHDRAWAL_NOT_PENDING (not in a state that allows it)."""
    step = {"approve": withdrawals.approve_withdrawal, "reject": withdrawals.reject_withdrawal,
            "paid": withdrawals.mark_withdrawal_paid}[decision]
    with services.db.write() as session:
        info = step(session, withdrawal_id, caller.key_id, services.engine.now_ms(),
                    body.note)
    return _withdrawal(info)


def _withdrawal(info: withdrawals.WithdrawalInfo) -> dict[str, Any]:
    return {"withdrawal_id": info.withdrawal_id, "agent_id": info.agent_id,
            "amount_minor": info.amount_minor, "currency": info.currency,
            "status": info.status, "reference": info.reference, "note": info.note,
            "created_at_ms": info.created_at_ms, "updated_at_ms": info.updated_at_ms}


@router.post("/orders/{order_id}/refund")
def refund(order_id: Annotated[str, Path(max_length=64)], body: Refund, caller: AdminDep,
           services: ServicesDep) -> dict[str, Any]:
    """Refunds a fulfilled order none of whose codes was redeemed: the codes are voided, the
    buyer is credited, commissions and revenue are reversed. Idempotent. Errors:
    ORDER_NOT_FOUND, ORDER_NOT_REFUNDABLE."""
    return services.orders.refund(order_id, actor=caller.key_id, reason=body.reason)


@router.post("/pools/{pool}/stock")
def move_stock(pool: AgentPath, body: StockMove, caller: AdminDep,
               services: ServicesDep) -> dict[str, Any]:
    """Moves ``quantity`` available codes of a SKU from ``from_pool`` (default ``shared``)
    into ``pool`` (e.g. an agent's channel pool, or back to ``shared``). Errors:
    POOL_NOT_FOUND, SKU_NOT_FOUND, OUT_OF_STOCK."""
    return services.catalog.move_stock(body.sku, body.quantity, body.from_pool, pool,
                                       actor=caller.key_id)


@router.get("/reconciliation")
def reconciliation(caller: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """The platform report: stock by state and cost, sales, commissions, withdrawals, and the
    checks that the ledger, the orders and the core's stock agree (``ok`` false lists every
    difference)."""
    return reconcile.report(services)
