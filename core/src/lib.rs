//! cardsvc core: the in-memory code table, pools, holds, allocation, exactly-once redemption,
//! journal and snapshots. Plain Rust; the Python binding lives in `py/` behind the `python`
//! feature and holds no logic. See docs/engine.md for the contract.

pub mod batch;
pub mod directory;
pub mod engine;
pub mod error;
pub mod fuzzing;
pub mod hash;
pub mod journal;
pub mod shard;
pub mod snapshot;
pub mod types;
pub mod wire;

#[cfg(feature = "python")]
mod py;

pub use engine::{CodeInfo, Engine, HoldView, RedemptionView, Stock, Texts, Verification};
pub use error::{CoreError, CoreResult};

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
