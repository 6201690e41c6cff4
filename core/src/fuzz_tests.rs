//! Bounded fuzzing of the journal and snapshot decoders on stable Rust, inside `cargo test`.
//!
//! Goal: no input makes a decoder panic, and no damaged frame or snapshot is accepted
//! (`crate::fuzzing` states and checks both properties).
//!
//! Method: seeds are real journal bytes and snapshots of an engine that used every record type
//! (imports, orders, holds, redemptions and rollbacks, batches, withdrawals, PIN failures and
//! lockouts). A seeded RNG mutates them (bit flips, byte overwrites, insertions, deletions,
//! truncation, spliced frames) and, for half of the inputs, recomputes the checksums afterwards
//! so the structural decoders behind the CRC are reached too. Every file under
//! `core/fuzz/regressions/{journal,snapshot}/` is replayed first; a failing input is written
//! there (`crash-<hash>.bin`) before the test fails, so it stays a regression input. Iterations:
//! 800 per decoder by default (a few seconds), `CARDSVC_FUZZ_ITERS` to choose, 200,000 with `CARDSVC_SLOW=1`.
//! The same entry points run under `cargo fuzz` for open-ended runs (core/fuzz/README.md).

use crate::engine::{Engine, Texts};
use crate::fuzzing::{journal_input, snapshot_input, FUZZ_SECRET};
use crate::journal::{frame, read_frames};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn iterations() -> usize {
    if let Some(n) = std::env::var("CARDSVC_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    if std::env::var("CARDSVC_SLOW").as_deref() == Ok("1") {
        200_000
    } else {
        800
    }
}

fn regressions(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("regressions").join(kind)
}

/// An engine that used every record type, and its journal and a snapshot (small on purpose: the
/// fuzz loop decodes thousands of variants of them).
fn seeds() -> (Vec<u8>, Vec<u8>) {
    let e = Engine::new(&FUZZ_SECRET).unwrap();
    e.set_clock_ms(Some(1_800_000_000_000));
    e.set_pin_policy(2, 1_000, 4_000).unwrap();
    e.create_sku("A", 2, true, Some(30)).unwrap();
    e.create_sku("B", 1, false, None).unwrap();
    let a: Vec<String> = (0..12).map(|i| format!("A{i:04}")).collect();
    let b: Vec<String> = (0..6).map(|i| format!("B{i:04}")).collect();
    let mut pins = Texts::default();
    for i in 0..12 {
        pins.push((i % 3 == 0).then_some("1234"));
    }
    let a_texts: Texts = a.iter().map(String::as_str).collect();
    e.import_codes("A", &a_texts, Some(&pins), 0, None, Some(1_900_000_000), 3).unwrap();
    e.import_codes("B", &b.iter().map(String::as_str).collect(), None, 1, None, None, 0).unwrap();
    e.allocate("A", 6, "o1", 0).unwrap();
    e.hold("A", 2, "h1", 5_000, 0).unwrap();
    e.hold("A", 1, "h2", 5_000, 0).unwrap();
    e.confirm_hold("h1", "o2").unwrap();
    e.release_hold("h2").unwrap();
    // FEFO sells the last imported first: a[11]..a[6] went to o1 (a[9] and a[6] have PINs).
    let r = e.redeem(&a[10], "r1", "t1", None).unwrap();
    e.rollback(r.redemption_id, "why").unwrap();
    let batch: Texts = [a[9].as_str(), a[11].as_str(), "NOPE", b[0].as_str(), a[6].as_str()].into_iter().collect();
    let mut bpins = Texts::default();
    for p in [Some("1234"), None, None, None, Some("0000")] {
        bpins.push(p);
    }
    e.redeem_batch("batch-1", &batch, Some(&bpins), "t2").unwrap();
    let _ = e.verify(&a[6], Some("0000"));
    e.withdraw(&[u64::from(e.lookup(&b[2]).unwrap().0), u64::from(e.lookup(&b[3]).unwrap().0)]).unwrap();
    e.restore_to_sale(&[u64::from(e.lookup(&b[3]).unwrap().0)]).unwrap();
    e.freeze(&[u64::from(e.lookup(&b[4]).unwrap().0)]).unwrap();
    e.void(&[u64::from(e.lookup(&b[5]).unwrap().0)]).unwrap();
    e.move_stock("B", 1, 1, 2).unwrap();
    e.set_clock_ms(Some(1_800_000_010_000));
    e.expire_holds();
    let journal = e.drain_journal();
    let snapshot = e.snapshot();
    (journal, snapshot)
}

fn refresh_frame_crcs(data: &mut [u8]) {
    let mut at = 0usize;
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let end = at + 16 + len;
        if end > data.len() {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&data[at..at + 12]);
        h.update(&data[at + 16..end]);
        data[at + 12..at + 16].copy_from_slice(&h.finalize().to_le_bytes());
        at = end;
    }
}

fn refresh_snapshot_crc(data: &mut [u8]) {
    if data.len() >= 4 {
        let n = data.len() - 4;
        let crc = crc32fast::hash(&data[..n]);
        data[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

fn mutate(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if d.is_empty() {
            d.push(rng.gen());
            continue;
        }
        let at = rng.gen_range(0..d.len());
        match rng.gen_range(0..7) {
            0 => d[at] ^= 1 << rng.gen_range(0..8),
            1 => d[at] = rng.gen(),
            2 => d[at] = [0, 0xff, 0x7f, 0x80, 1][rng.gen_range(0..5)],
            3 => {
                let n = rng.gen_range(1..=8.min(d.len() - at));
                d.drain(at..at + n);
            }
            4 => {
                let bytes: Vec<u8> = (0..rng.gen_range(1..=8)).map(|_| rng.gen()).collect();
                d.splice(at..at, bytes);
            }
            5 => d.truncate(at),
            _ => {
                // Splice in a slice of another input (whole frames, sections).
                if !other.is_empty() {
                    let from = rng.gen_range(0..other.len());
                    let n = rng.gen_range(1..=64.min(other.len() - from));
                    d.splice(at..at, other[from..from + n].iter().copied());
                }
            }
        }
    }
    d
}

fn run_one(kind: &str, input: &[u8]) {
    let caught = std::panic::catch_unwind(|| match kind {
        "journal" => journal_input(input),
        _ => snapshot_input(input),
    });
    if caught.is_err() {
        let name = format!("crash-{:016x}.bin", crc32fast::hash(input) as u64 | ((input.len() as u64) << 32));
        let dir = regressions(kind);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(&name), input);
        panic!("{kind} decoder failed on an input kept as core/fuzz/regressions/{kind}/{name}");
    }
}

fn replay_regressions(kind: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(regressions(kind)) else { return 0 };
    let mut n = 0;
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|x| x == "bin") {
            run_one(kind, &std::fs::read(entry.path()).unwrap_or_default());
            n += 1;
        }
    }
    n
}

#[test]
fn fuzz_journal_decoding_never_panics_nor_accepts_a_bad_frame() {
    let (journal, snapshot) = seeds();
    replay_regressions("journal");
    journal_input(&journal);
    let frames = read_frames(&journal).unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for i in 0..iterations() {
        // Mostly a prefix of whole frames, so replay gets past the opening records.
        let cut = frames.get(rng.gen_range(0..frames.len())).map_or(journal.len(), |f| f.offset);
        let base = if i % 3 == 0 { &journal[..] } else { &journal[..cut.max(1)] };
        let mut input = mutate(&mut rng, base, &snapshot);
        if i % 2 == 0 {
            refresh_frame_crcs(&mut input);
        }
        run_one("journal", &input);
        // A frame of a record with a damaged payload, correctly checksummed, alone.
        if i % 16 == 0 {
            let f = &frames[rng.gen_range(0..frames.len())];
            let payload = mutate(&mut rng, f.payload, &[]);
            let mut one = journal[..frames.get(1).map_or(0, |f| f.offset)].to_vec();
            frame(&mut one, 2, &payload);
            run_one("journal", &one);
        }
    }
}

#[test]
fn fuzz_snapshot_decoding_never_panics_nor_accepts_a_bad_snapshot() {
    let (journal, snapshot) = seeds();
    replay_regressions("snapshot");
    snapshot_input(&snapshot);
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    for i in 0..iterations() {
        let mut input = mutate(&mut rng, &snapshot, &journal);
        if i % 2 == 0 {
            refresh_snapshot_crc(&mut input);
        }
        run_one("snapshot", &input);
    }
}

#[test]
fn a_flipped_bit_is_never_accepted() {
    // Exhaustive over one small journal: every single-bit flip is refused by the reader.
    let (journal, snapshot) = seeds();
    let small = &journal[..read_frames(&journal).unwrap().get(4).map_or(journal.len(), |f| f.offset)];
    for at in 0..small.len() {
        for bit in 0..8 {
            let mut d = small.to_vec();
            d[at] ^= 1 << bit;
            assert!(read_frames(&d).is_err(), "flip of bit {bit} at byte {at} accepted");
        }
    }
    for at in (0..snapshot.len()).step_by(7) {
        let mut d = snapshot.clone();
        d[at] ^= 0x10;
        assert!(Engine::from_snapshot(&FUZZ_SECRET, &d).is_err(), "snapshot flip at {at} accepted");
    }
}
