//! Journal draining and replay, snapshots and restore, and the state digest.
//!
//! Snapshot layout (little-endian): magic `CSVCSNAP`, version u32, secret fingerprint u64, last
//! journal sequence number covered u64, SKU count u32, then per SKU its settings, validity
//! windows, code records (with lookup keys) chunk by chunk, orders, holds and redemptions; then a
//! CRC-32 of everything before it. Pool positions are not stored (pools are rebuilt in id order),
//! so the bytes are a canonical function of the state and `state_digest` can hash them.

use crate::batch::{BatchRec, BatchTable};
use crate::engine::{Catalog, Engine};
use crate::error::{CoreError, CoreResult};
use crate::journal::{frame, read_frames, Rec};
use crate::shard::{HoldRec, HoldState, Order, PinGuard, ShardCapture, ShardState};
use crate::types::*;
use crate::wire::{Put, Reader, Short};
use siphasher::sip128::{Hasher128, SipHasher24};
use std::hash::Hasher;
use std::sync::atomic::Ordering;

const MAGIC: &[u8; 8] = b"CSVCSNAP";
/// Version 2 added the `withdrawn` state, the batch item of a redemption, PIN guards and the
/// batch table; version 1 snapshots are still read.
const VERSION: u32 = 2;

/// Frames every `[len][payload]` entry of a pending journal buffer onto `out` with consecutive
/// sequence numbers, and empties the buffer and its record count.
fn frame_buffer(out: &mut Vec<u8>, next_seq: &mut u64, buf: &mut Vec<u8>, records: &mut u64) {
    let mut r = Reader::new(buf);
    while r.remaining() >= 4 {
        // The buffer is written only by `Rec::append_to`, so the lengths are always whole.
        let Ok(len) = r.u32("len") else { break };
        let Ok(payload) = r.bytes(len as usize, "payload") else { break };
        frame(out, *next_seq, payload);
        *next_seq += 1;
    }
    buf.clear();
    // A bulk import can leave a buffer of hundreds of MB; keep only a working size.
    buf.shrink_to(1 << 16);
    *records = 0;
}

/// What `Engine::drain` hands the journal writer.
pub struct Drained {
    pub bytes: Vec<u8>,
    pub covered: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

fn corrupt(reason: impl Into<String>) -> CoreError {
    CoreError::SnapshotCorrupt { reason: reason.into() }
}

fn short(s: Short) -> CoreError {
    corrupt(format!("{} malformed at byte {}", s.what, s.offset))
}

impl Engine {
    /// Records applied but not yet drained (plus drained-by-snapshot records not yet handed out).
    pub fn journal_len(&self) -> u64 {
        let cat = self.catalog.lock().records + self.batch_journal.lock().records;
        let shards = self.skus.load().shards.clone();
        cat + shards.iter().map(|s| s.state.lock().journal_records).sum::<u64>()
    }

    /// Takes every pending journal record, framed with global sequence numbers, catalog first.
    pub fn drain_journal(&self) -> Vec<u8> {
        self.drain().bytes
    }

    /// Like `drain_journal`, and also returns a ticket T such that every record with a ticket
    /// `<= T` is in the returned bytes or was handed out earlier (once the bytes are durable, the
    /// writer calls `mark_durable(T)`), and the first and last sequence numbers in the bytes
    /// (both 0 when there are none).
    pub fn drain(&self) -> Drained {
        let mut d = self.drain.lock();
        let mut cat = self.catalog.lock();
        // Read before taking any journal lock: a record whose ticket is at most this was appended
        // in a critical section that completes before the locks below are granted.
        let covered = self.appended.load(Ordering::SeqCst);
        let mut bytes = std::mem::take(&mut d.ready);
        let Catalog { journal, records } = &mut *cat;
        frame_buffer(&mut bytes, &mut d.next_seq, journal, records);
        {
            let mut bj = self.batch_journal.lock();
            let Catalog { journal, records } = &mut *bj;
            frame_buffer(&mut bytes, &mut d.next_seq, journal, records);
        }
        for shard in self.skus.load().shards.iter() {
            let st = &mut *shard.state.lock();
            frame_buffer(&mut bytes, &mut d.next_seq, &mut st.journal, &mut st.journal_records);
        }
        // Everything numbered so far was handed out before or is in `bytes`, which holds the
        // numbers from its first frame's up to `next_seq - 1` without a gap.
        let (first_seq, last_seq) = match bytes.get(4..12) {
            Some(seq) => (u64::from_le_bytes(seq.try_into().unwrap_or_default()), d.next_seq - 1),
            None => (0, 0),
        };
        Drained { bytes, covered, first_seq, last_seq }
    }

    /// The sequence number the next drained record will get.
    pub fn next_seq(&self) -> u64 {
        self.drain.lock().next_seq
    }

    /// Replays framed journal records. Records already covered (seq below the next expected) are
    /// skipped; a gap or a record that does not apply is JOURNAL_CORRUPT. Every frame's checksum
    /// is checked before anything is applied. Returns the number of records applied.
    pub fn apply_journal(&self, data: &[u8]) -> CoreResult<usize> {
        let frames = read_frames(data)?;
        let mut d = self.drain.lock();
        let mut applied = 0;
        for f in frames {
            let bad = |reason: String| CoreError::JournalCorrupt { reason, offset: f.offset as u64 };
            if f.seq < d.next_seq {
                continue;
            }
            if f.seq > d.next_seq {
                return Err(bad(format!("gap: expected record {}, found {}", d.next_seq, f.seq)));
            }
            let rec = Rec::decode(f.payload).map_err(|s| bad(format!("{} at byte {}", s.what, s.offset)))?;
            self.replay(&rec).map_err(|e| bad(format!("record {} does not apply: {e}", f.seq)))?;
            d.next_seq += 1;
            applied += 1;
        }
        // Replayed records came from the sink: they are durable by definition.
        self.mark_durable(self.appended());
        Ok(applied)
    }

    fn replay(&self, rec: &Rec<'_>) -> Result<(), &'static str> {
        if let Rec::BatchOpen { .. } = rec {
            self.apply_batch_open(rec)?;
            let mut bj = self.batch_journal.lock();
            bj.journal.clear();
            bj.records = 0;
            return Ok(());
        }
        let Some(s) = rec.shard() else {
            let mut cat = self.catalog.lock();
            self.apply_create_sku(rec, &mut cat)?;
            cat.journal.clear();
            cat.records = 0;
            return Ok(());
        };
        let shard = self.shard_by_ix(s).ok_or("unknown SKU")?;
        if let Rec::BatchRedeem { batch_ref, .. } = rec {
            // Lock order: batch part, then shard.
            let mut part = self.batches.lock(batch_ref);
            let batch = part.get_mut(*batch_ref).ok_or("batch record before its opening")?;
            let mut st = shard.state.lock();
            let first = st.redemptions.len() as u32;
            st.apply_inner(&self.dir, rec)?;
            let b = std::sync::Arc::make_mut(batch);
            let mut next = first;
            if let Rec::BatchRedeem { items, .. } = rec {
                for &(i, _, outcome) in items {
                    match outcome {
                        None => {
                            b.set(i, Ok(crate::engine::redemption_id(s, next)))?;
                            next += 1;
                        }
                        Some(e) => b.set(i, Err(e))?,
                    }
                }
            }
            return Ok(());
        }
        let mut st = shard.state.lock();
        if let Rec::Import { entries, .. } = rec {
            // Checked before anything is applied: a key already indexed, or twice in the record.
            let mut seen = hashbrown::HashSet::with_capacity(entries.len());
            for &(_, key, _) in entries {
                if !seen.insert(key) || self.index.find(&self.dir, key).is_some() {
                    return Err("duplicate lookup key");
                }
            }
        }
        let orders = st.orders.len() as u32;
        let holds = st.holds.len() as u32;
        let redemptions = st.redemptions.len() as u32;
        st.apply_inner(&self.dir, rec)?;
        match rec {
            Rec::Import { entries, .. } => {
                let ids: Vec<u32> = entries.iter().map(|e| e.0).collect();
                self.index.insert_many(&self.dir, &ids);
            }
            Rec::Allocate { order_ref, .. } | Rec::Confirm { order_ref, .. } => {
                self.order_refs.insert(order_ref, (s, orders));
            }
            Rec::Hold { hold_ref, .. } => self.hold_refs.insert(hold_ref, (s, holds)),
            Rec::Redeem { request_id, .. } => {
                self.request_ids.insert(request_id, crate::engine::redemption_id(s, redemptions));
            }
            _ => {}
        }
        Ok(())
    }

    /// A consistent snapshot of the whole state. Pending journal records are drained first (into
    /// the buffer `drain_journal` hands out next), so the snapshot covers exactly the records up
    /// to its `last_seq`. Shards are locked only while their state is captured (O(chunks)); the
    /// encoding runs after every lock is released.
    pub fn snapshot(&self) -> Vec<u8> {
        let started = std::time::Instant::now();
        let (last_seq, captures, batches) = {
            let mut d = self.drain.lock();
            let batch_parts = self.batches.lock_all();
            let mut cat = self.catalog.lock();
            let mut bj = self.batch_journal.lock();
            let shards = self.skus.load().shards.clone();
            let mut guards: Vec<_> = shards.iter().map(|s| s.state.lock()).collect();
            let mut ready = std::mem::take(&mut d.ready);
            let Catalog { journal, records } = &mut *cat;
            frame_buffer(&mut ready, &mut d.next_seq, journal, records);
            let Catalog { journal, records } = &mut *bj;
            frame_buffer(&mut ready, &mut d.next_seq, journal, records);
            for st in guards.iter_mut() {
                let st = &mut **st;
                frame_buffer(&mut ready, &mut d.next_seq, &mut st.journal, &mut st.journal_records);
            }
            d.ready = ready;
            (d.next_seq - 1, guards.iter().map(|g| g.capture()).collect::<Vec<_>>(), BatchTable::sorted(&batch_parts))
        };
        self.last_capture_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let mut out = self.encode_captures(last_seq, &captures, &batches);
        let crc = crc32fast::hash(&out);
        out.put_u32(crc);
        out
    }

    /// How long the last `snapshot()` held the engine's locks (capture only), in microseconds.
    pub fn last_snapshot_capture_us(&self) -> u64 {
        self.last_capture_us.load(Ordering::Relaxed)
    }

    /// A 128-bit hash of the canonical state (no clock, no journal position, no pool order).
    pub fn state_digest(&self) -> [u8; 16] {
        let (captures, batches) = {
            let batch_parts = self.batches.lock_all();
            let _cat = self.catalog.lock();
            let shards = self.skus.load().shards.clone();
            let guards: Vec<_> = shards.iter().map(|s| s.state.lock()).collect();
            (guards.iter().map(|g| g.capture()).collect::<Vec<_>>(), BatchTable::sorted(&batch_parts))
        };
        let body = self.encode_captures(0, &captures, &batches);
        let mut h = SipHasher24::new_with_keys(0, 0);
        h.write(&body);
        u128::from(h.finish128()).to_le_bytes()
    }

    fn encode_captures(&self, last_seq: u64, captures: &[ShardCapture], batches: &[std::sync::Arc<BatchRec>]) -> Vec<u8> {
        let codes: usize = captures.iter().map(|c| c.chunks.iter().map(|k| k.len()).sum::<usize>()).sum();
        let mut b = Vec::with_capacity(64 + codes * 52);
        b.extend_from_slice(MAGIC);
        b.put_u32(VERSION);
        b.put_u64(self.hashing.fingerprint());
        b.put_u64(last_seq);
        b.put_u32(captures.len() as u32);
        for c in captures {
            self.encode_shard(&mut b, c);
        }
        b.put_u32(batches.len() as u32);
        for batch in batches {
            batch.encode(&mut b);
        }
        b
    }

    fn encode_shard(&self, b: &mut Vec<u8>, st: &ShardCapture) {
        let c = &st.config;
        b.put_str(&c.name);
        b.put_u16(c.uses_per_code);
        b.put_u8(u8::from(c.redeem_requires_sale));
        b.put_u32(c.validity_days_after_sale);
        b.put_u32(st.validities.len() as u32);
        for &(from, until) in &st.validities {
            b.put_u32(from);
            b.put_u32(until);
        }
        b.put_u32(st.chunks.len() as u32);
        for (i, chunk) in st.chunks.iter().enumerate() {
            let g = st.chunk_ids[i];
            b.put_u32(g);
            b.put_u32(chunk.len() as u32);
            for (o, r) in chunk.iter().enumerate() {
                b.put_u128(self.dir.key((g << CHUNK_BITS) | o as u32));
                b.put_u64(r.pin());
                b.put_u32(r.pool);
                b.put_u32(r.batch);
                b.put_u32(if r.state() == State::Available { 0 } else { r.slot });
                b.put_u32(r.validity);
                b.put_u16(r.uses_left);
                b.put_u8(r.state);
                b.put_u8(r.frozen_from);
            }
        }
        b.put_u32(st.orders.len() as u32);
        for o in st.orders.iter() {
            b.put_str(&o.order_ref);
            b.put_u32(o.pool);
            b.put_u32(o.hold);
            b.put_ids(&o.ids);
        }
        b.put_u32(st.holds.len() as u32);
        for h in st.holds.iter() {
            b.put_str(&h.hold_ref);
            b.put_u32(h.pool);
            b.put_u64(h.deadline_ms);
            b.put_u8(h.state as u8);
            b.put_u32(h.order);
            b.put_ids(&h.ids);
        }
        b.put_u32(st.redemptions.len() as u32);
        for r in st.redemptions.iter() {
            b.put_u32(r.code);
            b.put_str(&r.request_id);
            b.put_u32(r.item);
            b.put_str(st.terminals.get(r.terminal as usize).map_or("", |t| &**t));
            b.put_u64(r.at_ms);
            b.put_u16(r.uses_after);
            match &r.rollback {
                Some(rb) => {
                    b.put_u8(1);
                    b.put_u64(rb.0);
                    b.put_str(&rb.1);
                }
                None => b.put_u8(0),
            }
        }
        b.put_u32(st.pin_guards.len() as u32);
        for (code, g) in &st.pin_guards {
            b.put_u32(*code);
            b.put_u16(g.failures);
            b.put_u16(g.lockouts);
            b.put_u64(g.locked_until_ms);
        }
    }

    /// Opens an engine from a snapshot. Errors: INVALID_ARGUMENT (secret), SNAPSHOT_CORRUPT
    /// (magic, version, checksum, secret fingerprint, structure or invariants).
    pub fn from_snapshot(secret: &[u8], data: &[u8]) -> CoreResult<Engine> {
        let eng = Engine::new(secret)?;
        eng.load_snapshot(data)?;
        Ok(eng)
    }

    /// A new engine with this engine's secret and the snapshot's state.
    pub fn reopen_from_snapshot(&self, data: &[u8]) -> CoreResult<Engine> {
        let eng = Engine::with_hashing(self.hashing.clone());
        eng.load_snapshot(data)?;
        eng.copy_clock_from(self);
        eng.copy_pin_policy_from(self);
        Ok(eng)
    }

    fn load_snapshot(&self, data: &[u8]) -> CoreResult<()> {
        let eng = self;
        if data.len() < MAGIC.len() + 4 + 8 + 8 + 4 + 4 {
            return Err(corrupt("too short"));
        }
        let (body, trailer) = data.split_at(data.len() - 4);
        let mut t = [0u8; 4];
        t.copy_from_slice(trailer);
        if &body[..8] != MAGIC {
            return Err(corrupt("not a cardsvc snapshot (bad magic)"));
        }
        if crc32fast::hash(body) != u32::from_le_bytes(t) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = Reader::new(&body[8..]);
        let version = r.u32("version").map_err(short)?;
        if version != VERSION && version != 1 {
            return Err(corrupt("unsupported version"));
        }
        if r.u64("fingerprint").map_err(short)? != eng.hashing.fingerprint() {
            return Err(corrupt("taken under a different lookup key"));
        }
        let last_seq = r.u64("last seq").map_err(short)?;
        let n = r.u32("sku count").map_err(short)?;
        for ix in 0..n {
            eng.load_shard(&mut r, ix, version)?;
        }
        if version >= 2 {
            eng.load_batches(&mut r)?;
        }
        if r.remaining() != 0 {
            return Err(corrupt("trailing bytes"));
        }
        eng.drain.lock().next_seq = last_seq + 1;
        eng.mark_durable(eng.appended());
        eng.check_invariants().map_err(|e| corrupt(format!("restored state is inconsistent: {e}")))
    }

    fn load_batches(&self, r: &mut Reader<'_>) -> CoreResult<()> {
        let n = r.u32("batch count").map_err(short)?;
        let mut last: Option<std::sync::Arc<str>> = None;
        for _ in 0..n {
            let b = BatchRec::decode(r).map_err(short)?;
            if last.as_deref().is_some_and(|l| l >= &*b.batch_ref) {
                return Err(corrupt("batches out of order"));
            }
            last = Some(std::sync::Arc::clone(&b.batch_ref));
            let key = std::sync::Arc::clone(&b.batch_ref);
            self.batches.lock(&key).insert(key, std::sync::Arc::new(b));
        }
        Ok(())
    }

    fn load_shard(&self, r: &mut Reader<'_>, ix: u32, version: u32) -> CoreResult<()> {
        let name = r.str("sku name").map_err(short)?;
        let rec = Rec::CreateSku {
            ix,
            name,
            uses_per_code: r.u16("uses").map_err(short)?,
            redeem_requires_sale: r.u8("requires sale").map_err(short)? != 0,
            validity_days: r.u32("validity days").map_err(short)?,
        };
        {
            let mut cat = self.catalog.lock();
            self.apply_create_sku(&rec, &mut cat).map_err(corrupt)?;
            cat.journal.clear();
            cat.records = 0;
        }
        let shard = self.shard_by_ix(ix).ok_or_else(|| corrupt("SKU missing"))?;
        let mut st = shard.state.lock();
        let nv = r.u32("validity count").map_err(short)?;
        st.validities.clear();
        for _ in 0..nv {
            let w = (r.u32("from").map_err(short)?, r.u32("until").map_err(short)?);
            st.validities.push(w);
        }
        st.rebuild_validity_index();
        let mut ids = Vec::new();
        let nc = r.u32("chunk count").map_err(short)?;
        for local in 0..nc {
            let g = r.u32("chunk").map_err(short)?;
            let len = r.u32("chunk len").map_err(short)? as usize;
            if len > CHUNK || !self.dir.publish_chunk(g, ix, local) {
                return Err(corrupt("bad chunk"));
            }
            let mut recs = Vec::with_capacity(len);
            for o in 0..len {
                let id = (g << CHUNK_BITS) | o as u32;
                self.dir.set_key(id, r.u128("key").map_err(short)?);
                let pin = r.u64("pin").map_err(short)?;
                let mut rec = CodeRecord {
                    pin_hash: [0, 0],
                    pool: r.u32("pool").map_err(short)?,
                    batch: r.u32("batch").map_err(short)?,
                    slot: r.u32("slot").map_err(short)?,
                    validity: r.u32("validity").map_err(short)?,
                    uses_left: r.u16("uses").map_err(short)?,
                    state: r.u8("state").map_err(short)?,
                    frozen_from: r.u8("frozen from").map_err(short)?,
                };
                rec.set_pin(pin);
                if State::from_u8(rec.state).is_none() || rec.validity as usize >= st.validities.len() {
                    return Err(corrupt("bad code record"));
                }
                recs.push(rec);
                ids.push(id);
            }
            st.chunks.push(std::sync::Arc::new(recs));
            st.chunk_ids.push(g);
        }
        Self::load_tables(&self.dir, r, &mut st, version)?;
        st.rebuild_pools(&self.dir).map_err(corrupt)?;
        st.rebuild_deadlines();
        for (i, o) in st.orders.iter().enumerate() {
            self.order_refs.insert(&o.order_ref, (ix, i as u32));
        }
        for (i, h) in st.holds.iter().enumerate() {
            self.hold_refs.insert(&h.hold_ref, (ix, i as u32));
        }
        for (i, rd) in st.redemptions.iter().enumerate() {
            if rd.item == NO_SLOT {
                self.request_ids.insert(&rd.request_id, crate::engine::redemption_id(ix, i as u32));
            }
        }
        drop(st);
        self.index.insert_many(&self.dir, &ids);
        Ok(())
    }

    fn load_tables(dir: &crate::directory::Directory, r: &mut Reader<'_>, st: &mut ShardState, version: u32) -> CoreResult<()> {
        let n = r.u32("order count").map_err(short)?;
        for _ in 0..n {
            st.orders.push(Order {
                order_ref: r.str("order ref").map_err(short)?.into(),
                pool: r.u32("pool").map_err(short)?,
                hold: r.u32("hold").map_err(short)?,
                ids: r.ids("order ids").map_err(short)?.into(),
            });
        }
        let n = r.u32("hold count").map_err(short)?;
        for _ in 0..n {
            let hold_ref = r.str("hold ref").map_err(short)?.into();
            let pool = r.u32("pool").map_err(short)?;
            let deadline_ms = r.u64("deadline").map_err(short)?;
            let state = HoldState::from_u8(r.u8("hold state").map_err(short)?).ok_or_else(|| corrupt("bad hold state"))?;
            let order = r.u32("order").map_err(short)?;
            let ids = r.ids("hold ids").map_err(short)?.into();
            st.holds.push(HoldRec { hold_ref, pool, ids, deadline_ms, state, order });
        }
        let n = r.u32("redemption count").map_err(short)?;
        // Items of one batch share their batch ref, as they do live.
        let mut shared: Option<std::sync::Arc<str>> = None;
        for _ in 0..n {
            let code = r.u32("code").map_err(short)?;
            let request_id = r.str("request id").map_err(short)?;
            let item = if version >= 2 { r.u32("batch item").map_err(short)? } else { NO_SLOT };
            let terminal = r.str("terminal").map_err(short)?;
            let at_ms = r.u64("time").map_err(short)?;
            let uses_after = r.u16("uses").map_err(short)?;
            let rollback = match r.u8("rollback flag").map_err(short)? {
                0 => None,
                _ => Some(Box::new((r.u64("rollback time").map_err(short)?, r.str("reason").map_err(short)?.into()))),
            };
            let terminal = st.terminal_id(terminal);
            let request_id: std::sync::Arc<str> = match &shared {
                Some(s) if item != NO_SLOT && &**s == request_id => std::sync::Arc::clone(s),
                _ => request_id.into(),
            };
            if item != NO_SLOT {
                shared = Some(std::sync::Arc::clone(&request_id));
            }
            st.push_redemption(dir, code, request_id, item, terminal, at_ms, uses_after, rollback);
        }
        if version >= 2 {
            let n = r.u32("pin guard count").map_err(short)?;
            for _ in 0..n {
                let code = r.u32("pin guard code").map_err(short)?;
                let g = PinGuard {
                    failures: r.u16("pin failures").map_err(short)?,
                    lockouts: r.u16("lockouts").map_err(short)?,
                    locked_until_ms: r.u64("lock end").map_err(short)?,
                };
                if st.pin_guards.insert(code, g).is_some() {
                    return Err(corrupt("PIN guard listed twice"));
                }
            }
        }
        Ok(())
    }
}
