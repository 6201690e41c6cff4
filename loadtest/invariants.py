"""What the load tests remember and the invariants they check at the end (DESIGN.md 1 and 2).

Pure Python with no locust import (importing locust monkey-patches the whole process with
gevent), so the checks can be tested on fabricated histories. Each locust file records every
answer it gets into a history; at the end it reads the SKU's stock through the API and calls its
``check_*`` function, which returns one :class:`Check` per invariant: a name, the value the
invariant demands and the value observed. :func:`format_report` renders them as a table whose
last line says whether all passed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Stock = Mapping[str, int]
"""``GET /v1/skus/{sku}/stock``: codes by state (available, held, allocated, redeemed...)."""
Delivered = tuple[tuple[str, str | None], ...]
"""An order's codes as delivered: (code, pin) pairs."""


@dataclass(frozen=True)
class Check:
    """One invariant: it holds when the observed value equals the expected one."""

    name: str
    expected: object
    actual: object

    @property
    def passed(self) -> bool:
        return self.expected == self.actual


@dataclass
class Answers:
    """Every answer the users got, by kind: ``label`` is ``"POST /v1/orders 409 OUT_OF_STOCK"``.

    ``refused`` counts the refusals the scenario expects (sold out, already redeemed, rate
    limited); ``unexpected`` everything else that was not a success (5xx, other error codes,
    and status 0 for a request that got no answer at all)."""

    succeeded: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    retry_mismatches: int = 0

    def server_errors(self) -> int:
        return sum(n for label, n in self.unexpected.items() if _status(label) >= 500)

    def other_unexpected(self) -> int:
        return sum(n for label, n in self.unexpected.items() if _status(label) < 500)


def _status(label: str) -> int:
    parts = label.split()
    return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0


def answer_checks(answers: Answers, expected_refusals: str) -> list[Check]:
    """The checks every scenario shares: no 5xx, no other unexpected answer, and every retry of
    an idempotency key returned the first result."""
    return [
        Check("5xx answers", 0, answers.server_errors()),
        Check(f"other answers than success, {expected_refusals}", 0,
              answers.other_unexpected()),
        Check("retries that did not return the first result", 0, answers.retry_mismatches),
    ]


# ----- flash sale ----------------------------------------------------------------------------


@dataclass
class FlashSaleHistory(Answers):
    """``imported``: every code put on sale, with its PIN. ``orders``: each order delivered
    (order id -> (quantity asked, codes delivered)), once however often it was retried."""

    imported: dict[str, str | None] = field(default_factory=dict)
    orders: dict[str, tuple[int, Delivered]] = field(default_factory=dict)


def check_flash_sale(history: FlashSaleHistory, stock: Stock) -> list[Check]:
    """No code delivered twice, deliveries match the stock counts, and stock adds up."""
    owners: Counter[str] = Counter()
    wrong_quantity = 0
    foreign = 0
    for quantity, codes in history.orders.values():
        wrong_quantity += len(codes) != quantity
        for code, pin in codes:
            owners[code] += 1
            foreign += code not in history.imported or history.imported[code] != pin
    delivered = sum(len(codes) for _, codes in history.orders.values())
    return [
        Check("codes delivered to two orders", 0, sum(1 for n in owners.values() if n > 1)),
        Check("codes delivered == stock allocated", stock["allocated"], delivered),
        Check("available + held + allocated == imported", len(history.imported),
              stock["available"] + stock["held"] + stock["allocated"]),
        Check("orders whose code count != quantity", 0, wrong_quantity),
        Check("delivered codes not imported (or with another PIN)", 0, foreign),
        *answer_checks(history, "OUT_OF_STOCK or RATE_LIMITED"),
    ]


def check_retail_flash_sale(history: FlashSaleHistory, stock: Stock,
                            reconciliation: Mapping[str, object],
                            callbacks_refused: int, checkouts_cut_off: int = 0) -> list[Check]:
    """The flash sale's checks for the shop: every hold paid and delivered (so the codes sold
    are exactly the codes held: with more buyers than codes, the whole stock), no code twice,
    every callback acknowledged, and the server's reconciliation clean. ``checkouts_cut_off``:
    checkouts the end of the run left unanswered; each may hold one code nobody can pay for
    (the harness never learnt its order), so held codes are at most that many, and with demand
    above the stock, sold + held is the whole stock."""
    delivered = sum(len(codes) for _, codes in history.orders.values())
    sold_out = any("OUT_OF_STOCK" in label for label in history.refused)
    held = stock["held"]
    return [
        *check_flash_sale(history, stock),
        Check("codes sold + held by cut-off checkouts == codes imported (demand exceeded stock)"
              if sold_out else "codes held == codes sold",
              len(history.imported) if sold_out else delivered,
              stock["allocated"] + (held if sold_out and held <= checkouts_cut_off else 0)),
        Check("codes still held beyond the checkouts cut off unanswered", 0,
              max(0, held - checkouts_cut_off)),
        Check("callbacks not answered success (duplicates included)", 0, callbacks_refused),
        Check("server reconciliation ok", True, reconciliation.get("ok")),
    ]


# ----- redemption ----------------------------------------------------------------------------


@dataclass
class RedemptionHistory(Answers):
    """``redemptions``: code -> the distinct redemption ids its successful redemptions
    returned; ``said_redeemed``: every code the server said was redeemed, by a 200 or by a
    409 ALREADY_REDEEMED; ``stale_reads``: verify answers ``valid`` for a code whose
    redemption had been acknowledged before the verify request was sent."""

    redemptions: dict[str, set[str]] = field(default_factory=dict)
    said_redeemed: set[str] = field(default_factory=set)
    stale_reads: int = 0

    def record(self, code: str, status: int, error_code: str | None,
               redemption_id: str | None) -> None:
        """Remembers what a redeem answer said about ``code``."""
        if status == 200 and redemption_id is not None:
            self.redemptions.setdefault(code, set()).add(redemption_id)
            self.said_redeemed.add(code)
        elif error_code == "ALREADY_REDEEMED":
            self.said_redeemed.add(code)


def check_terminals(history: RedemptionHistory, stock: Stock, sold: int) -> list[Check]:
    """Redeemed count from stock equals the distinct successful redemptions; no code twice;
    every ALREADY_REDEEMED refusal is explained by a redemption we saw."""
    ids = {rid for rids in history.redemptions.values() for rid in rids}
    return [
        Check("stock redeemed == distinct successful redemptions", stock["redeemed"], len(ids)),
        Check("codes with more than one redemption", 0, _more_than_once(history.redemptions)),
        Check("codes said redeemed without exactly one redemption", 0, _not_once(history)),
        Check("allocated + redeemed == codes sold", sold, stock["allocated"] + stock["redeemed"]),
        Check("verify said valid after an acknowledged redemption", 0, history.stale_reads),
        *answer_checks(history, "ALREADY_REDEEMED or RATE_LIMITED"),
    ]


def check_double_redeem(history: RedemptionHistory, stock: Stock) -> list[Check]:
    """Each single-use code the server said was redeemed has exactly one redemption (a code
    refused as ALREADY_REDEEMED whose redemption no answer reported counts as not once), and
    the stock agrees."""
    redeemed_codes = sum(1 for rids in history.redemptions.values() if rids)
    return [
        Check("codes said redeemed without exactly one redemption", 0, _not_once(history)),
        Check("codes with more than one redemption", 0, _more_than_once(history.redemptions)),
        Check("stock redeemed == codes redeemed", stock["redeemed"], redeemed_codes),
        *answer_checks(history, "ALREADY_REDEEMED or RATE_LIMITED"),
    ]


def _more_than_once(redemptions: Mapping[str, set[str]]) -> int:
    return sum(1 for rids in redemptions.values() if len(rids) > 1)


def _not_once(history: RedemptionHistory) -> int:
    """Codes the server said were redeemed whose redemptions we did not see exactly once: two
    or more is a double redemption; none means a refusal (ALREADY_REDEEMED) that no answer
    explains."""
    return sum(1 for code in history.said_redeemed
               if len(history.redemptions.get(code, ())) != 1)


# ----- report --------------------------------------------------------------------------------

PASSED_LINE = "invariants: all {n} passed"
FAILED_LINE = "invariants: {failed} of {n} FAILED"


def all_passed(checks: Iterable[Check]) -> bool:
    return all(check.passed for check in checks)


def format_report(title: str, checks: Sequence[Check], notes: Sequence[str] = ()) -> str:
    """The invariants as a table (check, expected, actual, PASS/FAIL), then ``notes``, then
    one line with the verdict (:data:`PASSED_LINE` or :data:`FAILED_LINE`)."""
    width = max([len("check"), *(len(check.name) for check in checks)])
    lines = [f"=== {title} ===",
             f"{'check':<{width}}  {'expected':>10}  {'actual':>10}  result"]
    for check in checks:
        verdict = "PASS" if check.passed else "FAIL"
        lines.append(f"{check.name:<{width}}  {check.expected!s:>10}  {check.actual!s:>10}  "
                     f"{verdict}")
    lines.extend(f"  {note}" for note in notes)
    failed = sum(not check.passed for check in checks)
    lines.append(FAILED_LINE.format(failed=failed, n=len(checks)) if failed
                 else PASSED_LINE.format(n=len(checks)))
    return "\n".join(lines)


def answer_notes(answers: Answers) -> list[str]:
    """Counts of every kind of answer, most frequent first, for the notes under the table."""
    notes = [f"{label}: {n}" for label, n in answers.succeeded.most_common()]
    notes += [f"{label}: {n} (expected refusal)" for label, n in answers.refused.most_common()]
    notes += [f"{label}: {n} (UNEXPECTED)" for label, n in answers.unexpected.most_common()]
    notes.append(f"idempotent retries sent: {answers.retries}")
    return notes
