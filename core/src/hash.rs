//! Code normalisation and the keyed hashes under which codes and PINs are stored.
//!
//! The engine never stores a code's text: it stores a 128-bit lookup key, SipHash-2-4 (128-bit
//! output) of the normalised text keyed with the first half of the engine's 32-byte secret. A PIN
//! is stored as a 64-bit SipHash-2-4 of (lookup key, PIN) keyed with the second half, so a PIN
//! hash is useless for any other code. Both halves are secret; without them neither hash can be
//! computed or reversed by guessing.

use crate::error::{CoreError, CoreResult};
use siphasher::sip::SipHasher24 as Sip64;
use siphasher::sip128::{Hasher128, SipHasher24 as Sip128};
use std::hash::Hasher;

/// Longest code after normalisation. Suppliers' longest codes are 64 characters; 128 leaves room
/// and bounds the hashing cost per lookup.
pub const CODE_LEN_MAX: usize = 128;
/// Longest raw code text accepted before normalisation (separators included). Longer inputs are
/// refused without being scanned, so a 10 MB "code" costs nothing.
pub const CODE_RAW_LEN_MAX: usize = 4 * CODE_LEN_MAX;
/// Longest PIN. PINs are short secrets; this bounds the hashing cost.
pub const PIN_LEN_MAX: usize = 32;
/// The engine secret's length in bytes.
pub const SECRET_LEN: usize = 32;

/// The two keyed hashes of one engine.
#[derive(Clone)]
pub struct Hashing {
    lookup: Sip128,
    pin: Sip64,
}

impl Hashing {
    /// Builds the hashers from the engine secret. Errors: INVALID_ARGUMENT when it is not 32 bytes.
    pub fn new(secret: &[u8]) -> CoreResult<Hashing> {
        if secret.len() != SECRET_LEN {
            return Err(CoreError::InvalidArgument {
                field: "lookup_key",
                reason: "must be exactly 32 bytes",
            });
        }
        let mut lookup = [0u8; 16];
        let mut pin = [0u8; 16];
        lookup.copy_from_slice(&secret[..16]);
        pin.copy_from_slice(&secret[16..]);
        Ok(Hashing { lookup: Sip128::new_with_key(&lookup), pin: Sip64::new_with_key(&pin) })
    }

    /// The lookup key of a normalised code.
    #[inline]
    pub fn lookup_key(&self, normalised: &[u8]) -> u128 {
        let mut h = self.lookup;
        h.write(normalised);
        u128::from(h.finish128())
    }

    /// The stored PIN hash for `pin` on the code whose lookup key is `key`; never 0 (0 = no PIN).
    #[inline]
    pub fn pin_hash(&self, key: u128, pin: &[u8]) -> u64 {
        let mut h = self.pin;
        h.write(&key.to_le_bytes());
        h.write(pin);
        h.finish().max(1)
    }

    /// A fingerprint of the secret, stored in snapshots so that one taken under another secret is
    /// refused instead of silently finding nothing.
    pub fn fingerprint(&self) -> u64 {
        self.lookup_key(b"\x00cardsvc snapshot fingerprint") as u64
    }
}

/// Normalises a code text into `out`: ASCII whitespace and '-' removed, ASCII letters uppercased.
/// Returns the normalised length. Errors: INVALID_CODE (empty, too long, not printable ASCII).
pub fn normalise_code(text: &str, out: &mut [u8; CODE_LEN_MAX], index: Option<usize>) -> CoreResult<usize> {
    let bytes = text.as_bytes();
    if bytes.len() > CODE_RAW_LEN_MAX {
        return Err(CoreError::InvalidCode { index, reason: "too long" });
    }
    let mut n = 0usize;
    for &b in bytes {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c | b'-' => continue,
            0x21..=0x7e => {
                if n == CODE_LEN_MAX {
                    return Err(CoreError::InvalidCode { index, reason: "too long" });
                }
                out[n] = b.to_ascii_uppercase();
                n += 1;
            }
            _ => return Err(CoreError::InvalidCode { index, reason: "not printable ASCII" }),
        }
    }
    if n == 0 {
        return Err(CoreError::InvalidCode { index, reason: "empty" });
    }
    Ok(n)
}

/// Checks a PIN's shape. Errors: INVALID_PIN.
pub fn check_pin(pin: &str, index: Option<usize>) -> CoreResult<&[u8]> {
    let bytes = pin.as_bytes();
    if bytes.is_empty() {
        return Err(CoreError::InvalidPin { index, reason: "empty" });
    }
    if bytes.len() > PIN_LEN_MAX {
        return Err(CoreError::InvalidPin { index, reason: "too long" });
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(CoreError::InvalidPin { index, reason: "not printable ASCII" });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> CoreResult<String> {
        let mut buf = [0u8; CODE_LEN_MAX];
        let n = normalise_code(s, &mut buf, None)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn normalisation_strips_separators_and_uppercases() {
        assert_eq!(norm(" abcd-efgh 12\t").unwrap(), "ABCDEFGH12");
    }

    #[test]
    fn normalisation_rejects_bad_text() {
        assert_eq!(norm("").unwrap_err().code(), "INVALID_CODE");
        assert_eq!(norm(" - ").unwrap_err().code(), "INVALID_CODE");
        assert_eq!(norm("caf\u{e9}").unwrap_err().code(), "INVALID_CODE");
        assert_eq!(norm(&"A".repeat(CODE_LEN_MAX + 1)).unwrap_err().code(), "INVALID_CODE");
        assert!(norm(&"A".repeat(CODE_LEN_MAX)).is_ok());
        assert_eq!(norm(&"A".repeat(10_000_000)).unwrap_err().code(), "INVALID_CODE");
    }

    #[test]
    fn hashes_depend_on_the_secret() {
        let a = Hashing::new(&[1u8; 32]).unwrap();
        let b = Hashing::new(&[2u8; 32]).unwrap();
        assert_ne!(a.lookup_key(b"ABC"), b.lookup_key(b"ABC"));
        assert_eq!(a.lookup_key(b"ABC"), a.lookup_key(b"ABC"));
        let k = a.lookup_key(b"ABC");
        assert_ne!(a.pin_hash(k, b"1234"), a.pin_hash(k, b"1235"));
        assert_ne!(a.pin_hash(k, b"1234"), 0);
        assert_eq!(Hashing::new(&[0u8; 31]).err().map(|e| e.code()), Some("INVALID_ARGUMENT"));
    }
}
