"""Retail flash sale: many guests race through the shop's checkout for little stock, each paying
at once through a sandbox channel whose callbacks this file signs like the provider would.

Set-up: a new SKU on sale to retail with ``--stock`` imported codes (default 1000, each with a
PIN) and a sandbox channel with a key only this run knows. Each task is one new buyer (a new
email): ``POST /v1/shop/checkouts`` for one code; a buyer that got a hold sends the signed
"paid" callback to the channel's notify URL (one in five sends it twice: the duplicate must be
acknowledged and change nothing), then reads its codes with its order token
(``POST /v1/shop/orders/{id}/reveal``). The run stops after ``--buyers`` buyers (default
20000) or at ``--run-time``. Checkouts and payments cut off by the end are settled (paid) before
the checks.

At the end (``invariants.check_retail_flash_sale``): exactly min(stock, buyers who got a hold)
codes sold (with 20000 buyers for 1000 codes: exactly 1000), no code delivered twice, delivered
codes equal the stock's ``allocated``, ``available + held + allocated`` equals the codes
imported, every order has one code that we imported with its PIN, every refusal was
OUT_OF_STOCK or RATE_LIMITED, no 5xx, every callback (duplicates included) answered
``success``, and the server's reconciliation is clean.

Run: ``loadtest/run.sh loadtest/retail_flash_sale.py 200 60s -- --buyers 20000`` (run.sh
starts the server with the risk limits, the buyers' caps and the challenge off: one load
generator would otherwise be throttled, and it solves no proof of work).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import gevent  # type: ignore[import-untyped]
from common import (
    Answer,
    Client,
    Pending,
    admin_client,
    check_single_process,
    finish,
    listener,
    make_codes,
    parse_answer,
    quit_run,
    setup_failed,
    sort_answer,
    unique,
)
from invariants import FlashSaleHistory, check_retail_flash_sale
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

STOCK_DEFAULT = 1000
BUYERS_DEFAULT = 20_000
PRICE_MINOR = 990
DUPLICATE_PERCENT = 20
SOLD_OUT = frozenset({"OUT_OF_STOCK"})
MERCHANT = "loadtest-shop"


@dataclass
class Sale:
    client: Client
    sku: str
    channel_id: str
    key: str
    notify_path: str
    buyers_max: int
    history: FlashSaleHistory
    pending: Pending
    callbacks_refused: int = 0
    checkouts_cut_off: int = 0
    """Checkouts sent but never answered: the run ended while they were in flight. One may hold
    a code the harness cannot pay for (it never learnt the order), held until its TTL."""
    tokens: dict[str, str] = field(default_factory=dict)


SALE: Sale | None = None
BUYERS = itertools.count()
STOPPING = False


@listener(events.init_command_line_parser)
def add_arguments(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument("--stock", type=int, default=STOCK_DEFAULT,
                        help=f"codes on sale (default {STOCK_DEFAULT})")
    parser.add_argument("--buyers", type=int, default=BUYERS_DEFAULT,
                        help=f"buyers before the run stops (default {BUYERS_DEFAULT})")


@listener(events.test_start)
def set_up(environment: Environment, **_kwargs: Any) -> None:
    global SALE
    SALE = None
    try:
        check_single_process(environment)
        client = admin_client(environment.host)
        options = environment.parsed_options
        codes = make_codes("RF", int(getattr(options, "stock", STOCK_DEFAULT)))
        sku = unique("retail")
        client.create_sku(sku, codes, retail_price_minor=PRICE_MINOR, retail_quantity_max=1)
        channel_id = unique("sbx")
        key = unique("key-" + "k" * 16)
        created = client.expect("POST", "/v1/payment-channels", {
            "channel_id": channel_id, "provider": "sandbox", "display_name": channel_id,
            "merchant_id": MERCHANT, "secrets": {"key": key}}, 201)
        notify_path = "/pay/notify/" + str(created["notify_url"]).rsplit("/", 1)[1]
        SALE = Sale(client, sku, channel_id, key, notify_path,
                    int(getattr(options, "buyers", BUYERS_DEFAULT)),
                    FlashSaleHistory(imported=dict(codes)), Pending())
    except Exception as error:
        setup_failed(environment, error)


def signed_paid(key: str, out_trade_no: str, amount_minor: int) -> bytes:
    """The sandbox provider's "paid" callback for the attempt, signed with the channel key."""
    fields = {"v": "1", "merchant_id": MERCHANT, "event_id": f"SBX-{out_trade_no}:0:paid",
              "trade_no": f"SBX-{out_trade_no}", "out_trade_no": out_trade_no,
              "amount_minor": str(amount_minor), "currency": "CNY", "status": "paid",
              "ts": str(int(time.time() * 1000))}
    text = "cardsvc-sandbox-v1\n" + "&".join(
        f"{name}={quote(fields[name], safe='')}" for name in sorted(fields))
    fields["sig"] = hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields).encode()


@listener(events.test_stop)
def check(environment: Environment, **_kwargs: Any) -> None:
    sale = SALE
    if sale is None:
        return
    history = sale.history
    finish(environment, "retail_flash_sale invariants", sale.pending, history,
           lambda: check_retail_flash_sale(
               history, sale.client.stock(sale.sku),
               sale.client.expect("GET", "/v1/reconciliation"), sale.callbacks_refused,
               sale.checkouts_cut_off),
           lambda: [f"sku {sale.sku}: {len(history.imported)} codes on sale, "
                    f"{next(BUYERS)} buyers, {len(history.orders)} orders delivered, "
                    f"{sale.checkouts_cut_off} checkouts cut off by the end unanswered"])


def stop_run(environment: Environment) -> None:
    """Ends the run once every buyer came, from a greenlet of its own: the user greenlet that
    noticed is killed while the runner stops the users, and would take the final checks with
    it."""
    global STOPPING
    if STOPPING or environment.runner is None:
        return
    STOPPING = True
    gevent.spawn(environment.runner.quit)


class Guest(FastHttpUser):
    """A stream of guests, one per task: check out, pay, read the code."""

    wait_time = constant(0)

    def on_start(self) -> None:
        if SALE is None:
            quit_run(self.environment)
            raise StopUser
        self.sale = SALE

    def _post(self, path: str, name: str, *, json: Any = None, data: str | None = None,
              headers: dict[str, str] | None = None) -> Answer:
        with self.client.request("POST", path, name=name, json=json, data=data,
                                 headers=headers, catch_response=True) as response:
            answer = parse_answer(response.status_code, response.text)
            if sort_answer(self.sale.history, answer, f"POST {name}", SOLD_OUT):
                response.success()
            else:
                response.failure(f"unexpected answer {answer.label('POST')}")
        return answer

    @task
    def buy(self) -> None:
        sale = self.sale
        number = next(BUYERS)
        if number >= sale.buyers_max:
            stop_run(self.environment)
            raise StopUser
        email = f"guest-{number}-{random.randrange(1 << 30)}@example.com"
        body = {"sku": sale.sku, "quantity": 1, "email": email, "channel_id": sale.channel_id}
        sale.checkouts_cut_off += 1  # until the answer comes (the end of the run kills the wait)
        checkout = self._post("/v1/shop/checkouts", "/v1/shop/checkouts", json=body)
        sale.checkouts_cut_off -= 1
        if checkout.status != 201:
            return
        order_id = str(checkout.body["order"]["order_id"])
        token = str(checkout.body["token"])
        out_trade_no = str(checkout.body["payment"]["url"]).split("out_trade_no=")[1] \
            .split("&")[0]
        total = int(checkout.body["order"]["total_minor"])
        self.pay_and_read(order_id, token, out_trade_no, total)

    def pay_and_read(self, order_id: str, token: str, out_trade_no: str, total: int) -> None:
        sale = self.sale

        def settle() -> None:
            self._settle(order_id, token, out_trade_no, total)

        pending = sale.pending.begin(settle)
        form = {"content-type": "application/x-www-form-urlencoded"}
        for _ in range(2 if random.randrange(100) < DUPLICATE_PERCENT else 1):
            paid = self._post(sale.notify_path, "/pay/notify/{token}",
                              data=signed_paid(sale.key, out_trade_no, total).decode(),
                              headers=form)
            if paid.status != 200:
                sale.callbacks_refused += 1
        codes = self._post(f"/v1/shop/orders/{order_id}/reveal",
                           "/v1/shop/orders/{id}/reveal", json={"full": True},
                           headers={"x-order-token": token})
        sale.pending.end(pending, codes)
        record(sale, order_id, codes)

    def _settle(self, order_id: str, token: str, out_trade_no: str, total: int) -> None:
        """Pays a checkout cut off by the end of the run and records its codes."""
        sale = self.sale
        paid = _plain_post(sale.client.host + sale.notify_path,
                           signed_paid(sale.key, out_trade_no, total),
                           {"content-type": "application/x-www-form-urlencoded"})
        if paid.status != 200:
            sale.callbacks_refused += 1
        codes = _plain_post(sale.client.host + f"/v1/shop/orders/{order_id}/reveal",
                            json.dumps({"full": True}).encode(),
                            {"content-type": "application/json", "x-order-token": token})
        sort_answer(sale.history, codes, "POST /v1/shop/orders/{id}/reveal (settled)", SOLD_OUT)
        record(sale, order_id, codes)


def _plain_post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return parse_answer(response.status, response.read().decode())
    except urllib.error.HTTPError as error:
        return parse_answer(error.code, error.read().decode())


def record(sale: Sale, order_id: str, answer: Answer) -> None:
    if answer.status != 200:
        return
    codes = tuple((str(c["code"]), c.get("pin")) for c in answer.body.get("codes", []))
    if sale.history.orders.setdefault(order_id, (1, codes)) != (1, codes):
        sale.history.retry_mismatches += 1
