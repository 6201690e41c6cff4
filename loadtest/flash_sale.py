"""Flash sale: many buyers race holds, confirms and direct orders for little stock.

Set-up: a new SKU with ``--stock`` imported codes (default 200, each with a PIN) and 5 agents
with a key each. Each user is one buyer of one agent; with no pause between tasks it either
places a direct order (1 in 3) or holds 1-3 codes and then confirms the hold (4 in 5) or
releases it. One success in 5 is resent with the same idempotency key, which must return the
first result. Stock runs out within seconds; from then on the run measures how fast refusals
come back.

At the end (``invariants.check_flash_sale``, through the API): no code was delivered to two
orders, the codes delivered equal the stock's ``allocated``, ``available + held + allocated``
equals the codes imported, every order has exactly ``quantity`` codes, each delivered code is
one we imported with its PIN, every refusal was OUT_OF_STOCK or RATE_LIMITED, no 5xx, and every
retry returned the first result.

Run: ``loadtest/run.sh loadtest/flash_sale.py [USERS] [RUN_TIME]``, or against a running server
``CARDSVC_ADMIN_KEY=... locust -f loadtest/flash_sale.py --headless -u 50 -r 50 -t 20s
--host http://127.0.0.1:8000`` (see docs/loadtest.md).
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from typing import Any

from common import (
    Answer,
    Client,
    Pending,
    admin_client,
    check_single_process,
    finish,
    listener,
    make_codes,
    quit_run,
    send,
    setup_failed,
    sort_answer,
    unique,
)
from invariants import FlashSaleHistory, check_flash_sale
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

STOCK_DEFAULT = 200
AGENTS = 5
QUANTITY_MAX = 3
HOLD_TTL_S = 60
"""Far longer than the moment between a hold and its confirm (the next request of the same
user), so that no confirm meets an expired hold even on a loaded server."""
RELEASE_PERCENT = 20
RETRY_PERCENT = 20
SOLD_OUT = frozenset({"OUT_OF_STOCK"})


@dataclass
class Sale:
    """Everything the users share: the admin client, the SKU, the agents' keys, the history."""

    client: Client
    sku: str
    agent_keys: list[str]
    history: FlashSaleHistory
    pending: Pending


SALE: Sale | None = None
USER_NUMBERS = itertools.count()


@listener(events.init_command_line_parser)
def add_arguments(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument("--stock", type=int, default=STOCK_DEFAULT,
                        help=f"codes on sale (default {STOCK_DEFAULT})")


@listener(events.test_start)
def set_up(environment: Environment, **_kwargs: Any) -> None:
    global SALE
    SALE = None
    try:
        check_single_process(environment)
        client = admin_client(environment.host)
        codes = make_codes("FS", int(getattr(environment.parsed_options, "stock", STOCK_DEFAULT)))
        sku = unique("flash")
        client.create_sku(sku, codes)
        agent_keys = client.create_agent_keys("flash-agent", AGENTS)
        SALE = Sale(client, sku, agent_keys, FlashSaleHistory(imported=dict(codes)), Pending())
    except Exception as error:
        setup_failed(environment, error)


@listener(events.test_stop)
def check(environment: Environment, **_kwargs: Any) -> None:
    sale = SALE
    if sale is None:
        return
    history = sale.history
    finish(environment, "flash_sale invariants", sale.pending, history,
           lambda: check_flash_sale(history, sale.client.stock(sale.sku)),
           lambda: [f"sku {sale.sku}: {len(history.imported)} codes on sale, "
                   f"{len(history.orders)} orders delivered"])


def record_order(history: FlashSaleHistory, answer: Answer, quantity: int) -> None:
    """Remembers a delivered order once; the same order with other codes is a mismatch."""
    if answer.status not in (200, 201):
        return
    codes = tuple((str(c["code"]), c.get("pin")) for c in answer.body.get("codes", []))
    entry = (quantity, codes)
    if history.orders.setdefault(str(answer.body.get("order_id")), entry) != entry:
        history.retry_mismatches += 1


class Buyer(FastHttpUser):
    """One buyer of one agent, racing the others for the stock."""

    wait_time = constant(0)

    def on_start(self) -> None:
        if SALE is None:  # set-up failed and said why
            quit_run(self.environment)
            raise StopUser
        number = next(USER_NUMBERS)
        self.sale = SALE
        self.key = SALE.agent_keys[number % AGENTS]
        self.buyer_id = f"buyer-{number}"

    @task(1)
    def direct_order(self) -> None:
        quantity = random.randint(1, QUANTITY_MAX)
        body = {"sku": self.sale.sku, "quantity": quantity, "client_order_id": uuid.uuid4().hex}
        self.place("/v1/orders", "/v1/orders", body, quantity)

    @task(2)
    def hold_then_confirm(self) -> None:
        history = self.sale.history
        quantity = random.randint(1, QUANTITY_MAX)
        held = send(self, history, "POST", "/v1/holds", name="/v1/holds", key=self.key,
                    refusals=SOLD_OUT,
                    body={"sku": self.sale.sku, "quantity": quantity, "ttl_seconds": HOLD_TTL_S,
                          "buyer_id": self.buyer_id, "client_hold_id": uuid.uuid4().hex})
        if held.status != 201:
            return
        hold_id = str(held.body["hold_id"])
        if random.randrange(100) < RELEASE_PERCENT:
            released = send(self, history, "DELETE", f"/v1/holds/{hold_id}",
                            name="/v1/holds/{id}", key=self.key)
            if released.status == 200 and released.body.get("released") != quantity:
                history.unexpected["DELETE /v1/holds/{id} 200 released != quantity"] += 1
            return
        self.place(f"/v1/holds/{hold_id}/confirm", "/v1/holds/{id}/confirm",
                   {"client_order_id": uuid.uuid4().hex}, quantity)

    def place(self, path: str, name: str, body: dict[str, Any], quantity: int) -> None:
        """An order (direct or from a hold), settled at the end if cut off, sometimes retried."""
        sale, history = self.sale, self.sale.history

        def settle() -> None:
            answer = sale.client.call("POST", path, body, key=self.key)
            sort_answer(history, answer, f"POST {name}", SOLD_OUT)
            record_order(history, answer, quantity)

        token = sale.pending.begin(settle)
        first = send(self, history, "POST", path, name=name, key=self.key, body=body,
                     refusals=SOLD_OUT)
        sale.pending.end(token, first)
        record_order(history, first, quantity)
        if first.status == 201 and random.randrange(100) < RETRY_PERCENT:
            again = send(self, history, "POST", path, name=f"{name} (retry)", key=self.key,
                         body=body, refusals=SOLD_OUT)
            history.retries += 1
            if again.status != 200 or again.body.get("order_id") != first.body["order_id"]:
                history.retry_mismatches += 1
            record_order(history, again, quantity)
