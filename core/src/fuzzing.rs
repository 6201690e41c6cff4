//! Entry points for fuzzing the decoders of bytes that come from disk or Redis: journal frame
//! scanning and reading, record decoding and replay, and snapshot decoding and restore.
//!
//! Each entry point takes arbitrary bytes and must return without panicking; it also checks the
//! property that makes the checksums worth having: a frame is accepted only if its CRC-32 (over
//! length, sequence number and payload, recomputed here independently) matches, and a snapshot
//! only if its trailer CRC matches and its state passes every invariant. The same functions run
//! under `cargo fuzz` (core/fuzz, nightly) and under the stable, bounded mutation loop of
//! `fuzz_tests.rs` that `cargo test` runs.

use crate::engine::Engine;
use crate::journal::{read_frames, scan_frames, Rec, FRAME_HEADER};

/// The secret every fuzz engine uses (seed snapshots are taken under it).
pub const FUZZ_SECRET: [u8; 32] = [7u8; 32];

fn crc_holds(data: &[u8], offset: usize) -> bool {
    let Some(head) = data.get(offset..offset + FRAME_HEADER) else { return false };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    let Some(payload) = data.get(offset + FRAME_HEADER..offset + FRAME_HEADER + len) else { return false };
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..12]);
    h.update(payload);
    h.finalize() == crc
}

/// Journal bytes: frames are read and scanned, every accepted frame's checksum is re-verified,
/// every accepted payload is decoded, and the whole input is replayed onto a fresh engine.
/// Panics (the fuzz failure) when a frame with a wrong checksum is accepted or when the scan and
/// the reader disagree.
pub fn journal_input(data: &[u8]) {
    let scan = scan_frames(data);
    match read_frames(data) {
        Ok(frames) => {
            assert!(scan.error.is_none() || scan.error.as_deref() == Some("sequence number out of order"), "reader accepted what the scan refused: {scan:?}");
            for f in &frames {
                assert!(crc_holds(data, f.offset), "frame at {} accepted with a bad checksum", f.offset);
                let _ = Rec::decode(f.payload);
            }
            if scan.error.is_none() {
                assert_eq!(scan.valid_len, data.len());
                assert_eq!(scan.records, frames.len() as u64);
            }
        }
        Err(e) => assert_eq!(e.code(), "JOURNAL_CORRUPT"),
    }
    assert!(scan.valid_len <= data.len());
    if let Ok(engine) = Engine::new(&FUZZ_SECRET) {
        engine.set_clock_ms(Some(1_800_000_000_000));
        match engine.apply_journal(data) {
            // Accepted records must leave a consistent state. After JOURNAL_CORRUPT the engine
            // is not used (recovery refuses to start), so only the error is checked.
            Ok(_) => {
                if let Err(e) = engine.check_invariants() {
                    panic!("replay accepted records that leave an inconsistent state: {e}");
                }
                let _ = engine.state_digest();
                let _ = engine.snapshot();
            }
            Err(e) => assert_eq!(e.code(), "JOURNAL_CORRUPT"),
        }
    }
}

/// Snapshot bytes: a snapshot is accepted only with a matching trailer CRC and a state that
/// passes every invariant; an accepted state is then used (stock, code info, redemptions, a
/// second snapshot that must restore to the same digest) and must not panic.
pub fn snapshot_input(data: &[u8]) {
    let engine = match Engine::from_snapshot(&FUZZ_SECRET, data) {
        Ok(e) => e,
        Err(e) => {
            assert_eq!(e.code(), "SNAPSHOT_CORRUPT");
            return;
        }
    };
    let (body, trailer) = data.split_at(data.len() - 4);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    assert_eq!(crc32fast::hash(body), stored, "snapshot accepted with a bad checksum");
    engine.set_clock_ms(Some(1_800_000_000_000));
    if let Err(e) = engine.check_invariants() {
        panic!("accepted snapshot is inconsistent: {e}");
    }
    exercise(&engine);
    let again = engine.snapshot();
    match Engine::from_snapshot(&FUZZ_SECRET, &again) {
        Ok(back) => assert_eq!(back.state_digest(), engine.state_digest(), "snapshot round trip changed the state"),
        Err(e) => panic!("a snapshot of an accepted state is refused: {e}"),
    }
}

/// Reads and uses every part of a restored state the way callers do.
fn exercise(engine: &Engine) {
    for sku in engine.skus() {
        let _ = engine.stock_by_pool(&sku);
        let _ = engine.locked_codes(Some(&sku));
    }
    let shards = engine.skus.load().shards.clone();
    for shard in shards.iter() {
        let ids: Vec<u32> = shard.state.lock().ids().collect();
        for id in ids {
            let id = u64::from(id);
            if let Ok(info) = engine.code_info(id) {
                for rid in info.redemption_ids {
                    let _ = engine.get_redemption(rid);
                    let _ = engine.rollback(rid, "fuzz");
                }
                let _ = engine.withdraw(&[id]);
                let _ = engine.unlock(&[id]);
            }
        }
    }
    let _ = engine.expire_holds();
    let _ = engine.drain_journal();
    if let Err(e) = engine.check_invariants() {
        panic!("using a restored state broke an invariant: {e}");
    }
}
