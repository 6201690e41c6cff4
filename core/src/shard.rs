//! One SKU's state: its code records, free pools, orders, holds and redemptions, and the
//! in-memory journal buffer of the mutations applied to it.
//!
//! Every mutation goes through `ShardState::apply`, for live calls and for journal replay alike,
//! so replay cannot diverge from what the live call did. Live calls validate first and then apply;
//! a failure inside `apply` on a live call is a bug and panics (it is never caught to carry on).
//! Replay turns the same failure into JOURNAL_CORRUPT.

use crate::directory::Directory;
use crate::batch::ItemError;
use crate::journal::Rec;
use crate::types::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A SKU's fixed settings.
#[derive(Debug, Clone)]
pub struct SkuConfig {
    pub name: Box<str>,
    pub uses_per_code: u16,
    pub redeem_requires_sale: bool,
    /// 0 = none; else a sold code's `valid_until` is capped at sale time + this many days.
    pub validity_days_after_sale: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_ref: Box<str>,
    pub pool: u32,
    pub ids: Box<[u32]>,
    /// The hold this order was confirmed from, or NO_SLOT.
    pub hold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HoldState {
    Open = 0,
    Confirmed = 1,
    Released = 2,
    Expired = 3,
}

impl HoldState {
    pub fn from_u8(v: u8) -> Option<HoldState> {
        Some(match v {
            0 => HoldState::Open,
            1 => HoldState::Confirmed,
            2 => HoldState::Released,
            3 => HoldState::Expired,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            HoldState::Open => "open",
            HoldState::Confirmed => "confirmed",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRec {
    pub hold_ref: Box<str>,
    pub pool: u32,
    pub ids: Box<[u32]>,
    pub deadline_ms: u64,
    pub state: HoldState,
    /// The order it was confirmed into, or NO_SLOT.
    pub order: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionRec {
    pub code: u32,
    /// The previous redemption of the same code, or NO_SLOT.
    pub prev: u32,
    /// The request id, or for an item of a batch the batch ref (shared by its items).
    pub request_id: Arc<str>,
    /// The item's position in its batch, or NO_SLOT for a redemption under its own request id.
    pub item: u32,
    /// Index into the shard's interned terminal ids.
    pub terminal: u32,
    pub at_ms: u64,
    /// Uses left right after this redemption (what the original response reported).
    pub uses_after: u16,
    pub rollback: Option<Box<(u64, Box<str>)>>,
}

/// Wrong-PIN accounting of one code (present only for codes with a failure or lockout since
/// their last right PIN): about 40 bytes per such code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinGuard {
    /// Wrong PINs since the last lockout or right PIN.
    pub failures: u16,
    /// Lockouts since the last right PIN (each one twice as long as the one before).
    pub lockouts: u16,
    /// The end of the current or last lockout (0 = never locked).
    pub locked_until_ms: u64,
}

/// What a snapshot needs of a shard, shared with the live state (see `ShardState::capture`).
pub struct ShardCapture {
    pub config: SkuConfig,
    pub validities: Vec<(u32, u32)>,
    pub terminals: Vec<Arc<str>>,
    pub chunk_ids: Vec<u32>,
    pub chunks: Vec<Arc<Vec<CodeRecord>>>,
    pub orders: CowVec<Order>,
    pub holds: CowVec<HoldRec>,
    pub redemptions: CowVec<RedemptionRec>,
    pub pin_guards: Vec<(u32, PinGuard)>,
}

/// Why a record could not be applied (only reachable through replay of a foreign or corrupt
/// journal; a live call that gets one has a bug).
pub type ApplyError = &'static str;

pub struct ShardState {
    pub ix: u32,
    pub config: SkuConfig,
    /// Record chunks in the order this shard took them; `chunk_ids[i]` is chunk i's global number.
    pub chunks: Vec<Arc<Vec<CodeRecord>>>,
    pub chunk_ids: Vec<u32>,
    pub validities: Vec<(u32, u32)>,
    validity_ix: HashMap<(u32, u32), u32>,
    pub pools: BTreeMap<u32, Pool>,
    pub orders: CowVec<Order>,
    pub holds: CowVec<HoldRec>,
    deadlines: BinaryHeap<Reverse<(u64, u32)>>,
    pub redemptions: CowVec<RedemptionRec>,
    /// The latest redemption of each code (earlier ones are chained through `prev`), per record
    /// chunk: NO_SLOT for a code never redeemed; a chunk without redemptions has no array (4
    /// bytes a code once one of its chunk's codes is redeemed, and no hashing per redemption).
    last_redemption: Vec<Option<Box<[u32]>>>,
    pub terminals: Vec<Arc<str>>,
    terminal_ix: hashbrown::HashMap<Arc<str>, u32>,
    /// Codes with wrong PINs since their last right one (see `PinGuard`).
    pub pin_guards: hashbrown::HashMap<u32, PinGuard>,
    /// `[len u32][payload]` of records applied since the last drain.
    pub journal: Vec<u8>,
    pub journal_records: u64,
    /// The engine-wide count of records ever appended (see `Engine::appended`).
    appended: Arc<AtomicU64>,
}

thread_local! {
    /// The ticket of the last record this thread appended (see `Engine::last_ticket`).
    pub static LAST_TICKET: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one appended record and remembers its ticket for this thread. Called while the lock
/// that guards the journal buffer is held, which is what makes `Engine::drain` exact.
pub fn take_ticket(appended: &AtomicU64) -> u64 {
    let t = appended.fetch_add(1, Ordering::SeqCst) + 1;
    LAST_TICKET.with(|c| c.set(t));
    t
}

impl ShardState {
    pub fn new(ix: u32, config: SkuConfig, appended: Arc<AtomicU64>) -> ShardState {
        let mut s = ShardState {
            ix,
            config,
            chunks: Vec::new(),
            chunk_ids: Vec::new(),
            validities: Vec::new(),
            validity_ix: HashMap::new(),
            pools: BTreeMap::new(),
            orders: CowVec::default(),
            holds: CowVec::default(),
            deadlines: BinaryHeap::new(),
            redemptions: CowVec::default(),
            last_redemption: Vec::new(),
            terminals: Vec::new(),
            terminal_ix: hashbrown::HashMap::new(),
            pin_guards: hashbrown::HashMap::new(),
            journal: Vec::new(),
            journal_records: 0,
            appended,
        };
        s.validity(0, NO_END);
        s
    }

    /// The index of a validity window, added on first use.
    pub fn validity(&mut self, from: u32, until: u32) -> u32 {
        if let Some(&ix) = self.validity_ix.get(&(from, until)) {
            return ix;
        }
        let ix = self.validities.len() as u32;
        self.validities.push((from, until));
        self.validity_ix.insert((from, until), ix);
        ix
    }

    #[inline]
    pub fn window(&self, rec: &CodeRecord) -> (u32, u32) {
        self.validities.get(rec.validity as usize).copied().unwrap_or((0, NO_END))
    }

    #[inline]
    fn slot_of(&self, dir: &Directory, id: u32) -> Option<(usize, usize)> {
        let (shard, local) = dir.locate(id)?;
        if shard != self.ix {
            return None;
        }
        let off = id as usize & (CHUNK - 1);
        let chunk = self.chunks.get(local as usize)?;
        (off < chunk.len()).then_some((local as usize, off))
    }

    /// The record of `id` if this shard owns it.
    #[inline]
    pub fn rec(&self, dir: &Directory, id: u32) -> Option<&CodeRecord> {
        let (c, o) = self.slot_of(dir, id)?;
        Some(&self.chunks[c][o])
    }

    /// A copy of `id`'s record (no copy-on-write of its chunk, unlike `rec_mut`).
    #[inline]
    fn rec_copy(&self, dir: &Directory, id: u32) -> Result<CodeRecord, ApplyError> {
        self.rec(dir, id).copied().ok_or("code id not in this shard")
    }

    #[inline]
    fn rec_mut(&mut self, dir: &Directory, id: u32) -> Result<&mut CodeRecord, ApplyError> {
        let (c, o) = self.slot_of(dir, id).ok_or("code id not in this shard")?;
        Ok(&mut Arc::make_mut(&mut self.chunks[c])[o])
    }

    /// The next `n` free code ids of this shard, in order, taking new chunks from the directory
    /// as needed. None when the engine's id space is full (the caller checked capacity first).
    pub fn reserve_ids(&mut self, dir: &Directory, n: usize) -> Option<Vec<u32>> {
        let mut ids = Vec::with_capacity(n);
        let mut fill = self.chunks.last().map_or(CHUNK, |c| c.len());
        let mut g = self.chunk_ids.last().copied().unwrap_or(0);
        while ids.len() < n {
            if fill == CHUNK {
                g = dir.take_chunk(self.ix, self.chunks.len() as u32)?;
                // Sized for what this call will put there, so filling it never reallocates.
                let want = (n - ids.len()).min(CHUNK);
                self.chunks.push(Arc::new(Vec::with_capacity(want)));
                self.chunk_ids.push(g);
                fill = 0;
            }
            ids.push((g << CHUNK_BITS) | fill as u32);
            fill += 1;
        }
        Some(ids)
    }

    pub fn pool_mut(&mut self, pool: u32) -> &mut Pool {
        self.pools.entry(pool).or_default()
    }

    /// Sellable codes of `pool` at `now_s`.
    pub fn sellable(&self, pool: u32, now_s: u32) -> u64 {
        self.pools.get(&pool).map_or(0, |p| p.sellable(now_s))
    }

    /// Chooses `qty` sellable codes of `pool` FEFO without changing anything: the last entries
    /// of the earliest unexpired buckets, in the order `apply` will pop them.
    pub fn pick(&self, pool: u32, qty: usize, now_s: u32) -> Vec<u32> {
        let mut ids = Vec::with_capacity(qty);
        let Some(p) = self.pools.get(&pool) else { return ids };
        for (_, stack) in p.buckets.range(now_s..) {
            let mut pos = stack.len();
            while pos > 0 && ids.len() < qty {
                pos -= 1;
                if let Some(id) = stack.get(pos) {
                    ids.push(id);
                }
            }
            if ids.len() == qty {
                break;
            }
        }
        ids
    }

    // ----- record-level moves, each keeping pool positions and counts exact -----

    fn count(&mut self, pool: u32, from: Option<State>, to: Option<State>) {
        let p = self.pool_mut(pool);
        if let Some(s) = from {
            p.counts[s as usize] -= 1;
        }
        if let Some(s) = to {
            p.counts[s as usize] += 1;
        }
    }

    /// Takes an available code out of its pool bucket (state unchanged; caller sets it).
    fn unstock(&mut self, dir: &Directory, id: u32) -> Result<(), ApplyError> {
        let rec = self.rec_copy(dir, id)?;
        if rec.state() != State::Available {
            return Err("code is not available");
        }
        let until = self.window(&rec).1;
        let pool = self.pools.get_mut(&rec.pool).ok_or("pool missing")?;
        let stack = pool.buckets.get_mut(&until).ok_or("bucket missing")?;
        if stack.get(rec.slot as usize) != Some(id) {
            return Err("pool position mismatch");
        }
        let moved = stack.swap_remove(rec.slot as usize);
        if stack.is_empty() {
            pool.buckets.remove(&until);
        }
        if let Some(m) = moved {
            self.rec_mut(dir, m)?.slot = rec.slot;
        }
        self.rec_mut(dir, id)?.slot = NO_SLOT;
        Ok(())
    }

    /// Puts a code (not currently in a bucket) into its pool's bucket and marks it available.
    fn restock(&mut self, dir: &Directory, id: u32) -> Result<(), ApplyError> {
        let rec = self.rec_copy(dir, id)?;
        let until = self.window(&rec).1;
        let pos = self.pool_mut(rec.pool).buckets.entry(until).or_default().push(id);
        let r = self.rec_mut(dir, id)?;
        r.slot = pos;
        r.state = State::Available as u8;
        Ok(())
    }

    /// Moves `id` from `from` to `to` in the counts and the record (no pool bucket changes).
    fn set_state(&mut self, dir: &Directory, id: u32, to: State, slot: u32) -> Result<(), ApplyError> {
        let r = self.rec_mut(dir, id)?;
        let from = r.state();
        let pool = r.pool;
        r.state = to as u8;
        r.slot = slot;
        self.count(pool, Some(from), Some(to));
        Ok(())
    }

    fn cap_validity(&mut self, dir: &Directory, id: u32, sale_until: u32) -> Result<(), ApplyError> {
        if sale_until == 0 {
            return Ok(());
        }
        let rec = self.rec_copy(dir, id)?;
        let (from, until) = self.window(&rec);
        if sale_until < until {
            let v = self.validity(from, sale_until);
            self.rec_mut(dir, id)?.validity = v;
        }
        Ok(())
    }

    /// Takes `ids` (all available, in `pool`) out of stock into `to` with `slot`.
    fn take_stock(&mut self, dir: &Directory, ids: &[u32], pool: u32, to: State, slot: u32) -> Result<(), ApplyError> {
        for &id in ids {
            if self.rec_copy(dir, id)?.pool != pool {
                return Err("code is in another pool");
            }
            self.unstock(dir, id)?;
            self.set_state(dir, id, to, slot)?;
        }
        Ok(())
    }

    fn return_stock(&mut self, dir: &Directory, ids: &[u32]) -> Result<(), ApplyError> {
        for &id in ids {
            let r = self.rec_copy(dir, id)?;
            self.count(r.pool, Some(r.state()), Some(State::Available));
            self.restock(dir, id)?;
        }
        Ok(())
    }

    // ----- the one mutation entry point -----

    /// Applies one record to this shard and appends it to the shard's journal buffer.
    pub fn apply(&mut self, dir: &Directory, rec: &Rec<'_>) -> Result<(), ApplyError> {
        self.apply_inner(dir, rec)?;
        self.append(rec);
        Ok(())
    }

    /// Appends a record whose effect the caller has already applied item by item through the
    /// same functions `apply_inner` uses (`apply_batch_item`), so replay does exactly the same.
    pub fn append(&mut self, rec: &Rec<'_>) {
        rec.append_to(&mut self.journal);
        self.journal_records += 1;
        take_ticket(&self.appended);
    }

    pub(crate) fn apply_inner(&mut self, dir: &Directory, rec: &Rec<'_>) -> Result<(), ApplyError> {
        match rec {
            Rec::CreateSku { .. } | Rec::BatchOpen { .. } => Err("engine record applied to a shard"),
            Rec::Import { pool, batch, valid_from, valid_until, entries, .. } => {
                let v = self.validity(*valid_from, *valid_until);
                for &(id, key, pin) in entries {
                    self.place(dir, id, key)?;
                    let mut r = CodeRecord {
                        pin_hash: [0, 0],
                        pool: *pool,
                        batch: *batch,
                        slot: NO_SLOT,
                        validity: v,
                        uses_left: self.config.uses_per_code,
                        state: State::Available as u8,
                        frozen_from: 0,
                    };
                    r.set_pin(pin);
                    let (c, _) = self.slot_of_new(dir, id)?;
                    Arc::make_mut(&mut self.chunks[c]).push(r);
                    self.count(*pool, None, Some(State::Available));
                    self.restock(dir, id)?;
                }
                Ok(())
            }
            Rec::Allocate { order_ref, pool, sale_until, ids, .. } => {
                let order = self.orders.len() as u32;
                self.take_stock(dir, ids, *pool, State::Allocated, order)?;
                for &id in ids {
                    self.cap_validity(dir, id, *sale_until)?;
                }
                self.orders.push(Order { order_ref: (*order_ref).into(), pool: *pool, ids: ids.clone().into(), hold: NO_SLOT });
                Ok(())
            }
            Rec::Hold { hold_ref, pool, deadline_ms, ids, .. } => {
                let hold = self.holds.len() as u32;
                self.take_stock(dir, ids, *pool, State::Held, hold)?;
                self.holds.push(HoldRec {
                    hold_ref: (*hold_ref).into(),
                    pool: *pool,
                    ids: ids.clone().into(),
                    deadline_ms: *deadline_ms,
                    state: HoldState::Open,
                    order: NO_SLOT,
                });
                self.deadlines.push(Reverse((*deadline_ms, hold)));
                Ok(())
            }
            Rec::Confirm { hold, order_ref, sale_until, .. } => {
                let h = self.open_hold(*hold)?;
                let order = self.orders.len() as u32;
                for &id in h.ids.iter() {
                    if self.rec_copy(dir, id)?.state() != State::Held {
                        return Err("held code is not held");
                    }
                    self.set_state(dir, id, State::Allocated, order)?;
                    self.cap_validity(dir, id, *sale_until)?;
                }
                self.orders.push(Order { order_ref: (*order_ref).into(), pool: h.pool, ids: h.ids.clone(), hold: *hold });
                let hr = &mut self.holds[*hold as usize];
                hr.state = HoldState::Confirmed;
                hr.order = order;
                Ok(())
            }
            Rec::Release { hold, .. } | Rec::Expire { hold, .. } => {
                let h = self.open_hold(*hold)?;
                for &id in h.ids.iter() {
                    if self.rec_copy(dir, id)?.state() != State::Held {
                        return Err("held code is not held");
                    }
                }
                self.return_stock(dir, &h.ids)?;
                self.holds[*hold as usize].state =
                    if matches!(rec, Rec::Release { .. }) { HoldState::Released } else { HoldState::Expired };
                Ok(())
            }
            Rec::Move { to_pool, ids, .. } => {
                for &id in ids {
                    let from = self.rec_copy(dir, id)?.pool;
                    if from == *to_pool {
                        return Err("move within one pool");
                    }
                    self.unstock(dir, id)?;
                    self.count(from, Some(State::Available), None);
                    self.rec_mut(dir, id)?.pool = *to_pool;
                    self.count(*to_pool, None, Some(State::Available));
                    self.restock(dir, id)?;
                }
                Ok(())
            }
            Rec::Redeem { code, request_id, terminal, at_ms, .. } => {
                let terminal = self.terminal_id(terminal);
                self.redeem_code(dir, *code, (*request_id).into(), NO_SLOT, terminal, *at_ms)?;
                Ok(())
            }
            Rec::Rollback { redemption, at_ms, reason, .. } => {
                let rd = self.redemptions.get(*redemption as usize).ok_or("unknown redemption")?;
                if rd.rollback.is_some() {
                    return Err("redemption already rolled back");
                }
                let code = rd.code;
                let r = self.rec_copy(dir, code)?;
                if r.uses_left >= self.config.uses_per_code {
                    return Err("rollback beyond the code's uses");
                }
                match r.state() {
                    State::Redeemed if r.was_withdrawn() => self.set_state(dir, code, State::Withdrawn, NO_SLOT)?,
                    State::Redeemed => self.set_state(dir, code, State::Allocated, r.slot)?,
                    State::Allocated | State::Withdrawn => {}
                    _ => return Err("rollback of a frozen or void code"),
                }
                self.rec_mut(dir, code)?.uses_left += 1;
                self.redemptions[*redemption as usize].rollback = Some(Box::new((*at_ms, (*reason).into())));
                Ok(())
            }
            Rec::Freeze { ids, .. } => {
                for &id in ids {
                    let r = self.rec_copy(dir, id)?;
                    match r.state() {
                        State::Available => {
                            self.unstock(dir, id)?;
                        }
                        State::Allocated | State::Redeemed | State::Withdrawn => {}
                        _ => return Err("freeze of a held, frozen or void code"),
                    }
                    let slot = self.rec_copy(dir, id)?.slot;
                    self.set_state(dir, id, State::Frozen, slot)?;
                    self.rec_mut(dir, id)?.frozen_from = r.state | (r.frozen_from & FLAG_WITHDRAWN);
                }
                Ok(())
            }
            Rec::Unfreeze { ids, .. } => {
                for &id in ids {
                    let r = self.rec_copy(dir, id)?;
                    if r.state() != State::Frozen {
                        return Err("unfreeze of a code that is not frozen");
                    }
                    let back = r.frozen_from().ok_or("bad frozen_from")?;
                    self.rec_mut(dir, id)?.frozen_from = r.frozen_from & FLAG_WITHDRAWN;
                    if back == State::Available {
                        self.count(r.pool, Some(State::Frozen), Some(State::Available));
                        self.restock(dir, id)?;
                    } else {
                        self.set_state(dir, id, back, r.slot)?;
                    }
                }
                Ok(())
            }
            Rec::Void { ids, .. } => {
                for &id in ids {
                    let r = self.rec_copy(dir, id)?;
                    match r.state() {
                        State::Available => self.unstock(dir, id)?,
                        State::Allocated | State::Redeemed | State::Frozen | State::Withdrawn => {}
                        _ => return Err("void of a held or void code"),
                    }
                    let slot = self.rec_copy(dir, id)?.slot;
                    self.set_state(dir, id, State::Void, slot)?;
                }
                Ok(())
            }
            Rec::Withdraw { ids, .. } => {
                for &id in ids {
                    self.unstock(dir, id)?;
                    self.set_state(dir, id, State::Withdrawn, NO_SLOT)?;
                    self.rec_mut(dir, id)?.frozen_from = FLAG_WITHDRAWN;
                }
                Ok(())
            }
            Rec::Restore { ids, .. } => {
                for &id in ids {
                    let r = self.rec_copy(dir, id)?;
                    if r.state() != State::Withdrawn || r.uses_left != self.config.uses_per_code || self.last_redemption_of(dir, id).is_some() {
                        return Err("restore of a code that is not withdrawn or was redeemed");
                    }
                    self.rec_mut(dir, id)?.frozen_from = 0;
                    self.count(r.pool, Some(State::Withdrawn), Some(State::Available));
                    self.restock(dir, id)?;
                }
                Ok(())
            }
            Rec::PinFail { code, locked_until_ms, .. } => {
                if self.rec_copy(dir, *code)?.pin() == 0 {
                    return Err("PIN failure of a code without a PIN");
                }
                self.pin_fail(*code, *locked_until_ms);
                Ok(())
            }
            Rec::PinReset { code, .. } => self.pin_guards.remove(code).map(|_| ()).ok_or("PIN reset of a code without failures"),
            Rec::PinUnlock { ids, .. } => {
                for id in ids {
                    self.pin_guards.remove(id).ok_or("unlock of a code without a lockout")?;
                }
                Ok(())
            }
            Rec::BatchRedeem { batch_ref, terminal, at_ms, items, .. } => {
                let terminal = self.terminal_id(terminal);
                let batch_ref: Arc<str> = (*batch_ref).into();
                for &(i, code, outcome) in items {
                    self.apply_batch_item(dir, &batch_ref, i, code, outcome, terminal, *at_ms)?;
                }
                Ok(())
            }
        }
    }

    /// Takes one use of `code` and records the redemption (request id or batch ref + `item`).
    /// Returns the redemption's index in this shard.
    fn redeem_code(&mut self, dir: &Directory, code: u32, request_id: Arc<str>, item: u32, terminal: u32, at_ms: u64) -> Result<u32, ApplyError> {
        let (c, o) = self.slot_of(dir, code).ok_or("code id not in this shard")?;
        let r = self.chunks[c][o];
        if r.uses_left == 0 {
            return Err("redeem of a code with no uses left");
        }
        match r.state() {
            State::Available => {
                self.unstock(dir, code)?;
                self.set_state(dir, code, State::Allocated, NO_SLOT)?;
            }
            State::Allocated | State::Withdrawn => {}
            _ => return Err("redeem of a code that is not sold"),
        }
        // One copy-on-write check per redemption (each one is a full memory barrier).
        let rm = &mut Arc::make_mut(&mut self.chunks[c])[o];
        rm.uses_left -= 1;
        let (uses_after, from, pool) = (rm.uses_left, rm.state(), rm.pool);
        if uses_after == 0 {
            rm.state = State::Redeemed as u8;
            self.count(pool, Some(from), Some(State::Redeemed));
        }
        // A redemption needs the right PIN (or no PIN), which clears the failure count.
        if !self.pin_guards.is_empty() {
            self.pin_guards.remove(&code);
        }
        Ok(self.push_redemption(dir, code, request_id, item, terminal, at_ms, uses_after, None))
    }

    /// A wrong PIN for `code`: one more failure, or (when `locked_until_ms` is set) the start of
    /// a lockout, which clears the failure count and counts the lockout.
    pub fn pin_fail(&mut self, code: u32, locked_until_ms: u64) {
        let g = self.pin_guards.entry(code).or_default();
        if locked_until_ms == 0 {
            g.failures = g.failures.saturating_add(1);
        } else {
            g.failures = 0;
            g.lockouts = g.lockouts.saturating_add(1);
            g.locked_until_ms = locked_until_ms;
        }
    }

    /// Applies one item of a batch: a redemption (None) or a failure with its PIN effect.
    /// Returns the new redemption's index for a redemption.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_batch_item(
        &mut self,
        dir: &Directory,
        batch_ref: &Arc<str>,
        item: u32,
        code: u32,
        outcome: Option<ItemError>,
        terminal: u32,
        at_ms: u64,
    ) -> Result<Option<u32>, ApplyError> {
        let rec = self.rec_copy(dir, code)?;
        match outcome {
            None => return self.redeem_code(dir, code, Arc::clone(batch_ref), item, terminal, at_ms).map(Some),
            Some(ItemError::PinMismatch) => {
                if rec.pin() == 0 {
                    return Err("PIN failure of a code without a PIN");
                }
                self.pin_fail(code, 0);
            }
            Some(ItemError::CodeLocked { locked_until_ms, started: true }) => {
                if rec.pin() == 0 || locked_until_ms == 0 {
                    return Err("lockout of a code without a PIN");
                }
                self.pin_fail(code, locked_until_ms);
            }
            Some(e) if e.pin_passed() => {
                self.pin_guards.remove(&code);
            }
            Some(_) => {}
        }
        Ok(None)
    }

    /// The interned index of a terminal id.
    pub fn terminal_id(&mut self, terminal: &str) -> u32 {
        if let Some(&ix) = self.terminal_ix.get(terminal) {
            return ix;
        }
        let ix = self.terminals.len() as u32;
        let t: Arc<str> = terminal.into();
        self.terminals.push(Arc::clone(&t));
        self.terminal_ix.insert(t, ix);
        ix
    }

    /// The interned index of a terminal id, None if it never redeemed in this shard.
    pub fn find_terminal(&self, terminal: &str) -> Option<u32> {
        self.terminal_ix.get(terminal).copied()
    }

    pub fn terminal(&self, ix: u32) -> Arc<str> {
        self.terminals.get(ix as usize).cloned().unwrap_or_else(|| "".into())
    }

    /// Appends a redemption record and links it into its code's chain; returns its index.
    #[allow(clippy::too_many_arguments)]
    pub fn push_redemption(
        &mut self,
        dir: &Directory,
        code: u32,
        request_id: Arc<str>,
        item: u32,
        terminal: u32,
        at_ms: u64,
        uses_after: u16,
        rollback: Option<Box<(u64, Box<str>)>>,
    ) -> u32 {
        let ix = self.redemptions.len() as u32;
        let prev = self.set_last_redemption(dir, code, ix);
        self.redemptions.push(RedemptionRec { code, prev, request_id, item, terminal, at_ms, uses_after, rollback });
        ix
    }

    /// The latest redemption of `code` (None if never redeemed or not this shard's).
    pub fn last_redemption_of(&self, dir: &Directory, code: u32) -> Option<u32> {
        let (c, o) = self.slot_of(dir, code)?;
        let ix = *self.last_redemption.get(c)?.as_ref()?.get(o)?;
        (ix != NO_SLOT).then_some(ix)
    }

    /// Makes `ix` the latest redemption of `code`; returns the previous one (or NO_SLOT; also
    /// for a code that is not this shard's, which `check` then reports).
    fn set_last_redemption(&mut self, dir: &Directory, code: u32, ix: u32) -> u32 {
        let Some((c, _)) = self.slot_of(dir, code) else { return NO_SLOT };
        if self.last_redemption.len() <= c {
            self.last_redemption.resize_with(c + 1, || None);
        }
        let arr = self.last_redemption[c].get_or_insert_with(|| vec![NO_SLOT; CHUNK].into_boxed_slice());
        std::mem::replace(&mut arr[code as usize & (CHUNK - 1)], ix)
    }

    /// Every redemption of `code`, oldest first.
    pub fn redemptions_of(&self, dir: &Directory, code: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = self.last_redemption_of(dir, code).unwrap_or(NO_SLOT);
        while at != NO_SLOT {
            out.push(at);
            at = self.redemptions.get(at as usize).map_or(NO_SLOT, |r| r.prev);
        }
        out.reverse();
        out
    }

    fn open_hold(&self, hold: u32) -> Result<HoldRec, ApplyError> {
        let h = self.holds.get(hold as usize).ok_or("unknown hold")?;
        if h.state != HoldState::Open {
            return Err("hold is not open");
        }
        Ok(h.clone())
    }

    /// Makes sure `id`'s chunk belongs to this shard (publishing it when replaying onto an empty
    /// directory) and writes its key.
    fn place(&mut self, dir: &Directory, id: u32, key: u128) -> Result<(), ApplyError> {
        let g = id >> CHUNK_BITS;
        match dir.locate(id) {
            Some((s, _)) if s == self.ix => {}
            Some(_) => return Err("code id belongs to another shard"),
            None => {
                if !dir.publish_chunk(g, self.ix, self.chunks.len() as u32) {
                    return Err("chunk already taken");
                }
                self.chunks.push(Arc::new(Vec::new()));
                self.chunk_ids.push(g);
            }
        }
        dir.set_key(id, key);
        Ok(())
    }

    /// The (local chunk, offset) a new code `id` goes to; it must be the chunk's next slot.
    fn slot_of_new(&self, dir: &Directory, id: u32) -> Result<(usize, usize), ApplyError> {
        let (_, local) = dir.locate(id).ok_or("chunk missing")?;
        let chunk = self.chunks.get(local as usize).ok_or("chunk missing")?;
        if chunk.len() != id as usize & (CHUNK - 1) {
            return Err("code ids out of order");
        }
        Ok((local as usize, chunk.len()))
    }

    /// A consistent copy of this shard's persistent state, taken in O(chunks): record chunks and
    /// tables are shared, not copied, until a later write copies the chunk it touches.
    pub fn capture(&self) -> ShardCapture {
        ShardCapture {
            config: self.config.clone(),
            validities: self.validities.clone(),
            terminals: self.terminals.clone(),
            chunk_ids: self.chunk_ids.clone(),
            chunks: self.chunks.clone(),
            orders: self.orders.clone(),
            holds: self.holds.clone(),
            redemptions: self.redemptions.clone(),
            pin_guards: self.sorted_pin_guards(),
        }
    }

    /// The PIN guards in code id order (canonical for snapshots and digests).
    pub fn sorted_pin_guards(&self) -> Vec<(u32, PinGuard)> {
        let mut v: Vec<(u32, PinGuard)> = self.pin_guards.iter().map(|(&c, &g)| (c, g)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// Holds whose deadline is `<= now_ms` and still open, earliest first (consumed from the heap).
    pub fn due_holds(&mut self, now_ms: u64) -> Vec<u32> {
        let mut due = Vec::new();
        while let Some(&Reverse((deadline, hold))) = self.deadlines.peek() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop();
            if self.holds.get(hold as usize).is_some_and(|h| h.state == HoldState::Open) {
                due.push(hold);
            }
        }
        due
    }

    /// Rebuilds the deadline heap from the open holds (after restore).
    pub fn rebuild_deadlines(&mut self) {
        self.deadlines = self
            .holds
            .iter()
            .enumerate()
            .filter(|(_, h)| h.state == HoldState::Open)
            .map(|(i, h)| Reverse((h.deadline_ms, i as u32)))
            .collect();
    }

    /// Re-inserts the validity index after restore.
    pub fn rebuild_validity_index(&mut self) {
        self.validity_ix = self.validities.iter().enumerate().map(|(i, w)| (*w, i as u32)).collect();
    }

    /// Rebuilds pools (buckets and counts) from the records, in id order (after restore).
    pub fn rebuild_pools(&mut self, dir: &Directory) -> Result<(), ApplyError> {
        self.pools.clear();
        let mut ids = Vec::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            let base = self.chunk_ids[c] << CHUNK_BITS;
            for (o, r) in chunk.iter().enumerate() {
                ids.push((base | o as u32, r.pool, r.state()));
            }
        }
        for (id, pool, state) in ids {
            self.count(pool, None, Some(state));
            if state == State::Available {
                self.restock(dir, id)?;
            }
        }
        Ok(())
    }

    /// Every code id of this shard in id order.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks.iter().enumerate().flat_map(move |(c, chunk)| {
            let base = self.chunk_ids[c] << CHUNK_BITS;
            (0..chunk.len() as u32).map(move |o| base | o)
        })
    }

    pub fn code_count(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    /// Checks every invariant of this shard; returns the first violation.
    pub fn check(&self, dir: &Directory) -> Result<(), String> {
        let mut counts: BTreeMap<u32, [u64; STATE_COUNT]> = BTreeMap::new();
        for id in self.ids() {
            let r = self.rec(dir, id).ok_or_else(|| format!("id {id} unreachable"))?;
            counts.entry(r.pool).or_default()[r.state as usize] += 1;
            let until = self.window(r).1;
            match r.state() {
                State::Available => {
                    let at = self.pools.get(&r.pool).and_then(|p| p.buckets.get(&until)).and_then(|s| s.get(r.slot as usize));
                    if at != Some(id) {
                        return Err(format!("available code {id} not at its pool position"));
                    }
                }
                State::Held => {
                    let h = self.holds.get(r.slot as usize).ok_or(format!("held code {id} has no hold"))?;
                    if h.state != HoldState::Open || !h.ids.contains(&id) {
                        return Err(format!("held code {id} not in an open hold"));
                    }
                }
                State::Allocated | State::Redeemed => {
                    if r.slot != NO_SLOT {
                        let o = self.orders.get(r.slot as usize).ok_or(format!("code {id} has no order"))?;
                        if !o.ids.contains(&id) {
                            return Err(format!("code {id} not in its order"));
                        }
                    }
                    if (r.state() == State::Redeemed) != (r.uses_left == 0) {
                        return Err(format!("code {id} state disagrees with uses left"));
                    }
                }
                State::Withdrawn => {
                    if r.uses_left == 0 || !r.was_withdrawn() {
                        return Err(format!("withdrawn code {id} has no uses left or lost its mark"));
                    }
                }
                State::Frozen | State::Void => {}
            }
            if matches!(r.state(), State::Available | State::Held) && r.uses_left != self.config.uses_per_code {
                return Err(format!("code {id} is in stock with uses taken"));
            }
            if r.was_withdrawn() && matches!(r.state(), State::Available | State::Held | State::Allocated) {
                return Err(format!("code {id} is marked withdrawn but is {}", r.state().name()));
            }
            if r.state() == State::Frozen && !matches!(r.frozen_from(), Some(State::Available | State::Allocated | State::Redeemed | State::Withdrawn)) {
                return Err(format!("frozen code {id} remembers no state to return to"));
            }
            if r.uses_left > self.config.uses_per_code {
                return Err(format!("code {id} has more uses than its SKU allows"));
            }
        }
        for (pool, p) in &self.pools {
            let want = counts.get(pool).copied().unwrap_or_default();
            if p.counts != want {
                return Err(format!("pool {pool} counts {:?} but codes by state are {:?}", p.counts, want));
            }
            let in_buckets: u64 = p.buckets.values().map(|s| s.len() as u64).sum();
            if in_buckets != p.counts[State::Available as usize] {
                return Err(format!("pool {pool} buckets hold {in_buckets} codes, count says otherwise"));
            }
        }
        for (pool, c) in &counts {
            if !self.pools.contains_key(pool) && c.iter().any(|&n| n > 0) {
                return Err(format!("pool {pool} has codes but no counts"));
            }
        }
        for (i, rd) in self.redemptions.iter().enumerate() {
            if self.rec(dir, rd.code).is_none() || rd.uses_after >= self.config.uses_per_code {
                return Err(format!("redemption {i} names an unknown code or impossible uses"));
            }
            if rd.prev != NO_SLOT && (rd.prev as usize >= i || self.redemptions.get(rd.prev as usize).is_none_or(|p| p.code != rd.code)) {
                return Err(format!("redemption {i} chains to a redemption of another code"));
            }
            if self.terminals.get(rd.terminal as usize).is_none() {
                return Err(format!("redemption {i} names an unknown terminal"));
            }
        }
        // Every use taken is a live (not rolled-back) redemption, and only those.
        let mut live: hashbrown::HashMap<u32, u32> = hashbrown::HashMap::new();
        for rd in self.redemptions.iter().filter(|r| r.rollback.is_none()) {
            *live.entry(rd.code).or_default() += 1;
        }
        for id in self.ids() {
            let r = self.rec(dir, id).ok_or_else(|| format!("id {id} unreachable"))?;
            let taken = u32::from(self.config.uses_per_code - r.uses_left.min(self.config.uses_per_code));
            if live.get(&id).copied().unwrap_or(0) != taken {
                return Err(format!("code {id} has {taken} uses taken but other live redemptions"));
            }
        }
        for (&code, g) in &self.pin_guards {
            let r = self.rec(dir, code).ok_or(format!("PIN guard for unknown code {code}"))?;
            if r.pin() == 0 || (g.failures == 0 && g.lockouts == 0) {
                return Err(format!("PIN guard of code {code} without a PIN or without failures"));
            }
        }
        for (i, h) in self.holds.iter().enumerate() {
            if h.state == HoldState::Open {
                for &id in h.ids.iter() {
                    let r = self.rec(dir, id).ok_or("hold code unreachable")?;
                    if r.state() != State::Held || r.slot != i as u32 {
                        return Err(format!("open hold {i} lost code {id}"));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn memory_bytes(&self) -> usize {
        let recs: usize = self.chunks.iter().map(|c| c.capacity() * std::mem::size_of::<CodeRecord>()).sum();
        let pools: usize = self.pools.values().flat_map(|p| p.buckets.values()).map(IdStack::memory_bytes).sum();
        let orders: usize = self.orders.iter().map(|o| 64 + o.order_ref.len() + o.ids.len() * 4).sum();
        let holds: usize = self.holds.iter().map(|h| 80 + h.hold_ref.len() + h.ids.len() * 4).sum();
        let reds: usize =
            self.redemptions.iter().map(|r| 56 + if r.item == NO_SLOT { 16 + r.request_id.len() } else { 0 }).sum::<usize>()
                + self.last_redemption.iter().flatten().count() * CHUNK * 4;
        let guards = self.pin_guards.capacity() * (std::mem::size_of::<(u32, PinGuard)>() + 1);
        recs + pools + orders + holds + reds + guards + self.journal.capacity()
    }
}
