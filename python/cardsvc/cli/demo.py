"""``cardsvc demo``: a short walk through the engine, in memory, with every code masked.

It creates a SKU, imports a few generated codes (one of them twice, to show duplicate detection),
sells two by ``allocate`` and two through a hold that is confirmed, redeems one, replays that
redemption, shows ``ALREADY_REDEEMED`` and ``NOT_SOLD``, rolls the redemption back, redeems the
code again and prints the stock after each stage. Nothing is persisted.

Only the public ``cardsvc.engine.Engine`` API is used. Codes never appear in full: the engine
returns code ids and the demo shows ``mask_code`` of the text it generated.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cardsvc.engine import LOOKUP_KEY_LEN, Engine
from cardsvc.errors import CardsvcError, ErrorCode
from cardsvc.masking import mask_code

SKU = "DEMO-GIFT-50"
TERMINAL = "pos-1"
HOLD_TTL_SECONDS = 30
DEMO_CODE_COUNT = 6  # 2 sold by allocate, 2 through a hold, 2 left in stock
# No 0/O or 1/I: generated codes are read aloud and typed by people.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_GROUPS = 4
CODE_GROUP_LEN = 4


def generate_codes(count: int) -> list[str]:
    """``count`` random codes shaped ``XXXX-XXXX-XXXX-XXXX`` (80 bits each, from ``secrets``)."""
    return [
        "-".join(
            "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_LEN))
            for _ in range(CODE_GROUPS)
        )
        for _ in range(count)
    ]


def run_demo(console: Console, codes: Sequence[str] | None = None) -> None:
    """Run the walk-through on a fresh in-memory engine, printing to ``console``.

    ``codes`` (at least :data:`DEMO_CODE_COUNT`, distinct) replaces the generated codes; tests use
    it to check that no full code is printed. Raises ``ValueError`` for too few codes; any engine
    error other than the ones the demo provokes on purpose propagates, since it is a bug.
    """
    texts = list(codes) if codes is not None else generate_codes(DEMO_CODE_COUNT)
    if len(texts) < DEMO_CODE_COUNT:
        raise ValueError(f"the demo needs at least {DEMO_CODE_COUNT} codes")
    engine = Engine(secrets.token_bytes(LOOKUP_KEY_LEN))
    console.rule("cardsvc demo: an in-memory engine, nothing is persisted")
    text_of = _create_and_import(console, engine, texts)
    sold = _sell(console, engine, text_of)
    _show_stock(console, engine, "stock after selling")
    sold_ids = set(sold)
    unsold = [text for code_id, text in sorted(text_of.items()) if code_id not in sold_ids]
    _redeem_and_rollback(console, engine, text_of[sold[0]], unsold[0])
    _show_stock(console, engine, "stock at the end")
    engine.check_invariants()


def _create_and_import(console: Console, engine: Engine, texts: list[str]) -> dict[int, str]:
    """Create the SKU and import ``texts`` plus one repeat; returns code id -> code text."""
    _step(console, f"create SKU {SKU}: single use, redeemable only after a sale")
    engine.create_sku(SKU, uses_per_code=1, redeem_requires_sale=True)
    items = [*texts, texts[0]]
    _step(console, f"import {len(items)} codes, the first one twice")
    ids, duplicates = engine.import_codes(SKU, items)
    duplicate_positions = set(duplicates)
    kept = [text for index, text in enumerate(items) if index not in duplicate_positions]
    text_of = dict(zip(ids, kept, strict=True))
    table = Table("code id", "code (masked)")
    for code_id, text in text_of.items():
        table.add_row(str(code_id), mask_code(text))
    console.print(table)
    _say(console, f"{len(ids)} imported; duplicates at input positions {sorted(duplicates)}")
    return text_of


def _sell(console: Console, engine: Engine, text_of: dict[int, str]) -> list[int]:
    """Sell two codes by allocate (and replay it), two through a confirmed hold; returns all ids."""
    _step(console, "allocate 2 codes to order order-1001")
    allocated = engine.allocate(SKU, 2, "order-1001")
    _say(console, f"order-1001 got {_masked(allocated, text_of)}")
    again = engine.allocate(SKU, 2, "order-1001")
    same = again == allocated
    _say(console, f"retry with the same order ref returns the same codes: {_yes(same)}")

    _step(console, f"hold 2 codes for {HOLD_TTL_SECONDS} s as hold-7, then confirm as order-1002")
    hold = engine.hold(SKU, 2, hold_ref="hold-7", ttl_seconds=HOLD_TTL_SECONDS)
    _say(console, f"hold-7 is {hold.state}, holding {_masked(hold.code_ids, text_of)}")
    _show_stock(console, engine, "stock while the hold is open")
    confirmed = engine.confirm_hold("hold-7", "order-1002")
    _say(console, f"order-1002 got {_masked(confirmed, text_of)}")
    return [*allocated, *confirmed]


def _redeem_and_rollback(console: Console, engine: Engine, sold: str, unsold: str) -> None:
    """Redeem a sold code, replay it, provoke ALREADY_REDEEMED and NOT_SOLD, roll back."""
    _step(console, f"redeem {mask_code(sold)} at terminal {TERMINAL} (request req-1)")
    first = engine.redeem(sold, "req-1", TERMINAL)
    _say(console, f"redemption {first.redemption_id}, uses left {first.uses_left}")
    replay = engine.redeem(sold, "req-1", TERMINAL)
    same = replay.redemption_id == first.redemption_id
    _say(console, f"retry of req-1 returns the original redemption: {_yes(same)}")
    _step(console, f"redeem {mask_code(sold)} again (request req-2)")
    _expect_error(
        ErrorCode.ALREADY_REDEEMED, console, lambda: engine.redeem(sold, "req-2", TERMINAL)
    )
    _step(console, f"redeem {mask_code(unsold)}, which was never sold (request req-3)")
    _expect_error(ErrorCode.NOT_SOLD, console, lambda: engine.redeem(unsold, "req-3", TERMINAL))

    _step(console, f"roll back redemption {first.redemption_id}")
    rolled_back = engine.rollback(first.redemption_id, "customer refund")
    _say(console, f"rolled back ({rolled_back.rollback_reason}); the code has a use again")
    again = engine.rollback(first.redemption_id, "customer refund")
    same = again.rolled_back_at_ms == rolled_back.rolled_back_at_ms
    _say(console, f"rolling back again returns the same record: {_yes(same)}")
    second = engine.redeem(sold, "req-4", TERMINAL)
    _say(console, f"the restored use redeems again: redemption {second.redemption_id}")


def _expect_error(code: ErrorCode, console: Console, call: Callable[[], object]) -> None:
    """Run ``call`` and print the CardsvcError it must raise; any other outcome is a bug."""
    try:
        call()
    except CardsvcError as error:
        if error.code is not code:
            raise
        text = f"refused: {error.code.value}: {error.message}"
        details = ", ".join(f"{key}={value}" for key, value in error.details.items())
        _say(console, f"{text} ({details})" if details else text)
        return
    raise AssertionError(f"expected {code.value}")


def _show_stock(console: Console, engine: Engine, title: str) -> None:
    stock = engine.stock(SKU)
    table = Table(*stock.keys(), title=title)
    table.add_row(*(str(count) for count in stock.values()))
    console.print(table)


def _masked(code_ids: Sequence[int], text_of: dict[int, str]) -> str:
    return ", ".join(mask_code(text_of[code_id]) for code_id in code_ids)


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _step(console: Console, text: str) -> None:
    console.print(f"\n[bold cyan]>[/] [bold]{escape(text)}[/]")


def _say(console: Console, text: str) -> None:
    console.print(f"  {escape(text)}")
