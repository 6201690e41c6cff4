"""Shared plumbing of the locust files: set-up through the API, requests that sort their answers,
idempotent settling of requests cut off by the end of the run, and the final report.

* Set-up (``events.test_start``): an admin key from ``CARDSVC_ADMIN_KEY``, or, when only
  ``CARDSVC_DATA_DIR`` is set, one made by running ``cardsvc keys create`` on that data directory
  (it works beside the running server). With it the file creates what it needs under names
  unique to the run (:func:`unique`): SKU, codes, agents and terminals with their keys.
* During the run, :func:`send` makes a request through locust (so it counts in locust's
  statistics) and sorts the answer into the history: a success, a refusal the scenario expects
  (sold out, already redeemed, rate limited; counted as a success by locust), or anything else
  (counted as a failure by locust, and by the invariants).
* Locust kills its users at the end of the run, possibly while a request is in flight: the
  server may have acted on it though the user never saw the answer. So every state-changing
  request is registered (:meth:`Pending.begin`) with a way to *settle* it: resend it with the
  same idempotency key, which returns the first result or, if the first never arrived, acts
  now. Either way the history then knows everything the server did. A request whose
  connection failed (status 0) is settled the same way.
* At the end (``events.test_stop``): settle, read the stock, check the invariants, print the
  table, and set ``environment.process_exit_code = 1`` when any failed.

The histories live in this process, so the files run with one locust process only (no
``--processes``, master or workers).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from invariants import (
    Answers,
    Check,
    RedemptionHistory,
    Stock,
    all_passed,
    answer_notes,
    format_report,
)
from locust import FastHttpUser
from locust.env import Environment
from locust.runners import LocalRunner

ENV_ADMIN_KEY = "CARDSVC_ADMIN_KEY"
ENV_DATA_DIR = "CARDSVC_DATA_DIR"
ENV_RISK_LIMITS = "CARDSVC_RISK_LIMITS"
SETUP_TIMEOUT_S = 30.0
BATCH_IMPORT_CODES_MAX = 5_000
UNIT_PRICE_MINOR = 100
"""What every load-test agent pays per code (the standard grade's price for the run's SKU)."""
AGENT_DEPOSIT_MINOR = 10**12
"""Each load-test agent's deposit: enough that the run measures stock, not balances."""
"""Codes per import request: about 250 KiB of JSON, well under the server's 1 MiB body bound."""
RATE_LIMITED = "RATE_LIMITED"

Handler = TypeVar("Handler", bound=Callable[..., None])


def listener(hook: Any) -> Callable[[Handler], Handler]:
    """``@listener(events.test_start)``: ``hook.add_listener`` as a decorator that keeps the
    handler's type (locust's own ``add_listener`` is untyped)."""

    def register(handler: Handler) -> Handler:
        hook.add_listener(handler)
        return handler

    return register


class SetupError(RuntimeError):
    """Set-up or the final reading failed: the run proves nothing."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status (0 when none came), JSON body ({} when not JSON), error code."""

    status: int
    body: dict[str, Any]

    @property
    def error_code(self) -> str | None:
        error = self.body.get("error")
        return str(error.get("code")) if isinstance(error, dict) else None

    def label(self, request: str) -> str:
        """``"POST /v1/orders 409 OUT_OF_STOCK"`` for ``request`` ``"POST /v1/orders"``."""
        return f"{request} {self.status} {self.error_code or ''}".rstrip()


def parse_answer(status: int, text: str | None) -> Answer:
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    return Answer(status, body if isinstance(body, dict) else {"items": body})


def unique(prefix: str) -> str:
    """A name no earlier run used: prefix, time of day and random hex (``[A-Za-z0-9-]``)."""
    return f"{prefix}-{time.strftime('%H%M%S')}-{secrets.token_hex(3)}"


def make_codes(tag: str, count: int) -> dict[str, str]:
    """``count`` new codes with 6-digit PINs; ``tag`` (letters and digits) keeps runs apart."""
    return {f"{tag}-{i:06d}-{secrets.token_hex(4).upper()}": f"{secrets.randbelow(10**6):06d}"
            for i in range(count)}


# ----- a plain client for set-up, settling and the final reading ---------------------------


class Client:
    """A small synchronous JSON client (urllib; gevent makes it cooperative under locust)."""

    def __init__(self, host: str, key: str) -> None:
        self.host = host.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             key: str | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.host + path, data=data, method=method, headers={
            "authorization": f"Bearer {key or self.key}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=SETUP_TIMEOUT_S) as response:
                return parse_answer(response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            return parse_answer(error.code, error.read().decode())

    def expect(self, method: str, path: str, body: Mapping[str, Any] | None = None,
               status: int = 200) -> dict[str, Any]:
        """The body of an answer that must have ``status``; SetupError otherwise."""
        answer = self.call(method, path, body)
        if answer.status != status:
            raise SetupError(f"{method} {path}: {answer.status} {answer.body}")
        return answer.body

    def stock(self, sku: str) -> Stock:
        body = self.expect("GET", f"/v1/skus/{sku}/stock")
        return {name: value for name, value in body.items() if isinstance(value, int)}

    def create_sku(self, sku: str, codes: Mapping[str, str | None], **options: Any) -> None:
        """A new SKU with ``codes`` imported (in several batches if there are many)."""
        self.expect("POST", "/v1/skus", {"sku": sku, "name": sku, **options}, 201)
        items = [{"code": code, "pin": pin} for code, pin in codes.items()]
        for start in range(0, len(items), BATCH_IMPORT_CODES_MAX):
            chunk = items[start:start + BATCH_IMPORT_CODES_MAX]
            result = self.expect("POST", "/v1/batches", {"sku": sku, "codes": chunk}, 201)
            if result["imported"] != len(chunk):
                raise SetupError(f"imported {result['imported']} of {len(chunk)} codes")
        # Every agent of the standard grade may buy it (orders need a price: NOT_FOR_SALE).
        self.expect("PUT", "/v1/prices", {"sku": sku, "grade": "standard",
                                          "price_minor": UNIT_PRICE_MINOR, "currency": "CNY"},
                    200)

    def create_agent_keys(self, prefix: str, count: int) -> list[str]:
        """``count`` new agents with one key each."""
        keys = []
        for _ in range(count):
            agent_id = unique(prefix)
            self.expect("POST", "/v1/agents", {"agent_id": agent_id, "name": agent_id}, 201)
            # Enough money that the load test measures stock, not balances.
            self.expect("POST", f"/v1/agents/{agent_id}/deposits",
                        {"amount_minor": AGENT_DEPOSIT_MINOR, "currency": "CNY",
                         "reference": f"loadtest-{agent_id}"}, 201)
            created = self.expect("POST", "/v1/keys", {"role": "agent", "agent_id": agent_id,
                                                       "name": agent_id}, 201)
            keys.append(str(created["key"]))
        return keys

    def create_terminal_keys(self, prefix: str, count: int) -> list[str]:
        return [str(self.expect("POST", "/v1/keys", {"role": "terminal",
                                                     "name": unique(prefix)}, 201)["key"])
                for _ in range(count)]


def admin_client(host: str | None) -> Client:
    """The admin client for this run: ``CARDSVC_ADMIN_KEY``, else a key made with the CLI on
    ``CARDSVC_DATA_DIR``. Raises SetupError when neither is given."""
    if not host:
        raise SetupError("give the server with --host http://127.0.0.1:PORT")
    key = os.environ.get(ENV_ADMIN_KEY)
    data_dir = os.environ.get(ENV_DATA_DIR)
    if not key and data_dir:
        key = cli_create_key(Path(data_dir), "admin", unique("loadtest-admin"))
    if not key:
        raise SetupError(f"set {ENV_ADMIN_KEY} (an admin key) or {ENV_DATA_DIR} "
                         "(the server's data directory, to create one with the CLI)")
    return Client(host, key)


def cli_create_key(data_dir: Path, role: str, name: str) -> str:
    """Runs ``cardsvc keys create`` and returns the key (the last line it prints)."""
    beside = Path(sys.executable).with_name("cardsvc")
    program = str(beside) if beside.exists() else "cardsvc"
    result = subprocess.run(
        [program, "keys", "create", "--data-dir", str(data_dir), "--role", role, "--name", name],
        capture_output=True, text=True, check=False, timeout=SETUP_TIMEOUT_S)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise SetupError(f"cardsvc keys create failed: {result.stderr.strip()[-500:]}")
    return lines[-1].strip()


# ----- requests during the run -----------------------------------------------------------


def send(user: FastHttpUser, answers: Answers, method: str, path: str, *, name: str, key: str,
         body: Mapping[str, Any] | None = None, refusals: frozenset[str] = frozenset()) -> Answer:
    """Sends one request through locust (``name``, the path with ``{id}`` for variable parts,
    labels it in locust's statistics) and sorts its answer into ``answers`` (see
    :func:`sort_answer`); locust counts unexpected answers as failures."""
    with user.client.request(method, path, name=name, json=body, catch_response=True,
                             headers={"authorization": f"Bearer {key}"}) as response:
        answer = parse_answer(response.status_code, response.text)
        if sort_answer(answers, answer, f"{method} {name}", refusals):
            response.success()
        else:
            response.failure(f"unexpected answer {answer.label(method)}")
    return answer


def sort_answer(answers: Answers, answer: Answer, request: str,
                refusals: frozenset[str]) -> bool:
    """Counts ``answer`` to ``request`` (``"POST /v1/orders"``) as a success (2xx), an expected
    refusal (its error code in ``refusals`` or RATE_LIMITED), or unexpected. Returns whether
    it was expected."""
    label = answer.label(request)
    if 200 <= answer.status < 300:
        answers.succeeded[label] += 1
    elif answer.error_code in refusals or answer.error_code == RATE_LIMITED:
        answers.refused[label] += 1
    else:
        answers.unexpected[label] += 1
        return False
    return True


def record_redemption(history: RedemptionHistory, code: str, answer: Answer) -> None:
    """Remembers what a redeem answer said about ``code`` (its redemption id, or that the code
    was already redeemed)."""
    redemption_id = answer.body.get("redemption_id")
    history.record(code, answer.status, answer.error_code,
                   redemption_id if isinstance(redemption_id, str) else None)


class Pending:
    """State-changing requests in flight, each with the function that settles it (resends it
    with the same idempotency key and records the answer)."""

    def __init__(self) -> None:
        self._settlers: dict[int, Callable[[], None]] = {}
        self._next = 0

    def begin(self, settle: Callable[[], None]) -> int:
        self._next += 1
        self._settlers[self._next] = settle
        return self._next

    def end(self, token: int, answer: Answer) -> None:
        """Forgets a request that got an answer; one that got none (status 0: the connection
        failed, perhaps after the server acted) stays, to be settled at the end."""
        if answer.status != 0:
            self._settlers.pop(token, None)

    def settle_all(self) -> int:
        """Settles every request left without an answer; returns how many."""
        settlers = list(self._settlers.values())
        self._settlers.clear()
        for settle in settlers:
            settle()
        return len(settlers)


# ----- start and finish ------------------------------------------------------------------


def check_single_process(environment: Environment) -> None:
    if not isinstance(environment.runner, LocalRunner):
        raise SetupError("the invariants are kept in memory: run one locust process "
                         "(no --processes, --master or --worker)")


def setup_failed(environment: Environment, error: Exception) -> None:
    """Reports a failed set-up; the users quit the run as soon as they start."""
    print(f"\nSET-UP FAILED: {error}\n", flush=True)
    environment.process_exit_code = 1


def quit_run(environment: Environment) -> None:
    """Ends the run at once (from a user, when set-up failed)."""
    if environment.runner is not None:
        environment.runner.quit()


def risk_limits_note() -> str:
    """What the report says about the server's risk limits (rate limits, brute-force guard):
    ``loadtest/run.sh`` starts its server with ``CARDSVC_RISK_LIMITS=off`` and says so here."""
    if os.environ.get(ENV_RISK_LIMITS, "").strip().lower() in ("off", "0", "false"):
        return "risk limits: OFF on the server (CARDSVC_RISK_LIMITS=off)"
    return "risk limits: as configured on the server (RATE_LIMITED counts as an expected refusal)"


def finish(environment: Environment, title: str, pending: Pending, answers: Answers,
           checks: Callable[[], Sequence[Check]], notes: Callable[[], Sequence[str]]) -> None:
    """Settles requests cut off by the end of the run, checks the invariants, prints the
    report (``notes`` are called after settling, like ``checks``) and sets a non-zero exit
    code when any invariant failed (or could not be checked)."""
    try:
        settled = pending.settle_all()
        results = list(checks())
    except Exception as error:
        print(f"\n=== {title} ===\nINVARIANTS NOT CHECKED: {error!r}\n", flush=True)
        environment.process_exit_code = 1
        return
    all_notes = [risk_limits_note(), *notes(), *answer_notes(answers),
                 f"requests left without an answer (in flight at the end), settled by resending: "
                 f"{settled}"]
    print("\n" + format_report(title, results, all_notes) + "\n", flush=True)
    if not all_passed(results):
        environment.process_exit_code = 1
