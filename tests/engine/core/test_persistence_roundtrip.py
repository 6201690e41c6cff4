"""Snapshots and the journal reproduce the engine's state exactly, and corruption is refused.

Goal: prove the persistence half of docs/engine.md: ``snapshot()``/``restore()`` round-trips the
whole state, ``drain_journal()`` frames are ``[len u32][seq u64][crc32 u32][payload]`` with
increasing sequence numbers and a CRC over length, seq and payload, replaying the journal onto an
empty engine (or onto a restored snapshot, for the records after it) gives an equal
``state_digest()``, and any flipped byte or truncation of a snapshot or journal frame raises
SNAPSHOT_CORRUPT or JOURNAL_CORRUPT and leaves the target engine unchanged.

Method: a fixed history touching every kind of state (SKUs with N uses and no sale, pools, PINs,
validity windows, open/released/expired/confirmed holds, orders, redemptions, rollbacks, frozen
and void codes, moved stock) is applied to an engine; copies are rebuilt from its snapshot and
journal and compared by ``state_digest()`` and by what every inspection call returns. The digest
itself is first shown to change with each mutation, so equal digests mean something.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import pytest

from cardsvc.engine import Engine
from cardsvc.errors import CardsvcError

LOOKUP_KEY = bytes(range(32))
T0_MS = 1_700_000_000_000
T0_S = T0_MS // 1000
FRAME_HEADER = struct.Struct("<IQI")

pytestmark = pytest.mark.timeout(60)


def new_engine(now_ms: int = T0_MS, key: bytes = LOOKUP_KEY) -> Engine:
    eng = Engine(key)
    eng.set_clock_ms(now_ms)
    return eng


def restored_from(snapshot: bytes, now_ms: int) -> Engine:
    """A new engine restored from ``snapshot``, its clock then stopped at ``now_ms``.

    The clock is set after ``restore()``, which puts the engine back on the system clock.
    """
    eng = new_engine(now_ms)
    eng.restore(snapshot)
    eng.set_clock_ms(now_ms)
    return eng


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(seq, payload) of each frame; asserts the documented framing and checksum."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= FRAME_HEADER.size, f"torn header at {offset}"
        length, seq, crc = FRAME_HEADER.unpack_from(data, offset)
        payload = data[offset + FRAME_HEADER.size : offset + FRAME_HEADER.size + length]
        assert len(payload) == length, f"torn payload at {offset}"
        assert zlib.crc32(struct.pack("<IQ", length, seq) + payload) == crc, f"bad CRC at {offset}"
        frames.append((seq, payload))
        offset += FRAME_HEADER.size + length
    return frames


def build_history(eng: Engine) -> None:
    """Every kind of state, with the clock moving."""
    eng.create_sku("ONE", 1, True)
    eng.create_sku("MULTI", 3, True, 7)
    eng.create_sku("FREE", 2, False)
    eng.import_codes("ONE", [f"ONE{i:04d}XY" for i in range(8)], 0, None, None, T0_S + 500, 1)
    eng.import_codes("ONE", [f"ONEP{i:04d}X" for i in range(4)], 1, ["1111", None, "2222", None])
    eng.import_codes("MULTI", [f"MUL{i:04d}ZZ" for i in range(6)], 0, None, T0_S - 5, None, 2)
    eng.import_codes("FREE", [f"FRE{i:04d}QQ" for i in range(4)], 2, None, None, T0_S + 50)
    sold = eng.allocate("ONE", 3, "order-1")
    eng.allocate("MULTI", 2, "order-2")
    eng.hold_ms("ONE", 2, "hold-open", 3_600_000)
    eng.hold_ms("ONE", 1, "hold-released", 60_000)
    eng.release_hold("hold-released")
    eng.hold_ms("ONE", 1, "hold-expiring", 1_000)
    eng.hold_ms("MULTI", 2, "hold-confirmed", 60_000)
    eng.confirm_hold("hold-confirmed", "order-3")
    eng.set_clock_ms(T0_MS + 2_000)
    assert eng.expire_holds() == 1
    eng.move_stock("ONE", 1, 1, 4)
    one_texts = [f"ONE{i:04d}XY" for i in range(8)]
    by_id = {eng.lookup(t): t for t in one_texts}
    first = eng.redeem(by_id[sold[0]], "req-1", "term-1")
    eng.redeem(by_id[sold[1]], "req-2", "term-2")
    eng.rollback(first.redemption_id, "customer refund")
    eng.redeem("FRE0000QQ", "req-3", "term-1")
    eng.redeem("fre-0001-qq", "req-4", "term-1")
    eng.freeze([sold[2]])
    eng.void([eng.lookup("ONEP0001X")])
    eng.set_clock_ms(T0_MS + 10_000)


def more_history(eng: Engine) -> None:
    """Further mutations after a snapshot."""
    eng.import_codes("ONE", ["LATE0001", "LATE0002"])
    eng.allocate("ONE", 1, "order-4")
    eng.unfreeze(eng.order_code_ids("order-1"))
    eng.redeem("FRE0000QQ", "req-5", "term-1")
    eng.hold_ms("FREE", 1, "hold-later", 60_000, 2)
    eng.create_sku("NEW", 1, True)


def observable(eng: Engine) -> dict[str, object]:
    """Everything the inspection calls show, for comparing engines beyond their digests."""
    skus = sorted(eng.skus())
    infos = []
    for code_id in range(eng.code_count() + 64):
        try:
            info = eng.code_info(code_id)
        except CardsvcError:
            continue
        infos.append(
            (
                info.code_id,
                info.sku,
                info.pool,
                info.batch,
                info.state,
                info.frozen_from,
                info.uses_left,
                info.has_pin,
                info.valid_from,
                info.valid_until,
                info.order_ref,
                info.hold_ref,
                list(info.redemption_ids),
            )
        )
    holds = {}
    for ref in ("hold-open", "hold-released", "hold-expiring", "hold-confirmed", "hold-later"):
        try:
            h = eng.get_hold(ref)
        except CardsvcError:
            continue
        holds[ref] = (h.sku, h.pool, list(h.code_ids), h.expires_at_ms, h.state, h.order_ref)
    orders = {}
    for ref in ("order-1", "order-2", "order-3", "order-4"):
        try:
            orders[ref] = list(eng.order_codes(ref))
        except CardsvcError:
            continue
    return {
        "skus": skus,
        "stock": {sku: dict(eng.stock(sku)) for sku in skus},
        "by_pool": {sku: {p: dict(c) for p, c in eng.stock_by_pool(sku).items()} for sku in skus},
        "codes": infos,
        "holds": holds,
        "orders": orders,
        "code_count": eng.code_count(),
    }


@pytest.fixture
def history() -> Engine:
    eng = new_engine()
    build_history(eng)
    eng.check_invariants()
    return eng


# ------------------------------------------------------------------------------------ digest


def test_state_digest_changes_with_every_mutation() -> None:
    eng = new_engine()
    texts = ["D0001", "D0002", "D0003"]

    def sold_text() -> str:
        return next(t for t in texts if eng.lookup(t) in eng.order_codes("o1"))

    steps: list[Callable[[], object]] = [
        lambda: eng.create_sku("A", 2),
        lambda: eng.import_codes("A", texts, 0, ["1234", None, None]),
        lambda: eng.allocate("A", 1, "o1"),
        lambda: eng.hold_ms("A", 1, "h1", 60_000),
        lambda: eng.release_hold("h1"),
        lambda: eng.move_stock("A", 1, 0, 1),
        lambda: eng.redeem(sold_text(), "r1", "t1", "1234"),
        lambda: eng.rollback(eng.code_info(eng.lookup(sold_text())).redemption_ids[0], "refund"),
        lambda: eng.freeze(eng.order_codes("o1")),
        lambda: eng.void(eng.order_codes("o1")),
    ]
    digests = [eng.state_digest()]
    for step in steps:
        step()
        digests.append(eng.state_digest())
        assert digests[-1] != digests[-2], f"digest did not change after step {len(digests) - 1}"
    assert all(isinstance(d, bytes) and len(d) >= 8 for d in digests)


# --------------------------------------------------------------------------------- snapshots


def test_snapshot_restore_reproduces_the_state(history: Engine) -> None:
    snapshot = history.snapshot()
    restored = restored_from(snapshot, history.now_ms())
    restored.check_invariants()
    assert restored.state_digest() == history.state_digest()
    assert observable(restored) == observable(history)
    # The restored engine finds codes and remembers request ids.
    again = restored.redeem("FRE0000QQ", "req-3", "term-1")
    assert again.redemption_id == history.redeem("FRE0000QQ", "req-3", "term-1").redemption_id
    assert restored.verify("ONEP0001X").status == "void"


def test_restore_replaces_the_whole_state(history: Engine) -> None:
    target = new_engine()
    target.create_sku("OTHER")
    target.import_codes("OTHER", ["ZZZ00001"])
    target.restore(history.snapshot())
    assert target.state_digest() == history.state_digest()
    assert "OTHER" not in target.skus()
    assert target.code_count() == history.code_count()


def test_snapshot_of_an_empty_engine_round_trips() -> None:
    eng = new_engine()
    restored = new_engine()
    restored.restore(eng.snapshot())
    assert restored.state_digest() == eng.state_digest()


def test_snapshot_under_another_key_is_refused(history: Engine) -> None:
    other = new_engine(key=bytes(32))
    before = other.state_digest()
    with pytest.raises(CardsvcError):
        other.restore(history.snapshot())
    assert other.state_digest() == before


def test_every_flipped_byte_of_a_snapshot_is_snapshot_corrupt() -> None:
    eng = new_engine()
    eng.create_sku("A", 2)
    eng.import_codes("A", ["FLIP0001", "FLIP0002"], 0, ["12", None], None, T0_S + 9)
    eng.allocate("A", 1, "o1")
    snapshot = eng.snapshot()
    assert len(snapshot) < 20_000
    target = new_engine()
    before = target.state_digest()
    for position in range(len(snapshot)):
        for mask in (0x01, 0x80):
            damaged = bytearray(snapshot)
            damaged[position] ^= mask
            with pytest.raises(CardsvcError) as info:
                target.restore(bytes(damaged))
            assert info.value.code == "SNAPSHOT_CORRUPT", f"byte {position} mask {mask:#x}"
    assert target.state_digest() == before


def test_truncated_or_extended_snapshot_is_snapshot_corrupt(history: Engine) -> None:
    snapshot = history.snapshot()
    target = new_engine()
    before = target.state_digest()
    n = len(snapshot)
    for damaged in (b"", snapshot[:1], snapshot[:8], snapshot[: n // 2], snapshot[:-1]):
        with pytest.raises(CardsvcError) as info:
            target.restore(damaged)
        assert info.value.code == "SNAPSHOT_CORRUPT", f"length {len(damaged)}"
    with pytest.raises(CardsvcError) as info:
        target.restore(snapshot + b"\x00")
    assert info.value.code == "SNAPSHOT_CORRUPT"
    assert target.state_digest() == before


# ----------------------------------------------------------------------------------- journal


def test_journal_frames_carry_increasing_seq_and_a_crc(history: Engine) -> None:
    first = parse_frames(history.drain_journal())
    assert first, "a history of mutations journaled nothing"
    assert history.journal_len() == 0
    assert history.drain_journal() == b""
    history.allocate("ONE", 1, "order-9")
    second = parse_frames(history.drain_journal())
    seqs = [seq for seq, _ in first + second]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_failed_calls_and_reads_journal_nothing(history: Engine) -> None:
    history.drain_journal()
    history.stock("ONE")
    history.verify("FRE0000QQ")
    with pytest.raises(CardsvcError):
        history.allocate("ONE", 10_000, "order-x")
    with pytest.raises(CardsvcError):
        history.redeem("NOSUCH01", "req-x", "term-1")
    assert history.journal_len() == 0
    assert history.drain_journal() == b""


def test_journal_replay_onto_an_empty_engine_reproduces_the_state(history: Engine) -> None:
    data = history.drain_journal()
    replica = new_engine(T0_MS + 10_000)
    assert replica.apply_journal(data) == len(parse_frames(data))
    replica.check_invariants()
    assert replica.state_digest() == history.state_digest()
    assert observable(replica) == observable(history)


def test_journal_replay_in_chunks_equals_replay_at_once(history: Engine) -> None:
    chunks = [history.drain_journal()]
    more_history(history)
    chunks.append(history.drain_journal())
    chunked = new_engine()
    for chunk in chunks:
        chunked.apply_journal(chunk)
    whole = new_engine()
    whole.apply_journal(b"".join(chunks))
    assert chunked.state_digest() == whole.state_digest() == history.state_digest()


def test_replay_after_snapshot_reproduces_the_state(history: Engine) -> None:
    history.drain_journal()
    snapshot = history.snapshot()
    more_history(history)
    later = history.drain_journal()
    assert later
    recovered = restored_from(snapshot, history.now_ms())
    recovered.apply_journal(later)
    recovered.check_invariants()
    assert recovered.state_digest() == history.state_digest()
    assert observable(recovered) == observable(history)


def test_restored_engine_continues_the_journal_sequence(history: Engine) -> None:
    drained = parse_frames(history.drain_journal())
    restored = restored_from(history.snapshot(), history.now_ms())
    restored.allocate("ONE", 1, "order-9")
    after = parse_frames(restored.drain_journal())
    assert after[0][0] == drained[-1][0] + 1


def test_every_flipped_byte_of_a_journal_frame_is_journal_corrupt() -> None:
    eng = new_engine()
    eng.create_sku("A")
    first = eng.drain_journal()
    eng.import_codes("A", ["JRNL0001"])
    data = eng.drain_journal()
    assert len(parse_frames(data)) == 1
    target = new_engine()
    target.apply_journal(first)
    before = target.state_digest()
    for position in range(len(data)):
        for mask in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[position] ^= mask
            with pytest.raises(CardsvcError) as info:
                target.apply_journal(bytes(damaged))
            assert info.value.code == "JOURNAL_CORRUPT", f"byte {position} mask {mask:#x}"
    assert target.state_digest() == before
    assert target.apply_journal(data) == 1


def test_torn_journal_tail_is_journal_corrupt(history: Engine) -> None:
    data = history.drain_journal()
    boundaries = {0}
    for _, payload in parse_frames(data):
        boundaries.add(max(boundaries) + FRAME_HEADER.size + len(payload))
    target = new_engine()
    before = target.state_digest()
    for cut in (1, 4, FRAME_HEADER.size - 1, FRAME_HEADER.size, FRAME_HEADER.size + 1):
        if len(data) - cut in boundaries:
            continue
        with pytest.raises(CardsvcError) as info:
            target.apply_journal(data[: len(data) - cut])
        assert info.value.code == "JOURNAL_CORRUPT", f"cut {cut}"
        # An operation that raises changes nothing, so no prefix of the journal is applied.
        assert target.state_digest() == before, "a rejected journal changed the engine"
