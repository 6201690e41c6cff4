"""Redemption terminals: a verify + redeem mix (4:1) over a pool of sold codes.

Set-up: a new single-use SKU (redeemable only once sold) with ``--codes`` codes (default 5000,
each with a PIN), bought through orders by a new agent, and 4 terminal keys. Each user is a
terminal that, with no pause between tasks, picks a random sold code and verifies it (4 in 5)
or redeems it under a new request id (1 in 5); one successful redemption in 10 is resent with
the same request id, which must return the first result. Codes are picked at random, so as the
run goes on more and more redemptions meet a code already redeemed (409 ALREADY_REDEEMED).

At the end (``invariants.check_terminals``, through the API): the stock's ``redeemed`` equals
the number of distinct successful redemptions, no code has two redemptions, ``allocated +
redeemed`` equals the codes sold, no verify sent after a redemption was acknowledged still said
``valid``, every refusal was ALREADY_REDEEMED or RATE_LIMITED, no 5xx, and every retry
returned the first result.

Run: ``loadtest/run.sh loadtest/terminals.py [USERS] [RUN_TIME]``, or against a running server
``CARDSVC_ADMIN_KEY=... locust -f loadtest/terminals.py --headless -u 50 -r 50 -t 20s
--host http://127.0.0.1:8000`` (see docs/loadtest.md).
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from common import (
    Client,
    Pending,
    SetupError,
    admin_client,
    check_single_process,
    finish,
    listener,
    make_codes,
    quit_run,
    record_redemption,
    send,
    setup_failed,
    sort_answer,
    unique,
)
from invariants import RedemptionHistory, check_terminals
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

CODES_DEFAULT = 5000
TERMINALS = 4
ORDER_CODES_MAX = 500
"""Codes per purchase during set-up (the server allows 10,000; smaller orders answer sooner)."""
RETRY_PERCENT = 10
"""Successful redemptions resent with the same request id (a terminal retrying after a
timeout), which must return the first result."""
ALREADY_REDEEMED = frozenset({"ALREADY_REDEEMED"})
VERIFY_STATUSES = frozenset({"valid", "redeemed"})
"""What verify may say of a sold single-use code during this run."""


@dataclass
class Shop:
    """Everything the terminals share: the admin client, the SKU, the sold codes (with their
    PINs), the terminals' keys, the history, and when each redemption was acknowledged."""

    client: Client
    sku: str
    sold: list[tuple[str, str | None]]
    terminal_keys: list[str]
    history: RedemptionHistory
    pending: Pending
    acknowledged_at: dict[str, float] = field(default_factory=dict)


SHOP: Shop | None = None
USER_NUMBERS = itertools.count()


@listener(events.init_command_line_parser)
def add_arguments(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument("--codes", type=int, default=CODES_DEFAULT,
                        help=f"codes sold to the terminals' customers (default {CODES_DEFAULT})")


@listener(events.test_start)
def set_up(environment: Environment, **_kwargs: Any) -> None:
    global SHOP
    SHOP = None
    try:
        check_single_process(environment)
        client = admin_client(environment.host)
        codes = make_codes("TM", int(getattr(environment.parsed_options, "codes",
                                             CODES_DEFAULT)))
        sku = unique("terminals")
        client.create_sku(sku, codes)
        sold = buy_all(client, client.create_agent_keys("terminals-agent", 1)[0], sku,
                       len(codes))
        SHOP = Shop(client, sku, sold, client.create_terminal_keys("terminal", TERMINALS),
                    RedemptionHistory(), Pending())
    except Exception as error:
        setup_failed(environment, error)


def buy_all(client: Client, agent_key: str, sku: str, count: int) -> list[tuple[str, str | None]]:
    """Buys ``count`` codes of ``sku`` and returns them as delivered."""
    sold: list[tuple[str, str | None]] = []
    while len(sold) < count:
        quantity = min(ORDER_CODES_MAX, count - len(sold))
        answer = client.call("POST", "/v1/orders", {"sku": sku, "quantity": quantity,
                                                    "client_order_id": uuid.uuid4().hex},
                             key=agent_key)
        if answer.status != 201:
            raise SetupError(f"buying codes failed: {answer.status} {answer.body}")
        sold.extend((str(c["code"]), c.get("pin")) for c in answer.body["codes"])
    return sold


@listener(events.test_stop)
def check(environment: Environment, **_kwargs: Any) -> None:
    shop = SHOP
    if shop is None:
        return
    history = shop.history
    finish(environment, "terminals invariants", shop.pending, history,
           lambda: check_terminals(history, shop.client.stock(shop.sku), len(shop.sold)),
           lambda: [f"sku {shop.sku}: {len(shop.sold)} codes sold; "
                   f"{len(history.redemptions)} of them redeemed"])


class Terminal(FastHttpUser):
    """One redemption terminal with its own key."""

    wait_time = constant(0)

    def on_start(self) -> None:
        if SHOP is None:  # set-up failed and said why
            quit_run(self.environment)
            raise StopUser
        self.shop = SHOP
        self.key = SHOP.terminal_keys[next(USER_NUMBERS) % TERMINALS]

    @task(4)
    def verify(self) -> None:
        shop = self.shop
        code, pin = random.choice(shop.sold)
        sent_at = time.monotonic()
        answer = send(self, shop.history, "POST", "/v1/verify", name="/v1/verify", key=self.key,
                      body={"code": code, "pin": pin})
        if answer.status != 200:
            return
        status = answer.body.get("status")
        if status not in VERIFY_STATUSES:
            shop.history.unexpected[f"POST /v1/verify 200 status={status}"] += 1
        elif status == "valid" and shop.acknowledged_at.get(code, sent_at) < sent_at:
            shop.history.stale_reads += 1

    @task(1)
    def redeem(self) -> None:
        shop = self.shop
        code, pin = random.choice(shop.sold)
        body = {"code": code, "pin": pin, "request_id": uuid.uuid4().hex}

        def settle() -> None:
            answer = shop.client.call("POST", "/v1/redeem", body, key=self.key)
            sort_answer(shop.history, answer, "POST /v1/redeem", ALREADY_REDEEMED)
            record_redemption(shop.history, code, answer)

        token = shop.pending.begin(settle)
        first = send(self, shop.history, "POST", "/v1/redeem", name="/v1/redeem", key=self.key,
                     body=body, refusals=ALREADY_REDEEMED)
        shop.pending.end(token, first)
        record_redemption(shop.history, code, first)
        if first.status == 200:
            shop.acknowledged_at.setdefault(code, time.monotonic())
        if first.status == 200 and random.randrange(100) < RETRY_PERCENT:
            again = send(self, shop.history, "POST", "/v1/redeem", name="/v1/redeem (retry)",
                         key=self.key, body=body)
            shop.history.retries += 1
            if again.status != 200 or again.body != first.body:
                shop.history.retry_mismatches += 1
            record_redemption(shop.history, code, again)
