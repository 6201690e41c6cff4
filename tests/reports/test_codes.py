"""Goal: a batch's code list is a keyset page over the payloads' (batch, code id) index: pages
walk every code of the batch once, in id order, and never another batch's. Method: two batches
imported through the saga on the shop Runtime (tests/fixtures/runtime.py), on SQLite and
PostgreSQL; the pages compared with the core's own list of the batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.access import Principal
from cardsvc.catalog.batches import BatchMeta, CodeInput
from cardsvc.runtime import Runtime
from tests.fixtures.runtime import open_runtime, stock_shop

SUPPORT = Principal("user:sue", "support", None, frozenset({"trace"}), None, {})


@pytest.fixture
def shop(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    opened = open_runtime(tmp_path / "data", database_url)
    try:
        stock_shop(opened)
        yield opened
    finally:
        opened.close()


def test_a_batchs_code_pages_walk_its_codes_once_in_id_order(shop: Runtime) -> None:
    other = shop.batches.import_codes(
        BatchMeta("VIP"), [CodeInput(f"OTHER-{i:04d}-CODE", None) for i in range(7)],
        actor="test").batch_id
    seen: list[int] = []
    cursor = None
    while True:
        page = shop.codes.by_batch(SUPPORT, other, cursor=cursor, limit=3)
        assert len(page.items) <= 3
        seen += [row.code_id for row in page.items]
        assert all(row.batch_id == other for row in page.items)
        if page.next is None:
            break
        cursor = page.next
    assert seen == sorted(shop.engine.batch_code_ids(other)) and len(seen) == 7
