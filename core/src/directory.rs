//! Global, lock-light structures shared by all shards: the code directory (id → owning shard and
//! lookup key), the lookup index (lookup key → id) and the sharded idempotency registries.
//!
//! The directory is append-only: a chunk of ids is published once (to one shard) and a key slot
//! is written once, before the id is inserted into the index. Readers reach a key only through
//! the index part's read lock, whose acquisition happens-after the writer's release, so relaxed
//! atomics suffice for the key words themselves.

use crate::types::{CHUNK, CHUNKS_MAX, CHUNK_BITS};
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One chunk of the id space: its owner and the lookup keys of its codes.
pub struct KeyChunk {
    pub shard: u32,
    /// The chunk's position in the owning shard's record chunks.
    pub local: u32,
    keys: Box<[[AtomicU64; 2]]>,
}

/// id → (shard, local chunk, lookup key), readable without locks.
pub struct Directory {
    chunks: Box<[OnceLock<Box<KeyChunk>>]>,
    next_chunk: AtomicU32,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    pub fn new() -> Directory {
        let chunks = std::iter::repeat_with(OnceLock::new).take(CHUNKS_MAX).collect();
        Directory { chunks, next_chunk: AtomicU32::new(0) }
    }

    /// Reserves the next free chunk for `shard`. Returns its global number, or None when the id
    /// space is exhausted.
    pub fn take_chunk(&self, shard: u32, local: u32) -> Option<u32> {
        let n = self.next_chunk.fetch_add(1, Ordering::Relaxed);
        if n as usize >= CHUNKS_MAX {
            self.next_chunk.store(CHUNKS_MAX as u32, Ordering::Relaxed);
            return None;
        }
        self.publish_chunk(n, shard, local);
        Some(n)
    }

    /// Publishes chunk `n` for `shard` (used directly when restoring). Returns false if taken.
    pub fn publish_chunk(&self, n: u32, shard: u32, local: u32) -> bool {
        let Some(slot) = self.chunks.get(n as usize) else { return false };
        let keys = std::iter::repeat_with(|| [AtomicU64::new(0), AtomicU64::new(0)]).take(CHUNK).collect();
        let ok = slot.set(Box::new(KeyChunk { shard, local, keys })).is_ok();
        self.next_chunk.fetch_max(n + 1, Ordering::Relaxed);
        ok
    }

    #[inline]
    pub fn chunk(&self, id: u32) -> Option<&KeyChunk> {
        self.chunks.get((id >> CHUNK_BITS) as usize)?.get().map(|b| &**b)
    }

    /// The shard and local chunk that own `id`, if the id was ever assigned a chunk.
    #[inline]
    pub fn locate(&self, id: u32) -> Option<(u32, u32)> {
        self.chunk(id).map(|c| (c.shard, c.local))
    }

    #[inline]
    pub fn key(&self, id: u32) -> u128 {
        match self.chunk(id) {
            Some(c) => {
                let k = &c.keys[id as usize & (CHUNK - 1)];
                u128::from(k[0].load(Ordering::Relaxed)) | (u128::from(k[1].load(Ordering::Relaxed)) << 64)
            }
            None => 0,
        }
    }

    pub fn set_key(&self, id: u32, key: u128) {
        if let Some(c) = self.chunk(id) {
            let k = &c.keys[id as usize & (CHUNK - 1)];
            k[0].store(key as u64, Ordering::Relaxed);
            k[1].store((key >> 64) as u64, Ordering::Relaxed);
        }
    }

    pub fn chunks_used(&self) -> usize {
        (self.next_chunk.load(Ordering::Relaxed) as usize).min(CHUNKS_MAX)
    }

    pub fn memory_bytes(&self) -> usize {
        self.chunks.len() * std::mem::size_of::<OnceLock<Box<KeyChunk>>>()
            + self.chunks_used() * (CHUNK * 16 + std::mem::size_of::<KeyChunk>())
    }
}

/// A value padded to its own cache lines so neighbouring locks do not share one.
#[repr(align(128))]
pub struct Padded<T>(pub T);

pub const INDEX_PARTS: usize = 64;

/// lookup key → code id, split in 64 parts by the key's top bits. Each part stores only ids (4
/// bytes a slot); equality is checked against the directory's keys.
pub struct Index {
    parts: Box<[Padded<RwLock<HashTable<u32>>>]>,
}

#[inline]
fn part_of(key: u128) -> usize {
    (key >> 122) as usize
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    pub fn new() -> Index {
        Index { parts: (0..INDEX_PARTS).map(|_| Padded(RwLock::new(HashTable::new()))).collect() }
    }

    #[inline]
    pub fn find(&self, dir: &Directory, key: u128) -> Option<u32> {
        let part = self.parts[part_of(key)].0.read();
        part.find(key as u64, |&id| dir.key(id) == key).copied()
    }

    /// Finds many keys: items are bucketed by part, each part is read-locked once and its
    /// lookups run back to back, so their cache misses overlap. Results are in input order.
    pub fn find_many(&self, dir: &Directory, keys: impl ExactSizeIterator<Item = u128>) -> Vec<Option<u32>> {
        let keys: Vec<u128> = keys.collect();
        let mut order: Vec<Vec<u32>> = vec![Vec::new(); INDEX_PARTS];
        for (i, &k) in keys.iter().enumerate() {
            order[part_of(k)].push(i as u32);
        }
        let mut out = vec![None; keys.len()];
        for (p, items) in order.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let part = self.parts[p].0.read();
            for i in items {
                let key = keys[i as usize];
                out[i as usize] = part.find(key as u64, |&id| dir.key(id) == key).copied();
            }
        }
        out
    }

    /// Inserts ids whose keys are already in the directory and known to be absent from the index
    /// (the caller holds the engine's import lock). `ids` are grouped by part internally.
    pub fn insert_many(&self, dir: &Directory, ids: &[u32]) {
        let mut by_part: Vec<Vec<u32>> = vec![Vec::new(); INDEX_PARTS];
        for &id in ids {
            by_part[part_of(dir.key(id))].push(id);
        }
        for (p, ids) in by_part.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let mut part = self.parts[p].0.write();
            part.reserve(ids.len(), |&id| dir.key(id) as u64);
            for id in ids {
                let key = dir.key(id);
                part.insert_unique(key as u64, id, |&id| dir.key(id) as u64);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.0.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn memory_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.0.read().allocation_size()).sum::<usize>()
            + self.parts.len() * std::mem::size_of::<Padded<RwLock<HashTable<u32>>>>()
    }
}

pub const REGISTRY_PARTS: usize = 64;

/// An idempotency registry: string key → value, split in 64 locked parts by the key's hash.
type RegistryPart<V> = Padded<Mutex<hashbrown::HashMap<Arc<str>, V>>>;

pub struct Registry<V> {
    parts: Box<[RegistryPart<V>]>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl<V: Copy> Default for Registry<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Copy> Registry<V> {
    pub fn new() -> Registry<V> {
        Registry {
            parts: (0..REGISTRY_PARTS).map(|_| Padded(Mutex::new(hashbrown::HashMap::new()))).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// The locked part that holds `key`. Callers keep the guard across their check-and-insert so
    /// two requests with one key cannot both act.
    #[inline]
    pub fn lock(&self, key: &str) -> parking_lot::MutexGuard<'_, hashbrown::HashMap<Arc<str>, V>> {
        self.lock_part(self.part_of(key))
    }

    /// The index of the part that holds `key`.
    #[inline]
    pub fn part_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % REGISTRY_PARTS
    }

    #[inline]
    pub fn lock_part(&self, part: usize) -> parking_lot::MutexGuard<'_, hashbrown::HashMap<Arc<str>, V>> {
        self.parts[part].0.lock()
    }

    pub fn get(&self, key: &str) -> Option<V> {
        self.lock(key).get(key).copied()
    }

    pub fn insert(&self, key: &str, value: V) {
        self.lock(key).insert(key.into(), value);
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
                m.capacity() * (std::mem::size_of::<(Arc<str>, V)>() + 1)
                    + m.keys().map(|k| k.len()).sum::<usize>()
            })
            .sum()
    }
}
