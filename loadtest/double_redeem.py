"""Double-redeem storm: every client redeems the same few single-use codes at the same moment.

Set-up: a new single-use SKU redeemable straight from stock (``redeem_requires_sale: false``)
with enough codes for the run (each with a PIN), and 8 terminal keys. The codes are raced for
in waves: for ``--wave-seconds`` (default 0.5 s) every user aims at the same ``--wave-codes``
codes (default 5), each request with a new request id, then the storm moves on to the next
few codes, so the race for a fresh code is repeated all through the run. One request in 4 is
instead a retry of one of the user's earlier requests, with the same request id, which must get
the same answer as the first time: the same ``redemption_id`` if it redeemed, 409
ALREADY_REDEEMED if it did not.

At the end (``invariants.check_double_redeem``, through the API): each code raced for was
redeemed exactly once (exactly one distinct ``redemption_id`` across all its 200 answers),
every retry returned the first result, the stock's ``redeemed`` equals the codes redeemed,
every refusal was ALREADY_REDEEMED or RATE_LIMITED, and no 5xx.

Run: ``loadtest/run.sh loadtest/double_redeem.py [USERS] [RUN_TIME]``, or against a running
server ``CARDSVC_ADMIN_KEY=... locust -f loadtest/double_redeem.py --headless -u 50 -r 50 -t 20s
--host http://127.0.0.1:8000`` (see docs/loadtest.md).
"""

from __future__ import annotations

import collections
import itertools
import math
import random
import time
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
    record_redemption,
    send,
    setup_failed,
    sort_answer,
    unique,
)
from invariants import RedemptionHistory, check_double_redeem
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

TERMINALS = 8
WAVE_CODES_DEFAULT = 5
WAVE_SECONDS_DEFAULT = 0.5
RUN_TIME_DEFAULT_S = 60
"""Codes are made for this long when locust runs without ``--run-time``; after the last wave
the storm stays on its codes."""
RETRY_PERCENT = 25
SENT_REMEMBERED_MAX = 200
"""Earlier requests each user remembers for retries (the oldest are forgotten)."""
ALREADY_REDEEMED = frozenset({"ALREADY_REDEEMED"})


@dataclass
class Storm:
    """Everything the users share: the admin client, the SKU, the codes in wave order, the
    terminals' keys, the history, and when the first wave started."""

    client: Client
    sku: str
    codes: list[tuple[str, str]]
    wave_codes: int
    wave_seconds: float
    terminal_keys: list[str]
    history: RedemptionHistory
    pending: Pending
    started_at: float

    def current_wave(self) -> list[tuple[str, str]]:
        waves = len(self.codes) // self.wave_codes
        wave = min(int((time.monotonic() - self.started_at) / self.wave_seconds), waves - 1)
        return self.codes[wave * self.wave_codes:(wave + 1) * self.wave_codes]


@dataclass(frozen=True)
class Sent:
    """A request a user sent and the answer it got (200 or 409), for a later retry."""

    body: dict[str, Any]
    answer: Answer


STORM: Storm | None = None
USER_NUMBERS = itertools.count()


@listener(events.init_command_line_parser)
def add_arguments(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument("--wave-codes", type=int, default=WAVE_CODES_DEFAULT,
                        help=f"codes raced for at once (default {WAVE_CODES_DEFAULT})")
    parser.add_argument("--wave-seconds", type=float, default=WAVE_SECONDS_DEFAULT,
                        help=f"seconds each wave lasts (default {WAVE_SECONDS_DEFAULT})")


@listener(events.test_start)
def set_up(environment: Environment, **_kwargs: Any) -> None:
    global STORM
    STORM = None
    try:
        check_single_process(environment)
        client = admin_client(environment.host)
        options = environment.parsed_options
        wave_codes = max(1, int(getattr(options, "wave_codes", WAVE_CODES_DEFAULT)))
        wave_seconds = float(getattr(options, "wave_seconds", WAVE_SECONDS_DEFAULT))
        run_time_s = int(getattr(options, "run_time", None) or RUN_TIME_DEFAULT_S)
        waves = math.ceil(run_time_s / wave_seconds) + 1
        codes = make_codes("DR", waves * wave_codes)
        sku = unique("storm")
        client.create_sku(sku, codes, redeem_requires_sale=False)
        keys = client.create_terminal_keys("storm-terminal", TERMINALS)
        STORM = Storm(client, sku, list(codes.items()), wave_codes, wave_seconds, keys,
                      RedemptionHistory(), Pending(), time.monotonic())
    except Exception as error:
        setup_failed(environment, error)


@listener(events.test_stop)
def check(environment: Environment, **_kwargs: Any) -> None:
    storm = STORM
    if storm is None:
        return
    history = storm.history
    finish(environment, "double_redeem invariants", storm.pending, history,
           lambda: check_double_redeem(history, storm.client.stock(storm.sku)),
           lambda: [f"sku {storm.sku}: {len(history.said_redeemed)} codes raced for, "
                   f"{storm.wave_codes} at a time for {storm.wave_seconds} s each"])


def same_result(first: Answer, again: Answer) -> bool:
    """Whether a retry returned the first result: the same redemption, or the same refusal."""
    if first.status == 200:
        return again.status == 200 and again.body == first.body
    return again.status == first.status and again.error_code == first.error_code


class StormingTerminal(FastHttpUser):
    """A terminal redeeming whatever codes the storm is on, and retrying its own requests."""

    wait_time = constant(0)

    def on_start(self) -> None:
        if STORM is None:  # set-up failed and said why
            quit_run(self.environment)
            raise StopUser
        self.storm = STORM
        self.key = STORM.terminal_keys[next(USER_NUMBERS) % TERMINALS]
        self.sent: collections.deque[Sent] = collections.deque(maxlen=SENT_REMEMBERED_MAX)

    @task
    def redeem(self) -> None:
        if self.sent and random.randrange(100) < RETRY_PERCENT:
            self.retry(random.choice(self.sent))
            return
        storm = self.storm
        code, pin = random.choice(storm.current_wave())
        body = {"code": code, "pin": pin, "request_id": uuid.uuid4().hex}

        def settle() -> None:
            answer = storm.client.call("POST", "/v1/redeem", body, key=self.key)
            sort_answer(storm.history, answer, "POST /v1/redeem", ALREADY_REDEEMED)
            record_redemption(storm.history, code, answer)

        token = storm.pending.begin(settle)
        answer = send(self, storm.history, "POST", "/v1/redeem", name="/v1/redeem", key=self.key,
                      body=body, refusals=ALREADY_REDEEMED)
        storm.pending.end(token, answer)
        record_redemption(storm.history, code, answer)
        if answer.status == 200 or answer.error_code in ALREADY_REDEEMED:
            self.sent.append(Sent(body, answer))

    def retry(self, sent: Sent) -> None:
        history = self.storm.history
        again = send(self, history, "POST", "/v1/redeem", name="/v1/redeem (retry)",
                     key=self.key, body=sent.body, refusals=ALREADY_REDEEMED)
        history.retries += 1
        if not same_result(sent.answer, again):
            history.retry_mismatches += 1
        record_redemption(history, str(sent.body["code"]), again)
