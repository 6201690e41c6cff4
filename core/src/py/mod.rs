//! The Python binding (`cardsvc._core`): converts arguments and results, releases the GIL around
//! every core call through `detach::run`, and converts errors in `error.rs`. No logic lives here.

mod convert;
mod detach;
mod engine;
mod error;
mod results;

use pyo3::prelude::*;

/// Every stable error code the core can raise.
#[pyfunction]
fn error_codes() -> Vec<&'static str> {
    crate::error::ALL_CODES.to_vec()
}

/// The canonical form of a code text. Raises INVALID_CODE.
#[pyfunction]
fn normalise_code(py: Python<'_>, code: &str) -> PyResult<String> {
    let mut buf = [0u8; crate::hash::CODE_LEN_MAX];
    let n = crate::hash::normalise_code(code, &mut buf, None).map_err(|e| error::to_pyerr(py, e))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Scans framed journal bytes: `(valid_len, records, first_seq, last_seq, error, torn_tail)`.
#[pyfunction]
fn scan_journal(py: Python<'_>, data: &[u8]) -> (usize, u64, u64, u64, Option<String>, bool) {
    let s = py.detach(|| crate::journal::scan_frames(data));
    (s.valid_len, s.records, s.first_seq, s.last_seq, s.error, s.torn_tail)
}

#[pymodule(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use crate::types::*;
    m.add_function(wrap_pyfunction!(error_codes, m)?)?;
    m.add_function(wrap_pyfunction!(normalise_code, m)?)?;
    m.add_function(wrap_pyfunction!(scan_journal, m)?)?;
    m.add("STATES", STATE_NAMES.to_vec())?;
    m.add("CODE_LEN_MAX", crate::hash::CODE_LEN_MAX)?;
    m.add("PIN_LEN_MAX", crate::hash::PIN_LEN_MAX)?;
    m.add("REF_LEN_MAX", REF_LEN_MAX)?;
    m.add("BATCH_ITEMS_MAX", BATCH_ITEMS_MAX)?;
    m.add("ORDER_QTY_MAX", ORDER_QTY_MAX)?;
    m.add("HOLD_TTL_MS_MAX", HOLD_TTL_MS_MAX)?;
    m.add("REDEEM_BATCH_MAX", crate::engine::REDEEM_BATCH_MAX)?;
    m.add("REDEMPTION_LIST_MAX", crate::engine::REDEMPTION_LIST_MAX)?;
    m.add("PIN_FAILURES_DEFAULT", crate::engine::PIN_FAILURES_DEFAULT)?;
    m.add("PIN_LOCKOUT_MS_DEFAULT", crate::engine::PIN_LOCKOUT_MS_DEFAULT)?;
    m.add("PIN_LOCKOUT_MAX_MS_DEFAULT", crate::engine::PIN_LOCKOUT_MAX_MS_DEFAULT)?;
    m.add_class::<engine::CoreEngine>()?;
    m.add_class::<results::Hold>()?;
    m.add_class::<results::Verification>()?;
    m.add_class::<results::Redemption>()?;
    m.add_class::<results::CodeInfo>()?;
    m.add_class::<results::RedeemBatch>()?;
    m.add_class::<results::VerifyBatch>()?;
    m.add_class::<results::SnapshotData>()?;
    Ok(())
}
