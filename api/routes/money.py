"""Money over HTTP: deposits, balances and statements, withdrawals, refunds, stock moves into
agents' pools, and the platform's reconciliation.

Admins reach everything; an agent key reaches its own balance, statement and withdrawals
(``cardsvc.money.AgentMoney`` holds who sees what). Money is integer minor units with its
currency (ISO 4217), never a float. Every change is audited by the domain.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from api.deps import (
    CallerDep,
    LedgerDep,
    ReconciliationDep,
    RuntimeDep,
    StockDep,
    WithdrawalsDep,
    acting_agent,
    agent_of,
)
from api.models import (
    DEFAULT_LIMIT,
    MONEY_MINOR_MAX,
    Currency,
    CursorQuery,
    Id,
    LimitQuery,
    PageOut,
    Strict,
    TimeQuery,
    time_ms,
)
from api.routes.orders import order_json
from cardsvc.errors import invalid
from cardsvc.money import WithdrawalInfo
from cardsvc.paging import CURSOR_LEN_MAX, PAGE_SIZE_MAX
from cardsvc.reports import reconciliation_report
from cardsvc.times import iso

router = APIRouter(tags=["money"])

Amount = Annotated[int, Field(ge=1, le=MONEY_MINOR_MAX,
                              description="integer minor units, positive")]
Reference = Annotated[str, Field(min_length=1, max_length=128)]
AgentPath = Annotated[str, Path(min_length=1, max_length=64)]


class Deposit(Strict):
    amount_minor: Amount
    currency: Currency
    reference: Reference


class WithdrawalRequest(Strict):
    amount_minor: Amount
    currency: Currency
    reference: Reference


ApprovalId = Annotated[str | None, Field(
    default=None, max_length=64,
    description="an approved maker-checker request for this action (POST /v1/approvals)")]


class Decision(Strict):
    note: str | None = Field(default=None, max_length=200)
    approval_id: ApprovalId = None


class Refund(Strict):
    reason: str = Field(min_length=1, max_length=200)
    approval_id: ApprovalId = None


class WithdrawalOut(BaseModel):
    withdrawal_id: str
    agent_id: str
    amount_minor: int
    currency: str
    status: str = Field(description="requested (awaiting approval), approved (awaiting "
                                    "payment), paid or rejected")
    reference: str
    note: str | None
    created_at_ms: int
    updated_at_ms: int


class StatementEntryOut(BaseModel):
    at: str | None
    at_ms: int
    txn_id: str
    kind: str
    reference: str
    amount_minor: int
    balance_after_minor: int


class StatementOut(PageOut[StatementEntryOut]):
    account_id: str
    currency: str
    since: str | None
    since_ms: int
    until: str | None
    until_ms: int
    opening_minor: int
    closing_minor: int


MsQuery = Annotated[int | None, Query(ge=0, le=(1 << 62),
                                      description="Unix ms (instead of the ISO form)")]


class StockMove(Strict):
    sku: Id
    quantity: int = Field(ge=1, le=10_000_000)
    from_pool: Id = "shared"


@router.post("/agents/{agent_id}/deposits", status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "a retry with the same reference: the first"}})
def deposit(agent_id: AgentPath, body: Deposit, caller: LedgerDep, runtime: RuntimeDep,
            response: Response) -> dict[str, Any]:
    """Finance records money received from an agent (idempotent on ``reference``: a retry
    returns the first deposit with 200). Errors: AGENT_NOT_FOUND, CURRENCY_MISMATCH,
    IDEMPOTENCY_KEY_REUSED (details: ``field``)."""
    done = runtime.money.deposit(agent_id, body.amount_minor, body.currency, body.reference,
                                 actor=caller.key_id)
    if not done.result.created:
        response.status_code = status.HTTP_200_OK
    return {"txn_id": done.result.txn_id, "created": done.result.created, "agent_id": agent_id,
            "balances": done.balances}


@router.get("/agents/{agent_id}/balance")
def balance(agent_id: AgentPath, caller: CallerDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The agent's balances by account (``available``, ``escrow``, ``pending``,
    ``withdrawing``) and its credit limit."""
    return runtime.money.balance(agent_id, actor_agent_id=acting_agent(caller, "ledger"))


@router.get("/agents/{agent_id}/statement", response_model=StatementOut,
            responses={200: {"content": {"text/csv": {}}}})
def statement(agent_id: AgentPath, caller: CallerDep, runtime: RuntimeDep,
              since: TimeQuery = None, until: TimeQuery = None,
              since_ms: MsQuery = None, until_ms: MsQuery = None,
              account: Annotated[str, Query(pattern="^(available|pending|escrow|withdrawing)$")]
              = "available",
              format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
              cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT,
              ) -> StatementOut | PlainTextResponse:
    """The statement of one of the agent's accounts for ``[since, until)`` (ISO dates or RFC
    3339, or ``since_ms``/``until_ms``; each bound not given: the current UTC month's): opening
    balance, postings oldest first with the balance after each, closing balance. JSON comes a
    page at a time (``items``, ``next``); ``format=csv`` is the whole period as a file. An
    agent's key reads only its own. Errors: ACCOUNT_NOT_FOUND, FORBIDDEN, INVALID_ARGUMENT."""
    actor_agent_id = acting_agent(caller, "ledger")
    since_at = _one_bound("since", since, since_ms)
    until_at = _one_bound("until", until, until_ms)
    if format == "csv":
        text = runtime.money.statement_csv(agent_id, account, since_at, until_at,
                                           actor_agent_id=actor_agent_id)
        return PlainTextResponse(text, media_type="text/csv", headers={
            "content-disposition": f'attachment; filename="statement-{agent_id}-{account}.csv"'})
    stmt = runtime.money.statement_page(agent_id, account, since_ms=since_at, until_ms=until_at,
                                        actor_agent_id=actor_agent_id, cursor=cursor,
                                        limit=limit)
    entries = [StatementEntryOut(at=iso(e.at_ms), at_ms=e.at_ms, txn_id=e.txn_id, kind=e.kind,
                                 reference=e.reference, amount_minor=e.amount_minor,
                                 balance_after_minor=e.balance_after_minor)
               for e in stmt.entries]
    return StatementOut(account_id=stmt.account_id, currency=stmt.currency,
                        since=iso(stmt.since_ms), since_ms=stmt.since_ms,
                        until=iso(stmt.until_ms), until_ms=stmt.until_ms,
                        opening_minor=stmt.opening_minor, closing_minor=stmt.closing_minor,
                        items=entries, next=stmt.next)


def _one_bound(field: str, text: str | None, ms: int | None) -> int | None:
    """A statement bound given as ISO text or as Unix ms (not both)."""
    if text is not None and ms is not None:
        raise invalid(field, f"give {field} or {field}_ms, not both")
    return time_ms(field, text) if text is not None else ms


@router.post("/withdrawals", status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "a retry with the same reference: the first"}})
def request_withdrawal(body: WithdrawalRequest, caller: CallerDep, runtime: RuntimeDep,
                       response: Response) -> dict[str, Any]:
    """The calling agent asks to be paid out; the amount leaves its available balance at once
    (never on credit). Idempotent on ``reference``. Errors: INSUFFICIENT_BALANCE."""
    info, created = runtime.money.request_withdrawal(
        agent_of(caller), body.amount_minor, body.currency, body.reference, actor=caller.key_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _withdrawal(info)


@router.get("/withdrawals", response_model=PageOut[WithdrawalOut])
def list_withdrawals(caller: CallerDep, runtime: RuntimeDep,
                     status: Annotated[str | None, Query(
                         pattern="^(requested|approved|paid|rejected)$")] = None,
                     agent_id: Annotated[str | None, Query(max_length=64)] = None,
                     cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT,
                     ) -> PageOut[WithdrawalOut]:
    """Withdrawals newest first: ``status=requested`` is finance's queue awaiting approval,
    ``approved`` awaits payment. Admins see every agent's (or ``agent_id``'s); an agent's key
    only its own. Errors: INVALID_ARGUMENT (cursor), FORBIDDEN (a terminal key)."""
    page = runtime.money.list_withdrawals(actor_agent_id=acting_agent(caller), agent_id=agent_id,
                                          status=status, cursor=cursor, limit=limit)
    return PageOut[WithdrawalOut](items=[WithdrawalOut(**_withdrawal(info)) for info in page.items],
                                  next=page.next)


@router.get("/withdrawals/{withdrawal_id}")
def get_withdrawal(withdrawal_id: Annotated[str, Path(max_length=64)], caller: CallerDep,
                   runtime: RuntimeDep) -> dict[str, Any]:
    # A key of neither the platform nor an agent sees no withdrawal: it acts for no agent ("").
    viewer = acting_agent(caller, "withdrawals") if caller.role != "terminal" else ""
    return _withdrawal(runtime.money.get_withdrawal(withdrawal_id, actor_agent_id=viewer))


@router.post("/withdrawals/{withdrawal_id}/{decision}")
def decide_withdrawal(withdrawal_id: Annotated[str, Path(max_length=64)],
                      decision: Annotated[str, Path(pattern="^(approve|reject|paid)$")],
                      body: Decision, caller: WithdrawalsDep,
                      runtime: RuntimeDep) -> dict[str, Any]:
    """Finance approves or rejects a requested withdrawal, then marks an approved one paid. The
    payout (``paid``) is maker-checker: give the ``approval_id`` of an approved
    ``withdrawal_payout`` request for this withdrawal. Errors: WITHDRAWAL_NOT_FOUND,
    WITHDRAWAL_NOT_PENDING (not in a state that allows it), APPROVAL_REQUIRED,
    APPROVAL_NOT_PENDING, APPROVAL_MISMATCH, APPROVAL_EXPIRED, APPROVAL_SELF."""
    return _withdrawal(runtime.money.decide_withdrawal(withdrawal_id, decision,
                                                       actor=caller.key_id, note=body.note,
                                                       approval_id=body.approval_id))


def _withdrawal(info: WithdrawalInfo) -> dict[str, Any]:
    return {"withdrawal_id": info.withdrawal_id, "agent_id": info.agent_id,
            "amount_minor": info.amount_minor, "currency": info.currency,
            "status": info.status, "reference": info.reference, "note": info.note,
            "created_at_ms": info.created_at_ms, "updated_at_ms": info.updated_at_ms}


@router.post("/orders/{order_id}/refund")
async def refund(order_id: Annotated[str, Path(max_length=64)], body: Refund,
                 caller: LedgerDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Refunds a fulfilled order none of whose codes was redeemed: the codes are voided, the
    buyer is credited, commissions and revenue are reversed. Idempotent. Maker-checker: give
    the ``approval_id`` of an approved ``refund`` request for this order. Errors:
    ORDER_NOT_FOUND, ORDER_NOT_REFUNDABLE, APPROVAL_REQUIRED and the other APPROVAL_* codes."""
    return order_json(await runtime.orders.refund(order_id, actor=caller.key_id,
                                                  reason=body.reason,
                                                  approval_id=body.approval_id))


@router.post("/pools/{pool}/stock")
def move_stock(pool: AgentPath, body: StockMove, caller: StockDep,
               runtime: RuntimeDep) -> dict[str, Any]:
    """Moves ``quantity`` available codes of a SKU from ``from_pool`` (default ``shared``)
    into ``pool`` (e.g. an agent's channel pool, or back to ``shared``). Errors:
    POOL_NOT_FOUND, SKU_NOT_FOUND, OUT_OF_STOCK."""
    return runtime.catalog.move_stock(body.sku, body.quantity, body.from_pool, pool,
                                      actor=caller.key_id)


@router.get("/reconciliation")
def reconciliation(caller: ReconciliationDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The platform report: stock by state and cost, sales, commissions, withdrawals, and the
    checks that the ledger, the orders and the core's stock agree (``ok`` false lists every
    difference)."""
    return reconciliation_report(runtime.store, runtime.db, runtime.catalog)


class CommissionOut(BaseModel):
    commission_id: int
    order_id: str
    agent_id: str = Field(description="who earns it")
    amount_minor: int
    currency: str
    status: str = Field(description="pending (cooling), released (spendable) or reversed "
                                    "(refunded)")
    release_at: str | None = Field(description="when a pending commission becomes spendable")
    release_at_ms: int
    txn_id: str | None


class CommissionPage(BaseModel):
    items: list[CommissionOut]
    next: str | None


class Released(BaseModel):
    released: int


@router.get("/commissions", response_model=CommissionPage)
def list_commissions(caller: CallerDep, runtime: RuntimeDep,
                     agent_id: Annotated[str | None, Query(max_length=64)] = None,
                     status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
                     limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE_MAX)] = None,
                     cursor: Annotated[str | None, Query(max_length=CURSOR_LEN_MAX)] = None,
                     ) -> dict[str, Any]:
    """Commissions with their status and release date, newest first (cursor pagination): an
    agent's own (``agent_id`` absent or its own), any agent's for admins (``agent_id``
    filters). Errors: FORBIDDEN (another agent's), INVALID_ARGUMENT (status, cursor)."""
    page = runtime.money.commissions(agent_id=agent_id, actor_agent_id=acting_agent(caller),
                                     status=status_, limit=limit, cursor=cursor)
    return {"items": [{"commission_id": c.commission_id, "order_id": c.order_id,
                       "agent_id": c.agent_id, "amount_minor": c.amount_minor,
                       "currency": c.currency, "status": c.status,
                       "release_at": iso(c.release_at_ms), "release_at_ms": c.release_at_ms,
                       "txn_id": c.txn_id} for c in page.items], "next": page.next}


@router.post("/commissions/release-due", response_model=Released)
def release_due_commissions(caller: LedgerDep, runtime: RuntimeDep) -> Released:
    """Releases now every commission whose cooling period has ended (what the timer does every
    30 s), up to 10,000 a call in bounded batches."""
    return Released(released=runtime.money.release_due_commissions(actor=caller.key_id))
