//! Batch redemption under one idempotency key: the per-item outcome encoding, the batch record
//! and the table that finds a batch by its key.
//!
//! A batch is addressed by one `batch_ref` and its items by position. What a retry must return
//! is kept per item: the redemption id of a success, or a compact `ItemError` for a failure, and
//! a 64-bit fingerprint of the item (its code's lookup key and PIN) so that a retry with
//! different contents is refused naming the first differing position. Memory per item: 16 bytes
//! here (fingerprint + outcome), plus the redemption record in the shard for a success.

use crate::directory::Padded;
use crate::error::CoreError;
use crate::wire::{Put, Reader, Short};
use parking_lot::{Mutex, MutexGuard};
use std::hash::BuildHasher;
use std::sync::Arc;

/// Why an item failed, compactly (what a retry reports again). Details that a redemption record
/// already holds (time and terminal of an earlier use) are looked up when the error is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemError {
    InvalidCode { reason: u8 },
    InvalidPin { reason: u8 },
    CodeNotFound,
    PinMismatch,
    /// `started`: this item's wrong PIN started the lockout (it counts as a PIN failure).
    CodeLocked { locked_until_ms: u64, started: bool },
    Void,
    Frozen,
    AlreadyRedeemed { redemption_id: u64 },
    NotSold,
    NotYetValid { valid_from: u32 },
    Expired { valid_until: u32 },
}

/// The reasons an INVALID_CODE/INVALID_PIN can carry, by wire number.
const REASONS: [&str; 6] = ["empty", "too long", "not printable ASCII", "missing", "not a string", "not valid UTF-8"];

fn reason_no(reason: &str) -> u8 {
    REASONS.iter().position(|r| *r == reason).map_or(u8::MAX, |i| i as u8)
}

fn reason_of(no: u8) -> &'static str {
    REASONS.get(no as usize).copied().unwrap_or("invalid")
}

impl ItemError {
    /// The compact form of a per-item error; None for an error that is not per item (a bug in
    /// the caller, which asserts).
    pub fn of(e: &CoreError) -> Option<ItemError> {
        Some(match e {
            CoreError::InvalidCode { reason, .. } => ItemError::InvalidCode { reason: reason_no(reason) },
            CoreError::InvalidPin { reason, .. } => ItemError::InvalidPin { reason: reason_no(reason) },
            CoreError::CodeNotFound { .. } => ItemError::CodeNotFound,
            CoreError::PinMismatch => ItemError::PinMismatch,
            CoreError::CodeLocked { locked_until_ms, locked, .. } => {
                ItemError::CodeLocked { locked_until_ms: *locked_until_ms, started: *locked }
            }
            CoreError::Void => ItemError::Void,
            CoreError::Frozen => ItemError::Frozen,
            CoreError::AlreadyRedeemed { redemption_id, .. } => ItemError::AlreadyRedeemed { redemption_id: *redemption_id },
            CoreError::NotSold => ItemError::NotSold,
            CoreError::NotYetValid { valid_from } => ItemError::NotYetValid { valid_from: *valid_from },
            CoreError::Expired { valid_until } => ItemError::Expired { valid_until: *valid_until },
            _ => return None,
        })
    }

    /// The error again, for item `index`. `redemption` gives (time, terminal) of a redemption
    /// id for ALREADY_REDEEMED; `now_ms` turns a lockout's end into `retry_after_s`.
    pub fn to_error(self, index: usize, now_ms: u64, redemption: impl Fn(u64) -> (u64, String)) -> CoreError {
        match self {
            ItemError::InvalidCode { reason } => CoreError::InvalidCode { index: Some(index), reason: reason_of(reason) },
            ItemError::InvalidPin { reason } => CoreError::InvalidPin { index: Some(index), reason: reason_of(reason) },
            ItemError::CodeNotFound => CoreError::CodeNotFound { code_id: None },
            ItemError::PinMismatch => CoreError::PinMismatch,
            ItemError::CodeLocked { locked_until_ms, started } => CoreError::CodeLocked {
                retry_after_s: retry_after_s(locked_until_ms, now_ms),
                locked_until_ms,
                locked: started,
            },
            ItemError::Void => CoreError::Void,
            ItemError::Frozen => CoreError::Frozen,
            ItemError::AlreadyRedeemed { redemption_id } => {
                let (redeemed_at_ms, terminal) = redemption(redemption_id);
                CoreError::AlreadyRedeemed { redemption_id, redeemed_at_ms, terminal }
            }
            ItemError::NotSold => CoreError::NotSold,
            ItemError::NotYetValid { valid_from } => CoreError::NotYetValid { valid_from },
            ItemError::Expired { valid_until } => CoreError::Expired { valid_until },
        }
    }

    /// Whether the item got past the PIN check (a success or a state error): a code's PIN
    /// failure count is reset then, as for a single call.
    pub fn pin_passed(self) -> bool {
        !matches!(self, ItemError::PinMismatch | ItemError::CodeLocked { .. })
    }

    pub fn encode(self, b: &mut Vec<u8>) {
        match self {
            ItemError::InvalidCode { reason } => {
                b.put_u8(1);
                b.put_u8(reason);
            }
            ItemError::InvalidPin { reason } => {
                b.put_u8(2);
                b.put_u8(reason);
            }
            ItemError::CodeNotFound => b.put_u8(3),
            ItemError::PinMismatch => b.put_u8(4),
            ItemError::CodeLocked { locked_until_ms, started } => {
                b.put_u8(5);
                b.put_u64(locked_until_ms);
                b.put_u8(u8::from(started));
            }
            ItemError::Void => b.put_u8(6),
            ItemError::Frozen => b.put_u8(7),
            ItemError::AlreadyRedeemed { redemption_id } => {
                b.put_u8(8);
                b.put_u64(redemption_id);
            }
            ItemError::NotSold => b.put_u8(9),
            ItemError::NotYetValid { valid_from } => {
                b.put_u8(10);
                b.put_u32(valid_from);
            }
            ItemError::Expired { valid_until } => {
                b.put_u8(11);
                b.put_u32(valid_until);
            }
        }
    }

    /// Decodes an error written by `encode`. Errors: the byte offset of a short or unknown value.
    pub fn decode(r: &mut Reader<'_>) -> Result<ItemError, Short> {
        let at = r.pos;
        Ok(match r.u8("item error")? {
            1 => ItemError::InvalidCode { reason: checked_reason(r, at)? },
            2 => ItemError::InvalidPin { reason: checked_reason(r, at)? },
            3 => ItemError::CodeNotFound,
            4 => ItemError::PinMismatch,
            5 => ItemError::CodeLocked {
                locked_until_ms: r.u64("lock end")?,
                started: match r.u8("lock started")? {
                    0 => false,
                    1 => true,
                    _ => return Err(Short { offset: at, what: "lock started flag" }),
                },
            },
            6 => ItemError::Void,
            7 => ItemError::Frozen,
            8 => ItemError::AlreadyRedeemed { redemption_id: r.u64("redemption id")? },
            9 => ItemError::NotSold,
            10 => ItemError::NotYetValid { valid_from: r.u32("valid from")? },
            11 => ItemError::Expired { valid_until: r.u32("valid until")? },
            _ => return Err(Short { offset: at, what: "unknown item error" }),
        })
    }
}

fn checked_reason(r: &mut Reader<'_>, at: usize) -> Result<u8, Short> {
    let v = r.u8("reason")?;
    if v as usize >= REASONS.len() {
        return Err(Short { offset: at, what: "unknown reason" });
    }
    Ok(v)
}

/// Whole seconds until `until_ms`, rounded up (0 once it has passed).
pub fn retry_after_s(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000)
}

/// An item outcome as stored: a redemption id, `ERR | k` (the k-th stored error), or PENDING
/// (journaled before a crash cut the batch short: a retry executes it).
pub const PENDING: u64 = u64::MAX;
pub const ERR: u64 = 1 << 62;

/// One batch and what each of its items came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRec {
    pub batch_ref: Arc<str>,
    pub terminal: Arc<str>,
    pub at_ms: u64,
    pub fps: Box<[u64]>,
    pub outcomes: Vec<u64>,
    pub errors: Vec<ItemError>,
}

impl BatchRec {
    pub fn new(batch_ref: &str, terminal: &str, at_ms: u64, fps: Vec<u64>) -> BatchRec {
        let n = fps.len();
        BatchRec { batch_ref: batch_ref.into(), terminal: terminal.into(), at_ms, fps: fps.into(), outcomes: vec![PENDING; n], errors: Vec::new() }
    }

    /// Records item `index`'s outcome (a redemption id or an error). Errors: the index is out of
    /// range or already has an outcome (only reachable through a corrupt journal).
    pub fn set(&mut self, index: u32, outcome: Result<u64, ItemError>) -> Result<(), &'static str> {
        let slot = self.outcomes.get_mut(index as usize).ok_or("batch item out of range")?;
        if *slot != PENDING {
            return Err("batch item recorded twice");
        }
        *slot = match outcome {
            Ok(rid) if rid < ERR => rid,
            Ok(_) => return Err("redemption id out of range"),
            Err(e) => {
                self.errors.push(e);
                ERR | (self.errors.len() as u64 - 1)
            }
        };
        Ok(())
    }

    /// Item `index`'s outcome: Some(Ok(rid)), Some(Err(error)), or None while pending.
    pub fn get(&self, index: usize) -> Option<Result<u64, ItemError>> {
        match *self.outcomes.get(index)? {
            PENDING => None,
            v if v & ERR != 0 => self.errors.get((v & !ERR) as usize).map(|e| Err(*e)),
            rid => Some(Ok(rid)),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        96 + self.batch_ref.len() + self.terminal.len() + self.fps.len() * 8 + self.outcomes.capacity() * 8 + self.errors.capacity() * 16
    }

    /// Canonical bytes (snapshot and digest): every item's print and outcome in item order, an
    /// error written in place (so the order in which a live call or a replay recorded the items
    /// of different shards does not matter).
    pub fn encode(&self, b: &mut Vec<u8>) {
        b.put_str(&self.batch_ref);
        b.put_str(&self.terminal);
        b.put_u64(self.at_ms);
        b.put_u32(self.fps.len() as u32);
        for (i, fp) in self.fps.iter().enumerate() {
            b.put_u64(*fp);
            match self.get(i) {
                None => b.put_u8(0),
                Some(Ok(rid)) => {
                    b.put_u8(1);
                    b.put_u64(rid);
                }
                Some(Err(e)) => {
                    b.put_u8(2);
                    e.encode(b);
                }
            }
        }
    }

    /// Reads what `encode` wrote.
    pub fn decode(r: &mut Reader<'_>) -> Result<BatchRec, Short> {
        let batch_ref = r.str("batch ref")?;
        let terminal = r.str("terminal")?;
        let at_ms = r.u64("batch time")?;
        let n = r.u32("batch items")? as usize;
        if r.remaining() < n.saturating_mul(9) {
            return Err(Short { offset: r.pos, what: "batch items" });
        }
        let (mut fps, mut outcomes, mut errors) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
        for _ in 0..n {
            fps.push(r.u64("fingerprint")?);
            let at = r.pos;
            match r.u8("outcome")? {
                0 => outcomes.push(PENDING),
                1 => {
                    let rid = r.u64("redemption id")?;
                    if rid >= ERR {
                        return Err(Short { offset: at, what: "redemption id out of range" });
                    }
                    outcomes.push(rid);
                }
                2 => {
                    errors.push(ItemError::decode(r)?);
                    outcomes.push(ERR | (errors.len() as u64 - 1));
                }
                _ => return Err(Short { offset: at, what: "batch outcome" }),
            }
        }
        Ok(BatchRec { batch_ref: batch_ref.into(), terminal: terminal.into(), at_ms, fps: fps.into(), outcomes, errors })
    }
}

/// Batches by key, split in 64 locked parts by the key's hash. A batch call holds its key's part
/// from its first check to its last write, so a concurrent retry of the same batch waits and
/// then replays. Lock order: batch part → batch journal → SKU shard.
type BatchPart = Padded<Mutex<hashbrown::HashMap<Arc<str>, Arc<BatchRec>>>>;

pub struct BatchTable {
    parts: Box<[BatchPart]>,
    hasher: hashbrown::DefaultHashBuilder,
}

pub const BATCH_PARTS: usize = 64;

impl Default for BatchTable {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchTable {
    pub fn new() -> BatchTable {
        BatchTable {
            parts: (0..BATCH_PARTS).map(|_| Padded(Mutex::new(hashbrown::HashMap::new()))).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// The locked part that holds `key`.
    pub fn lock(&self, key: &str) -> MutexGuard<'_, hashbrown::HashMap<Arc<str>, Arc<BatchRec>>> {
        self.parts[(self.hasher.hash_one(key) as usize) % BATCH_PARTS].0.lock()
    }

    /// Every part locked, in part order (snapshot capture).
    pub fn lock_all(&self) -> Vec<MutexGuard<'_, hashbrown::HashMap<Arc<str>, Arc<BatchRec>>>> {
        self.parts.iter().map(|p| p.0.lock()).collect()
    }

    /// Every batch, sorted by key (canonical order for snapshots and digests).
    pub fn sorted(parts: &[MutexGuard<'_, hashbrown::HashMap<Arc<str>, Arc<BatchRec>>>]) -> Vec<Arc<BatchRec>> {
        let mut v: Vec<Arc<BatchRec>> = parts.iter().flat_map(|p| p.values().cloned()).collect();
        v.sort_unstable_by(|a, b| a.batch_ref.cmp(&b.batch_ref));
        v
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.0.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn memory_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| {
                let m = p.0.lock();
                m.capacity() * 33 + m.values().map(|b| b.memory_bytes()).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_errors_round_trip() {
        let all = [
            ItemError::InvalidCode { reason: 1 },
            ItemError::InvalidPin { reason: 0 },
            ItemError::CodeNotFound,
            ItemError::PinMismatch,
            ItemError::CodeLocked { locked_until_ms: 77, started: true },
            ItemError::Void,
            ItemError::Frozen,
            ItemError::AlreadyRedeemed { redemption_id: 5 },
            ItemError::NotSold,
            ItemError::NotYetValid { valid_from: 3 },
            ItemError::Expired { valid_until: 4 },
        ];
        for e in all {
            let mut b = Vec::new();
            e.encode(&mut b);
            assert_eq!(ItemError::decode(&mut Reader::new(&b)), Ok(e));
            let back = e.to_error(2, 0, |_| (1, "t".into()));
            assert_eq!(ItemError::of(&back), Some(e), "{back:?}");
        }
        assert_eq!(retry_after_s(2_001, 1_000), 2);
        assert_eq!(retry_after_s(1_000, 2_000), 0);
    }
}
