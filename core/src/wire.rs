//! Little-endian encoding helpers shared by journal records and snapshots.
//!
//! Every read is bounds-checked and fails with a `Short` error instead of panicking, because the
//! bytes come from disk or from a caller and may be torn or corrupt.

/// Appends fixed-width little-endian values and length-prefixed strings/lists to a buffer.
pub trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_u128(&mut self, v: u128);
    /// A string of at most 65535 bytes (callers bound their strings far below that).
    fn put_str(&mut self, s: &str);
    fn put_ids(&mut self, ids: &[u32]);
}

impl Put for Vec<u8> {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_u128(&mut self, v: u128) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_str(&mut self, s: &str) {
        let b = s.as_bytes();
        let n = b.len().min(u16::MAX as usize);
        self.put_u16(n as u16);
        self.extend_from_slice(&b[..n]);
    }
    fn put_ids(&mut self, ids: &[u32]) {
        self.put_u32(ids.len() as u32);
        self.reserve(ids.len() * 4);
        for &id in ids {
            self.put_u32(id);
        }
    }
}

/// The input ended before a value, or a value was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    pub offset: usize,
    pub what: &'static str,
}

/// A bounds-checked reader.
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        if self.remaining() < n {
            return Err(Short { offset: self.pos, what });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Short> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    /// The next byte without consuming it (None at the end).
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Short> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn u128(&mut self, what: &'static str) -> Result<u128, Short> {
        Ok(u128::from_le_bytes(self.array(what)?))
    }
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, Short> {
        let n = self.u16(what)? as usize;
        let at = self.pos;
        std::str::from_utf8(self.bytes(n, what)?).map_err(|_| Short { offset: at, what })
    }
    pub fn ids(&mut self, what: &'static str) -> Result<Vec<u32>, Short> {
        let n = self.u32(what)? as usize;
        if self.remaining() < n.saturating_mul(4) {
            return Err(Short { offset: self.pos, what });
        }
        (0..n).map(|_| self.u32(what)).collect()
    }
}
