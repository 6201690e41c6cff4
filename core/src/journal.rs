//! Journal records: one per mutation, physical ("these ids went to this order"), so replay never
//! re-runs a choice and reproduces the state exactly.
//!
//! In memory, each shard appends `[len u32][payload]` to its own buffer under its lock. Draining
//! assigns global sequence numbers and frames each record as
//! `[len u32][seq u64][crc32 u32][payload]`, where the CRC-32 covers the seq and payload bytes.

use crate::batch::ItemError;
use crate::error::CoreError;
use crate::wire::{Put, Reader, Short};

pub const FRAME_HEADER: usize = 16;
/// Largest payload accepted when reading frames (an import of 2^20 codes is ~30 MB).
pub const PAYLOAD_MAX: usize = 64 << 20;

mod tag {
    pub const CREATE_SKU: u8 = 1;
    pub const IMPORT: u8 = 2;
    pub const ALLOCATE: u8 = 3;
    pub const HOLD: u8 = 4;
    pub const CONFIRM: u8 = 5;
    pub const RELEASE: u8 = 6;
    pub const EXPIRE: u8 = 7;
    pub const MOVE: u8 = 8;
    pub const REDEEM: u8 = 9;
    pub const ROLLBACK: u8 = 10;
    pub const FREEZE: u8 = 11;
    pub const UNFREEZE: u8 = 12;
    pub const VOID: u8 = 13;
    pub const WITHDRAW: u8 = 14;
    pub const RESTORE: u8 = 15;
    pub const PIN_FAIL: u8 = 16;
    pub const PIN_RESET: u8 = 17;
    pub const PIN_UNLOCK: u8 = 18;
    pub const BATCH_OPEN: u8 = 19;
    pub const BATCH_REDEEM: u8 = 20;
}

/// One item of a `BatchRedeem` record: input position, code id, and None for a redemption or
/// the error the item got.
pub type BatchItem = (u32, u32, Option<ItemError>);

/// One imported code as journaled: id, lookup key, PIN hash (0 = none).
pub type ImportEntry = (u32, u128, u64);

/// A journal record. Borrowed strings point into the decoded buffer or the live call's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec<'a> {
    CreateSku { ix: u32, name: &'a str, uses_per_code: u16, redeem_requires_sale: bool, validity_days: u32 },
    Import { shard: u32, pool: u32, batch: u32, valid_from: u32, valid_until: u32, entries: Vec<ImportEntry> },
    Allocate { shard: u32, order_ref: &'a str, pool: u32, sale_until: u32, ids: Vec<u32> },
    Hold { shard: u32, hold_ref: &'a str, pool: u32, deadline_ms: u64, ids: Vec<u32> },
    Confirm { shard: u32, hold: u32, order_ref: &'a str, sale_until: u32 },
    Release { shard: u32, hold: u32 },
    Expire { shard: u32, hold: u32 },
    Move { shard: u32, to_pool: u32, ids: Vec<u32> },
    Redeem { shard: u32, code: u32, request_id: &'a str, terminal: &'a str, at_ms: u64 },
    Rollback { shard: u32, redemption: u32, at_ms: u64, reason: &'a str },
    Freeze { shard: u32, ids: Vec<u32> },
    Unfreeze { shard: u32, ids: Vec<u32> },
    Void { shard: u32, ids: Vec<u32> },
    /// Available codes leave sale (exported); see docs/engine.md.
    Withdraw { shard: u32, ids: Vec<u32> },
    /// Withdrawn, never-redeemed codes return to their pool.
    Restore { shard: u32, ids: Vec<u32> },
    /// A wrong PIN for `code`; `locked_until_ms` is 0, or the end of the lockout it started.
    PinFail { shard: u32, code: u32, locked_until_ms: u64 },
    /// A right PIN: the code's failure count and lockout history are cleared.
    PinReset { shard: u32, code: u32 },
    /// An administrator lifted the lockouts of `ids`.
    PinUnlock { shard: u32, ids: Vec<u32> },
    /// A batch under one key opens: its terminal, time and item fingerprints, and the items that
    /// failed before reaching a code (bad text, unknown code). Written before the batch's shard
    /// records, in the engine-level batch buffer that is drained before any shard's.
    BatchOpen { batch_ref: &'a str, terminal: &'a str, at_ms: u64, fps: Vec<u64>, errors: Vec<(u32, ItemError)> },
    /// Items of a batch that reached codes of one shard, in input order: each a redemption or
    /// the error it got (with its effect on the code's PIN failure count).
    BatchRedeem { shard: u32, batch_ref: &'a str, terminal: &'a str, at_ms: u64, items: Vec<BatchItem> },
}

impl Rec<'_> {
    /// The shard the record belongs to (None for catalog records).
    pub fn shard(&self) -> Option<u32> {
        match self {
            Rec::CreateSku { .. } | Rec::BatchOpen { .. } => None,
            Rec::Import { shard, .. }
            | Rec::Allocate { shard, .. }
            | Rec::Hold { shard, .. }
            | Rec::Confirm { shard, .. }
            | Rec::Release { shard, .. }
            | Rec::Expire { shard, .. }
            | Rec::Move { shard, .. }
            | Rec::Redeem { shard, .. }
            | Rec::Rollback { shard, .. }
            | Rec::Freeze { shard, .. }
            | Rec::Unfreeze { shard, .. }
            | Rec::Void { shard, .. }
            | Rec::Withdraw { shard, .. }
            | Rec::Restore { shard, .. }
            | Rec::PinFail { shard, .. }
            | Rec::PinReset { shard, .. }
            | Rec::PinUnlock { shard, .. }
            | Rec::BatchRedeem { shard, .. } => Some(*shard),
        }
    }

    /// Appends `[len u32][payload]` to an in-memory shard buffer.
    pub fn append_to(&self, buf: &mut Vec<u8>) {
        let at = buf.len();
        buf.put_u32(0);
        self.encode(buf);
        let len = (buf.len() - at - 4) as u32;
        buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    pub fn encode(&self, b: &mut Vec<u8>) {
        match self {
            Rec::CreateSku { ix, name, uses_per_code, redeem_requires_sale, validity_days } => {
                b.put_u8(tag::CREATE_SKU);
                b.put_u32(*ix);
                b.put_str(name);
                b.put_u16(*uses_per_code);
                b.put_u8(u8::from(*redeem_requires_sale));
                b.put_u32(*validity_days);
            }
            Rec::Import { shard, pool, batch, valid_from, valid_until, entries } => {
                b.put_u8(tag::IMPORT);
                b.put_u32(*shard);
                b.put_u32(*pool);
                b.put_u32(*batch);
                b.put_u32(*valid_from);
                b.put_u32(*valid_until);
                b.put_u32(entries.len() as u32);
                b.reserve(entries.len() * 28);
                for (id, key, pin) in entries {
                    b.put_u32(*id);
                    b.put_u128(*key);
                    b.put_u64(*pin);
                }
            }
            Rec::Allocate { shard, order_ref, pool, sale_until, ids } => {
                b.put_u8(tag::ALLOCATE);
                b.put_u32(*shard);
                b.put_str(order_ref);
                b.put_u32(*pool);
                b.put_u32(*sale_until);
                b.put_ids(ids);
            }
            Rec::Hold { shard, hold_ref, pool, deadline_ms, ids } => {
                b.put_u8(tag::HOLD);
                b.put_u32(*shard);
                b.put_str(hold_ref);
                b.put_u32(*pool);
                b.put_u64(*deadline_ms);
                b.put_ids(ids);
            }
            Rec::Confirm { shard, hold, order_ref, sale_until } => {
                b.put_u8(tag::CONFIRM);
                b.put_u32(*shard);
                b.put_u32(*hold);
                b.put_str(order_ref);
                b.put_u32(*sale_until);
            }
            Rec::Release { shard, hold } | Rec::Expire { shard, hold } => {
                b.put_u8(if matches!(self, Rec::Release { .. }) { tag::RELEASE } else { tag::EXPIRE });
                b.put_u32(*shard);
                b.put_u32(*hold);
            }
            Rec::Move { shard, to_pool, ids } => {
                b.put_u8(tag::MOVE);
                b.put_u32(*shard);
                b.put_u32(*to_pool);
                b.put_ids(ids);
            }
            Rec::Redeem { shard, code, request_id, terminal, at_ms } => {
                b.put_u8(tag::REDEEM);
                b.put_u32(*shard);
                b.put_u32(*code);
                b.put_str(request_id);
                b.put_str(terminal);
                b.put_u64(*at_ms);
            }
            Rec::Rollback { shard, redemption, at_ms, reason } => {
                b.put_u8(tag::ROLLBACK);
                b.put_u32(*shard);
                b.put_u32(*redemption);
                b.put_u64(*at_ms);
                b.put_str(reason);
            }
            Rec::Freeze { shard, ids }
            | Rec::Unfreeze { shard, ids }
            | Rec::Void { shard, ids }
            | Rec::Withdraw { shard, ids }
            | Rec::Restore { shard, ids }
            | Rec::PinUnlock { shard, ids } => {
                b.put_u8(match self {
                    Rec::Freeze { .. } => tag::FREEZE,
                    Rec::Unfreeze { .. } => tag::UNFREEZE,
                    Rec::Withdraw { .. } => tag::WITHDRAW,
                    Rec::Restore { .. } => tag::RESTORE,
                    Rec::PinUnlock { .. } => tag::PIN_UNLOCK,
                    _ => tag::VOID,
                });
                b.put_u32(*shard);
                b.put_ids(ids);
            }
            Rec::PinFail { shard, code, locked_until_ms } => {
                b.put_u8(tag::PIN_FAIL);
                b.put_u32(*shard);
                b.put_u32(*code);
                b.put_u64(*locked_until_ms);
            }
            Rec::PinReset { shard, code } => {
                b.put_u8(tag::PIN_RESET);
                b.put_u32(*shard);
                b.put_u32(*code);
            }
            Rec::BatchOpen { batch_ref, terminal, at_ms, fps, errors } => {
                b.put_u8(tag::BATCH_OPEN);
                b.put_str(batch_ref);
                b.put_str(terminal);
                b.put_u64(*at_ms);
                b.put_u32(fps.len() as u32);
                b.reserve(fps.len() * 8);
                for fp in fps {
                    b.put_u64(*fp);
                }
                b.put_u32(errors.len() as u32);
                for (i, e) in errors {
                    b.put_u32(*i);
                    e.encode(b);
                }
            }
            Rec::BatchRedeem { shard, batch_ref, terminal, at_ms, items } => {
                b.put_u8(tag::BATCH_REDEEM);
                b.put_u32(*shard);
                b.put_str(batch_ref);
                b.put_str(terminal);
                b.put_u64(*at_ms);
                b.put_u32(items.len() as u32);
                b.reserve(items.len() * 9);
                for (i, code, outcome) in items {
                    b.put_u32(*i);
                    b.put_u32(*code);
                    match outcome {
                        None => b.put_u8(0),
                        Some(e) => e.encode(b),
                    }
                }
            }
        }
    }

    /// Decodes one payload. Errors name the field that was short or malformed.
    pub fn decode(payload: &[u8]) -> Result<Rec<'_>, Short> {
        let mut r = Reader::new(payload);
        let t = r.u8("record type")?;
        let rec = match t {
            tag::CREATE_SKU => Rec::CreateSku {
                ix: r.u32("sku index")?,
                name: r.str("sku name")?,
                uses_per_code: r.u16("uses per code")?,
                redeem_requires_sale: r.u8("requires sale")? != 0,
                validity_days: r.u32("validity days")?,
            },
            tag::IMPORT => {
                let shard = r.u32("shard")?;
                let pool = r.u32("pool")?;
                let batch = r.u32("batch")?;
                let valid_from = r.u32("valid_from")?;
                let valid_until = r.u32("valid_until")?;
                let n = r.u32("entry count")? as usize;
                if r.remaining() < n.saturating_mul(28) {
                    return Err(Short { offset: r.pos, what: "import entries" });
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push((r.u32("id")?, r.u128("key")?, r.u64("pin")?));
                }
                Rec::Import { shard, pool, batch, valid_from, valid_until, entries }
            }
            tag::ALLOCATE => Rec::Allocate {
                shard: r.u32("shard")?,
                order_ref: r.str("order ref")?,
                pool: r.u32("pool")?,
                sale_until: r.u32("sale until")?,
                ids: r.ids("ids")?,
            },
            tag::HOLD => Rec::Hold {
                shard: r.u32("shard")?,
                hold_ref: r.str("hold ref")?,
                pool: r.u32("pool")?,
                deadline_ms: r.u64("deadline")?,
                ids: r.ids("ids")?,
            },
            tag::CONFIRM => Rec::Confirm {
                shard: r.u32("shard")?,
                hold: r.u32("hold")?,
                order_ref: r.str("order ref")?,
                sale_until: r.u32("sale until")?,
            },
            tag::RELEASE => Rec::Release { shard: r.u32("shard")?, hold: r.u32("hold")? },
            tag::EXPIRE => Rec::Expire { shard: r.u32("shard")?, hold: r.u32("hold")? },
            tag::MOVE => Rec::Move { shard: r.u32("shard")?, to_pool: r.u32("pool")?, ids: r.ids("ids")? },
            tag::REDEEM => Rec::Redeem {
                shard: r.u32("shard")?,
                code: r.u32("code")?,
                request_id: r.str("request id")?,
                terminal: r.str("terminal")?,
                at_ms: r.u64("time")?,
            },
            tag::ROLLBACK => Rec::Rollback {
                shard: r.u32("shard")?,
                redemption: r.u32("redemption")?,
                at_ms: r.u64("time")?,
                reason: r.str("reason")?,
            },
            tag::FREEZE => Rec::Freeze { shard: r.u32("shard")?, ids: r.ids("ids")? },
            tag::UNFREEZE => Rec::Unfreeze { shard: r.u32("shard")?, ids: r.ids("ids")? },
            tag::VOID => Rec::Void { shard: r.u32("shard")?, ids: r.ids("ids")? },
            tag::WITHDRAW => Rec::Withdraw { shard: r.u32("shard")?, ids: r.ids("ids")? },
            tag::RESTORE => Rec::Restore { shard: r.u32("shard")?, ids: r.ids("ids")? },
            tag::PIN_UNLOCK => Rec::PinUnlock { shard: r.u32("shard")?, ids: r.ids("ids")? },
            tag::PIN_FAIL => Rec::PinFail { shard: r.u32("shard")?, code: r.u32("code")?, locked_until_ms: r.u64("lock end")? },
            tag::PIN_RESET => Rec::PinReset { shard: r.u32("shard")?, code: r.u32("code")? },
            tag::BATCH_OPEN => decode_batch_open(&mut r)?,
            tag::BATCH_REDEEM => decode_batch_redeem(&mut r)?,
            _ => return Err(Short { offset: 0, what: "unknown record type" }),
        };
        if r.remaining() != 0 {
            return Err(Short { offset: r.pos, what: "trailing bytes" });
        }
        Ok(rec)
    }
}

fn decode_batch_open<'a>(r: &mut Reader<'a>) -> Result<Rec<'a>, Short> {
    let batch_ref = r.str("batch ref")?;
    let terminal = r.str("terminal")?;
    let at_ms = r.u64("time")?;
    let n = r.u32("item count")? as usize;
    if r.remaining() < n.saturating_mul(8) {
        return Err(Short { offset: r.pos, what: "fingerprints" });
    }
    let fps = (0..n).map(|_| r.u64("fingerprint")).collect::<Result<Vec<_>, _>>()?;
    let ne = r.u32("error count")? as usize;
    if r.remaining() < ne.saturating_mul(5) {
        return Err(Short { offset: r.pos, what: "item errors" });
    }
    let mut errors = Vec::with_capacity(ne);
    for _ in 0..ne {
        errors.push((r.u32("item")?, ItemError::decode(r)?));
    }
    Ok(Rec::BatchOpen { batch_ref, terminal, at_ms, fps, errors })
}

fn decode_batch_redeem<'a>(r: &mut Reader<'a>) -> Result<Rec<'a>, Short> {
    let shard = r.u32("shard")?;
    let batch_ref = r.str("batch ref")?;
    let terminal = r.str("terminal")?;
    let at_ms = r.u64("time")?;
    let n = r.u32("item count")? as usize;
    if r.remaining() < n.saturating_mul(9) {
        return Err(Short { offset: r.pos, what: "batch items" });
    }
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let i = r.u32("item")?;
        let code = r.u32("code")?;
        let outcome = if r.peek_u8() == Some(0) {
            r.u8("outcome")?;
            None
        } else {
            Some(ItemError::decode(r)?)
        };
        items.push((i, code, outcome));
    }
    Ok(Rec::BatchRedeem { shard, batch_ref, terminal, at_ms, items })
}

/// The checksum of a frame: CRC-32 over its length, sequence number and payload, so a damaged
/// length field is caught like damaged data.
fn frame_crc(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one framed record (`[len][seq][crc][payload]`) to `out`.
pub fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let crc = frame_crc(payload.len() as u32, seq, payload);
    out.put_u32(payload.len() as u32);
    out.put_u64(seq);
    out.put_u32(crc);
    out.extend_from_slice(payload);
}

/// One framed record read back.
pub struct Frame<'a> {
    pub seq: u64,
    pub payload: &'a [u8],
    pub offset: usize,
}

/// Splits framed bytes into records, checking every length and checksum first. Errors:
/// JOURNAL_CORRUPT naming the byte offset of the first bad frame.
pub fn read_frames(data: &[u8]) -> Result<Vec<Frame<'_>>, CoreError> {
    let mut frames = Vec::new();
    let mut r = Reader::new(data);
    while r.remaining() > 0 {
        let offset = r.pos;
        let corrupt = |reason: &str| CoreError::JournalCorrupt { reason: reason.to_string(), offset: offset as u64 };
        if r.remaining() < FRAME_HEADER {
            return Err(corrupt("torn frame header"));
        }
        let len = r.u32("len").map_err(|_| corrupt("torn frame header"))? as usize;
        let seq = r.u64("seq").map_err(|_| corrupt("torn frame header"))?;
        let crc = r.u32("crc").map_err(|_| corrupt("torn frame header"))?;
        if len > PAYLOAD_MAX {
            return Err(corrupt("frame length out of range"));
        }
        let payload = r.bytes(len, "payload").map_err(|_| corrupt("torn frame payload"))?;
        if frame_crc(len as u32, seq, payload) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        frames.push(Frame { seq, payload, offset });
    }
    Ok(frames)
}

/// What a scan of framed journal bytes found (see `scan_frames`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of whole, valid frames from the start.
    pub valid_len: usize,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Why scanning stopped before the end, if it did.
    pub error: Option<String>,
    /// True when the bad part reaches the end of the data (a torn tail: a write cut short by a
    /// crash, safe to cut); false when valid-looking data follows it (corruption: refuse).
    pub torn_tail: bool,
}

/// Reads the frame at `data[pos..]` if it is whole and its checksum holds: (seq, end).
fn valid_frame_at(data: &[u8], pos: usize) -> Option<(u64, usize)> {
    let rest = data.get(pos..)?;
    if rest.len() < FRAME_HEADER {
        return None;
    }
    let mut r = Reader::new(rest);
    let (len, seq, crc) = (r.u32("len").ok()?, r.u64("seq").ok()?, r.u32("crc").ok()?);
    let end = FRAME_HEADER.checked_add(len as usize)?;
    if len as usize > PAYLOAD_MAX || end > rest.len() {
        return None;
    }
    (frame_crc(len, seq, &rest[FRAME_HEADER..end]) == crc).then_some((seq, pos + end))
}

/// Scans framed records, stopping at the first bad frame (short header, length out of range,
/// payload past the end, checksum mismatch, or a sequence number that is not the previous + 1).
/// The bad part is a torn tail only if no valid later record can be found anywhere after it
/// (searched byte by byte); otherwise it is corruption with acknowledged records behind it.
pub fn scan_frames(data: &[u8]) -> Scan {
    let mut s = Scan { valid_len: 0, records: 0, first_seq: 0, last_seq: 0, error: None, torn_tail: false };
    let mut pos = 0usize;
    while pos < data.len() {
        let why = match valid_frame_at(data, pos) {
            Some((seq, end)) if s.records == 0 || seq == s.last_seq + 1 => {
                if s.records == 0 {
                    s.first_seq = seq;
                }
                s.last_seq = seq;
                s.records += 1;
                pos = end;
                s.valid_len = pos;
                continue;
            }
            Some(_) => "sequence number out of order",
            None if data.len() - pos < FRAME_HEADER => "torn frame header",
            None => "bad frame (length, payload or checksum)",
        };
        s.error = Some(why.to_string());
        let later = (pos + 1..data.len()).any(|p| valid_frame_at(data, p).is_some_and(|(seq, _)| s.records == 0 || seq > s.last_seq));
        s.torn_tail = !later && why != "sequence number out of order";
        break;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let recs = vec![
            Rec::CreateSku { ix: 0, name: "VIP", uses_per_code: 3, redeem_requires_sale: true, validity_days: 0 },
            Rec::Import { shard: 0, pool: 1, batch: 7, valid_from: 0, valid_until: 99, entries: vec![(1, 2, 3)] },
            Rec::Allocate { shard: 0, order_ref: "o", pool: 0, sale_until: 0, ids: vec![1, 2] },
            Rec::Hold { shard: 0, hold_ref: "h", pool: 0, deadline_ms: 5, ids: vec![3] },
            Rec::Confirm { shard: 0, hold: 0, order_ref: "o2", sale_until: 4 },
            Rec::Release { shard: 0, hold: 1 },
            Rec::Expire { shard: 0, hold: 2 },
            Rec::Move { shard: 0, to_pool: 2, ids: vec![9] },
            Rec::Redeem { shard: 0, code: 1, request_id: "r", terminal: "t", at_ms: 10 },
            Rec::Rollback { shard: 0, redemption: 0, at_ms: 11, reason: "why" },
            Rec::Freeze { shard: 0, ids: vec![1] },
            Rec::Unfreeze { shard: 0, ids: vec![1] },
            Rec::Void { shard: 0, ids: vec![1] },
            Rec::Withdraw { shard: 0, ids: vec![1, 2] },
            Rec::Restore { shard: 0, ids: vec![2] },
            Rec::PinFail { shard: 0, code: 1, locked_until_ms: 99 },
            Rec::PinReset { shard: 0, code: 1 },
            Rec::PinUnlock { shard: 0, ids: vec![1] },
            Rec::BatchOpen {
                batch_ref: "b",
                terminal: "t",
                at_ms: 3,
                fps: vec![1, 2, 3],
                errors: vec![(2, ItemError::InvalidCode { reason: 0 })],
            },
            Rec::BatchRedeem {
                shard: 0,
                batch_ref: "b",
                terminal: "t",
                at_ms: 3,
                items: vec![(0, 1, None), (1, 2, Some(ItemError::AlreadyRedeemed { redemption_id: 4 }))],
            },
        ];
        let mut framed = Vec::new();
        for (i, rec) in recs.iter().enumerate() {
            let mut p = Vec::new();
            rec.encode(&mut p);
            assert_eq!(&Rec::decode(&p).unwrap(), rec);
            frame(&mut framed, i as u64 + 1, &p);
        }
        let frames = read_frames(&framed).unwrap();
        assert_eq!(frames.len(), recs.len());
        // A flipped byte anywhere is caught by the checksum or the framing.
        for at in [0usize, 5, 13, 20, framed.len() - 1] {
            let mut bad = framed.clone();
            bad[at] ^= 0x40;
            assert!(read_frames(&bad).is_err(), "flip at {at} undetected");
        }
        assert!(read_frames(&framed[..framed.len() - 1]).is_err());

        let clean = scan_frames(&framed);
        assert_eq!((clean.records, clean.first_seq, clean.last_seq, clean.error.is_none()), (20, 1, 20, true));
        let torn = scan_frames(&framed[..framed.len() - 3]);
        assert_eq!((torn.records, torn.torn_tail), (19, true));
        let mut mid = framed.clone();
        mid[FRAME_HEADER + 2] ^= 1; // inside the first record's payload, with records after it
        let m = scan_frames(&mid);
        assert_eq!((m.records, m.valid_len, m.torn_tail), (0, 0, false));
        // A damaged length in the second-to-last frame, pointing past the end: the last frame
        // is still valid behind it, so this is corruption, not a torn tail.
        let mut len_hit = framed.clone();
        let prev_start = frames[frames.len() - 2].offset;
        len_hit[prev_start + 1] ^= 0x10;
        let l = scan_frames(&len_hit);
        assert_eq!((l.records, l.torn_tail), (18, false), "{l:?}");
    }
}
