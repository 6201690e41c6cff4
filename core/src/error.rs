//! Typed errors of the core, each with its stable code.
//!
//! A `CoreError` is a statement about a request that the core refused; the state is unchanged
//! whenever one is returned. Codes are UPPER_SNAKE strings that are never renamed or reused; the
//! Python binding converts every variant in one exhaustive `match` (`py/error.rs`), and
//! `all_codes()` feeds the drift test that keeps this list and `cardsvc.errors.ErrorCode` equal.
//! Messages and details never contain a code's text or PIN.

use std::fmt;

/// A detail value attached to an error (rendered into the error envelope's `details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    Int(i64),
    UInt(u64),
    Str(String),
    Bool(bool),
    Null,
}

/// Every way a core operation can be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A parameter is malformed (`what` names it and the rule it broke).
    InvalidArgument { field: &'static str, reason: &'static str },
    /// A code text is empty, too long or not printable ASCII after normalisation.
    InvalidCode { index: Option<usize>, reason: &'static str },
    /// A PIN is empty, too long or not printable ASCII.
    InvalidPin { index: Option<usize>, reason: &'static str },
    QuantityMustBePositive { qty: i64 },
    LimitExceeded { field: &'static str, max: u64, got: u64 },
    SkuNotFound { sku: String },
    /// No code has this text (or, for id-based calls, this id). The text is never echoed.
    CodeNotFound { code_id: Option<u64> },
    HoldNotFound { hold_ref: String },
    OrderNotFound { order_ref: String },
    RedemptionNotFound { redemption_id: u64 },
    SkuExists { sku: String },
    PinMismatch,
    AlreadyRedeemed { redemption_id: u64, redeemed_at_ms: u64, terminal: String },
    Expired { valid_until: u32 },
    NotYetValid { valid_from: u32 },
    Frozen,
    Void,
    NotSold,
    OutOfStock { available: u64, requested: u64 },
    HoldExpired { hold_ref: String, expires_at_ms: u64 },
    HoldReleased { hold_ref: String },
    HoldAlreadyConfirmed { hold_ref: String },
    /// The idempotency key was used before with different parameters (`field` names the first
    /// parameter that differs; for a batch key, `index` names the first item that differs).
    IdempotencyKeyReused { field: &'static str, index: Option<u64> },
    SnapshotCorrupt { reason: String },
    JournalCorrupt { reason: String, offset: u64 },
    /// A replayed request id names a redemption that was rolled back since: the use it took was
    /// given back, so the caller must not treat the request as redeemed.
    RedemptionRolledBack { redemption_id: u64, rolled_back_at_ms: u64 },
    /// Too many wrong PINs for this code: every PIN check of it is refused until
    /// `locked_until_ms`, without saying whether the PIN was right. `locked` is true on the call
    /// whose wrong PIN started the lockout (so the caller can audit it).
    CodeLocked { retry_after_s: u64, locked_until_ms: u64, locked: bool },
}

/// The stable codes, in declaration order (one per variant).
pub const ALL_CODES: &[&str] = &[
    "INVALID_ARGUMENT",
    "INVALID_CODE",
    "INVALID_PIN",
    "QUANTITY_MUST_BE_POSITIVE",
    "LIMIT_EXCEEDED",
    "SKU_NOT_FOUND",
    "CODE_NOT_FOUND",
    "HOLD_NOT_FOUND",
    "ORDER_NOT_FOUND",
    "REDEMPTION_NOT_FOUND",
    "SKU_EXISTS",
    "PIN_MISMATCH",
    "ALREADY_REDEEMED",
    "EXPIRED",
    "NOT_YET_VALID",
    "FROZEN",
    "VOID",
    "NOT_SOLD",
    "OUT_OF_STOCK",
    "HOLD_EXPIRED",
    "HOLD_RELEASED",
    "HOLD_ALREADY_CONFIRMED",
    "IDEMPOTENCY_KEY_REUSED",
    "SNAPSHOT_CORRUPT",
    "JOURNAL_CORRUPT",
    "REDEMPTION_ROLLED_BACK",
    "CODE_LOCKED",
];

impl CoreError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidArgument { .. } => "INVALID_ARGUMENT",
            CoreError::InvalidCode { .. } => "INVALID_CODE",
            CoreError::InvalidPin { .. } => "INVALID_PIN",
            CoreError::QuantityMustBePositive { .. } => "QUANTITY_MUST_BE_POSITIVE",
            CoreError::LimitExceeded { .. } => "LIMIT_EXCEEDED",
            CoreError::SkuNotFound { .. } => "SKU_NOT_FOUND",
            CoreError::CodeNotFound { .. } => "CODE_NOT_FOUND",
            CoreError::HoldNotFound { .. } => "HOLD_NOT_FOUND",
            CoreError::OrderNotFound { .. } => "ORDER_NOT_FOUND",
            CoreError::RedemptionNotFound { .. } => "REDEMPTION_NOT_FOUND",
            CoreError::SkuExists { .. } => "SKU_EXISTS",
            CoreError::PinMismatch => "PIN_MISMATCH",
            CoreError::AlreadyRedeemed { .. } => "ALREADY_REDEEMED",
            CoreError::Expired { .. } => "EXPIRED",
            CoreError::NotYetValid { .. } => "NOT_YET_VALID",
            CoreError::Frozen => "FROZEN",
            CoreError::Void => "VOID",
            CoreError::NotSold => "NOT_SOLD",
            CoreError::OutOfStock { .. } => "OUT_OF_STOCK",
            CoreError::HoldExpired { .. } => "HOLD_EXPIRED",
            CoreError::HoldReleased { .. } => "HOLD_RELEASED",
            CoreError::HoldAlreadyConfirmed { .. } => "HOLD_ALREADY_CONFIRMED",
            CoreError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            CoreError::SnapshotCorrupt { .. } => "SNAPSHOT_CORRUPT",
            CoreError::JournalCorrupt { .. } => "JOURNAL_CORRUPT",
            CoreError::RedemptionRolledBack { .. } => "REDEMPTION_ROLLED_BACK",
            CoreError::CodeLocked { .. } => "CODE_LOCKED",
        }
    }

    /// A human sentence; never contains a code's text or PIN.
    pub fn message(&self) -> String {
        match self {
            CoreError::InvalidArgument { field, reason } => format!("invalid {field}: {reason}"),
            CoreError::InvalidCode { index: Some(i), reason } => {
                format!("code at position {i} is invalid: {reason}")
            }
            CoreError::InvalidCode { index: None, reason } => format!("code is invalid: {reason}"),
            CoreError::InvalidPin { index: Some(i), reason } => {
                format!("PIN at position {i} is invalid: {reason}")
            }
            CoreError::InvalidPin { index: None, reason } => format!("PIN is invalid: {reason}"),
            CoreError::QuantityMustBePositive { qty } => {
                format!("quantity must be positive, got {qty}")
            }
            CoreError::LimitExceeded { field, max, got } => {
                format!("{field} is {got}, above the limit of {max}")
            }
            CoreError::SkuNotFound { sku } => format!("SKU {sku:?} does not exist"),
            CoreError::CodeNotFound { .. } => "no such code".to_string(),
            CoreError::HoldNotFound { hold_ref } => format!("hold {hold_ref:?} does not exist"),
            CoreError::OrderNotFound { order_ref } => format!("order {order_ref:?} does not exist"),
            CoreError::RedemptionNotFound { redemption_id } => {
                format!("redemption {redemption_id} does not exist")
            }
            CoreError::SkuExists { sku } => format!("SKU {sku:?} already exists"),
            CoreError::PinMismatch => "the PIN does not match".to_string(),
            CoreError::AlreadyRedeemed { .. } => "the code has no uses left".to_string(),
            CoreError::Expired { .. } => "the code has expired".to_string(),
            CoreError::NotYetValid { .. } => "the code is not valid yet".to_string(),
            CoreError::Frozen => "the code is frozen".to_string(),
            CoreError::Void => "the code is void".to_string(),
            CoreError::NotSold => "the code has not been sold".to_string(),
            CoreError::OutOfStock { available, requested } => {
                format!("requested {requested} codes, {available} available")
            }
            CoreError::HoldExpired { hold_ref, .. } => format!("hold {hold_ref:?} has expired"),
            CoreError::HoldReleased { hold_ref } => format!("hold {hold_ref:?} was released"),
            CoreError::HoldAlreadyConfirmed { hold_ref } => {
                format!("hold {hold_ref:?} is already confirmed")
            }
            CoreError::IdempotencyKeyReused { field, index: None } => {
                format!("idempotency key reused with a different {field}")
            }
            CoreError::IdempotencyKeyReused { field, index: Some(i) } => {
                format!("idempotency key reused with a different {field} at position {i}")
            }
            CoreError::SnapshotCorrupt { reason } => format!("snapshot is corrupt: {reason}"),
            CoreError::JournalCorrupt { reason, offset } => {
                format!("journal is corrupt at byte {offset}: {reason}")
            }
            CoreError::RedemptionRolledBack { redemption_id, .. } => {
                format!("redemption {redemption_id} was rolled back; the use was given back")
            }
            CoreError::CodeLocked { retry_after_s, .. } => {
                format!("too many wrong PINs for this code; retry in {retry_after_s} s")
            }
        }
    }

    /// Machine-readable details (masked values only).
    pub fn details(&self) -> Vec<(&'static str, Detail)> {
        use Detail::*;
        match self {
            CoreError::InvalidArgument { field, reason } => {
                vec![("field", Str((*field).into())), ("reason", Str((*reason).into()))]
            }
            CoreError::InvalidCode { index, reason } | CoreError::InvalidPin { index, reason } => {
                vec![
                    ("index", index.map_or(Null, |i| UInt(i as u64))),
                    ("reason", Str((*reason).into())),
                ]
            }
            CoreError::QuantityMustBePositive { qty } => vec![("quantity", Int(*qty))],
            CoreError::LimitExceeded { field, max, got } => {
                vec![("field", Str((*field).into())), ("max", UInt(*max)), ("got", UInt(*got))]
            }
            CoreError::SkuNotFound { sku } | CoreError::SkuExists { sku } => {
                vec![("sku", Str(sku.clone()))]
            }
            CoreError::CodeNotFound { code_id } => {
                code_id.map_or_else(Vec::new, |id| vec![("code_id", UInt(id))])
            }
            CoreError::HoldNotFound { hold_ref }
            | CoreError::HoldReleased { hold_ref }
            | CoreError::HoldAlreadyConfirmed { hold_ref } => {
                vec![("hold_ref", Str(hold_ref.clone()))]
            }
            CoreError::OrderNotFound { order_ref } => vec![("order_ref", Str(order_ref.clone()))],
            CoreError::RedemptionNotFound { redemption_id } => {
                vec![("redemption_id", UInt(*redemption_id))]
            }
            CoreError::PinMismatch
            | CoreError::Frozen
            | CoreError::Void
            | CoreError::NotSold => Vec::new(),
            CoreError::AlreadyRedeemed { redemption_id, redeemed_at_ms, terminal } => vec![
                ("redemption_id", UInt(*redemption_id)),
                ("redeemed_at_ms", UInt(*redeemed_at_ms)),
                ("terminal", Str(terminal.clone())),
            ],
            CoreError::Expired { valid_until } => vec![("valid_until", UInt(u64::from(*valid_until)))],
            CoreError::NotYetValid { valid_from } => vec![("valid_from", UInt(u64::from(*valid_from)))],
            CoreError::OutOfStock { available, requested } => {
                vec![("available", UInt(*available)), ("requested", UInt(*requested))]
            }
            CoreError::HoldExpired { hold_ref, expires_at_ms } => vec![
                ("hold_ref", Str(hold_ref.clone())),
                ("expires_at_ms", UInt(*expires_at_ms)),
            ],
            CoreError::IdempotencyKeyReused { field, index } => {
                let mut d = vec![("field", Str((*field).into()))];
                if let Some(i) = index {
                    d.push(("index", UInt(*i)));
                }
                d
            }
            CoreError::SnapshotCorrupt { reason } => vec![("reason", Str(reason.clone()))],
            CoreError::JournalCorrupt { reason, offset } => {
                vec![("reason", Str(reason.clone())), ("offset", UInt(*offset))]
            }
            CoreError::RedemptionRolledBack { redemption_id, rolled_back_at_ms } => vec![
                ("redemption_id", UInt(*redemption_id)),
                ("rolled_back_at_ms", UInt(*rolled_back_at_ms)),
            ],
            CoreError::CodeLocked { retry_after_s, locked_until_ms, locked } => vec![
                ("retry_after_s", UInt(*retry_after_s)),
                ("locked_until_ms", UInt(*locked_until_ms)),
                ("locked", Bool(*locked)),
            ],
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for CoreError {}

/// Shorthand for core results.
pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for code in ALL_CODES {
            assert!(seen.insert(*code), "{code} listed twice");
        }
        let samples = [
            CoreError::PinMismatch,
            CoreError::Frozen,
            CoreError::Void,
            CoreError::NotSold,
            CoreError::QuantityMustBePositive { qty: 0 },
        ];
        for e in samples {
            assert!(ALL_CODES.contains(&e.code()));
        }
    }
}
