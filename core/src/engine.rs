//! The engine: routing of calls to SKU shards, the lookup index, idempotency registries, the
//! clock, and the public operations with their validation and error precedence (docs/engine.md).
//!
//! Lock order, never reversed: import lock → hold registry part → order registry part → request
//! registry part → SKU shard → index part. Catalog and drain locks are taken before any shard.

use crate::directory::{Directory, Index, Registry};
use crate::error::{CoreError, CoreResult};
use crate::hash::{check_pin, normalise_code, Hashing, CODE_LEN_MAX};
use crate::journal::Rec;
use crate::shard::{HoldState, ShardState, SkuConfig};
use crate::types::*;
use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One SKU: its index and its locked state.
pub struct Shard {
    pub ix: u32,
    pub name: Arc<str>,
    pub state: Mutex<ShardState>,
}

/// The SKU table; replaced whole (copy-on-write) when a SKU is created, read without locks.
#[derive(Default, Clone)]
pub struct SkuTable {
    pub by_name: HashMap<Box<str>, u32>,
    pub shards: Vec<Arc<Shard>>,
}

/// Catalog journal buffer (SKU creation), guarded by the catalog lock.
#[derive(Default)]
pub struct Catalog {
    pub journal: Vec<u8>,
    pub records: u64,
}

/// Journal records drained but not yet handed out, and the next sequence number.
#[derive(Default)]
pub struct DrainState {
    pub next_seq: u64,
    pub ready: Vec<u8>,
}

/// Many texts in one buffer (codes, PINs, request ids), copied once from the caller so the work
/// can run without the caller's locks. A span with `len == u32::MAX` is an absent value.
#[derive(Default, Debug, Clone)]
pub struct Texts {
    pub data: Vec<u8>,
    pub spans: Vec<(u32, u32)>,
}

impl Texts {
    pub fn push(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.spans.push((self.data.len() as u32, s.len() as u32));
                self.data.extend_from_slice(s.as_bytes());
            }
            None => self.spans.push((0, u32::MAX)),
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The i-th text (None when absent). Texts only ever come from `&str`, so they are UTF-8.
    pub fn get(&self, i: usize) -> Option<&str> {
        let (start, len) = *self.spans.get(i)?;
        if len == u32::MAX {
            return None;
        }
        std::str::from_utf8(self.data.get(start as usize..(start + len) as usize)?).ok()
    }
}

impl<'a> FromIterator<&'a str> for Texts {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Texts {
        let mut t = Texts::default();
        for s in iter {
            t.push(Some(s));
        }
        t
    }
}

/// A hold as reported to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldView {
    pub hold_ref: String,
    pub sku: String,
    pub pool: u32,
    pub ids: Vec<u32>,
    pub expires_at_ms: u64,
    pub state: HoldState,
    pub order_ref: Option<String>,
}

/// The result of `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub code_id: u32,
    pub status: &'static str,
    pub sku: Arc<str>,
    pub uses_left: u16,
    pub valid_from: Option<u32>,
    pub valid_until: Option<u32>,
}

/// A redemption as reported to callers (the original result on a replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionView {
    pub redemption_id: u64,
    pub request_id: Arc<str>,
    pub code_id: u32,
    pub sku: Arc<str>,
    pub terminal: Arc<str>,
    pub uses_left: u16,
    pub redeemed_at_ms: u64,
    pub rolled_back_at_ms: Option<u64>,
    pub rollback_reason: Option<String>,
}

/// The compact result of one item of `redeem_many` (`get_redemption` gives the full record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemOutcome {
    pub redemption_id: u64,
    pub code_id: u32,
    pub uses_left: u16,
    pub redeemed_at_ms: u64,
}

/// Everything the engine knows about one code (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    pub code_id: u32,
    pub sku: String,
    pub pool: u32,
    pub batch: u32,
    pub state: State,
    pub frozen_from: Option<State>,
    pub uses_left: u16,
    pub has_pin: bool,
    pub valid_from: Option<u32>,
    pub valid_until: Option<u32>,
    pub order_ref: Option<String>,
    pub hold_ref: Option<String>,
    pub redemption_ids: Vec<u64>,
}

/// Stock counts of one (SKU, pool) or a sum of pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stock {
    pub available: u64,
    pub expired: u64,
    pub held: u64,
    pub allocated: u64,
    pub redeemed: u64,
    pub frozen: u64,
    pub void: u64,
}

impl Stock {
    pub fn total(&self) -> u64 {
        self.available + self.expired + self.held + self.allocated + self.redeemed + self.frozen + self.void
    }

    fn add(&mut self, o: &Stock) {
        self.available += o.available;
        self.expired += o.expired;
        self.held += o.held;
        self.allocated += o.allocated;
        self.redeemed += o.redeemed;
        self.frozen += o.frozen;
        self.void += o.void;
    }

    fn of(p: &Pool, now_s: u32) -> Stock {
        let expired = p.expired(now_s);
        Stock {
            available: p.counts[State::Available as usize] - expired,
            expired,
            held: p.counts[State::Held as usize],
            allocated: p.counts[State::Allocated as usize],
            redeemed: p.counts[State::Redeemed as usize],
            frozen: p.counts[State::Frozen as usize],
            void: p.counts[State::Void as usize],
        }
    }
}

pub struct Engine {
    pub(crate) hashing: Hashing,
    pub(crate) dir: Directory,
    pub(crate) index: Index,
    pub(crate) skus: ArcSwap<SkuTable>,
    pub(crate) catalog: Mutex<Catalog>,
    pub(crate) order_refs: Registry<(u32, u32)>,
    pub(crate) hold_refs: Registry<(u32, u32)>,
    pub(crate) request_ids: Registry<u64>,
    pub(crate) import_lock: Mutex<()>,
    pub(crate) drain: Mutex<DrainState>,
    clock_ms: AtomicU64,
    /// Records ever appended (a record's ticket is this count right after it was appended).
    pub(crate) appended: Arc<AtomicU64>,
    /// The highest ticket the journal sink has made durable, the highest ticket anyone is
    /// waiting for, and the two condition variables: waiters sleep on `durable_changed`, the
    /// journal writer sleeps on `demand` until someone wants more than is durable.
    durable: Mutex<Durability>,
    durable_changed: Condvar,
    demand: Condvar,
    /// How long the last snapshot held the locks (see `last_snapshot_capture_us`).
    pub(crate) last_capture_us: AtomicU64,
}

/// What verify reports and what decides redeem's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Valid,
    Void,
    Frozen,
    Redeemed,
    NotSold,
    NotYetValid(u32),
    Expired(u32),
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Void => "void",
            Status::Frozen => "frozen",
            Status::Redeemed => "redeemed",
            Status::NotSold => "not_sold",
            Status::NotYetValid(_) => "not_yet_valid",
            Status::Expired(_) => "expired",
        }
    }
}

/// A batch item found in the index: (input position, code id, lookup key).
type BatchItem = (usize, u32, u128);

/// Most batch items processed under one acquisition of a shard lock, so a large batch never
/// stalls other callers of that SKU for long (1,024 items is well under a millisecond).
const LOCK_BLOCK: usize = 1024;

/// Durability watermarks (see `Engine::durable`).
#[derive(Default)]
struct Durability {
    durable: u64,
    wanted: u64,
}

/// Redemption ids carry their shard so a rollback finds it without a lookup.
#[inline]
pub fn redemption_id(shard: u32, ix: u32) -> u64 {
    (u64::from(shard) << 32) | u64::from(ix)
}

fn check_ref(field: &'static str, v: &str) -> CoreResult<()> {
    if v.is_empty() {
        return Err(CoreError::InvalidArgument { field, reason: "must not be empty" });
    }
    if v.len() > REF_LEN_MAX {
        return Err(CoreError::LimitExceeded { field, max: REF_LEN_MAX as u64, got: v.len() as u64 });
    }
    Ok(())
}

fn check_qty(qty: i64, max: u64) -> CoreResult<usize> {
    if qty <= 0 {
        return Err(CoreError::QuantityMustBePositive { qty });
    }
    if qty as u64 > max {
        return Err(CoreError::LimitExceeded { field: "quantity", max, got: qty as u64 });
    }
    Ok(qty as usize)
}

fn bug(what: &str, e: &str) -> ! {
    panic!("cardsvc core invariant broken in {what}: {e}")
}

impl Engine {
    /// Opens an empty engine. Errors: INVALID_ARGUMENT when `secret` is not 32 bytes.
    pub fn new(secret: &[u8]) -> CoreResult<Engine> {
        Ok(Engine::with_hashing(Hashing::new(secret)?))
    }

    pub(crate) fn with_hashing(hashing: Hashing) -> Engine {
        Engine {
            hashing,
            dir: Directory::new(),
            index: Index::new(),
            skus: ArcSwap::from_pointee(SkuTable::default()),
            catalog: Mutex::new(Catalog::default()),
            order_refs: Registry::new(),
            hold_refs: Registry::new(),
            request_ids: Registry::new(),
            import_lock: Mutex::new(()),
            drain: Mutex::new(DrainState { next_seq: 1, ready: Vec::new() }),
            clock_ms: AtomicU64::new(0),
            appended: Arc::new(AtomicU64::new(0)),
            durable: Mutex::new(Durability::default()),
            durable_changed: Condvar::new(),
            demand: Condvar::new(),
            last_capture_us: AtomicU64::new(0),
        }
    }

    // ----- durability tickets (group commit) -----

    /// Records appended so far. Every mutation's record gets the next ticket; a caller that wants
    /// to report an effect waits until `durable() >= ticket`.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::SeqCst)
    }

    /// The ticket of the last record appended by the calling thread (0 if none).
    pub fn last_ticket() -> u64 {
        crate::shard::LAST_TICKET.with(|c| c.get())
    }

    /// The highest ticket known durable.
    pub fn durable(&self) -> u64 {
        self.durable.lock().durable
    }

    /// Called by the journal writer after its sink made every record up to `ticket` durable.
    pub fn mark_durable(&self, ticket: u64) {
        let mut d = self.durable.lock();
        if ticket > d.durable {
            d.durable = ticket;
            self.durable_changed.notify_all();
        }
    }

    /// Asks the journal writer to make `ticket` durable soon, without waiting.
    pub fn request_durable(&self, ticket: u64) {
        let mut d = self.durable.lock();
        if ticket > d.wanted {
            d.wanted = ticket;
        }
        if d.wanted > d.durable {
            self.demand.notify_one();
        }
    }

    /// Blocks until `durable() >= ticket` or `timeout_ms` passes; returns whether it was reached.
    /// Signals the journal writer first, so one flush serves every caller waiting at that time.
    pub fn wait_durable(&self, ticket: u64, timeout_ms: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
        let mut d = self.durable.lock();
        if d.durable >= ticket {
            return true;
        }
        if ticket > d.wanted {
            d.wanted = ticket;
            self.demand.notify_one();
        }
        while d.durable < ticket {
            if self.durable_changed.wait_until(&mut d, deadline).timed_out() {
                return d.durable >= ticket;
            }
        }
        true
    }

    /// Blocks until `durable()` differs from `seen` or `timeout_ms` passes; returns `durable()`.
    pub fn wait_durable_change(&self, seen: u64, timeout_ms: u64) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
        let mut d = self.durable.lock();
        while d.durable == seen {
            if self.durable_changed.wait_until(&mut d, deadline).timed_out() {
                break;
            }
        }
        d.durable
    }

    /// For the journal writer: blocks until some caller wants a ticket beyond `durable()`, or
    /// `timeout_ms` passes. Returns the highest wanted ticket.
    pub fn wait_for_demand(&self, timeout_ms: u64) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
        let mut d = self.durable.lock();
        while d.wanted <= d.durable {
            if self.demand.wait_until(&mut d, deadline).timed_out() {
                break;
            }
        }
        d.wanted
    }

    // ----- clock -----

    /// Current time in Unix ms: the manual clock if set, else the wall clock.
    pub fn now_ms(&self) -> u64 {
        match self.clock_ms.load(Ordering::Relaxed) {
            0 => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            t => t,
        }
    }

    /// Sets a manual clock (tests, replays of scenarios); None returns to the wall clock.
    pub fn set_clock_ms(&self, now_ms: Option<u64>) {
        self.clock_ms.store(now_ms.unwrap_or(0).max(u64::from(now_ms.is_some())), Ordering::Relaxed);
    }

    /// Uses `other`'s clock setting (manual or wall) from now on.
    pub(crate) fn copy_clock_from(&self, other: &Engine) {
        self.clock_ms.store(other.clock_ms.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn now_s(now_ms: u64) -> u32 {
        (now_ms / 1000).min(u64::from(u32::MAX - 1)) as u32
    }

    // ----- catalog -----

    pub(crate) fn shard_by_name(&self, sku: &str) -> CoreResult<Arc<Shard>> {
        let t = self.skus.load();
        t.by_name
            .get(sku)
            .map(|&ix| Arc::clone(&t.shards[ix as usize]))
            .ok_or_else(|| CoreError::SkuNotFound { sku: sku.to_string() })
    }

    #[inline]
    pub(crate) fn shard_by_ix(&self, ix: u32) -> Option<Arc<Shard>> {
        self.skus.load().shards.get(ix as usize).cloned()
    }

    /// Creates a SKU (a shard). Errors: INVALID_ARGUMENT, LIMIT_EXCEEDED, SKU_EXISTS.
    pub fn create_sku(&self, sku: &str, uses_per_code: u32, redeem_requires_sale: bool, validity_days_after_sale: Option<u32>) -> CoreResult<()> {
        check_ref("sku", sku)?;
        if uses_per_code == 0 || uses_per_code > u32::from(u16::MAX) {
            return Err(CoreError::InvalidArgument { field: "uses_per_code", reason: "must be 1..=65535" });
        }
        let days = validity_days_after_sale.unwrap_or(0);
        if validity_days_after_sale == Some(0) || days > VALIDITY_DAYS_MAX {
            return Err(CoreError::InvalidArgument { field: "validity_days_after_sale", reason: "must be 1..=36500 days" });
        }
        let mut cat = self.catalog.lock();
        let t = self.skus.load();
        if t.by_name.contains_key(sku) {
            return Err(CoreError::SkuExists { sku: sku.to_string() });
        }
        if t.shards.len() >= SKUS_MAX {
            return Err(CoreError::LimitExceeded { field: "skus", max: SKUS_MAX as u64, got: t.shards.len() as u64 });
        }
        let rec = Rec::CreateSku {
            ix: t.shards.len() as u32,
            name: sku,
            uses_per_code: uses_per_code as u16,
            redeem_requires_sale,
            validity_days: days,
        };
        self.apply_create_sku(&rec, &mut cat).unwrap_or_else(|e| bug("create_sku", e));
        Ok(())
    }

    /// Applies a CreateSku record (live or replayed) under the catalog lock.
    pub(crate) fn apply_create_sku(&self, rec: &Rec<'_>, cat: &mut MutexGuard<'_, Catalog>) -> Result<(), &'static str> {
        let Rec::CreateSku { ix, name, uses_per_code, redeem_requires_sale, validity_days } = rec else {
            return Err("not a catalog record");
        };
        let mut t = SkuTable::clone(&self.skus.load());
        if *ix as usize != t.shards.len() || t.by_name.contains_key(*name) || *uses_per_code == 0 {
            return Err("SKU record out of order");
        }
        let config = SkuConfig {
            name: (*name).into(),
            uses_per_code: *uses_per_code,
            redeem_requires_sale: *redeem_requires_sale,
            validity_days_after_sale: *validity_days,
        };
        t.by_name.insert((*name).into(), *ix);
        let state = ShardState::new(*ix, config, Arc::clone(&self.appended));
        t.shards.push(Arc::new(Shard { ix: *ix, name: (*name).into(), state: Mutex::new(state) }));
        self.skus.store(Arc::new(t));
        rec.append_to(&mut cat.journal);
        cat.records += 1;
        crate::shard::take_ticket(&self.appended);
        Ok(())
    }

    pub fn skus(&self) -> Vec<String> {
        self.skus.load().shards.iter().map(|s| s.name.to_string()).collect()
    }

    /// Imports codes into (sku, pool). See docs/engine.md for the duplicate rule and errors.
    #[allow(clippy::too_many_arguments)]
    pub fn import_codes(
        &self,
        sku: &str,
        codes: &Texts,
        pins: Option<&Texts>,
        pool: u32,
        valid_from: Option<u32>,
        valid_until: Option<u32>,
        batch: u32,
    ) -> CoreResult<(Vec<u32>, Vec<usize>)> {
        let shard = self.shard_by_name(sku)?;
        let n = codes.len();
        if n > BATCH_ITEMS_MAX {
            return Err(CoreError::LimitExceeded { field: "codes", max: BATCH_ITEMS_MAX as u64, got: n as u64 });
        }
        if pins.is_some_and(|p| p.len() != n) {
            return Err(CoreError::InvalidArgument { field: "pins", reason: "must have one entry per code" });
        }
        let (from, until) = (valid_from.unwrap_or(0), valid_until.unwrap_or(NO_END));
        if from > until || until == 0 {
            return Err(CoreError::InvalidArgument { field: "valid_until", reason: "must not be before valid_from" });
        }
        let mut keys = Vec::with_capacity(n);
        let mut buf = [0u8; CODE_LEN_MAX];
        for i in 0..n {
            let text = codes.get(i).ok_or(CoreError::InvalidCode { index: Some(i), reason: "missing" })?;
            let len = normalise_code(text, &mut buf, Some(i))?;
            let key = self.hashing.lookup_key(&buf[..len]);
            let pin = match pins.and_then(|p| p.get(i)) {
                Some(p) => self.hashing.pin_hash(key, check_pin(p, Some(i))?),
                None => 0,
            };
            keys.push((key, pin));
        }
        let _import = self.import_lock.lock();
        let free = (CHUNKS_MAX - self.dir.chunks_used()) as u64 * CHUNK as u64;
        if n as u64 + CHUNK as u64 > free {
            return Err(CoreError::LimitExceeded { field: "codes in engine", max: CODES_MAX, got: n as u64 });
        }
        let mut seen = hashbrown::HashTable::<u128>::with_capacity(n);
        let mut fresh = Vec::with_capacity(n);
        let mut duplicates = Vec::new();
        for (i, &(key, pin)) in keys.iter().enumerate() {
            let in_batch = seen.find(key as u64, |&k| k == key).is_some();
            if in_batch || self.index.find(&self.dir, key).is_some() {
                duplicates.push(i);
            } else {
                seen.insert_unique(key as u64, key, |&k| k as u64);
                fresh.push((key, pin));
            }
        }
        drop(seen);
        let mut ids = Vec::with_capacity(fresh.len());
        for slice in fresh.chunks(1 << 16) {
            let mut st = shard.state.lock();
            let new_ids = st.reserve_ids(&self.dir, slice.len()).unwrap_or_else(|| bug("import", "id space exhausted after check"));
            let entries = new_ids.iter().zip(slice).map(|(&id, &(key, pin))| (id, key, pin)).collect();
            let rec = Rec::Import { shard: shard.ix, pool, batch, valid_from: from, valid_until: until, entries };
            st.apply(&self.dir, &rec).unwrap_or_else(|e| bug("import", e));
            drop(st);
            self.index.insert_many(&self.dir, &new_ids);
            ids.extend_from_slice(&new_ids);
        }
        Ok((ids, duplicates))
    }

    // ----- selling -----

    /// Expires the due holds of a locked shard, journaling each expiry. Returns how many.
    pub(crate) fn sweep(&self, st: &mut ShardState, now_ms: u64) -> usize {
        let due = st.due_holds(now_ms);
        for &hold in &due {
            let rec = Rec::Expire { shard: st.ix, hold };
            st.apply(&self.dir, &rec).unwrap_or_else(|e| bug("expire", e));
        }
        due.len()
    }

    fn sale_until(st: &ShardState, now_ms: u64) -> u32 {
        match st.config.validity_days_after_sale {
            0 => 0,
            d => (u64::from(Self::now_s(now_ms)) + u64::from(d) * 86_400).min(u64::from(NO_END - 1)) as u32,
        }
    }

    /// Allocates `qty` codes of `sku` from `pool` to `order_ref`, FEFO, all-or-nothing,
    /// idempotent on `order_ref`. Errors: see docs/engine.md.
    pub fn allocate(&self, sku: &str, qty: i64, order_ref: &str, pool: u32) -> CoreResult<Vec<u32>> {
        check_ref("order_ref", order_ref)?;
        let qty = check_qty(qty, ORDER_QTY_MAX)?;
        let shard = self.shard_by_name(sku)?;
        let mut reg = self.order_refs.lock(order_ref);
        if let Some(&(s, o)) = reg.get(order_ref) {
            return self.replay_order(&shard, s, o, qty, pool);
        }
        let now = self.now_ms();
        let mut st = shard.state.lock();
        self.sweep(&mut st, now);
        let sellable = st.sellable(pool, Self::now_s(now));
        if sellable < qty as u64 {
            return Err(CoreError::OutOfStock { available: sellable, requested: qty as u64 });
        }
        let ids = st.pick(pool, qty, Self::now_s(now));
        let order = st.orders.len() as u32;
        let rec = Rec::Allocate { shard: shard.ix, order_ref, pool, sale_until: Self::sale_until(&st, now), ids };
        st.apply(&self.dir, &rec).unwrap_or_else(|e| bug("allocate", e));
        reg.insert(order_ref.into(), (shard.ix, order));
        let Rec::Allocate { ids, .. } = rec else { unreachable!() };
        Ok(ids)
    }

    fn replay_order(&self, shard: &Shard, s: u32, o: u32, qty: usize, pool: u32) -> CoreResult<Vec<u32>> {
        if s != shard.ix {
            return Err(CoreError::IdempotencyKeyReused { field: "sku" });
        }
        let st = shard.state.lock();
        let order = &st.orders[o as usize];
        if order.ids.len() != qty {
            return Err(CoreError::IdempotencyKeyReused { field: "quantity" });
        }
        if order.pool != pool {
            return Err(CoreError::IdempotencyKeyReused { field: "pool" });
        }
        Ok(order.ids.to_vec())
    }

    /// The code ids of an order. Errors: ORDER_NOT_FOUND.
    pub fn order_code_ids(&self, order_ref: &str) -> CoreResult<Vec<u32>> {
        let (s, o) = self
            .order_refs
            .get(order_ref)
            .ok_or_else(|| CoreError::OrderNotFound { order_ref: order_ref.to_string() })?;
        let shard = self.shard_by_ix(s).unwrap_or_else(|| bug("order_code_ids", "registry names a missing shard"));
        let st = shard.state.lock();
        Ok(st.orders[o as usize].ids.to_vec())
    }

    /// Reserves `qty` codes until now + `ttl_ms`. Idempotent on `hold_ref`.
    pub fn hold(&self, sku: &str, qty: i64, hold_ref: &str, ttl_ms: i64, pool: u32) -> CoreResult<HoldView> {
        check_ref("hold_ref", hold_ref)?;
        let qty = check_qty(qty, ORDER_QTY_MAX)?;
        if ttl_ms <= 0 || ttl_ms as u64 > HOLD_TTL_MS_MAX {
            return Err(CoreError::InvalidArgument { field: "ttl", reason: "must be more than 0 and at most one day" });
        }
        let shard = self.shard_by_name(sku)?;
        let mut reg = self.hold_refs.lock(hold_ref);
        if let Some(&(s, h)) = reg.get(hold_ref) {
            if s != shard.ix {
                return Err(CoreError::IdempotencyKeyReused { field: "sku" });
            }
            let mut st = shard.state.lock();
            self.sweep(&mut st, self.now_ms());
            let hr = &st.holds[h as usize];
            if hr.ids.len() != qty {
                return Err(CoreError::IdempotencyKeyReused { field: "quantity" });
            }
            if hr.pool != pool {
                return Err(CoreError::IdempotencyKeyReused { field: "pool" });
            }
            return Ok(Self::hold_view(&shard, &st, h));
        }
        let now = self.now_ms();
        let mut st = shard.state.lock();
        self.sweep(&mut st, now);
        let sellable = st.sellable(pool, Self::now_s(now));
        if sellable < qty as u64 {
            return Err(CoreError::OutOfStock { available: sellable, requested: qty as u64 });
        }
        let ids = st.pick(pool, qty, Self::now_s(now));
        let h = st.holds.len() as u32;
        let rec = Rec::Hold { shard: shard.ix, hold_ref, pool, deadline_ms: now + ttl_ms as u64, ids };
        st.apply(&self.dir, &rec).unwrap_or_else(|e| bug("hold", e));
        reg.insert(hold_ref.into(), (shard.ix, h));
        Ok(Self::hold_view(&shard, &st, h))
    }

    fn hold_view(shard: &Shard, st: &ShardState, h: u32) -> HoldView {
        let hr = &st.holds[h as usize];
        HoldView {
            hold_ref: hr.hold_ref.to_string(),
            sku: shard.name.to_string(),
            pool: hr.pool,
            ids: hr.ids.to_vec(),
            expires_at_ms: hr.deadline_ms,
            state: hr.state,
            order_ref: (hr.order != NO_SLOT).then(|| st.orders[hr.order as usize].order_ref.to_string()),
        }
    }

    fn hold_shard(&self, reg: &hashbrown::HashMap<Arc<str>, (u32, u32)>, hold_ref: &str) -> CoreResult<(Arc<Shard>, u32)> {
        let &(s, h) = reg.get(hold_ref).ok_or_else(|| CoreError::HoldNotFound { hold_ref: hold_ref.to_string() })?;
        let shard = self.shard_by_ix(s).unwrap_or_else(|| bug("hold", "registry names a missing shard"));
        Ok((shard, h))
    }

    /// The hold named `hold_ref` (after expiring due holds of its SKU). Errors: HOLD_NOT_FOUND.
    pub fn get_hold(&self, hold_ref: &str) -> CoreResult<HoldView> {
        let reg = self.hold_refs.lock(hold_ref);
        let (shard, h) = self.hold_shard(&reg, hold_ref)?;
        let mut st = shard.state.lock();
        self.sweep(&mut st, self.now_ms());
        Ok(Self::hold_view(&shard, &st, h))
    }

    /// Turns an open hold into an order. Errors: see docs/engine.md.
    pub fn confirm_hold(&self, hold_ref: &str, order_ref: &str) -> CoreResult<Vec<u32>> {
        check_ref("hold_ref", hold_ref)?;
        check_ref("order_ref", order_ref)?;
        let hreg = self.hold_refs.lock(hold_ref);
        let (shard, h) = self.hold_shard(&hreg, hold_ref)?;
        let mut oreg = self.order_refs.lock(order_ref);
        let now = self.now_ms();
        let mut st = shard.state.lock();
        self.sweep(&mut st, now);
        let hr = &st.holds[h as usize];
        match hr.state {
            HoldState::Confirmed => {
                let order = &st.orders[hr.order as usize];
                return if &*order.order_ref == order_ref {
                    Ok(order.ids.to_vec())
                } else {
                    Err(CoreError::HoldAlreadyConfirmed { hold_ref: hold_ref.to_string() })
                };
            }
            HoldState::Released => return Err(CoreError::HoldReleased { hold_ref: hold_ref.to_string() }),
            HoldState::Expired => {
                return Err(CoreError::HoldExpired { hold_ref: hold_ref.to_string(), expires_at_ms: hr.deadline_ms })
            }
            HoldState::Open => {}
        }
        if oreg.contains_key(order_ref) {
            return Err(CoreError::IdempotencyKeyReused { field: "order_ref" });
        }
        let order = st.orders.len() as u32;
        let rec = Rec::Confirm { shard: shard.ix, hold: h, order_ref, sale_until: Self::sale_until(&st, now) };
        st.apply(&self.dir, &rec).unwrap_or_else(|e| bug("confirm", e));
        oreg.insert(order_ref.into(), (shard.ix, order));
        Ok(st.orders[order as usize].ids.to_vec())
    }

    /// Returns an open hold's codes to the pool. Errors: HOLD_NOT_FOUND, HOLD_ALREADY_CONFIRMED.
    pub fn release_hold(&self, hold_ref: &str) -> CoreResult<usize> {
        let reg = self.hold_refs.lock(hold_ref);
        let (shard, h) = self.hold_shard(&reg, hold_ref)?;
        let mut st = shard.state.lock();
        self.sweep(&mut st, self.now_ms());
        let hr = &st.holds[h as usize];
        match hr.state {
            HoldState::Confirmed => Err(CoreError::HoldAlreadyConfirmed { hold_ref: hold_ref.to_string() }),
            HoldState::Released | HoldState::Expired => Ok(0),
            HoldState::Open => {
                let n = hr.ids.len();
                st.apply(&self.dir, &Rec::Release { shard: shard.ix, hold: h }).unwrap_or_else(|e| bug("release", e));
                Ok(n)
            }
        }
    }

    /// Expires every due hold in every SKU. Returns how many holds expired.
    pub fn expire_holds(&self) -> usize {
        let now = self.now_ms();
        let shards = self.skus.load().shards.clone();
        shards.iter().map(|s| self.sweep(&mut s.state.lock(), now)).sum()
    }

    /// Moves `qty` sellable codes (FEFO) from one pool to another.
    pub fn move_stock(&self, sku: &str, qty: i64, from_pool: u32, to_pool: u32) -> CoreResult<Vec<u32>> {
        let qty = check_qty(qty, BATCH_ITEMS_MAX as u64)?;
        if from_pool == to_pool {
            return Err(CoreError::InvalidArgument { field: "to_pool", reason: "must differ from from_pool" });
        }
        let shard = self.shard_by_name(sku)?;
        let now = self.now_ms();
        let mut st = shard.state.lock();
        self.sweep(&mut st, now);
        let sellable = st.sellable(from_pool, Self::now_s(now));
        if sellable < qty as u64 {
            return Err(CoreError::OutOfStock { available: sellable, requested: qty as u64 });
        }
        let ids = st.pick(from_pool, qty, Self::now_s(now));
        let rec = Rec::Move { shard: shard.ix, to_pool, ids };
        st.apply(&self.dir, &rec).unwrap_or_else(|e| bug("move", e));
        let Rec::Move { ids, .. } = rec else { unreachable!() };
        Ok(ids)
    }

    // ----- terminals -----

    /// The code id of a code text. Errors: INVALID_CODE, CODE_NOT_FOUND.
    pub fn lookup(&self, code: &str) -> CoreResult<(u32, u128)> {
        let key = self.key_of(code, None)?;
        let id = self.index.find(&self.dir, key).ok_or(CoreError::CodeNotFound { code_id: None })?;
        Ok((id, key))
    }

    fn code_shard(&self, id: u32) -> CoreResult<Arc<Shard>> {
        let (s, _) = self.dir.locate(id).ok_or(CoreError::CodeNotFound { code_id: Some(u64::from(id)) })?;
        self.shard_by_ix(s).ok_or(CoreError::CodeNotFound { code_id: Some(u64::from(id)) })
    }

    fn check_pin_of(&self, rec: &CodeRecord, key: u128, pin: Option<&str>) -> CoreResult<()> {
        let stored = rec.pin();
        if stored == 0 {
            return Ok(());
        }
        match pin {
            Some(p) if self.hashing.pin_hash(key, p.as_bytes()) == stored => Ok(()),
            _ => Err(CoreError::PinMismatch),
        }
    }

    /// A code's status for verify/redeem, in the documented precedence order.
    fn status_of(st: &ShardState, rec: &CodeRecord, now_s: u32) -> Status {
        let (from, until) = st.window(rec);
        match rec.state() {
            State::Void => Status::Void,
            State::Frozen => Status::Frozen,
            _ if rec.uses_left == 0 => Status::Redeemed,
            State::Held => Status::NotSold,
            State::Available if st.config.redeem_requires_sale => Status::NotSold,
            _ if now_s < from => Status::NotYetValid(from),
            _ if now_s > until => Status::Expired(until),
            _ => Status::Valid,
        }
    }

    /// Normalises and hashes a code text. Errors: INVALID_CODE.
    #[inline]
    fn key_of(&self, code: &str, index: Option<usize>) -> CoreResult<u128> {
        let mut buf = [0u8; CODE_LEN_MAX];
        let len = normalise_code(code, &mut buf, index)?;
        Ok(self.hashing.lookup_key(&buf[..len]))
    }

    /// Checks a code's state without consuming anything. Errors: INVALID_CODE, INVALID_PIN,
    /// CODE_NOT_FOUND, PIN_MISMATCH.
    pub fn verify(&self, code: &str, pin: Option<&str>) -> CoreResult<Verification> {
        if let Some(p) = pin {
            check_pin(p, None)?;
        }
        let (id, key) = self.lookup(code)?;
        let shard = self.code_shard(id)?;
        let now_s = Self::now_s(self.now_ms());
        let st = shard.state.lock();
        self.verify_locked(&shard, &st, id, key, pin, now_s)
    }

    /// The body of `verify`, with the code's shard locked.
    fn verify_locked(&self, shard: &Shard, st: &ShardState, id: u32, key: u128, pin: Option<&str>, now_s: u32) -> CoreResult<Verification> {
        let rec = *st.rec(&self.dir, id).ok_or(CoreError::CodeNotFound { code_id: None })?;
        self.check_pin_of(&rec, key, pin)?;
        let (from, until) = st.window(&rec);
        Ok(Verification {
            code_id: id,
            status: Self::status_of(st, &rec, now_s).name(),
            sku: shard.name.clone(),
            uses_left: rec.uses_left,
            valid_from: (from != 0).then_some(from),
            valid_until: (until != NO_END).then_some(until),
        })
    }

    fn check_batch(&self, n: usize, others: &[(usize, &'static str)]) -> CoreResult<()> {
        if n > BATCH_ITEMS_MAX {
            return Err(CoreError::LimitExceeded { field: "codes", max: BATCH_ITEMS_MAX as u64, got: n as u64 });
        }
        for &(len, field) in others {
            if len != n {
                return Err(CoreError::InvalidArgument { field, reason: "must have one entry per code" });
            }
        }
        Ok(())
    }

    /// Hashes every code and finds its id, in phases so independent lookups overlap in memory.
    fn lookup_many(&self, codes: &Texts) -> Vec<CoreResult<(u32, u128)>> {
        let keys: Vec<CoreResult<u128>> = (0..codes.len())
            .map(|i| self.key_of(codes.get(i).unwrap_or(""), Some(i)))
            .collect();
        let found = self.index.find_many(&self.dir, keys.iter().map(|k| k.as_ref().map_or(0, |k| *k)));
        keys.into_iter()
            .zip(found)
            .map(|(k, id)| {
                let key = k?;
                id.map(|id| (id, key)).ok_or(CoreError::CodeNotFound { code_id: None })
            })
            .collect()
    }

    /// Verifies many codes; one result per item, in input order. Items are grouped by shard and
    /// each shard is locked once per block of `LOCK_BLOCK` items.
    pub fn verify_many(&self, codes: &Texts, pins: Option<&Texts>) -> CoreResult<Vec<CoreResult<Verification>>> {
        self.check_batch(codes.len(), &[(pins.map_or(codes.len(), Texts::len), "pins")])?;
        let now_s = Self::now_s(self.now_ms());
        let mut out: Vec<Option<CoreResult<Verification>>> = (0..codes.len()).map(|_| None).collect();
        let mut by_shard: BTreeMap<u32, Vec<BatchItem>> = BTreeMap::new();
        for (i, f) in self.lookup_many(codes).into_iter().enumerate() {
            // Same precedence as `verify`: the PIN's shape, then the code.
            let pin_ok = pins.and_then(|p| p.get(i)).map_or(Ok(&b""[..]), |p| check_pin(p, Some(i)));
            match pin_ok.and(f) {
                Ok((id, key)) => match self.dir.locate(id) {
                    Some((s, _)) => by_shard.entry(s).or_default().push((i, id, key)),
                    None => out[i] = Some(Err(CoreError::CodeNotFound { code_id: None })),
                },
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        for (s, items) in by_shard {
            let shard = self.shard_by_ix(s).unwrap_or_else(|| bug("verify_many", "directory names a missing shard"));
            for block in items.chunks(LOCK_BLOCK) {
                let st = shard.state.lock();
                for &(i, id, key) in block {
                    out[i] = Some(self.verify_locked(&shard, &st, id, key, pins.and_then(|p| p.get(i)), now_s));
                }
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| bug("verify_many", "item without result"))).collect())
    }

    /// Redeems one use of a code, exactly once per `request_id`. Errors: see docs/engine.md.
    pub fn redeem(&self, code: &str, request_id: &str, terminal: &str, pin: Option<&str>) -> CoreResult<RedemptionView> {
        let key = self.key_of(code, None)?;
        check_ref("request_id", request_id)?;
        check_ref("terminal", terminal)?;
        if let Some(p) = pin {
            check_pin(p, None)?;
        }
        let id = self.index.find(&self.dir, key).ok_or(CoreError::CodeNotFound { code_id: None })?;
        let shard = self.code_shard(id)?;
        let mut reg = self.request_ids.lock(request_id);
        let now = self.now_ms();
        let mut st = shard.state.lock();
        let ix = self.redeem_locked(&shard, &mut st, &mut reg, (id, key), request_id, terminal, pin, now)?;
        Ok(Self::redemption_view(&shard, &st, ix))
    }

    /// The body of `redeem`, with the request id's registry part and the code's shard locked.
    /// Returns the index (in the shard) of the new or replayed redemption.
    #[allow(clippy::too_many_arguments)]
    fn redeem_locked(
        &self,
        shard: &Shard,
        st: &mut ShardState,
        reg: &mut hashbrown::HashMap<Arc<str>, u64>,
        (id, key): (u32, u128),
        request_id: &str,
        terminal: &str,
        pin: Option<&str>,
        now: u64,
    ) -> CoreResult<u32> {
        let rec = *st.rec(&self.dir, id).ok_or(CoreError::CodeNotFound { code_id: None })?;
        self.check_pin_of(&rec, key, pin)?;
        if let Some(&rid) = reg.get(request_id) {
            // A different shard means a different code; the same shard is locked already.
            if (rid >> 32) as u32 != shard.ix {
                return Err(CoreError::IdempotencyKeyReused { field: "code" });
            }
            let first = &st.redemptions[rid as u32 as usize];
            if first.code != id {
                return Err(CoreError::IdempotencyKeyReused { field: "code" });
            }
            if &*st.terminal(first.terminal) != terminal {
                return Err(CoreError::IdempotencyKeyReused { field: "terminal" });
            }
            return Ok(rid as u32);
        }
        match Self::status_of(st, &rec, Self::now_s(now)) {
            Status::Valid => {}
            Status::Void => return Err(CoreError::Void),
            Status::Frozen => return Err(CoreError::Frozen),
            Status::NotSold => return Err(CoreError::NotSold),
            Status::NotYetValid(valid_from) => return Err(CoreError::NotYetValid { valid_from }),
            Status::Expired(valid_until) => return Err(CoreError::Expired { valid_until }),
            Status::Redeemed => {
                let last = st.code_redemptions.get(&id).copied();
                let (rid, at, term) = last
                    .map(|ix| {
                        let r = &st.redemptions[ix as usize];
                        (redemption_id(shard.ix, ix), r.at_ms, st.terminal(r.terminal).to_string())
                    })
                    .unwrap_or((0, 0, String::new()));
                return Err(CoreError::AlreadyRedeemed { redemption_id: rid, redeemed_at_ms: at, terminal: term });
            }
        }
        let ix = st.redemptions.len() as u32;
        let r = Rec::Redeem { shard: shard.ix, code: id, request_id, terminal, at_ms: now };
        st.apply(&self.dir, &r).unwrap_or_else(|e| bug("redeem", e));
        reg.insert(Arc::clone(&st.redemptions[ix as usize].request_id), redemption_id(shard.ix, ix));
        Ok(ix)
    }

    /// Whether any code id or request id occurs twice among the grouped batch items.
    fn has_repeats(groups: &BTreeMap<(usize, u32), Vec<BatchItem>>, request_ids: &Texts) -> bool {
        let n: usize = groups.values().map(Vec::len).sum();
        let mut ids = hashbrown::HashSet::with_capacity(n);
        let mut rqs = hashbrown::HashSet::with_capacity(n);
        groups.values().flatten().any(|&(i, id, _)| !ids.insert(id) || !rqs.insert(request_ids.get(i).unwrap_or("")))
    }

    fn outcome(shard: &Shard, st: &ShardState, ix: u32) -> RedeemOutcome {
        let r = &st.redemptions[ix as usize];
        RedeemOutcome { redemption_id: redemption_id(shard.ix, ix), code_id: r.code, uses_left: r.uses_after, redeemed_at_ms: r.at_ms }
    }

    fn redemption_view(shard: &Shard, st: &ShardState, ix: u32) -> RedemptionView {
        let r = &st.redemptions[ix as usize];
        RedemptionView {
            redemption_id: redemption_id(shard.ix, ix),
            request_id: Arc::clone(&r.request_id),
            code_id: r.code,
            sku: shard.name.clone(),
            terminal: st.terminal(r.terminal),
            uses_left: r.uses_after,
            redeemed_at_ms: r.at_ms,
            rolled_back_at_ms: r.rollback.as_ref().map(|b| b.0),
            rollback_reason: r.rollback.as_ref().map(|b| b.1.to_string()),
        }
    }

    /// Redeems many codes for one terminal; one result per item in input order, items
    /// independent (as if redeemed one by one in input order). Items are grouped by (request-id
    /// registry part, shard) so each pair of locks is taken once per block.
    pub fn redeem_many(&self, codes: &Texts, request_ids: &Texts, terminal: &str, pins: Option<&Texts>) -> CoreResult<Vec<CoreResult<RedeemOutcome>>> {
        let n = codes.len();
        self.check_batch(n, &[(request_ids.len(), "request_ids"), (pins.map_or(n, Texts::len), "pins")])?;
        let mut out: Vec<Option<CoreResult<RedeemOutcome>>> = (0..n).map(|_| None).collect();
        let mut groups: BTreeMap<(usize, u32), Vec<BatchItem>> = BTreeMap::new();
        for (i, f) in self.lookup_many(codes).into_iter().enumerate() {
            let rq = request_ids.get(i).unwrap_or("");
            // Same precedence as `redeem`: code text, request id, terminal, PIN, then lookup.
            let checked = match f {
                Err(e @ CoreError::InvalidCode { .. }) => Err(e),
                f => (|| {
                    check_ref("request_id", rq)?;
                    check_ref("terminal", terminal)?;
                    if let Some(p) = pins.and_then(|p| p.get(i)) {
                        check_pin(p, Some(i))?;
                    }
                    let found = f?;
                    let (s, _) = self.dir.locate(found.0).ok_or(CoreError::CodeNotFound { code_id: None })?;
                    Ok((s, found))
                })(),
            };
            match checked {
                Ok((s, (id, key))) => groups.entry((self.request_ids.part_of(rq), s)).or_default().push((i, id, key)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let now = self.now_ms();
        if Self::has_repeats(&groups, request_ids) {
            // A code or request id appears twice: outcomes depend on order, so run the items one
            // by one in input order (rare: retries normally arrive in separate calls).
            let mut items: Vec<(usize, (usize, u32), u32, u128)> =
                groups.into_iter().flat_map(|(g, v)| v.into_iter().map(move |(i, id, key)| (i, g, id, key))).collect();
            items.sort_unstable_by_key(|it| it.0);
            groups = BTreeMap::new();
            for (i, g, id, key) in items {
                let shard = self.shard_by_ix(g.1).unwrap_or_else(|| bug("redeem_many", "directory names a missing shard"));
                let mut reg = self.request_ids.lock_part(g.0);
                let mut st = shard.state.lock();
                let rq = request_ids.get(i).unwrap_or("");
                let pin = pins.and_then(|p| p.get(i));
                let r = self.redeem_locked(&shard, &mut st, &mut reg, (id, key), rq, terminal, pin, now);
                out[i] = Some(r.map(|ix| Self::outcome(&shard, &st, ix)));
            }
        }
        for ((part, s), items) in groups {
            let shard = self.shard_by_ix(s).unwrap_or_else(|| bug("redeem_many", "directory names a missing shard"));
            for block in items.chunks(LOCK_BLOCK) {
                let mut reg = self.request_ids.lock_part(part);
                let mut st = shard.state.lock();
                for &(i, id, key) in block {
                    let rq = request_ids.get(i).unwrap_or("");
                    let pin = pins.and_then(|p| p.get(i));
                    let r = self.redeem_locked(&shard, &mut st, &mut reg, (id, key), rq, terminal, pin, now);
                out[i] = Some(r.map(|ix| Self::outcome(&shard, &st, ix)));
                }
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| bug("redeem_many", "item without result"))).collect())
    }

    /// A redemption by id. Errors: REDEMPTION_NOT_FOUND.
    pub fn get_redemption(&self, rid: u64) -> CoreResult<RedemptionView> {
        let not_found = CoreError::RedemptionNotFound { redemption_id: rid };
        let shard = self.shard_by_ix((rid >> 32) as u32).ok_or(not_found.clone())?;
        let st = shard.state.lock();
        if (rid as u32) as usize >= st.redemptions.len() {
            return Err(not_found);
        }
        Ok(Self::redemption_view(&shard, &st, rid as u32))
    }

    /// Restores the use a redemption took; idempotent. Errors: LIMIT_EXCEEDED (reason too long),
    /// REDEMPTION_NOT_FOUND, VOID, FROZEN.
    pub fn rollback(&self, rid: u64, reason: &str) -> CoreResult<RedemptionView> {
        if reason.len() > REF_LEN_MAX {
            return Err(CoreError::LimitExceeded { field: "reason", max: REF_LEN_MAX as u64, got: reason.len() as u64 });
        }
        let not_found = CoreError::RedemptionNotFound { redemption_id: rid };
        let shard = self.shard_by_ix((rid >> 32) as u32).ok_or(not_found.clone())?;
        let mut st = shard.state.lock();
        let ix = rid as u32;
        let Some(rd) = st.redemptions.get(ix as usize) else { return Err(not_found) };
        if rd.rollback.is_none() {
            let rec = *st.rec(&self.dir, rd.code).unwrap_or_else(|| bug("rollback", "redeemed code missing"));
            match rec.state() {
                State::Void => return Err(CoreError::Void),
                State::Frozen => return Err(CoreError::Frozen),
                _ => {}
            }
            let r = Rec::Rollback { shard: shard.ix, redemption: ix, at_ms: self.now_ms(), reason };
            st.apply(&self.dir, &r).unwrap_or_else(|e| bug("rollback", e));
        }
        Ok(Self::redemption_view(&shard, &st, ix))
    }

    // ----- administration -----

    fn group_ids(&self, ids: &[u64]) -> CoreResult<BTreeMap<u32, Vec<u32>>> {
        let mut by_shard: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &id in ids {
            let nf = CoreError::CodeNotFound { code_id: Some(id) };
            let id32 = u32::try_from(id).map_err(|_| nf.clone())?;
            let (s, _) = self.dir.locate(id32).ok_or(nf.clone())?;
            by_shard.entry(s).or_default().push(id32);
        }
        for (&s, ids) in &by_shard {
            let shard = self.shard_by_ix(s).ok_or(CoreError::CodeNotFound { code_id: None })?;
            let st = shard.state.lock();
            if let Some(&missing) = ids.iter().find(|&&id| st.rec(&self.dir, id).is_none()) {
                return Err(CoreError::CodeNotFound { code_id: Some(u64::from(missing)) });
            }
        }
        Ok(by_shard)
    }

    /// Shared body of freeze/unfreeze/void: per shard, keep the ids `eligible` accepts (once
    /// each), apply `make(shard, ids)`. Returns (changed, skipped).
    fn admin_op(
        &self,
        ids: &[u64],
        eligible: fn(State) -> bool,
        make: fn(u32, Vec<u32>) -> Rec<'static>,
    ) -> CoreResult<(usize, usize)> {
        let by_shard = self.group_ids(ids)?;
        let mut changed = 0;
        for (s, ids) in by_shard {
            let Some(shard) = self.shard_by_ix(s) else { continue };
            let mut st = shard.state.lock();
            let mut seen = std::collections::HashSet::new();
            let take: Vec<u32> = ids
                .into_iter()
                .filter(|&id| seen.insert(id) && st.rec(&self.dir, id).is_some_and(|r| eligible(r.state())))
                .collect();
            if take.is_empty() {
                continue;
            }
            changed += take.len();
            st.apply(&self.dir, &make(s, take)).unwrap_or_else(|e| bug("admin", e));
        }
        Ok((changed, ids.len() - changed))
    }

    pub fn freeze(&self, ids: &[u64]) -> CoreResult<(usize, usize)> {
        self.admin_op(
            ids,
            |s| matches!(s, State::Available | State::Allocated | State::Redeemed),
            |shard, ids| Rec::Freeze { shard, ids },
        )
    }

    pub fn unfreeze(&self, ids: &[u64]) -> CoreResult<(usize, usize)> {
        self.admin_op(ids, |s| s == State::Frozen, |shard, ids| Rec::Unfreeze { shard, ids })
    }

    pub fn void(&self, ids: &[u64]) -> CoreResult<(usize, usize)> {
        self.admin_op(ids, |s| !matches!(s, State::Held | State::Void), |shard, ids| Rec::Void { shard, ids })
    }

    /// Every code id imported with `batch`, in id order.
    pub fn batch_code_ids(&self, batch: u32) -> Vec<u32> {
        let shards = self.skus.load().shards.clone();
        let mut out = Vec::new();
        for shard in shards.iter() {
            let st = shard.state.lock();
            out.extend(st.ids().filter(|&id| st.rec(&self.dir, id).is_some_and(|r| r.batch == batch)));
        }
        out
    }

    // ----- inspection -----

    /// Everything about one code. Errors: CODE_NOT_FOUND.
    pub fn code_info(&self, id: u64) -> CoreResult<CodeInfo> {
        let nf = CoreError::CodeNotFound { code_id: Some(id) };
        let id = u32::try_from(id).map_err(|_| nf.clone())?;
        let shard = self.code_shard(id)?;
        let st = shard.state.lock();
        let r = *st.rec(&self.dir, id).ok_or(nf)?;
        let (from, until) = st.window(&r);
        let order_of = |slot: u32| st.orders.get(slot as usize).map(|o| o.order_ref.to_string());
        let state = r.state();
        let owner_state = if state == State::Frozen || state == State::Void {
            State::from_u8(r.frozen_from).filter(|_| state == State::Frozen).unwrap_or(State::Allocated)
        } else {
            state
        };
        let (order_ref, hold_ref) = match owner_state {
            State::Held => (None, st.holds.get(r.slot as usize).map(|h| h.hold_ref.to_string())),
            State::Allocated | State::Redeemed if r.slot != NO_SLOT => (order_of(r.slot), None),
            _ => (None, None),
        };
        Ok(CodeInfo {
            code_id: id,
            sku: shard.name.to_string(),
            pool: r.pool,
            batch: r.batch,
            state,
            frozen_from: if state == State::Frozen { State::from_u8(r.frozen_from) } else { None },
            uses_left: r.uses_left,
            has_pin: r.pin() != 0,
            valid_from: (from != 0).then_some(from),
            valid_until: (until != NO_END).then_some(until),
            order_ref,
            hold_ref,
            redemption_ids: st.redemptions_of(id).into_iter().map(|ix| redemption_id(shard.ix, ix)).collect(),
        })
    }

    /// Stock per pool of a SKU (after expiring due holds). Errors: SKU_NOT_FOUND.
    pub fn stock_by_pool(&self, sku: &str) -> CoreResult<BTreeMap<u32, Stock>> {
        let shard = self.shard_by_name(sku)?;
        let now = self.now_ms();
        let mut st = shard.state.lock();
        self.sweep(&mut st, now);
        Ok(st.pools.iter().map(|(&p, pool)| (p, Stock::of(pool, Self::now_s(now)))).collect())
    }

    /// Stock of one pool, or of all pools summed when `pool` is None.
    pub fn stock(&self, sku: &str, pool: Option<u32>) -> CoreResult<Stock> {
        let by_pool = self.stock_by_pool(sku)?;
        let mut total = Stock::default();
        for (p, s) in &by_pool {
            if pool.is_none_or(|want| want == *p) {
                total.add(s);
            }
        }
        Ok(total)
    }

    pub fn code_count(&self) -> usize {
        self.skus.load().shards.iter().map(|s| s.state.lock().code_count()).sum()
    }

    /// The engine's own accounting of the heap memory it holds.
    pub fn memory_bytes(&self) -> usize {
        let shards: usize = self.skus.load().shards.iter().map(|s| s.state.lock().memory_bytes()).sum();
        shards
            + self.dir.memory_bytes()
            + self.index.memory_bytes()
            + self.order_refs.memory_bytes()
            + self.hold_refs.memory_bytes()
            + self.request_ids.memory_bytes()
    }

    /// Checks every invariant: per-shard structure and counts, and that the index finds every
    /// code under its key. Returns the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let shards = self.skus.load().shards.clone();
        let mut codes = 0usize;
        for shard in shards.iter() {
            let st = shard.state.lock();
            st.check(&self.dir).map_err(|e| format!("SKU {:?}: {e}", &*shard.name))?;
            for id in st.ids() {
                if self.index.find(&self.dir, self.dir.key(id)) != Some(id) {
                    return Err(format!("code {id} is not found by its key"));
                }
            }
            codes += st.code_count();
        }
        if self.index.len() != codes {
            return Err(format!("index holds {} keys for {codes} codes", self.index.len()));
        }
        Ok(())
    }
}
