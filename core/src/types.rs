//! The code record, its states, the free pools and the engine's limits.

/// Codes per directory chunk. A SKU owns whole chunks of the id space, so a SKU wastes at most one
/// partly filled chunk (64 KiB of keys).
pub const CHUNK_BITS: u32 = 12;
pub const CHUNK: usize = 1 << CHUNK_BITS;
/// Highest number of codes one engine holds (2^30). At ~56 bytes a code that is 60 GB, beyond any
/// machine we run on; the fixed directory costs 4 MiB.
pub const CODES_MAX: u64 = 1 << 30;
pub const CHUNKS_MAX: usize = (CODES_MAX as usize) >> CHUNK_BITS;
/// Longest order ref, hold ref, request id, terminal id, SKU name or rollback reason. They are
/// stored per order/hold/redemption; 128 bytes bounds that memory.
pub const REF_LEN_MAX: usize = 128;
/// Most items in one import or batch call (about 0.6 GB of transient memory at the top).
pub const BATCH_ITEMS_MAX: usize = 10_000_000;
/// Most codes in one order or hold: the list is held in memory and returned at once.
pub const ORDER_QTY_MAX: u64 = 10_000;
/// Longest hold: one day. Longer holds would lock stock away from sale.
pub const HOLD_TTL_MS_MAX: u64 = 86_400_000;
/// Most SKUs (shards) in one engine; the shard table is indexed by a u32.
pub const SKUS_MAX: usize = 1 << 20;
/// Longest validity after sale (100 years).
pub const VALIDITY_DAYS_MAX: u32 = 36_500;

/// `slot` value of a code that belongs to no order, hold or pool position.
pub const NO_SLOT: u32 = u32::MAX;
/// `valid_until` of a code with no end of validity (sorted last by FEFO).
pub const NO_END: u32 = u32::MAX;

/// A code's state. The numbering is part of the journal and snapshot formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum State {
    Available = 0,
    Held = 1,
    Allocated = 2,
    Redeemed = 3,
    Frozen = 4,
    Void = 5,
    /// Out of sale because its plaintext was handed out (exported in a file); redeemable like a
    /// sold code, never allocated or held. `restore` returns a never-redeemed one to stock.
    Withdrawn = 6,
}

pub const STATE_COUNT: usize = 7;
pub const STATE_NAMES: [&str; STATE_COUNT] =
    ["available", "held", "allocated", "redeemed", "frozen", "void", "withdrawn"];

/// Bit of `CodeRecord::frozen_from` marking a code that was withdrawn (exported): a redeemed or
/// frozen code remembers it, so a rollback or unfreeze returns it to `withdrawn`, never to sale.
pub const FLAG_WITHDRAWN: u8 = 0x80;

impl State {
    pub fn from_u8(v: u8) -> Option<State> {
        Some(match v {
            0 => State::Available,
            1 => State::Held,
            2 => State::Allocated,
            3 => State::Redeemed,
            4 => State::Frozen,
            5 => State::Void,
            6 => State::Withdrawn,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        STATE_NAMES[self as usize]
    }
}

/// One code: 28 bytes. The lookup key lives in the directory, not here.
///
/// `slot` is overloaded by state: the position in the pool's bucket when `available`, the hold
/// index when `held`, the order index when `allocated`/`redeemed` (or `NO_SLOT` when the code was
/// redeemed straight from stock), and kept as it was when `frozen`/`void`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct CodeRecord {
    pub pin_hash: [u32; 2],
    pub pool: u32,
    pub batch: u32,
    pub slot: u32,
    pub validity: u32,
    pub uses_left: u16,
    pub state: u8,
    pub frozen_from: u8,
}

const _: () = assert!(std::mem::size_of::<CodeRecord>() == 28);

impl CodeRecord {
    #[inline]
    pub fn state(&self) -> State {
        // The state byte is only ever written from a `State`, so this cannot fail.
        State::from_u8(self.state).unwrap_or(State::Void)
    }

    #[inline]
    pub fn pin(&self) -> u64 {
        u64::from(self.pin_hash[0]) | (u64::from(self.pin_hash[1]) << 32)
    }

    #[inline]
    pub fn set_pin(&mut self, pin: u64) {
        self.pin_hash = [pin as u32, (pin >> 32) as u32];
    }

    /// The state a frozen code returns to on unfreeze (the low bits of `frozen_from`).
    #[inline]
    pub fn frozen_from(&self) -> Option<State> {
        State::from_u8(self.frozen_from & !FLAG_WITHDRAWN)
    }

    /// Whether the code was withdrawn from sale (exported) and not restored since.
    #[inline]
    pub fn was_withdrawn(&self) -> bool {
        self.frozen_from & FLAG_WITHDRAWN != 0
    }
}

/// A stack of code ids split in fixed chunks, so growing it never copies and wastes at most one
/// chunk. Supports O(1) removal by position (swap with the last element).
#[derive(Default, Clone, Debug)]
pub struct IdStack {
    chunks: Vec<Vec<u32>>,
    len: usize,
}

const STACK_CHUNK: usize = 4096;

impl IdStack {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pushes `id` and returns its position.
    pub fn push(&mut self, id: u32) -> u32 {
        if self.len == self.chunks.len() * STACK_CHUNK {
            self.chunks.push(Vec::with_capacity(STACK_CHUNK));
        }
        let pos = self.len;
        self.chunks[pos / STACK_CHUNK].push(id);
        self.len += 1;
        pos as u32
    }

    pub fn get(&self, pos: usize) -> Option<u32> {
        if pos >= self.len {
            return None;
        }
        Some(self.chunks[pos / STACK_CHUNK][pos % STACK_CHUNK])
    }

    pub fn pop(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        let c = self.len / STACK_CHUNK;
        let id = self.chunks[c].pop();
        if self.chunks[c].is_empty() && c + 1 == self.chunks.len() && c > 0 {
            self.chunks.pop();
        }
        id
    }

    /// Removes the element at `pos` by moving the last element there. Returns the id that moved
    /// into `pos` (whose recorded position must be updated), or None if `pos` was the last.
    pub fn swap_remove(&mut self, pos: usize) -> Option<u32> {
        let last = self.pop()?;
        if pos == self.len {
            return None;
        }
        self.chunks[pos / STACK_CHUNK][pos % STACK_CHUNK] = last;
        Some(last)
    }

    pub fn memory_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity() * 4).sum::<usize>() + self.chunks.capacity() * 24
    }
}

/// The free stock of one (SKU, pool): available codes bucketed by `valid_until`, so FEFO is a walk
/// over the first buckets, plus counts of this pool's codes by state.
#[derive(Default, Clone, Debug)]
pub struct Pool {
    pub buckets: std::collections::BTreeMap<u32, IdStack>,
    pub counts: [u64; STATE_COUNT],
}

impl Pool {
    /// Available codes whose `valid_until` is before `now_s` (in stock but unsellable).
    pub fn expired(&self, now_s: u32) -> u64 {
        self.buckets.range(..now_s).map(|(_, s)| s.len() as u64).sum()
    }

    /// Available codes that can be sold at `now_s`.
    pub fn sellable(&self, now_s: u32) -> u64 {
        self.counts[State::Available as usize] - self.expired(now_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_stack_swap_remove_keeps_positions_consistent() {
        let mut s = IdStack::default();
        for i in 0..10_000u32 {
            assert_eq!(s.push(i), i);
        }
        assert_eq!(s.swap_remove(5), Some(9_999));
        assert_eq!(s.get(5), Some(9_999));
        assert_eq!(s.swap_remove(s.len() - 1), None);
        assert_eq!(s.len(), 9_998);
        let mut n = 0;
        while s.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, 9_998);
        assert!(s.is_empty());
    }
}

/// A vector stored as shared chunks, so a snapshot can take a consistent copy in O(len / 1024)
/// under the shard lock (cloning chunk pointers) and encode it after the lock is released. A
/// write to a chunk that a snapshot still shares copies that chunk first (`Arc::make_mut`).
/// The chunk being filled (`tail`) is a plain vector: appending costs no atomic operation (an
/// `Arc::make_mut` is a full memory barrier), and a snapshot copies the tail (at most 1,023
/// elements) instead of sharing it.
#[derive(Debug)]
pub struct CowVec<T> {
    chunks: Vec<std::sync::Arc<Vec<T>>>,
    tail: Vec<T>,
}

const COW_CHUNK: usize = 1024;

impl<T> Default for CowVec<T> {
    fn default() -> Self {
        CowVec { chunks: Vec::new(), tail: Vec::new() }
    }
}

impl<T: Clone> Clone for CowVec<T> {
    /// Shares every full chunk (cheap) and copies the tail; see the type's documentation.
    fn clone(&self) -> Self {
        CowVec { chunks: self.chunks.clone(), tail: self.tail.clone() }
    }
}

impl<T: Clone> CowVec<T> {
    pub fn len(&self) -> usize {
        self.chunks.len() * COW_CHUNK + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, v: T) {
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(COW_CHUNK);
        }
        self.tail.push(v);
        if self.tail.len() == COW_CHUNK {
            let full = std::mem::replace(&mut self.tail, Vec::with_capacity(COW_CHUNK));
            self.chunks.push(std::sync::Arc::new(full));
        }
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        let c = i / COW_CHUNK;
        match self.chunks.get(c) {
            Some(chunk) => chunk.get(i % COW_CHUNK),
            None if c == self.chunks.len() => self.tail.get(i % COW_CHUNK),
            None => None,
        }
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        let c = i / COW_CHUNK;
        if c == self.chunks.len() {
            return self.tail.get_mut(i % COW_CHUNK);
        }
        std::sync::Arc::make_mut(self.chunks.get_mut(c)?).get_mut(i % COW_CHUNK)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter()).chain(self.tail.iter())
    }
}

impl<T: Clone> std::ops::Index<usize> for CowVec<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(v) => v,
            None => panic!("CowVec index {i} out of range {}", self.len()),
        }
    }
}

impl<T: Clone> std::ops::IndexMut<usize> for CowVec<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        let len = self.len();
        match self.get_mut(i) {
            Some(v) => v,
            None => panic!("CowVec index {i} out of range {len}"),
        }
    }
}
