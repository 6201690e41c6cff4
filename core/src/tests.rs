//! Engine-level tests in plain Rust: each operation's contract, exactly-once redemption and no
//! oversell under threads, and journal/snapshot round trips (digest equality).
//!
//! Method: small deterministic scenarios with a manual clock; thread tests start together on a
//! barrier and check the totals and the engine's own invariant checker afterwards.

use crate::engine::{Engine, RedemptionFilter, Texts, REDEMPTION_LIST_MAX};
use crate::error::CoreError;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};

const T0: u64 = 1_800_000_000_000;

fn engine() -> Engine {
    let e = Engine::new(&[7u8; 32]).unwrap();
    e.set_clock_ms(Some(T0));
    e
}

fn texts(items: &[String]) -> Texts {
    items.iter().map(String::as_str).collect()
}

fn codes(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}

fn import(e: &Engine, sku: &str, list: &[String], pool: u32, until: Option<u32>) -> Vec<u32> {
    let (ids, dups) = e.import_codes(sku, &texts(list), None, pool, None, until, 0).unwrap();
    assert!(dups.is_empty());
    ids
}

fn code(_: &Engine, r: Result<impl Sized, CoreError>) -> &'static str {
    r.err().map_or("OK", |err| err.code())
}

#[test]
fn import_reports_duplicates_within_and_across_batches() {
    let e = engine();
    e.create_sku("A", 1, true, None).unwrap();
    e.create_sku("B", 1, true, None).unwrap();
    let first = vec!["AAA-1".to_string(), "aaa1".to_string(), "BBB".to_string()];
    let (ids, dups) = e.import_codes("A", &texts(&first), None, 0, None, None, 1).unwrap();
    assert_eq!((ids.len(), dups), (2, vec![1]));
    let (ids, dups) = e.import_codes("B", &texts(&["bbb".to_string(), "CCC".to_string()]), None, 0, None, None, 2).unwrap();
    assert_eq!((ids.len(), dups), (1, vec![0]));
    assert_eq!(e.stock("A", None).unwrap().available, 2);
    e.check_invariants().unwrap();
}

#[test]
fn allocation_is_fefo_all_or_nothing_and_idempotent() {
    let e = engine();
    e.create_sku("A", 1, true, None).unwrap();
    let now_s = (T0 / 1000) as u32;
    let late = import(&e, "A", &codes("late", 3), 0, Some(now_s + 1000));
    let none = import(&e, "A", &codes("none", 3), 0, None);
    let early = import(&e, "A", &codes("early", 2), 0, Some(now_s + 10));
    let _expired = import(&e, "A", &codes("old", 2), 0, Some(now_s - 10));
    let got = e.allocate("A", 4, "o1", 0).unwrap();
    let set: HashSet<u32> = got.iter().copied().collect();
    assert!(early.iter().all(|id| set.contains(id)));
    assert_eq!(set.iter().filter(|id| late.contains(id)).count(), 2);
    assert!(none.iter().all(|id| !set.contains(id)));
    assert_eq!(e.allocate("A", 4, "o1", 0).unwrap(), got);
    assert_eq!(code(&e, e.allocate("A", 3, "o1", 0)), "IDEMPOTENCY_KEY_REUSED");
    let before = e.state_digest();
    match e.allocate("A", 5, "o2", 0) {
        Err(CoreError::OutOfStock { available, .. }) => assert_eq!(available, 4),
        other => panic!("expected OUT_OF_STOCK, got {other:?}"),
    }
    assert_eq!(e.state_digest(), before, "a refused allocation changed state");
    let s = e.stock("A", None).unwrap();
    assert_eq!((s.available, s.expired, s.allocated), (4, 2, 4));
    assert_eq!(code(&e, e.allocate("A", 0, "o3", 0)), "QUANTITY_MUST_BE_POSITIVE");
    assert_eq!(code(&e, e.allocate("NOPE", 1, "o3", 0)), "SKU_NOT_FOUND");
    e.check_invariants().unwrap();
}

#[test]
fn holds_confirm_release_and_expire() {
    let e = engine();
    e.create_sku("A", 1, true, None).unwrap();
    import(&e, "A", &codes("c", 5), 0, None);
    let h = e.hold("A", 2, "h1", 1_000, 0).unwrap();
    assert_eq!(e.stock("A", None).unwrap().held, 2);
    assert_eq!(e.confirm_hold("h1", "o1").unwrap(), h.ids);
    assert_eq!(e.confirm_hold("h1", "o1").unwrap(), h.ids);
    assert_eq!(code(&e, e.confirm_hold("h1", "o2")), "HOLD_ALREADY_CONFIRMED");
    e.hold("A", 2, "h2", 1_000, 0).unwrap();
    assert_eq!(e.release_hold("h2").unwrap(), 2);
    assert_eq!(e.release_hold("h2").unwrap(), 0);
    assert_eq!(code(&e, e.confirm_hold("h2", "o3")), "HOLD_RELEASED");
    e.hold("A", 3, "h3", 1_000, 0).unwrap();
    assert_eq!(code(&e, e.hold("A", 1, "h4", 1_000, 0)), "OUT_OF_STOCK");
    e.set_clock_ms(Some(T0 + 1_000));
    assert_eq!(e.stock("A", None).unwrap().available, 3, "an expired hold returns its codes");
    assert_eq!(code(&e, e.confirm_hold("h3", "o4")), "HOLD_EXPIRED");
    assert_eq!(code(&e, e.confirm_hold("nope", "o4")), "HOLD_NOT_FOUND");
    e.check_invariants().unwrap();
}

#[test]
fn redemption_precedence_and_rollback() {
    let e = engine();
    e.create_sku("A", 2, true, None).unwrap();
    let list = vec!["PINNED".to_string(), "PLAIN".to_string()];
    let mut pin_texts = Texts::default();
    pin_texts.push(Some("1234"));
    pin_texts.push(None);
    e.import_codes("A", &texts(&list), Some(&pin_texts), 0, None, None, 0).unwrap();
    assert_eq!(code(&e, e.redeem("PLAIN", "r0", "t", None)), "NOT_SOLD");
    e.allocate("A", 2, "o1", 0).unwrap();
    assert_eq!(code(&e, e.redeem("PINNED", "r1", "t", Some("9999"))), "PIN_MISMATCH");
    assert_eq!(code(&e, e.redeem("PINNED", "r1", "t", None)), "PIN_MISMATCH");
    assert_eq!(code(&e, e.redeem("NOSUCH", "r1", "t", None)), "CODE_NOT_FOUND");
    let r1 = e.redeem("pinned", "r1", "t", Some("1234")).unwrap();
    assert_eq!(r1.uses_left, 1);
    assert_eq!(e.redeem("PINNED", "r1", "t", Some("1234")).unwrap(), r1);
    assert_eq!(code(&e, e.redeem("PINNED", "r1", "t2", Some("1234"))), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(code(&e, e.redeem("PLAIN", "r1", "t", None)), "IDEMPOTENCY_KEY_REUSED");
    let r2 = e.redeem("PINNED", "r2", "t", Some("1234")).unwrap();
    assert_eq!(r2.uses_left, 0);
    match e.redeem("PINNED", "r3", "t9", Some("1234")) {
        Err(CoreError::AlreadyRedeemed { redemption_id, terminal, .. }) => {
            assert_eq!((redemption_id, terminal.as_str()), (r2.redemption_id, "t"));
        }
        other => panic!("expected ALREADY_REDEEMED, got {other:?}"),
    }
    let rb = e.rollback(r2.redemption_id, "delivery failed").unwrap();
    assert!(rb.rolled_back_at_ms.is_some());
    assert_eq!(e.rollback(r2.redemption_id, "again").unwrap(), rb, "rollback is idempotent");
    assert_eq!(e.verify("PINNED", Some("1234")).unwrap().uses_left, 1);
    assert_eq!(e.redeem("PINNED", "r4", "t", Some("1234")).unwrap().uses_left, 0);
    assert_eq!(code(&e, e.rollback(999, "x")), "REDEMPTION_NOT_FOUND");
    e.check_invariants().unwrap();
}

#[test]
fn redemptions_list_newest_first_by_terminal_code_time_and_cursor() {
    let e = engine();
    e.create_sku("A", 3, false, None).unwrap();
    e.create_sku("B", 1, false, None).unwrap();
    let a = codes("a", 3);
    let b = codes("b", 2);
    import(&e, "A", &a, 0, None);
    import(&e, "B", &b, 0, None);
    let mut made = Vec::new();
    for (i, (code, terminal)) in [(&a[0], "t1"), (&b[0], "t2"), (&a[0], "t1"), (&a[1], "t2"), (&b[1], "t1")].into_iter().enumerate() {
        e.set_clock_ms(Some(T0 + 1000 * (i as u64 / 2))); // two redemptions share each second
        made.push(e.redeem(code, &format!("r{i}"), terminal, None).unwrap());
    }
    let ids = |list: Vec<crate::engine::RedemptionView>| list.iter().map(|r| r.redemption_id).collect::<Vec<_>>();
    let mut newest_first = made.clone();
    newest_first.sort_by_key(|r| std::cmp::Reverse((r.redeemed_at_ms, r.redemption_id)));
    let all = e.list_redemptions(&RedemptionFilter::default(), 10).unwrap();
    assert_eq!(ids(all.clone()), ids(newest_first.clone()));
    let first = e.list_redemptions(&RedemptionFilter::default(), 2).unwrap();
    assert_eq!(ids(first.clone()), ids(newest_first[..2].to_vec()));
    let last = &first[1];
    let rest = e.list_redemptions(&RedemptionFilter { before: Some((last.redeemed_at_ms, last.redemption_id)), ..Default::default() }, 10).unwrap();
    assert_eq!(ids(rest), ids(newest_first[2..].to_vec()));
    let t1 = e.list_redemptions(&RedemptionFilter { terminal: Some("t1"), ..Default::default() }, 10).unwrap();
    assert!(t1.len() == 3 && t1.iter().all(|r| &*r.terminal == "t1"));
    assert!(e.list_redemptions(&RedemptionFilter { terminal: Some("nobody"), ..Default::default() }, 10).unwrap().is_empty());
    let of_a0 = e.list_redemptions(&RedemptionFilter { code: Some(made[0].code_id), ..Default::default() }, 10).unwrap();
    assert_eq!(ids(of_a0), vec![made[2].redemption_id, made[0].redemption_id]);
    let window = RedemptionFilter { since_ms: T0 + 1000, until_ms: Some(T0 + 2000), ..Default::default() };
    assert_eq!(ids(e.list_redemptions(&window, 10).unwrap()), ids(newest_first[1..3].to_vec()));
    e.rollback(made[0].redemption_id, "test").unwrap();
    let listed = e.list_redemptions(&RedemptionFilter::default(), 10).unwrap();
    assert!(listed.iter().any(|r| r.redemption_id == made[0].redemption_id && r.rolled_back_at_ms.is_some()));
    assert_eq!(code(&e, e.list_redemptions(&RedemptionFilter::default(), REDEMPTION_LIST_MAX + 1)), "LIMIT_EXCEEDED");
    assert!(e.list_redemptions(&RedemptionFilter::default(), 0).unwrap().is_empty());
    // More redemptions than one scan slice: the oldest is still found, past the slice boundary.
    e.create_sku("C", 1, false, None).unwrap();
    let many = codes("c", 20_000);
    import(&e, "C", &many, 0, None);
    e.set_clock_ms(Some(T0 - 1000));
    let oldest = e.redeem(&many[0], "c-first", "t3", None).unwrap();
    e.set_clock_ms(Some(T0 + 5000));
    for (i, c) in many.iter().enumerate().skip(1) {
        e.redeem(c, &format!("c{i}"), "t3", None).unwrap();
    }
    let before_all = RedemptionFilter { terminal: Some("t3"), until_ms: Some(T0), ..Default::default() };
    assert_eq!(ids(e.list_redemptions(&before_all, 10).unwrap()), vec![oldest.redemption_id]);
    assert_eq!(e.list_redemptions(&RedemptionFilter { terminal: Some("t3"), ..Default::default() }, REDEMPTION_LIST_MAX).unwrap().len(), REDEMPTION_LIST_MAX);
}

#[test]
fn freeze_unfreeze_void_by_id() {
    let e = engine();
    e.create_sku("A", 1, true, None).unwrap();
    let ids = import(&e, "A", &codes("c", 4), 0, None);
    let sold = e.allocate("A", 1, "o", 0).unwrap();
    let all: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
    assert_eq!(e.freeze(&all).unwrap(), (4, 0));
    assert_eq!(e.verify("c-000000", None).unwrap().status, "frozen");
    assert_eq!(e.freeze(&all).unwrap(), (0, 4));
    assert_eq!(e.unfreeze(&all).unwrap(), (4, 0));
    assert_eq!(e.stock("A", None).unwrap().available, 3);
    assert_eq!(e.code_info(u64::from(sold[0])).unwrap().order_ref.as_deref(), Some("o"));
    assert_eq!(e.void(&all[..1]).unwrap(), (1, 0));
    assert_eq!(code(&e, e.freeze(&[u64::from(u32::MAX - 5)])), "CODE_NOT_FOUND");
    e.check_invariants().unwrap();
}

#[test]
fn sixteen_threads_redeem_one_single_use_code_once() {
    let e = Arc::new(engine());
    e.create_sku("A", 1, false, None).unwrap();
    import(&e, "A", &["ONLY-ONE".to_string()], 0, None);
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let (e, b) = (Arc::clone(&e), Arc::clone(&barrier));
            std::thread::spawn(move || {
                b.wait();
                e.redeem("ONLY-ONE", &format!("req-{t}"), "term", None).map_err(|err| err.code())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|c| *c == "ALREADY_REDEEMED"));
    e.check_invariants().unwrap();
}

#[test]
fn racing_orders_never_share_a_code() {
    let e = Arc::new(engine());
    e.create_sku("A", 1, true, None).unwrap();
    import(&e, "A", &codes("c", 1_000), 0, None);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (e, b) = (Arc::clone(&e), Arc::clone(&barrier));
            std::thread::spawn(move || {
                b.wait();
                let mut got = Vec::new();
                for i in 0..400 {
                    if let Ok(ids) = e.allocate("A", 3, &format!("o-{t}-{i}"), 0) {
                        got.extend(ids);
                    }
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let unique: HashSet<u32> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a code went to two orders");
    assert_eq!(all.len(), 999);
    let s = e.stock("A", None).unwrap();
    assert_eq!((s.allocated, s.available), (999, 1));
    e.check_invariants().unwrap();
}

#[test]
fn journal_replay_and_snapshot_reproduce_the_state() {
    let e = engine();
    e.create_sku("A", 3, false, Some(30)).unwrap();
    e.create_sku("B", 1, true, None).unwrap();
    import(&e, "A", &codes("a", 50), 0, None);
    import(&e, "B", &codes("b", 50), 2, Some((T0 / 1000) as u32 + 100));
    e.allocate("A", 5, "oa", 0).unwrap();
    e.hold("B", 4, "hb", 5_000, 2).unwrap();
    e.hold("B", 2, "hb2", 5_000, 2).unwrap();
    e.confirm_hold("hb", "ob").unwrap();
    e.move_stock("A", 10, 0, 7).unwrap();
    let r = e.redeem("a-000000", "r1", "t", None).unwrap();
    e.redeem("a-000001", "r2", "t", None).unwrap();
    e.rollback(r.redemption_id, "x").unwrap();
    e.freeze(&[3, 4]).unwrap();
    e.void(&[5]).unwrap();
    let journal = e.drain_journal();
    let replayed = Engine::new(&[7u8; 32]).unwrap();
    replayed.apply_journal(&journal).unwrap();
    assert_eq!(replayed.state_digest(), e.state_digest());
    replayed.check_invariants().unwrap();

    let snap = e.snapshot();
    e.set_clock_ms(Some(T0 + 10_000));
    e.allocate("B", 1, "ob2", 2).unwrap();
    let tail = e.drain_journal();
    let restored = Engine::from_snapshot(&[7u8; 32], &snap).unwrap();
    restored.set_clock_ms(Some(T0 + 10_000));
    assert_eq!(restored.apply_journal(&tail).unwrap(), 2, "hold expiry + allocation");
    assert_eq!(restored.state_digest(), e.state_digest());
    assert_eq!(restored.apply_journal(&tail).unwrap(), 0, "replaying twice applies nothing");

    let mut bad = snap.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert_eq!(Engine::from_snapshot(&[7u8; 32], &bad).err().map(|x| x.code()), Some("SNAPSHOT_CORRUPT"));
    assert_eq!(Engine::from_snapshot(&[8u8; 32], &snap).err().map(|x| x.code()), Some("SNAPSHOT_CORRUPT"));
    let mut torn = tail.clone();
    torn.truncate(tail.len() - 1);
    assert_eq!(restored.apply_journal(&torn).err().map(|x| x.code()), Some("JOURNAL_CORRUPT"));
}

/// Rough per-operation cost of the core alone (no Python); run with
/// `cargo test --release -- --ignored core_op_costs --nocapture`.
#[test]
#[ignore]
fn core_op_costs() {
    let e = Engine::new(&[7u8; 32]).unwrap();
    e.create_sku("A", 1, false, None).unwrap();
    let n = 1_000_000;
    let list = codes("CODE", n);
    import(&e, "A", &list, 0, None);
    e.drain_journal();
    let rids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let m = 300_000;
    let t = std::time::Instant::now();
    for c in &list[..m] {
        e.lookup(c).unwrap();
    }
    println!("lookup {:?}/op", t.elapsed() / m as u32);
    let t = std::time::Instant::now();
    for c in &list[..m] {
        e.verify(c, None).unwrap();
    }
    println!("verify {:?}/op", t.elapsed() / m as u32);
    let t = std::time::Instant::now();
    for (c, r) in list.iter().zip(&rids).take(m) {
        e.redeem(c, r, "t1", None).unwrap();
    }
    println!("redeem {:?}/op", t.elapsed() / m as u32);
    let t = std::time::Instant::now();
    for r in &rids[m..2 * m] {
        e.allocate("A", 1, r, 0).unwrap();
    }
    println!("allocate {:?}/op", t.elapsed() / m as u32);
}

#[test]
fn drained_tickets_cover_every_appended_record() {
    let e = Arc::new(engine());
    e.create_sku("A", 1, true, None).unwrap();
    import(&e, "A", &codes("c", 2_000), 0, None);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (e, stop) = (Arc::clone(&e), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut records = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let d = e.drain();
                let frames = crate::journal::read_frames(&d.bytes).unwrap();
                if let (Some(first), Some(last)) = (frames.first(), frames.last()) {
                    assert_eq!((first.seq, last.seq), (d.first_seq, d.last_seq));
                }
                records += frames.len();
                assert!(records as u64 >= d.covered, "ticket {} claimed with {records} records out", d.covered);
                e.mark_durable(d.covered);
            }
            let d = e.drain();
            records += crate::journal::read_frames(&d.bytes).unwrap().len();
            e.mark_durable(d.covered);
            records
        })
    };
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                for i in 0..300 {
                    if e.allocate("A", 1, &format!("o-{t}-{i}"), 0).is_ok() {
                        let ticket = Engine::last_ticket();
                        assert!(e.wait_durable(ticket, 10_000), "ticket {ticket} never became durable");
                        assert!(e.durable() >= ticket);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let records = writer.join().unwrap();
    assert_eq!(records as u64, e.appended(), "every appended record was drained exactly once");
    assert!(!e.wait_durable(e.appended() + 1, 10), "a ticket beyond the journal cannot be durable");
}

/// Rough cost of `redeem_batch` in the core alone; run with
/// `cargo test --release -- --ignored batch_costs --nocapture`.
#[test]
#[ignore]
fn batch_costs() {
    let e = Engine::new(&[7u8; 32]).unwrap();
    e.create_sku("A", 1, true, None).unwrap();
    let n = 4_000_000;
    let list = codes("CODE", n);
    for chunk in list.chunks(1_000_000) {
        import(&e, "A", chunk, 0, None);
    }
    for i in 0..n / 10_000 {
        e.allocate("A", 10_000, &format!("o{i}"), 0).unwrap();
    }
    e.drain_journal();
    let batches: Vec<Texts> = list[..2_000_000].chunks(10_000).map(texts).collect();
    eprintln!("setup done");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = std::time::Instant::now();
    for (i, b) in batches.iter().enumerate() {
        let r = e.redeem_batch(&format!("b{i}"), b, None, "t1").unwrap();
        assert!(r.iter().all(|x| x.is_ok()));
    }
    let el = t.elapsed();
    println!("redeem_batch {:?}/code ({:.0} codes/s)", el / 2_000_000, 2e6 / el.as_secs_f64());
}

fn pins_of(list: &[Option<&str>]) -> Texts {
    let mut t = Texts::default();
    for p in list {
        t.push(*p);
    }
    t
}

/// A sold SKU "A" (uses per code `uses`) with `n` codes, the first `pinned` of them with PIN "1234".
fn sold(e: &Engine, uses: u32, n: usize, pinned: usize) -> Vec<String> {
    e.create_sku("A", uses, true, None).unwrap();
    let list = codes("c", n);
    let pins: Vec<Option<&str>> = (0..n).map(|i| (i < pinned).then_some("1234")).collect();
    e.import_codes("A", &texts(&list), Some(&pins_of(&pins)), 0, None, None, 0).unwrap();
    e.allocate("A", n as i64, "o-all", 0).unwrap();
    list
}

#[test]
fn batch_retry_returns_the_first_results_and_reuse_names_the_index() {
    let e = engine();
    let list = sold(&e, 1, 6, 1);
    let mut items = vec![list[0].clone(), list[1].clone(), "NOSUCH".to_string(), list[1].clone(), "".to_string()];
    let pins = pins_of(&[Some("1234"), None, None, None, None]);
    let first = e.redeem_batch("b1", &texts(&items), Some(&pins), "t").unwrap();
    let got: Vec<&str> = first.iter().map(|r| r.as_ref().err().map_or("OK", |x| x.code())).collect();
    assert_eq!(got, ["OK", "OK", "CODE_NOT_FOUND", "ALREADY_REDEEMED", "INVALID_CODE"]);
    let before = e.state_digest();
    assert_eq!(e.redeem_batch("b1", &texts(&items), Some(&pins), "t").unwrap(), first, "a retry is exact");
    assert_eq!(e.state_digest(), before, "a retry changes nothing");
    assert_eq!(
        e.redeem_batch("b1", &texts(&items), Some(&pins), "t2").err(),
        Some(CoreError::IdempotencyKeyReused { field: "terminal", index: None })
    );
    items[3] = list[2].clone();
    assert_eq!(
        e.redeem_batch("b1", &texts(&items), Some(&pins), "t").err(),
        Some(CoreError::IdempotencyKeyReused { field: "codes", index: Some(3) })
    );
    let wrong_pin = pins_of(&[Some("9999"), None, None, None, None]);
    items[3] = list[1].clone();
    assert_eq!(
        e.redeem_batch("b1", &texts(&items), Some(&wrong_pin), "t").err(),
        Some(CoreError::IdempotencyKeyReused { field: "codes", index: Some(0) })
    );
    assert_eq!(
        e.redeem_batch("b1", &texts(&items[..2]), Some(&pins_of(&[Some("1234"), None])), "t").err(),
        Some(CoreError::IdempotencyKeyReused { field: "codes", index: Some(2) })
    );
    // A rolled-back item says so on a retry; the other items still replay.
    let rid = first[1].as_ref().unwrap().redemption_id;
    e.rollback(rid, "refund").unwrap();
    let again = e.redeem_batch("b1", &texts(&items), Some(&pins), "t").unwrap();
    assert!(matches!(again[1], Err(CoreError::RedemptionRolledBack { redemption_id, .. }) if redemption_id == rid));
    assert_eq!(again[0], first[0]);
    assert_eq!(e.get_redemption(rid).unwrap().request_id.as_ref(), "b1#1");
    // The single-item path keeps its own keys.
    assert_eq!(e.redeem(&list[1], "r-1", "t", None).unwrap().uses_left, 0);
    e.check_invariants().unwrap();
}

#[test]
fn a_batch_cut_short_by_a_crash_is_completed_by_its_retry() {
    let e = engine();
    let list = sold(&e, 2, 4, 0);
    e.drain_journal();
    let base = e.snapshot();
    e.drain_journal();
    let first = e.redeem_batch("b", &texts(&list), None, "t").unwrap();
    let journal = e.drain_journal();
    let frames = crate::journal::read_frames(&journal).unwrap();
    assert_eq!(frames.len(), 2, "one opening and one shard record for four items");
    // Only the opening reached the disk.
    let mut head = Vec::new();
    crate::journal::frame(&mut head, frames[0].seq, frames[0].payload);
    let cut = Engine::from_snapshot(&[7u8; 32], &base).unwrap();
    cut.set_clock_ms(Some(T0));
    cut.apply_journal(&head).unwrap();
    let done = cut.redeem_batch("b", &texts(&list), None, "t").unwrap();
    assert_eq!(done, first, "the retry runs the unrecorded items exactly as the first attempt did");
    assert_eq!(cut.redeem_batch("b", &texts(&list), None, "t").unwrap(), first);
    assert_eq!(cut.state_digest(), e.state_digest());
    cut.check_invariants().unwrap();
}

#[test]
fn wrong_pins_lock_a_code_and_a_right_pin_outside_a_lockout_resets_the_count() {
    let e = engine();
    e.set_pin_policy(3, 60_000, 150_000).unwrap();
    let list = sold(&e, 5, 1, 1);
    let code = list[0].as_str();
    assert_eq!(code_of(e.verify(code, Some("0000"))), "PIN_MISMATCH");
    assert_eq!(code_of(e.redeem(code, "r0", "t", Some("0001"))), "PIN_MISMATCH");
    assert!(e.verify(code, Some("1234")).is_ok(), "a right PIN before the limit works");
    assert_eq!(e.code_info(0).unwrap().pin_failures, 0, "and clears the count");
    for _ in 0..2 {
        assert_eq!(code_of(e.verify(code, Some("0000"))), "PIN_MISMATCH");
    }
    match e.verify(code, Some("0000")) {
        Err(CoreError::CodeLocked { locked: true, retry_after_s: 60, locked_until_ms }) => assert_eq!(locked_until_ms, T0 + 60_000),
        other => panic!("the third failure starts the lockout: {other:?}"),
    }
    match e.redeem(code, "r1", "t", Some("1234")) {
        Err(CoreError::CodeLocked { locked: false, .. }) => {}
        other => panic!("during the lockout even the right PIN is refused: {other:?}"),
    }
    assert_eq!(e.locked_codes(None).unwrap(), vec![(0, T0 + 60_000, 1)]);
    e.set_clock_ms(Some(T0 + 60_000));
    assert_eq!(e.locked_codes(Some("A")).unwrap(), vec![]);
    for _ in 0..2 {
        assert_eq!(code_of(e.verify(code, Some("0000"))), "PIN_MISMATCH");
    }
    match e.verify(code, Some("0000")) {
        Err(CoreError::CodeLocked { locked: true, locked_until_ms, .. }) => {
            assert_eq!(locked_until_ms, T0 + 60_000 + 120_000, "the second lockout is twice as long")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.unlock(&[0, 0]).unwrap(), (1, 1));
    assert!(e.redeem(code, "r2", "t", Some("1234")).is_ok());
    e.set_clock_ms(Some(T0 + 200_000));
    for _ in 0..2 {
        e.verify(code, Some("0000")).unwrap_err();
    }
    match e.verify(code, Some("0000")) {
        Err(CoreError::CodeLocked { locked_until_ms, .. }) => {
            assert_eq!(locked_until_ms, T0 + 200_000 + 60_000, "unlock and a right PIN cleared the lockout history")
        }
        other => panic!("{other:?}"),
    }
    e.check_invariants().unwrap();
}

fn code_of<T>(r: Result<T, CoreError>) -> &'static str {
    r.err().map_or("OK", |x| x.code())
}

#[test]
fn threads_racing_wrong_pins_count_at_most_the_limit_before_the_lockout() {
    let e = Arc::new(engine());
    let list = sold(&e, 1, 1, 1);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (e, b, code) = (Arc::clone(&e), Arc::clone(&barrier), list[0].clone());
            std::thread::spawn(move || {
                b.wait();
                (0..20).map(|i| code_of(e.redeem(&code, &format!("r{t}-{i}"), "t", Some("0000")))).collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<&str> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(all.iter().filter(|c| **c == "PIN_MISMATCH").count(), 9, "exactly N-1 plain failures");
    assert_eq!(all.iter().filter(|c| **c == "CODE_LOCKED").count(), 160 - 9);
    assert_eq!(e.locked_codes(None).unwrap().len(), 1);
    e.check_invariants().unwrap();
}

#[test]
fn withdrawn_codes_leave_sale_stay_redeemable_and_restore_only_unredeemed() {
    let e = engine();
    e.create_sku("A", 2, true, None).unwrap();
    let ids = import(&e, "A", &codes("w", 5), 0, None);
    let all: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
    e.hold("A", 1, "h", 10_000, 0).unwrap();
    let held = e.get_hold("h").unwrap().ids[0];
    let (changed, unchanged, refused) = e.withdraw(&all).unwrap();
    assert_eq!((changed, unchanged), (4, 0));
    assert_eq!(refused, vec![(held, crate::types::State::Held)]);
    assert_eq!(e.withdraw(&all).unwrap().0, 0, "idempotent");
    let s = e.stock("A", None).unwrap();
    assert_eq!((s.available, s.withdrawn, s.held, s.total()), (0, 4, 1, 5));
    assert_eq!(code_of(e.allocate("A", 1, "o", 0)), "OUT_OF_STOCK");
    let w: Vec<String> = codes("w", 5).into_iter().filter(|c| e.lookup(c).unwrap().0 != held).collect();
    let r = e.redeem(&w[0], "r1", "t", None).unwrap();
    assert_eq!(e.code_info(u64::from(r.code_id)).unwrap().state, crate::types::State::Withdrawn, "one use left");
    e.redeem(&w[0], "r2", "t", None).unwrap();
    assert_eq!(e.code_info(u64::from(r.code_id)).unwrap().state, crate::types::State::Redeemed);
    e.rollback(r.redemption_id, "x").unwrap();
    assert_eq!(e.code_info(u64::from(r.code_id)).unwrap().state, crate::types::State::Withdrawn, "a rollback returns it to withdrawn, not to sale");
    let (restored, unchanged, refused) = e.restore_to_sale(&all).unwrap();
    assert_eq!((restored, unchanged), (3, 0));
    assert_eq!(refused.len(), 2, "the held code and the redeemed one");
    assert_eq!(e.stock("A", None).unwrap().available, 3);
    e.check_invariants().unwrap();
}

#[test]
fn withdraw_racing_allocate_never_sells_a_withdrawn_code() {
    let e = Arc::new(engine());
    e.create_sku("A", 1, true, None).unwrap();
    let ids = import(&e, "A", &codes("c", 2_000), 0, None);
    let barrier = Arc::new(Barrier::new(2));
    let seller = {
        let (e, b) = (Arc::clone(&e), Arc::clone(&barrier));
        std::thread::spawn(move || {
            b.wait();
            (0..1_000).filter_map(|i| e.allocate("A", 2, &format!("o{i}"), 0).ok()).flatten().collect::<Vec<u32>>()
        })
    };
    let exporter = {
        let (e, b) = (Arc::clone(&e), Arc::clone(&barrier));
        std::thread::spawn(move || {
            b.wait();
            let mut out = Vec::new();
            for chunk in ids.chunks(50) {
                let list: Vec<u64> = chunk.iter().map(|&i| u64::from(i)).collect();
                let (_, _, refused) = e.withdraw(&list).unwrap();
                out.extend(chunk.iter().copied().filter(|id| refused.iter().all(|r| r.0 != *id)));
            }
            out
        })
    };
    let sold: HashSet<u32> = seller.join().unwrap().into_iter().collect();
    let exported = exporter.join().unwrap();
    assert!(exported.iter().all(|id| !sold.contains(id)), "a withdrawn code was sold");
    assert_eq!(sold.len() + exported.len(), 2_000);
    e.check_invariants().unwrap();
}

#[test]
fn replay_and_snapshot_reproduce_batches_withdrawals_and_lockouts() {
    let e = engine();
    e.set_pin_policy(2, 1_000, 4_000).unwrap();
    let list = sold(&e, 3, 8, 4);
    e.create_sku("B", 1, false, None).unwrap();
    let b_list = codes("b", 5);
    import(&e, "B", &b_list, 0, None);
    let mut items: Vec<String> = list[..6].to_vec();
    items.extend(b_list[..4].iter().cloned());
    items.push(list[0].clone());
    let pins = pins_of(&[Some("1234"), Some("0000"), Some("0000"), None, None, None, None, None, None, None, Some("1234")]);
    e.redeem_batch("mixed", &texts(&items), Some(&pins), "t").unwrap();
    e.verify(&list[3], None).unwrap_err();
    assert_eq!(e.withdraw(&[u64::from(e.lookup(&b_list[4]).unwrap().0)]).unwrap().0, 1);
    e.unlock(&[1]).unwrap();
    let snap = e.snapshot();
    let journal = e.drain_journal();
    let replayed = Engine::new(&[7u8; 32]).unwrap();
    replayed.apply_journal(&journal).unwrap();
    assert_eq!(replayed.state_digest(), e.state_digest());
    replayed.check_invariants().unwrap();
    let restored = Engine::from_snapshot(&[7u8; 32], &snap).unwrap();
    assert_eq!(restored.state_digest(), e.state_digest());
    restored.set_clock_ms(Some(T0));
    assert_eq!(restored.redeem_batch("mixed", &texts(&items), Some(&pins), "t").unwrap(), e.redeem_batch("mixed", &texts(&items), Some(&pins), "t").unwrap());
    assert_eq!(restored.code_info(2).unwrap().locked_until_ms, e.code_info(2).unwrap().locked_until_ms);
}

/// Checks `redeem_columns(results)` item by item against the results themselves and the stored
/// redemption records (SKU, time).
fn assert_columns_match(e: &Engine, results: &[Result<crate::engine::RedeemOutcome, CoreError>]) -> crate::engine::RedeemColumns {
    let c = e.redeem_columns(results).unwrap();
    assert_eq!(c.ok.len(), results.len());
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(o) => {
                assert_eq!((c.ok[i], c.error_codes[i]), (1, ""));
                assert_eq!((c.redemption_ids[i], c.code_ids[i], c.uses_left[i], c.redeemed_at_ms[i]), (o.redemption_id, o.code_id, o.uses_left, o.redeemed_at_ms));
                let stored = e.get_redemption(o.redemption_id).unwrap();
                assert_eq!(&*c.skus[c.sku_index[i] as usize], &*stored.sku);
                assert_eq!(c.redeemed_at_ms[i], stored.redeemed_at_ms);
            }
            Err(err) => {
                assert_eq!((c.ok[i], c.error_codes[i]), (0, err.code()));
                assert_eq!((c.redemption_ids[i], c.uses_left[i], c.redeemed_at_ms[i]), (0, 0, 0));
            }
        }
    }
    c
}

#[test]
fn redeem_columns_give_every_outcome_of_redeem_many_item_by_item() {
    let e = engine();
    e.set_pin_policy(2, 60_000, 120_000).unwrap();
    let list = sold(&e, 2, 6, 2);
    e.create_sku("B", 1, true, None).unwrap();
    let other = codes("b", 3);
    import(&e, "B", &other[..2], 0, None);
    e.allocate("B", 2, "o-b", 0).unwrap();
    import(&e, "B", &other[2..], 0, None);
    e.freeze(&[u64::from(e.lookup(&list[5]).unwrap().0)]).unwrap();
    // c-000001 has a PIN: one wrong PIN now, so the batch's wrong PIN starts its lockout.
    assert_eq!(code_of(e.redeem(&list[1], "w0", "t", Some("0000"))), "PIN_MISMATCH");
    let first = e.redeem_many(&texts(&[list[2].clone()]), &texts(&["r-replayed".to_string()]), "t", None).unwrap();
    assert!(first[0].is_ok());
    e.set_clock_ms(Some(T0 + 5));
    let items = vec![
        list[0].clone(),     // pinned, right PIN: redeemed
        list[1].clone(),     // pinned, wrong PIN: CODE_LOCKED (locked)
        list[2].clone(),     // replay of r-replayed
        "NOSUCH".to_string(), // CODE_NOT_FOUND
        list[3].clone(),     // redeemed, uses left 1
        list[3].clone(),     // again under another id: uses left 0
        list[3].clone(),     // ALREADY_REDEEMED
        list[5].clone(),     // FROZEN
        other[0].clone(),    // SKU B: redeemed
        other[2].clone(),    // SKU B, never sold: NOT_SOLD
        "".to_string(),      // INVALID_CODE
        list[4].clone(),     // IDEMPOTENCY_KEY_REUSED (r-replayed names another code)
    ];
    let rids: Vec<String> = ["r0", "r1", "r-replayed", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r-replayed"].iter().map(|s| s.to_string()).collect();
    let pins = pins_of(&[Some("1234"), Some("0000"), None, None, None, None, None, None, None, None, None, None]);
    let results = e.redeem_many(&texts(&items), &texts(&rids), "t", Some(&pins)).unwrap();
    let got: Vec<&str> = results.iter().map(|r| r.as_ref().err().map_or("OK", |err| err.code())).collect();
    assert_eq!(got, ["OK", "CODE_LOCKED", "OK", "CODE_NOT_FOUND", "OK", "OK", "ALREADY_REDEEMED", "FROZEN", "OK", "NOT_SOLD", "INVALID_CODE", "IDEMPOTENCY_KEY_REUSED"]);
    let c = assert_columns_match(&e, &results);
    assert_eq!(c.skus.iter().map(|s| &**s).collect::<Vec<_>>(), ["A", "B"], "distinct SKUs in order of first appearance");
    assert_eq!((c.uses_left[4], c.uses_left[5]), (1, 0));
    assert_eq!(c.redeemed_at_ms[2], T0, "a replay reports the first redemption's time");
    assert_eq!(c.redeemed_at_ms[0], T0 + 5);
    // A retry of the whole call replays every success with the uses left now.
    let again = e.redeem_many(&texts(&items), &texts(&rids), "t", Some(&pins)).unwrap();
    let c2 = assert_columns_match(&e, &again);
    assert_eq!((c2.redemption_ids[0], c2.redemption_ids[4]), (c.redemption_ids[0], c.redemption_ids[4]));
    assert_eq!(c2.uses_left[4], 0, "the replay of item 4 reports the uses left now");
    e.check_invariants().unwrap();
}

#[test]
fn redeem_columns_of_an_empty_batch_are_empty_and_another_engines_results_are_refused() {
    let e = engine();
    assert_eq!(e.redeem_columns(&[]).unwrap(), crate::engine::RedeemColumns::default());
    let list = sold(&e, 1, 1, 0);
    let results = e.redeem_batch("k1", &texts(&list), None, "t").unwrap();
    assert_columns_match(&e, &results);
    let empty = engine();
    assert_eq!(code_of(empty.redeem_columns(&results)), "REDEMPTION_NOT_FOUND");
}
