"""Checks that a recovered engine keeps every acknowledged effect and is internally consistent.

Goal: one place that states what "recovered correctly" means after a crash, for the crash tests
and the corruption tests alike:

* every effect the side file acknowledges is present. An acknowledged order still owns exactly its
  codes. An acknowledged hold still exists, confirmed or released where that was acknowledged. An
  acknowledged redemption exists, belongs to its code and is rolled back only when a rollback was
  at least attempted (and is rolled back when the rollback was acknowledged). Every acknowledged
  import batch is there;
* no code is in two orders. The engine's order lists and each code's ``order_ref`` agree, and
  the lists are disjoint;
* no code is redeemed more often than allowed. Its live (not rolled back) redemptions number at
  most its SKU's uses, ``uses_left`` equals uses minus live redemptions, and a request id names
  one redemption only;
* stock counts equal codes by state: ``check_invariants()``, plus our own count over
  ``code_info`` of every code compared with ``stock()``.

Method: every code id is enumerated (ids come in dense chunks of ``CODE_ID_CHUNK`` per SKU, and
the walk stops once it has found ``code_count()`` codes), every redemption is read back, and each
side-file line is checked against the engine. Failures are plain ``assert``s carrying the
offending ids, so pytest shows what broke.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cardsvc.engine import CodeInfo, Engine
from cardsvc.errors import CardsvcError, ErrorCode

from .crash_worker import SKU_BY_NAME, code_text

CODE_ID_CHUNK = 4096
"""Code ids are handed to SKUs in chunks of this size (docs/engine.md, Codes)."""
CODE_ID_CHUNKS_MAX = 4096
"""Bounds the id walk (16.7 M ids, far beyond any test's engine)."""
STOCK_STATES = ("held", "allocated", "redeemed", "frozen", "void")
HOLD_STATES = ("open", "confirmed", "released", "expired")
DURABLE_ACK_OPS = frozenset(
    {"import", "allocate", "hold", "confirm", "release", "redeem", "rollback"}
)
"""Side-file ops that the worker writes only after ``wait_last()`` returned."""


@dataclass(frozen=True)
class Census:
    """What a consistency check saw, for the tests' summaries."""

    codes: int
    orders: int
    redemptions: int
    live_redemptions: int


def all_code_infos(engine: Engine) -> list[CodeInfo]:
    """``code_info`` of every code in the engine."""
    total = engine.code_count()
    infos: list[CodeInfo] = []
    for chunk in range(CODE_ID_CHUNKS_MAX):
        if len(infos) >= total:
            break
        for code_id in range(chunk * CODE_ID_CHUNK, (chunk + 1) * CODE_ID_CHUNK):
            try:
                infos.append(engine.code_info(code_id))
            except CardsvcError as error:
                assert error.code is ErrorCode.CODE_NOT_FOUND, error
                break
    assert len(infos) == total, f"found {len(infos)} codes by id, code_count() is {total}"
    return infos


def check_consistency(engine: Engine, uses_by_sku: Mapping[str, int]) -> Census:
    """The engine's internal promises: stock equals codes by state, one order per code, no
    code redeemed beyond its uses, one redemption per request id.

    Stops the engine's clock and expires the due holds first: ``stock()`` expires due holds
    itself, so with a running clock a hold could expire between the count and ``stock()``."""
    engine.set_clock_ms(engine.now_ms())
    engine.expire_holds()
    engine.check_invariants()
    infos = all_code_infos(engine)
    by_state: dict[str, Counter[str]] = defaultdict(Counter)
    by_order: dict[str, list[int]] = defaultdict(list)
    request_ids: dict[str, int] = {}
    redemptions = live_total = 0
    for info in infos:
        by_state[info.sku][info.state] += 1
        if info.order_ref is not None:
            by_order[info.order_ref].append(info.code_id)
        live = 0
        for redemption_id in info.redemption_ids:
            redemption = engine.get_redemption(redemption_id)
            assert redemption.code_id == info.code_id, (redemption_id, info.code_id)
            first = request_ids.setdefault(redemption.request_id, redemption_id)
            assert first == redemption_id, f"request id {redemption.request_id} redeemed twice"
            live += redemption.rolled_back_at_ms is None
        redemptions += len(info.redemption_ids)
        live_total += live
        check_uses(info, live, uses_by_sku[info.sku])
        check_hold_membership(engine, info)
    for sku, counts in by_state.items():
        stock = engine.stock(sku)
        for state in STOCK_STATES:
            assert stock[state] == counts[state], (sku, state, stock, dict(counts))
        in_pool = stock["available"] + stock["expired"]
        assert in_pool == counts["available"], (sku, stock, dict(counts))
        assert stock["total"] == sum(counts.values()), (sku, stock, dict(counts))
    seen: dict[int, str] = {}
    for order_ref, ids in by_order.items():
        listed = engine.order_codes(order_ref)
        assert sorted(listed) == sorted(ids), f"order {order_ref}: lists {listed}, codes say {ids}"
        for code_id in listed:
            other = seen.setdefault(code_id, order_ref)
            assert other == order_ref, f"code {code_id} is in orders {other} and {order_ref}"
    return Census(len(infos), len(by_order), redemptions, live_total)


def check_uses(info: CodeInfo, live: int, uses: int) -> None:
    assert 0 <= live <= uses, f"code {info.code_id} has {live} live redemptions of {uses} uses"
    if info.state in ("frozen", "void"):
        return
    assert info.uses_left == uses - live, (info.code_id, info.uses_left, uses, live)
    assert (info.state == "redeemed") == (info.uses_left == 0), (info.code_id, info.state)


def check_hold_membership(engine: Engine, info: CodeInfo) -> None:
    if info.state != "held":
        assert info.hold_ref is None, (info.code_id, info.state, info.hold_ref)
        return
    assert info.hold_ref is not None, f"held code {info.code_id} names no hold"
    hold = engine.get_hold(info.hold_ref)
    assert hold.state == "open", (info.code_id, hold.hold_ref, hold.state)
    assert info.code_id in hold.code_ids, (info.code_id, hold.hold_ref)


def check_acknowledged(engine: Engine, lines: Sequence[dict[str, Any]]) -> Counter[str]:
    """Every acknowledged effect in ``lines`` (side-file records) is present in ``engine``.
    Returns how many lines of each op were checked."""
    rollback_attempted = {
        line["redemption_id"] for line in lines if line["op"] == "rollback_intent"
    }
    rollback_acked = {line["redemption_id"] for line in lines if line["op"] == "rollback"}
    confirmed = {line["hold_ref"]: line for line in lines if line["op"] == "confirm"}
    released = {line["hold_ref"]: line for line in lines if line["op"] == "release"}
    checked: Counter[str] = Counter()
    for line in lines:
        op = line["op"]
        checked[op] += 1
        if op == "import":
            check_import(engine, line)
        elif op in ("allocate", "confirm"):
            listed = engine.order_codes(line["order_ref"])
            assert sorted(listed) == sorted(line["ids"]), (line, listed)
            for code_id in line["ids"]:
                assert engine.code_info(code_id).order_ref == line["order_ref"], (line, code_id)
        elif op == "hold":
            check_hold(
                engine, line, confirmed.get(line["hold_ref"]), released.get(line["hold_ref"])
            )
        elif op == "redeem":
            check_redemption(engine, line, rollback_attempted, rollback_acked)
        elif op == "rollback":
            redemption = engine.get_redemption(line["redemption_id"])
            assert redemption.rolled_back_at_ms is not None, line
    return checked


def check_import(engine: Engine, line: dict[str, Any]) -> None:
    spec = SKU_BY_NAME[line["sku"]]
    assert line["count"] == spec.batch_codes, line
    for index in (0, spec.batch_codes // 2, spec.batch_codes - 1):
        code_id = engine.lookup(code_text(spec.name, line["batch"], index))
        assert engine.code_info(code_id).sku == spec.name, (line, index)


def check_hold(
    engine: Engine,
    line: dict[str, Any],
    confirm: dict[str, Any] | None,
    release: dict[str, Any] | None,
) -> None:
    hold = engine.get_hold(line["hold_ref"])
    assert hold.sku == line["sku"], (line, hold)
    assert sorted(hold.code_ids) == sorted(line["ids"]), (line, hold.code_ids)
    assert hold.expires_at_ms == line["expires_at_ms"], (line, hold.expires_at_ms)
    assert hold.state in HOLD_STATES, (line, hold.state)
    if confirm is not None:
        assert (hold.state, hold.order_ref) == ("confirmed", confirm["order_ref"]), (line, hold)
    if release is not None:
        allowed = ("released",) if release["returned"] else ("released", "expired")
        assert hold.state in allowed, (line, release, hold.state)
    if hold.state == "open":
        for code_id in hold.code_ids:
            info = engine.code_info(code_id)
            assert (info.state, info.hold_ref) == ("held", hold.hold_ref), (line, info)


def check_redemption(
    engine: Engine, line: dict[str, Any], rollback_attempted: set[int], rollback_acked: set[int]
) -> None:
    redemption_id = line["redemption_id"]
    redemption = engine.get_redemption(redemption_id)
    got = (redemption.code_id, redemption.request_id, redemption.terminal)
    assert got == (line["code_id"], line["request_id"], line["terminal"]), (line, got)
    assert redemption_id in engine.code_info(line["code_id"]).redemption_ids, line
    if redemption_id in rollback_acked:
        assert redemption.rolled_back_at_ms is not None, line
    elif redemption_id not in rollback_attempted:
        assert redemption.rolled_back_at_ms is None, f"rolled back without a rollback: {line}"


def uses_by_sku() -> dict[str, int]:
    """Uses per code of the crash worker's SKUs."""
    return {name: spec.uses_per_code for name, spec in SKU_BY_NAME.items()}
