//! The engine: routing of calls to SKU shards, the lookup index, idempotency registries, the
//! clock, and the public operations with their validation and error precedence (docs/engine.md).
//!
//! Lock order, never reversed: import lock → hold registry part → order registry part → request
//! registry part → SKU shard → index part. Catalog and drain locks are taken before any shard.

use crate::batch::{retry_after_s, BatchRec, BatchTable, ItemError};
use crate::directory::{Directory, Index, Registry};
use crate::error::{CoreError, CoreResult};
use crate::hash::{check_pin, normalise_code, Hashing, CODE_LEN_MAX};
use crate::journal::Rec;
use crate::shard::{HoldState, ShardState, SkuConfig};
use crate::types::*;
use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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

/// A redemption kept by `list_redemptions`, ordered by its sort key (time, id) alone.
struct ListedRedemption {
    key: (u64, u64),
    view: RedemptionView,
}

impl PartialEq for ListedRedemption {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ListedRedemption {}

impl PartialOrd for ListedRedemption {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ListedRedemption {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// The compact result of one item of `redeem_many` (`get_redemption` gives the full record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemOutcome {
    pub redemption_id: u64,
    pub code_id: u32,
    pub uses_left: u16,
    pub redeemed_at_ms: u64,
}

/// `redeem_many`'s (or `redeem_batch`'s) results as columns, one entry per item in input
/// order, for a caller that renders many results without building one object per item. A
/// failed item has `ok` 0, its error's code in `error_codes`, and 0 in every number column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedeemColumns {
    /// 1 where the item redeemed a use (or replayed a redemption), 0 where it failed.
    pub ok: Vec<u8>,
    /// The error code of a failed item; `""` for a success.
    pub error_codes: Vec<&'static str>,
    /// The core's redemption number of a success.
    pub redemption_ids: Vec<u64>,
    pub code_ids: Vec<u32>,
    /// The code's uses left as the call reported them.
    pub uses_left: Vec<u16>,
    pub redeemed_at_ms: Vec<u64>,
    /// A success's SKU as a position in `skus`.
    pub sku_index: Vec<u32>,
    /// The distinct SKUs of the successes, in order of first appearance.
    pub skus: Vec<Arc<str>>,
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
    /// Withdrawn from sale (exported) and not restored: true for a `withdrawn` code and for a
    /// redeemed, frozen or void one that was withdrawn before.
    pub was_withdrawn: bool,
    /// Wrong PINs since the last lockout or right PIN, and the end of the last lockout.
    pub pin_failures: u16,
    pub locked_until_ms: Option<u64>,
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
    pub withdrawn: u64,
}

impl Stock {
    pub fn total(&self) -> u64 {
        self.available + self.expired + self.held + self.allocated + self.redeemed + self.frozen + self.void + self.withdrawn
    }

    fn add(&mut self, o: &Stock) {
        self.available += o.available;
        self.expired += o.expired;
        self.held += o.held;
        self.allocated += o.allocated;
        self.redeemed += o.redeemed;
        self.frozen += o.frozen;
        self.void += o.void;
        self.withdrawn += o.withdrawn;
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
            withdrawn: p.counts[State::Withdrawn as usize],
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
    /// Batches redeemed under one key (`redeem_batch`).
    pub(crate) batches: BatchTable,
    /// Journal buffer of batch openings, drained after the catalog's and before any shard's, so
    /// a batch's opening is durable no later than its first shard record.
    pub(crate) batch_journal: Mutex<Catalog>,
    /// Wrong PINs before a lockout, the first lockout's length and the longest lockout.
    pin_failures_max: AtomicU32,
    pin_lockout_ms: AtomicU64,
    pin_lockout_max_ms: AtomicU64,
}

/// Defaults of the PIN lockout policy (see `Engine::set_pin_policy`).
pub const PIN_FAILURES_DEFAULT: u32 = 10;
pub const PIN_LOCKOUT_MS_DEFAULT: u64 = 15 * 60 * 1000;
pub const PIN_LOCKOUT_MAX_MS_DEFAULT: u64 = 24 * 3600 * 1000;
/// Bounds of the policy: at most 1,000 failures before a lockout, lockouts of at most 30 days.
pub const PIN_FAILURES_LIMIT: u32 = 1_000;
pub const PIN_LOCKOUT_MS_LIMIT: u64 = 30 * 24 * 3600 * 1000;
/// Most items in one `redeem_batch` call: the batch key's lock is held for the whole call
/// (about 30 ms at this size) and its record keeps 16 bytes per item.
pub const REDEEM_BATCH_MAX: usize = 100_000;
/// Most redemptions one `list_redemptions` call returns (a page of the API's lists is at most
/// 200; the margin serves callers that read a page plus one).
pub const REDEMPTION_LIST_MAX: usize = 1_000;
/// Redemption records scanned per lock of a shard by `list_redemptions`: about 0.1 ms, so a
/// list over millions of redemptions never holds a shard's lock for long.
const REDEMPTION_SCAN_SLICE: usize = 16_384;

/// What `list_redemptions` keeps: redemptions made by `terminal` (None: any) of `code` (None:
/// any), at `since_ms <= at < until_ms`, whose sort key (time, id) is below `before` (None: no
/// bound).
#[derive(Debug, Clone, Default)]
pub struct RedemptionFilter<'a> {
    pub terminal: Option<&'a str>,
    pub code: Option<u32>,
    pub since_ms: u64,
    pub until_ms: Option<u64>,
    pub before: Option<(u64, u64)>,
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

/// `(changed, unchanged, refused)` of withdraw/restore: refused codes with their state.
pub type WithdrawOutcome = (usize, usize, Vec<(u32, State)>);

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
            batches: BatchTable::new(),
            batch_journal: Mutex::new(Catalog::default()),
            pin_failures_max: AtomicU32::new(PIN_FAILURES_DEFAULT),
            pin_lockout_ms: AtomicU64::new(PIN_LOCKOUT_MS_DEFAULT),
            pin_lockout_max_ms: AtomicU64::new(PIN_LOCKOUT_MAX_MS_DEFAULT),
        }
    }

    // ----- PIN lockout policy -----

    /// Sets the PIN lockout policy: after `failures_max` wrong PINs for one code, every PIN
    /// check of that code is refused (CODE_LOCKED) for `lockout_ms`, doubling with each further
    /// lockout up to `lockout_max_ms`; a right PIN outside a lockout clears the count. The policy
    /// is configuration, not state: lockouts already journaled keep their end time. Errors:
    /// INVALID_ARGUMENT (failures_max outside 1..=1000, lockout_ms outside
    /// 1..=lockout_max_ms, lockout_max_ms above 30 days).
    pub fn set_pin_policy(&self, failures_max: u32, lockout_ms: u64, lockout_max_ms: u64) -> CoreResult<()> {
        if failures_max == 0 || failures_max > PIN_FAILURES_LIMIT {
            return Err(CoreError::InvalidArgument { field: "pin_failures_max", reason: "must be 1..=1000" });
        }
        if lockout_max_ms > PIN_LOCKOUT_MS_LIMIT {
            return Err(CoreError::InvalidArgument { field: "pin_lockout_max_ms", reason: "must be at most 30 days" });
        }
        if lockout_ms == 0 || lockout_ms > lockout_max_ms {
            return Err(CoreError::InvalidArgument { field: "pin_lockout_ms", reason: "must be 1..=pin_lockout_max_ms" });
        }
        self.pin_failures_max.store(failures_max, Ordering::Relaxed);
        self.pin_lockout_ms.store(lockout_ms, Ordering::Relaxed);
        self.pin_lockout_max_ms.store(lockout_max_ms, Ordering::Relaxed);
        Ok(())
    }

    /// `(failures_max, lockout_ms, lockout_max_ms)`.
    pub fn pin_policy(&self) -> (u32, u64, u64) {
        (
            self.pin_failures_max.load(Ordering::Relaxed),
            self.pin_lockout_ms.load(Ordering::Relaxed),
            self.pin_lockout_max_ms.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn copy_pin_policy_from(&self, other: &Engine) {
        let (f, l, m) = other.pin_policy();
        self.pin_failures_max.store(f, Ordering::Relaxed);
        self.pin_lockout_ms.store(l, Ordering::Relaxed);
        self.pin_lockout_max_ms.store(m, Ordering::Relaxed);
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
            return Err(CoreError::IdempotencyKeyReused { field: "sku", index: None });
        }
        let st = shard.state.lock();
        let order = &st.orders[o as usize];
        if order.ids.len() != qty {
            return Err(CoreError::IdempotencyKeyReused { field: "quantity", index: None });
        }
        if order.pool != pool {
            return Err(CoreError::IdempotencyKeyReused { field: "pool", index: None });
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
                return Err(CoreError::IdempotencyKeyReused { field: "sku", index: None });
            }
            let mut st = shard.state.lock();
            self.sweep(&mut st, self.now_ms());
            let hr = &st.holds[h as usize];
            if hr.ids.len() != qty {
                return Err(CoreError::IdempotencyKeyReused { field: "quantity", index: None });
            }
            if hr.pool != pool {
                return Err(CoreError::IdempotencyKeyReused { field: "pool", index: None });
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
            return Err(CoreError::IdempotencyKeyReused { field: "order_ref", index: None });
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

    /// Decides a PIN check without changing anything: CODE_LOCKED while a lockout runs (the PIN
    /// is not even compared), PIN_MISMATCH for an absent or wrong PIN (or CODE_LOCKED with
    /// `locked: true` when this failure reaches the limit), else Ok with whether a failure count
    /// is to be cleared. `Err.1` is the lockout end a failure starts (0: none), `None` when the
    /// refusal counts no failure (a running lockout).
    fn pin_check(&self, st: &ShardState, rec: &CodeRecord, id: u32, key: u128, pin: Option<&str>, now_ms: u64) -> Result<bool, (CoreError, Option<u64>)> {
        let stored = rec.pin();
        if stored == 0 {
            return Ok(false);
        }
        let guard = st.pin_guards.get(&id).copied();
        if let Some(g) = guard.filter(|g| g.locked_until_ms > now_ms) {
            let (until, after) = (g.locked_until_ms, retry_after_s(g.locked_until_ms, now_ms));
            return Err((CoreError::CodeLocked { retry_after_s: after, locked_until_ms: until, locked: false }, None));
        }
        if pin.is_some_and(|p| self.hashing.pin_hash(key, p.as_bytes()) == stored) {
            return Ok(guard.is_some());
        }
        let g = guard.unwrap_or_default();
        let (max, first, cap) = self.pin_policy();
        if u32::from(g.failures) + 1 < max {
            return Err((CoreError::PinMismatch, Some(0)));
        }
        let length = first.saturating_mul(1u64 << u32::from(g.lockouts).min(40)).min(cap.max(first));
        let until = now_ms.saturating_add(length);
        Err((CoreError::CodeLocked { retry_after_s: retry_after_s(until, now_ms), locked_until_ms: until, locked: true }, Some(until)))
    }

    /// `pin_check` for a single call: journals the failure, lockout start or reset it decides.
    #[allow(clippy::too_many_arguments)]
    fn pin_gate(&self, shard: u32, st: &mut ShardState, rec: &CodeRecord, id: u32, key: u128, pin: Option<&str>, now_ms: u64) -> CoreResult<()> {
        match self.pin_check(st, rec, id, key, pin, now_ms) {
            Ok(false) => Ok(()),
            Ok(true) => {
                st.apply(&self.dir, &Rec::PinReset { shard, code: id }).unwrap_or_else(|e| bug("pin reset", e));
                Ok(())
            }
            Err((e, None)) => Err(e),
            Err((e, Some(locked_until_ms))) => {
                st.apply(&self.dir, &Rec::PinFail { shard, code: id, locked_until_ms }).unwrap_or_else(|e| bug("pin failure", e));
                Err(e)
            }
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
        let now = self.now_ms();
        let mut st = shard.state.lock();
        self.verify_locked(&shard, &mut st, id, key, pin, now)
    }

    /// The body of `verify`, with the code's shard locked (a PIN check may journal a failure).
    fn verify_locked(&self, shard: &Shard, st: &mut ShardState, id: u32, key: u128, pin: Option<&str>, now: u64) -> CoreResult<Verification> {
        let rec = *st.rec(&self.dir, id).ok_or(CoreError::CodeNotFound { code_id: None })?;
        self.pin_gate(shard.ix, st, &rec, id, key, pin, now)?;
        let (from, until) = st.window(&rec);
        Ok(Verification {
            code_id: id,
            status: Self::status_of(st, &rec, Self::now_s(now)).name(),
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
        let now = self.now_ms();
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
                let mut st = shard.state.lock();
                for &(i, id, key) in block {
                    out[i] = Some(self.verify_locked(&shard, &mut st, id, key, pins.and_then(|p| p.get(i)), now));
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
        Ok(self.redemption_now(&shard, &st, ix))
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
        self.pin_gate(shard.ix, st, &rec, id, key, pin, now)?;
        if let Some(&rid) = reg.get(request_id) {
            // A different shard means a different code; the same shard is locked already.
            if (rid >> 32) as u32 != shard.ix {
                return Err(CoreError::IdempotencyKeyReused { field: "code", index: None });
            }
            let first = &st.redemptions[rid as u32 as usize];
            if first.code != id {
                return Err(CoreError::IdempotencyKeyReused { field: "code", index: None });
            }
            if &*st.terminal(first.terminal) != terminal {
                return Err(CoreError::IdempotencyKeyReused { field: "terminal", index: None });
            }
            if let Some(rb) = &first.rollback {
                return Err(CoreError::RedemptionRolledBack { redemption_id: rid, rolled_back_at_ms: rb.0 });
            }
            return Ok(rid as u32);
        }
        self.redeemable(shard, st, &rec, id, now)?;
        let ix = st.redemptions.len() as u32;
        let r = Rec::Redeem { shard: shard.ix, code: id, request_id, terminal, at_ms: now };
        st.apply(&self.dir, &r).unwrap_or_else(|e| bug("redeem", e));
        reg.insert(Arc::clone(&st.redemptions[ix as usize].request_id), redemption_id(shard.ix, ix));
        Ok(ix)
    }

    /// The error an item's state gives (the same precedence as `redeem` after the PIN check),
    /// or Ok when one use can be taken.
    fn redeemable(&self, shard: &Shard, st: &ShardState, rec: &CodeRecord, id: u32, now: u64) -> CoreResult<()> {
        match Self::status_of(st, rec, Self::now_s(now)) {
            Status::Valid => Ok(()),
            Status::Void => Err(CoreError::Void),
            Status::Frozen => Err(CoreError::Frozen),
            Status::NotSold => Err(CoreError::NotSold),
            Status::NotYetValid(valid_from) => Err(CoreError::NotYetValid { valid_from }),
            Status::Expired(valid_until) => Err(CoreError::Expired { valid_until }),
            Status::Redeemed => Err(self.already_redeemed(shard, st, id)),
        }
    }

    fn already_redeemed(&self, shard: &Shard, st: &ShardState, id: u32) -> CoreError {
        let (rid, at, term) = st
            .last_redemption_of(&self.dir, id)
            .map(|ix| {
                let r = &st.redemptions[ix as usize];
                (redemption_id(shard.ix, ix), r.at_ms, st.terminal(r.terminal).to_string())
            })
            .unwrap_or((0, 0, String::new()));
        CoreError::AlreadyRedeemed { redemption_id: rid, redeemed_at_ms: at, terminal: term }
    }

    /// Whether any code id or request id occurs twice among the grouped batch items.
    fn has_repeats(groups: &BTreeMap<(usize, u32), Vec<BatchItem>>, request_ids: &Texts) -> bool {
        let n: usize = groups.values().map(Vec::len).sum();
        let mut ids = hashbrown::HashSet::with_capacity(n);
        let mut rqs = hashbrown::HashSet::with_capacity(n);
        groups.values().flatten().any(|&(i, id, _)| !ids.insert(id) || !rqs.insert(request_ids.get(i).unwrap_or("")))
    }

    /// A redemption's compact result as true now: `uses_left` is the code's current count (a
    /// replay must not report uses that a later redemption or rollback changed).
    fn outcome(&self, shard: &Shard, st: &ShardState, ix: u32) -> RedeemOutcome {
        let r = &st.redemptions[ix as usize];
        let uses_left = st.rec(&self.dir, r.code).map_or(r.uses_after, |c| c.uses_left);
        RedeemOutcome { redemption_id: redemption_id(shard.ix, ix), code_id: r.code, uses_left, redeemed_at_ms: r.at_ms }
    }

    /// What `redeem` reports: the redemption with the code's uses left now.
    fn redemption_now(&self, shard: &Shard, st: &ShardState, ix: u32) -> RedemptionView {
        let mut v = Self::redemption_view(shard, st, ix);
        if let Some(c) = st.rec(&self.dir, v.code_id) {
            v.uses_left = c.uses_left;
        }
        v
    }

    /// A redemption record as stored (`uses_left` right after it).
    fn redemption_view(shard: &Shard, st: &ShardState, ix: u32) -> RedemptionView {
        let r = &st.redemptions[ix as usize];
        let request_id = if r.item == NO_SLOT { Arc::clone(&r.request_id) } else { format!("{}#{}", r.request_id, r.item).into() };
        RedemptionView {
            redemption_id: redemption_id(shard.ix, ix),
            request_id,
            code_id: r.code,
            sku: shard.name.clone(),
            terminal: st.terminal(r.terminal),
            uses_left: r.uses_after,
            redeemed_at_ms: r.at_ms,
            rolled_back_at_ms: r.rollback.as_ref().map(|b| b.0),
            rollback_reason: r.rollback.as_ref().map(|b| b.1.to_string()),
        }
    }

    /// `results` (of `redeem_many` or `redeem_batch` on this engine) as columns. Reads the SKU
    /// table only (no shard lock): a redemption number names its shard. Errors:
    /// REDEMPTION_NOT_FOUND (details `redemption_id`) for a success whose shard this engine
    /// does not have (results of another engine).
    pub fn redeem_columns(&self, results: &[CoreResult<RedeemOutcome>]) -> CoreResult<RedeemColumns> {
        let n = results.len();
        let table = self.skus.load();
        let mut c = RedeemColumns {
            ok: Vec::with_capacity(n),
            error_codes: Vec::with_capacity(n),
            redemption_ids: Vec::with_capacity(n),
            code_ids: Vec::with_capacity(n),
            uses_left: Vec::with_capacity(n),
            redeemed_at_ms: Vec::with_capacity(n),
            sku_index: Vec::with_capacity(n),
            skus: Vec::new(),
        };
        // Shard index -> position in `c.skus` (u32::MAX: not seen yet).
        let mut position: Vec<u32> = vec![u32::MAX; table.shards.len()];
        for r in results {
            match r {
                Ok(o) => {
                    let shard_ix = (o.redemption_id >> 32) as u32;
                    let missing = CoreError::RedemptionNotFound { redemption_id: o.redemption_id };
                    let slot = position.get_mut(shard_ix as usize).ok_or(missing)?;
                    if *slot == u32::MAX {
                        let shard = &table.shards[shard_ix as usize];
                        *slot = c.skus.len() as u32;
                        c.skus.push(Arc::clone(&shard.name));
                    }
                    c.ok.push(1);
                    c.error_codes.push("");
                    c.redemption_ids.push(o.redemption_id);
                    c.code_ids.push(o.code_id);
                    c.uses_left.push(o.uses_left);
                    c.redeemed_at_ms.push(o.redeemed_at_ms);
                    c.sku_index.push(*slot);
                }
                Err(e) => {
                    c.ok.push(0);
                    c.error_codes.push(e.code());
                    c.redemption_ids.push(0);
                    c.code_ids.push(0);
                    c.uses_left.push(0);
                    c.redeemed_at_ms.push(0);
                    c.sku_index.push(0);
                }
            }
        }
        debug_assert_eq!(c.ok.len(), n);
        Ok(c)
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
                out[i] = Some(r.map(|ix| self.outcome(&shard, &st, ix)));
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
                out[i] = Some(r.map(|ix| self.outcome(&shard, &st, ix)));
                }
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| bug("redeem_many", "item without result"))).collect())
    }

    // ----- batch redemption under one key -----

    /// The fingerprint of a batch item: its code's lookup key (or, for a text that is not a
    /// code, a hash of the text) and its PIN. Equal items have equal fingerprints; a different
    /// code or PIN differs except with probability 2^-64.
    fn item_fingerprint(&self, key: Option<u128>, text: &str, pin: Option<&str>) -> u64 {
        let base = match key {
            Some(k) => k as u64 ^ (k >> 64) as u64,
            None => {
                let mut raw = Vec::with_capacity(text.len() + 1);
                raw.push(0xff);
                raw.extend_from_slice(text.as_bytes());
                self.hashing.lookup_key(&raw) as u64
            }
        };
        match pin {
            Some(p) => base ^ self.hashing.pin_hash(key.unwrap_or(0), p.as_bytes()).rotate_left(29),
            None => base,
        }
    }

    /// Redeems one use of each code for `terminal`, exactly once under one key for the whole
    /// batch: items are addressed by position and give one result each, in input order, as if
    /// redeemed one by one (items independent). A retry with the same key, terminal and items
    /// returns the first results item by item (an item whose redemption was rolled back since is
    /// REDEMPTION_ROLLED_BACK; `uses_left` is always the code's count now); a batch cut short by
    /// a crash is completed by its retry. Errors (whole call): INVALID_ARGUMENT (empty key or
    /// terminal, pins of another length), LIMIT_EXCEEDED (key or terminal too long, more than
    /// `REDEEM_BATCH_MAX` items), IDEMPOTENCY_KEY_REUSED (`field` terminal, or `codes` with the
    /// first differing `index`). Per item, in redeem's precedence: INVALID_CODE, INVALID_PIN,
    /// CODE_NOT_FOUND, CODE_LOCKED, PIN_MISMATCH, VOID, FROZEN, ALREADY_REDEEMED, NOT_SOLD,
    /// NOT_YET_VALID, EXPIRED.
    pub fn redeem_batch(&self, batch_ref: &str, codes: &Texts, pins: Option<&Texts>, terminal: &str) -> CoreResult<Vec<CoreResult<RedeemOutcome>>> {
        check_ref("batch_request_id", batch_ref)?;
        check_ref("terminal", terminal)?;
        let n = codes.len();
        if n > REDEEM_BATCH_MAX {
            return Err(CoreError::LimitExceeded { field: "codes", max: REDEEM_BATCH_MAX as u64, got: n as u64 });
        }
        self.check_batch(n, &[(pins.map_or(n, Texts::len), "pins")])?;
        // Hash every item before any lock: the key (INVALID_CODE), the PIN's shape, the print.
        let mut keys: Vec<CoreResult<u128>> = Vec::with_capacity(n);
        let mut fps = Vec::with_capacity(n);
        for i in 0..n {
            let text = codes.get(i).unwrap_or("");
            let pin = pins.and_then(|p| p.get(i));
            let key = self.key_of(text, Some(i)).and_then(|k| match pin {
                Some(p) => check_pin(p, Some(i)).map(|_| k),
                None => Ok(k),
            });
            let k = match &key {
                Ok(k) => Some(*k),
                Err(CoreError::InvalidPin { .. }) => self.key_of(text, Some(i)).ok(),
                Err(_) => None,
            };
            fps.push(self.item_fingerprint(k, text, pin));
            keys.push(key);
        }
        let mut part = self.batches.lock(batch_ref);
        let now = self.now_ms();
        if let Some(existing) = part.get(batch_ref) {
            Self::same_batch(existing, terminal, &fps)?;
            let pending: Vec<usize> = (0..n).filter(|&i| existing.get(i).is_none()).collect();
            if !pending.is_empty() {
                // A crash cut the first attempt short: run the items it never recorded.
                let batch = part.get_mut(batch_ref).unwrap_or_else(|| bug("redeem_batch", "batch vanished"));
                let b = Arc::make_mut(batch);
                let found = self.lookup_resolved(&keys, &pending);
                self.run_batch_items(b, found, pins, now, &mut Vec::new());
            }
            let b = part.get(batch_ref).unwrap_or_else(|| bug("redeem_batch", "batch vanished"));
            return Ok(self.batch_results(b, now));
        }
        // First attempt: open the batch (fingerprints and the items that reach no code), then
        // run the rest shard by shard.
        let all: Vec<usize> = (0..n).collect();
        let found = self.lookup_resolved(&keys, &all);
        let mut is_found = vec![false; n];
        for f in &found {
            is_found[f.0] = true;
        }
        let mut out: Vec<Option<CoreResult<RedeemOutcome>>> = (0..n).map(|_| None).collect();
        let mut early: Vec<(u32, ItemError)> = Vec::new();
        for (i, k) in keys.into_iter().enumerate() {
            let e = match k {
                Err(e) => e,
                Ok(_) if !is_found[i] => CoreError::CodeNotFound { code_id: None },
                Ok(_) => continue,
            };
            early.push((i as u32, ItemError::of(&e).unwrap_or_else(|| bug("redeem_batch", "item error not per item"))));
            out[i] = Some(Err(e));
        }
        let open = Rec::BatchOpen { batch_ref, terminal, at_ms: now, fps, errors: early };
        let mut b = self.open_batch(&open);
        let mut results = Vec::new();
        self.run_batch_items(&mut b, found, pins, now, &mut results);
        for (i, r) in results {
            out[i] = Some(r);
        }
        part.insert(Arc::clone(&b.batch_ref), Arc::new(b));
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| bug("redeem_batch", "item without result"))).collect())
    }

    /// IDEMPOTENCY_KEY_REUSED unless a retry has the first attempt's terminal and items.
    fn same_batch(b: &BatchRec, terminal: &str, fps: &[u64]) -> CoreResult<()> {
        if &*b.terminal != terminal {
            return Err(CoreError::IdempotencyKeyReused { field: "terminal", index: None });
        }
        let differs = b.fps.iter().zip(fps).position(|(a, c)| a != c);
        match differs {
            Some(i) => Err(CoreError::IdempotencyKeyReused { field: "codes", index: Some(i as u64) }),
            None if b.fps.len() != fps.len() => {
                Err(CoreError::IdempotencyKeyReused { field: "codes", index: Some(b.fps.len().min(fps.len()) as u64) })
            }
            None => Ok(()),
        }
    }

    /// The items at `wanted` whose text hashed and whose code exists: (position, id, key), in
    /// input order.
    fn lookup_resolved(&self, keys: &[CoreResult<u128>], wanted: &[usize]) -> Vec<BatchItem> {
        let items: Vec<(usize, u128)> = wanted.iter().filter_map(|&i| keys[i].as_ref().ok().map(|k| (i, *k))).collect();
        let found = self.index.find_many(&self.dir, items.iter().map(|it| it.1));
        items.into_iter().zip(found).filter_map(|((i, key), id)| id.map(|id| (i, id, key))).collect()
    }

    /// Journals a batch's opening and builds its record.
    fn open_batch(&self, open: &Rec<'_>) -> BatchRec {
        let Rec::BatchOpen { batch_ref, terminal, at_ms, fps, errors } = open else { bug("open_batch", "not an opening") };
        let mut b = BatchRec::new(batch_ref, terminal, *at_ms, fps.clone());
        for &(i, e) in errors {
            b.set(i, Err(e)).unwrap_or_else(|e| bug("open_batch", e));
        }
        let mut bj = self.batch_journal.lock();
        open.append_to(&mut bj.journal);
        bj.records += 1;
        crate::shard::take_ticket(&self.appended);
        b
    }

    /// Replays a batch opening (journal replay): the batch exists from now on.
    pub(crate) fn apply_batch_open(&self, rec: &Rec<'_>) -> Result<(), &'static str> {
        let Rec::BatchOpen { batch_ref, terminal, at_ms, fps, errors } = rec else { return Err("not a batch opening") };
        check_ref("batch_request_id", batch_ref).map_err(|_| "bad batch ref")?;
        let mut part = self.batches.lock(batch_ref);
        if part.contains_key(*batch_ref) {
            return Err("batch opened twice");
        }
        let mut b = BatchRec::new(batch_ref, terminal, *at_ms, fps.clone());
        for &(i, e) in errors {
            b.set(i, Err(e))?;
        }
        part.insert(Arc::clone(&b.batch_ref), Arc::new(b));
        Ok(())
    }

    /// Runs the found items of a batch, grouped by shard in input order, each shard locked once
    /// per block of `LOCK_BLOCK` items, one journal record per block. Results go to `results`.
    fn run_batch_items(&self, b: &mut BatchRec, found: Vec<BatchItem>, pins: Option<&Texts>, now: u64, results: &mut Vec<(usize, CoreResult<RedeemOutcome>)>) {
        let mut by_shard: Vec<(u32, Vec<BatchItem>)> = Vec::new();
        for (i, id, key) in found {
            let (s, _) = self.dir.locate(id).unwrap_or_else(|| bug("redeem_batch", "indexed code without a chunk"));
            match by_shard.iter_mut().find(|g| g.0 == s) {
                Some(g) => g.1.push((i, id, key)),
                None => by_shard.push((s, vec![(i, id, key)])),
            }
        }
        results.reserve(b.fps.len());
        for (s, items) in by_shard {
            let shard = self.shard_by_ix(s).unwrap_or_else(|| bug("redeem_batch", "directory names a missing shard"));
            for block in items.chunks(LOCK_BLOCK) {
                let mut st = shard.state.lock();
                self.batch_block(&shard, &mut st, b, block, pins, now, results);
            }
        }
    }

    /// One block of a batch's items in one shard: decide each item on the state the earlier
    /// items left, apply it, then journal the block as one record.
    #[allow(clippy::too_many_arguments)]
    fn batch_block(
        &self,
        shard: &Shard,
        st: &mut ShardState,
        b: &mut BatchRec,
        block: &[BatchItem],
        pins: Option<&Texts>,
        now: u64,
        results: &mut Vec<(usize, CoreResult<RedeemOutcome>)>,
    ) {
        let terminal = st.terminal_id(&b.terminal);
        let mut items = Vec::with_capacity(block.len());
        for &(i, id, key) in block {
            let rec = *st.rec(&self.dir, id).unwrap_or_else(|| bug("redeem_batch", "indexed code missing"));
            let pin = pins.and_then(|p| p.get(i));
            let decided = match self.pin_check(st, &rec, id, key, pin, now) {
                Err((e, _)) => Err(e),
                Ok(_) => self.redeemable(shard, st, &rec, id, now),
            };
            let outcome = decided.as_ref().err().map(|e| ItemError::of(e).unwrap_or_else(|| bug("redeem_batch", "item error not per item")));
            let applied = st.apply_batch_item(&self.dir, &b.batch_ref, i as u32, id, outcome, terminal, now).unwrap_or_else(|e| bug("redeem_batch", e));
            let result = match (applied, decided) {
                (Some(ix), Ok(())) => {
                    let rid = redemption_id(shard.ix, ix);
                    b.set(i as u32, Ok(rid)).unwrap_or_else(|e| bug("redeem_batch", e));
                    let r = &st.redemptions[ix as usize];
                    Ok(RedeemOutcome { redemption_id: rid, code_id: id, uses_left: r.uses_after, redeemed_at_ms: now })
                }
                (_, Err(e)) => {
                    if let Some(o) = outcome {
                        b.set(i as u32, Err(o)).unwrap_or_else(|e| bug("redeem_batch", e));
                    }
                    Err(e)
                }
                (None, Ok(())) => bug("redeem_batch", "a redeemable item was not redeemed"),
            };
            items.push((i as u32, id, outcome));
            results.push((i, result));
        }
        let rec = Rec::BatchRedeem { shard: shard.ix, batch_ref: &b.batch_ref, terminal: &b.terminal, at_ms: now, items };
        st.append(&rec);
    }

    /// What a retry of a recorded batch reports, item by item, as true now.
    fn batch_results(&self, b: &BatchRec, now: u64) -> Vec<CoreResult<RedeemOutcome>> {
        let mut locked: Option<(u32, Arc<Shard>)> = None;
        let mut out = Vec::with_capacity(b.fps.len());
        for i in 0..b.fps.len() {
            let r = match b.get(i) {
                // Completion runs every pending item whose code exists; one still pending names
                // no code (only possible in a damaged snapshot), which is the truth to report.
                None => Err(CoreError::CodeNotFound { code_id: None }),
                Some(Err(e)) => Err(e.to_error(i, now, |rid| self.redemption_at_terminal(rid))),
                Some(Ok(rid)) => {
                    let s = (rid >> 32) as u32;
                    if locked.as_ref().is_none_or(|l| l.0 != s) {
                        locked = Some((s, self.shard_by_ix(s).unwrap_or_else(|| bug("redeem_batch", "batch names a missing shard"))));
                    }
                    let shard = locked.as_ref().map(|l| Arc::clone(&l.1)).unwrap_or_else(|| bug("redeem_batch", "no shard"));
                    let st = shard.state.lock();
                    let ix = rid as u32;
                    match &st.redemptions[ix as usize].rollback {
                        Some(rb) => Err(CoreError::RedemptionRolledBack { redemption_id: rid, rolled_back_at_ms: rb.0 }),
                        None => Ok(self.outcome(&shard, &st, ix)),
                    }
                }
            };
            out.push(r);
        }
        out
    }

    /// (time, terminal) of a redemption, for a replayed ALREADY_REDEEMED.
    fn redemption_at_terminal(&self, rid: u64) -> (u64, String) {
        self.get_redemption(rid).map_or((0, String::new()), |r| (r.redeemed_at_ms, r.terminal.to_string()))
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

    /// Redemptions matching `filter`, newest first by (time, id), at most `limit`; rolled-back
    /// ones included (with their rollback). Reads only. Each shard is scanned under its lock in
    /// slices of `REDEMPTION_SCAN_SLICE` records; with a terminal, shards it never redeemed at
    /// are skipped, and with a code only that code's own chain is read. Errors: LIMIT_EXCEEDED
    /// (`limit` over `REDEMPTION_LIST_MAX`).
    pub fn list_redemptions(&self, filter: &RedemptionFilter<'_>, limit: usize) -> CoreResult<Vec<RedemptionView>> {
        if limit > REDEMPTION_LIST_MAX {
            return Err(CoreError::LimitExceeded { field: "limit", max: REDEMPTION_LIST_MAX as u64, got: limit as u64 });
        }
        let mut best: BinaryHeap<Reverse<ListedRedemption>> = BinaryHeap::new();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let shards = match filter.code {
            Some(code) => match self.dir.locate(code).and_then(|(s, _)| self.shard_by_ix(s)) {
                Some(shard) => vec![shard],
                None => Vec::new(),
            },
            None => self.skus.load().shards.clone(),
        };
        for shard in shards {
            let mut next = 0usize;
            loop {
                let st = shard.state.lock();
                let terminal = match filter.terminal {
                    Some(t) => match st.find_terminal(t) {
                        Some(ix) => Some(ix),
                        None => break,
                    },
                    None => None,
                };
                let slice: Vec<u32> = match filter.code {
                    Some(code) => st.redemptions_of(&self.dir, code),
                    None => (next..st.redemptions.len().min(next + REDEMPTION_SCAN_SLICE)).map(|i| i as u32).collect(),
                };
                let done = filter.code.is_some() || next + REDEMPTION_SCAN_SLICE >= st.redemptions.len();
                for ix in slice {
                    let r = &st.redemptions[ix as usize];
                    let key = (r.at_ms, redemption_id(shard.ix, ix));
                    let wanted = terminal.is_none_or(|t| r.terminal == t)
                        && r.at_ms >= filter.since_ms
                        && filter.until_ms.is_none_or(|u| r.at_ms < u)
                        && filter.before.is_none_or(|b| key < b);
                    if !wanted || (best.len() == limit && best.peek().is_some_and(|Reverse(low)| low.key >= key)) {
                        continue;
                    }
                    best.push(Reverse(ListedRedemption { key, view: Self::redemption_view(&shard, &st, ix) }));
                    if best.len() > limit {
                        best.pop();
                    }
                }
                drop(st);
                if done {
                    break;
                }
                next += REDEMPTION_SCAN_SLICE;
            }
        }
        let mut out: Vec<ListedRedemption> = best.into_iter().map(|Reverse(l)| l).collect();
        out.sort_by_key(|l| Reverse(l.key));
        Ok(out.into_iter().map(|l| l.view).collect())
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
            |s| matches!(s, State::Available | State::Allocated | State::Redeemed | State::Withdrawn),
            |shard, ids| Rec::Freeze { shard, ids },
        )
    }

    pub fn unfreeze(&self, ids: &[u64]) -> CoreResult<(usize, usize)> {
        self.admin_op(ids, |s| s == State::Frozen, |shard, ids| Rec::Unfreeze { shard, ids })
    }

    pub fn void(&self, ids: &[u64]) -> CoreResult<(usize, usize)> {
        self.admin_op(ids, |s| !matches!(s, State::Held | State::Void), |shard, ids| Rec::Void { shard, ids })
    }

    /// Withdraws codes from sale because their plaintext leaves in a file (an export): each
    /// `available` code becomes `withdrawn` (never allocated or held again, still redeemable
    /// like a sold code); a `withdrawn` one is unchanged; any other code is refused and listed
    /// with its state (held codes above all: a hold may be paid for right now). Returns
    /// `(withdrawn, unchanged, refused)`; every given code not in `refused` is `withdrawn`
    /// afterwards. Errors: CODE_NOT_FOUND (an unknown id; nothing changes).
    pub fn withdraw(&self, ids: &[u64]) -> CoreResult<WithdrawOutcome> {
        self.withdraw_or_restore(ids, true)
    }

    /// Returns withdrawn codes that were never redeemed (no redemption, even a rolled-back one)
    /// to their pool. `available` codes are unchanged; any other code (including a withdrawn one
    /// that was redeemed) is refused and listed with its state. Returns `(restored, unchanged,
    /// refused)`. Errors: CODE_NOT_FOUND (nothing changes).
    pub fn restore_to_sale(&self, ids: &[u64]) -> CoreResult<WithdrawOutcome> {
        self.withdraw_or_restore(ids, false)
    }

    fn withdraw_or_restore(&self, ids: &[u64], withdraw: bool) -> CoreResult<WithdrawOutcome> {
        let by_shard = self.group_ids(ids)?;
        let (mut changed, mut unchanged, mut refused) = (0, 0, Vec::new());
        let now = self.now_ms();
        for (s, ids) in by_shard {
            let Some(shard) = self.shard_by_ix(s) else { continue };
            let mut st = shard.state.lock();
            // A due hold ends first, so its codes count as available, as for any sale.
            self.sweep(&mut st, now);
            let mut seen = hashbrown::HashSet::new();
            let mut take = Vec::new();
            for id in ids {
                let Some(r) = st.rec(&self.dir, id).copied() else { continue };
                if !seen.insert(id) {
                    unchanged += 1;
                    continue;
                }
                let (from, to) = if withdraw { (State::Available, State::Withdrawn) } else { (State::Withdrawn, State::Available) };
                let state = r.state();
                let never_redeemed = r.uses_left == st.config.uses_per_code && st.last_redemption_of(&self.dir, id).is_none();
                if state == to {
                    unchanged += 1;
                } else if state == from && (withdraw || never_redeemed) {
                    take.push(id);
                } else {
                    refused.push((id, state));
                }
            }
            if take.is_empty() {
                continue;
            }
            changed += take.len();
            let rec = if withdraw { Rec::Withdraw { shard: s, ids: take } } else { Rec::Restore { shard: s, ids: take } };
            st.apply(&self.dir, &rec).unwrap_or_else(|e| bug("withdraw", e));
        }
        Ok((changed, unchanged, refused))
    }

    /// Codes whose lockout runs now: `(code_id, locked_until_ms, lockouts)` in code id order,
    /// of one SKU or of all. Errors: SKU_NOT_FOUND.
    pub fn locked_codes(&self, sku: Option<&str>) -> CoreResult<Vec<(u32, u64, u16)>> {
        let shards = match sku {
            Some(name) => vec![self.shard_by_name(name)?],
            None => self.skus.load().shards.clone(),
        };
        let now = self.now_ms();
        let mut out = Vec::new();
        for shard in shards {
            let st = shard.state.lock();
            out.extend(st.sorted_pin_guards().into_iter().filter(|(_, g)| g.locked_until_ms > now).map(|(c, g)| (c, g.locked_until_ms, g.lockouts)));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Lifts lockouts (and clears the failure counts) of the given codes; codes without
    /// failures are skipped. Returns `(unlocked, skipped)`. Errors: CODE_NOT_FOUND (nothing
    /// changes).
    pub fn unlock(&self, ids: &[u64]) -> CoreResult<(usize, usize)> {
        let by_shard = self.group_ids(ids)?;
        let mut changed = 0;
        for (s, ids) in by_shard {
            let Some(shard) = self.shard_by_ix(s) else { continue };
            let mut st = shard.state.lock();
            let mut seen = hashbrown::HashSet::new();
            let take: Vec<u32> = ids.into_iter().filter(|id| seen.insert(*id) && st.pin_guards.contains_key(id)).collect();
            if take.is_empty() {
                continue;
            }
            changed += take.len();
            st.apply(&self.dir, &Rec::PinUnlock { shard: s, ids: take }).unwrap_or_else(|e| bug("unlock", e));
        }
        Ok((changed, ids.len() - changed))
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
        let guard = st.pin_guards.get(&id).copied().unwrap_or_default();
        let (from, until) = st.window(&r);
        let order_of = |slot: u32| st.orders.get(slot as usize).map(|o| o.order_ref.to_string());
        let state = r.state();
        let owner_state = if state == State::Frozen || state == State::Void {
            r.frozen_from().filter(|_| state == State::Frozen).unwrap_or(State::Allocated)
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
            frozen_from: if state == State::Frozen { r.frozen_from() } else { None },
            uses_left: r.uses_left,
            has_pin: r.pin() != 0,
            valid_from: (from != 0).then_some(from),
            valid_until: (until != NO_END).then_some(until),
            order_ref,
            hold_ref,
            redemption_ids: st.redemptions_of(&self.dir, id).into_iter().map(|ix| redemption_id(shard.ix, ix)).collect(),
            was_withdrawn: r.was_withdrawn(),
            pin_failures: guard.failures,
            locked_until_ms: (guard.locked_until_ms != 0).then_some(guard.locked_until_ms),
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
            + self.batches.memory_bytes()
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
        self.check_batches()
    }

    /// Every batch item recorded as a redemption names a redemption of that batch and item.
    fn check_batches(&self) -> Result<(), String> {
        let batches = crate::batch::BatchTable::sorted(&self.batches.lock_all());
        for b in batches {
            for i in 0..b.fps.len() {
                let Some(Ok(rid)) = b.get(i) else { continue };
                let shard = self.shard_by_ix((rid >> 32) as u32).ok_or(format!("batch {:?} names a missing SKU", &*b.batch_ref))?;
                let st = shard.state.lock();
                let ok = st.redemptions.get(rid as u32 as usize).is_some_and(|r| r.item == i as u32 && r.request_id == b.batch_ref);
                if !ok {
                    return Err(format!("batch {:?} item {i} names redemption {rid} of another request", &*b.batch_ref));
                }
            }
        }
        Ok(())
    }
}
