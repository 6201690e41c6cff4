"""The locust files run, check their invariants, and fail when an invariant breaks.

Goal: each locust file of ``loadtest/`` (flash sale, terminals, double-redeem storm) runs
headless against a real server and reports every invariant it checks as passed; the checks
themselves can fail, and a run that cannot check anything exits non-zero. Method: each file
runs through ``loadtest/run.sh`` (a throwaway ``cardsvc serve`` on a free loopback port, risk
limits off) for a few seconds with 20 users, and the test asserts locust's exit code and the
invariants table it printed. The checkers (``loadtest/invariants.py``, pure functions that do
not import locust, which would monkey-patch this process with gevent) get fabricated histories
with a code sold twice, a code redeemed twice, a retry that got a new result, and stock counts
that do not add up, and must report each as a failure; a consistent history must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.invariants import (
    FAILED_LINE,
    Check,
    FlashSaleHistory,
    RedemptionHistory,
    all_passed,
    check_double_redeem,
    check_flash_sale,
    check_retail_flash_sale,
    check_terminals,
    format_report,
)

REPO = Path(__file__).resolve().parents[2]
RUN_SH = REPO / "loadtest" / "run.sh"
USERS = 20
RUN_TIME = "4s"
RUN_TIMEOUT_S = 60
PASSED = re.compile(r"^invariants: all (\d+) passed$", re.MULTILINE)


def run_locustfile(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    env["CARDSVC_VENV"] = str(Path(sys.executable).parent.parent)
    return subprocess.run(
        ["bash", str(RUN_SH), f"loadtest/{name}.py", str(USERS), RUN_TIME, "--",
         "--only-summary", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


def table_rows(output: str, title: str) -> dict[str, str]:
    """The invariants table ``title`` printed: check name -> PASS or FAIL."""
    start = output.index(f"=== {title} ===")
    rows: dict[str, str] = {}
    for line in output[start:].splitlines()[2:]:
        if line.startswith("  ") or line.startswith("invariants:"):
            break
        name, verdict = line.rsplit(maxsplit=3)[0], line.rsplit(maxsplit=1)[1]
        rows[name.strip()] = verdict
    return rows


@pytest.mark.parametrize(
    ("name", "must_check"),
    [
        ("flash_sale", ["codes delivered to two orders", "codes delivered == stock allocated",
                        "available + held + allocated == imported",
                        "orders whose code count != quantity", "5xx answers"]),
        ("terminals", ["stock redeemed == distinct successful redemptions",
                       "codes with more than one redemption", "5xx answers"]),
        ("double_redeem", ["codes said redeemed without exactly one redemption",
                           "retries that did not return the first result",
                           "stock redeemed == codes redeemed", "5xx answers"]),
    ],
)
def test_locustfile_run_passes_every_invariant_it_prints(name: str,
                                                         must_check: list[str]) -> None:
    result = run_locustfile(name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    rows = table_rows(result.stdout, f"{name} invariants")
    assert set(must_check) <= set(rows), rows
    assert set(rows.values()) == {"PASS"}, rows
    passed = PASSED.search(result.stdout)
    assert passed is not None and int(passed.group(1)) == len(rows), result.stdout[-3000:]
    assert "risk limits: OFF" in result.stdout
    assert "Aggregated" in result.stdout + result.stderr  # locust's own summary was printed


def test_retail_flash_sale_sells_exactly_the_stock_and_passes_every_invariant() -> None:
    """The shop's flash sale, bounded: 50 codes, 400 guests (the full run: 1,000 and 20,000,
    bench/RESULTS.md)."""
    result = run_locustfile("retail_flash_sale", "--stock", "50", "--buyers", "400")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    rows = table_rows(result.stdout, "retail_flash_sale invariants")
    assert {"codes sold + held by cut-off checkouts == codes imported (demand exceeded stock)",
            "codes delivered to two orders",
            "server reconciliation ok", "5xx answers"} <= set(rows), rows
    assert set(rows.values()) == {"PASS"}, rows


def test_locustfile_without_admin_key_or_data_dir_exits_non_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("locust")), "-f", "loadtest/flash_sale.py",
         "--headless", "-u", "1", "-r", "1", "-t", "10s", "--only-summary",
         "--host", "http://127.0.0.1:9"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SET-UP FAILED" in result.stdout


# ----- the checkers on fabricated histories ---------------------------------------------------

IMPORTED: dict[str, str | None] = {"C1": "1", "C2": "2", "C3": "3", "C4": "4"}


def verdicts(checks: list[Check]) -> dict[str, bool]:
    return {check.name: check.passed for check in checks}


def sale(orders: dict[str, tuple[int, tuple[tuple[str, str | None], ...]]]) -> FlashSaleHistory:
    return FlashSaleHistory(imported=dict(IMPORTED), orders=orders)


def test_flash_sale_checker_passes_a_consistent_history() -> None:
    history = sale({"o1": (2, (("C1", "1"), ("C2", "2"))), "o2": (1, (("C3", "3"),))})
    stock = {"available": 1, "held": 0, "allocated": 3}
    checks = check_flash_sale(history, stock)
    assert all_passed(checks), checks
    assert format_report("t", checks).endswith(f"invariants: all {len(checks)} passed")


def test_flash_sale_checker_fails_a_code_delivered_to_two_orders() -> None:
    history = sale({"o1": (2, (("C1", "1"), ("C2", "2"))), "o2": (1, (("C1", "1"),))})
    checks = check_flash_sale(history, {"available": 1, "held": 0, "allocated": 3})
    failed = [name for name, passed in verdicts(checks).items() if not passed]
    assert failed == ["codes delivered to two orders"]
    assert FAILED_LINE.format(failed=1, n=len(checks)) in format_report("t", checks)


def test_flash_sale_checker_fails_when_stock_does_not_add_up() -> None:
    history = sale({"o1": (2, (("C1", "1"), ("C2", "2")))})
    checks = verdicts(check_flash_sale(history, {"available": 1, "held": 0, "allocated": 3}))
    assert not checks["codes delivered == stock allocated"]
    assert checks["available + held + allocated == imported"]
    leaked = verdicts(check_flash_sale(history, {"available": 1, "held": 0, "allocated": 2}))
    assert not leaked["available + held + allocated == imported"]


def test_flash_sale_checker_fails_short_orders_foreign_codes_and_bad_answers() -> None:
    history = sale({"o1": (3, (("C1", "1"), ("XX", "9")))})
    history.unexpected["POST /v1/orders 500 INTERNAL_ERROR"] += 1
    history.unexpected["POST /v1/orders 404 SKU_NOT_FOUND"] += 1
    history.retry_mismatches = 1
    checks = verdicts(check_flash_sale(history, {"available": 2, "held": 0, "allocated": 2}))
    assert not checks["orders whose code count != quantity"]
    assert not checks["delivered codes not imported (or with another PIN)"]
    assert not checks["5xx answers"]
    assert not checks["other answers than success, OUT_OF_STOCK or RATE_LIMITED"]
    assert not checks["retries that did not return the first result"]


def redemptions(*answers: tuple[str, int, str | None, str | None]) -> RedemptionHistory:
    history = RedemptionHistory()
    for code, status, error_code, redemption_id in answers:
        history.record(code, status, error_code, redemption_id)
    return history


def test_retail_checker_allows_a_code_held_by_a_checkout_cut_off_and_no_more() -> None:
    """A checkout in flight when the run ends may hold a code nobody can pay for: sold + held
    is still the whole stock, but only as many held codes as checkouts went unanswered."""
    history = sale({"o1": (1, (("C1", "1"),)), "o2": (1, (("C2", "1"),))})
    history.imported = {"C1": "1", "C2": "1", "C3": "1"}
    history.refused["POST /v1/shop/checkouts 409 OUT_OF_STOCK"] += 5
    stock = {"available": 0, "held": 1, "allocated": 2}
    reconciliation = {"ok": True}
    cut_off = verdicts(check_retail_flash_sale(history, stock, reconciliation, 0, 1))
    assert all(cut_off.values()), cut_off
    hoarded = verdicts(check_retail_flash_sale(history, stock, reconciliation, 0, 0))
    assert not hoarded["codes still held beyond the checkouts cut off unanswered"]
    assert not hoarded[
        "codes sold + held by cut-off checkouts == codes imported (demand exceeded stock)"]


def test_double_redeem_checker_passes_one_redemption_per_code() -> None:
    history = redemptions(("C1", 200, None, "rdm_7"), ("C1", 409, "ALREADY_REDEEMED", None),
                          ("C1", 200, None, "rdm_7"), ("C2", 200, None, "rdm_8"))
    assert all_passed(check_double_redeem(history, {"redeemed": 2}))


def test_double_redeem_checker_fails_a_code_redeemed_twice() -> None:
    history = redemptions(("C1", 200, None, "rdm_7"), ("C1", 200, None, "rdm_9"))
    checks = verdicts(check_double_redeem(history, {"redeemed": 1}))
    assert not checks["codes said redeemed without exactly one redemption"]
    assert not checks["codes with more than one redemption"]


def test_double_redeem_checker_fails_a_refusal_no_redemption_explains() -> None:
    history = redemptions(("C1", 409, "ALREADY_REDEEMED", None))
    checks = verdicts(check_double_redeem(history, {"redeemed": 1}))
    assert not checks["codes said redeemed without exactly one redemption"]
    assert not checks["stock redeemed == codes redeemed"]


def test_terminals_checker_fails_when_stock_redeemed_differs_or_reads_are_stale() -> None:
    history = redemptions(("C1", 200, None, "rdm_7"), ("C2", 200, None, "rdm_8"))
    assert all_passed(check_terminals(history, {"redeemed": 2, "allocated": 2}, 4))
    checks = verdicts(check_terminals(history, {"redeemed": 3, "allocated": 1}, 4))
    assert not checks["stock redeemed == distinct successful redemptions"]
    assert checks["allocated + redeemed == codes sold"]
    history.stale_reads = 1
    stale = verdicts(check_terminals(history, {"redeemed": 2, "allocated": 2}, 4))
    assert not stale["verify said valid after an acknowledged redemption"]
