//! The one way the binding calls the core: with the GIL released, errors converted on the way
//! out. The `Send` bound (PyO3's `Ungil`) stops closures from capturing Python objects, so core
//! locks are only ever taken while detached and a thread waiting on a shard lock never holds the
//! GIL that the lock holder may need.

use super::error::to_pyerr;
use crate::error::CoreResult;
use pyo3::prelude::*;

/// Runs `f` detached from the interpreter and converts its error.
#[inline]
pub fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> CoreResult<T> + Send,
{
    py.detach(f).map_err(|e| to_pyerr(py, e))
}
